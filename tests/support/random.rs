//! Predictable randomness for tests: each byte one more than the last.

use wasm_iap::core::random::{NoRandomness, Random};

pub struct Counter(pub u8);

impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
        Ok(())
    }
}
