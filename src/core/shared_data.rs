//! Envoy's shared data, as the core uses it: a key-value store visible to every worker,
//! with a version per key for compare-and-swap. Implemented for the host by the adapter and
//! in memory by the tests, so coordination across workers runs natively.

pub trait SharedData {
    /// A key's value and version; `(None, None)` when absent.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);

    /// Writes `value`; with `cas`, only if the key still has that version (as in Envoy, a
    /// key that does not exist yet takes any write). Returns whether it was written.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// No shared data: for a VM that keeps everything to itself.
#[cfg(any(test, feature = "testing"))]
pub(crate) struct NothingShared;

#[cfg(any(test, feature = "testing"))]
impl SharedData for NothingShared {
    fn get(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }

    fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> bool {
        false
    }
}
