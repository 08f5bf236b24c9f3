//! Randomness, injected: the filter uses the host's, tests use a seeded one. A source that
//! fails says so, and callers refuse to go on: nothing is ever sealed or named with a
//! predictable fallback.

/// The host could not provide random bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRandomness;

pub trait Random {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness>;

    /// `bytes` random bytes as unpadded base64url: states, nonces, verifiers, session ids.
    fn token(&mut self, bytes: usize) -> Option<String> {
        use base64::Engine;
        let mut buf = vec![0u8; bytes];
        self.fill(&mut buf).ok()?;
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
    }
}

/// A deterministic generator for tests (xorshift; never for production use).
#[cfg(test)]
pub(crate) struct Seeded(pub(crate) u64);

#[cfg(test)]
impl Random for Seeded {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        for byte in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
        Ok(())
    }
}

/// A source that always fails, to test that callers refuse to go on.
#[cfg(test)]
pub(crate) struct Broken;

#[cfg(test)]
impl Random for Broken {
    fn fill(&mut self, _buf: &mut [u8]) -> Result<(), NoRandomness> {
        Err(NoRandomness)
    }
}
