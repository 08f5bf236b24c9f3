//! Randomness, injected: the filter uses the host's, tests use a seeded one.

pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);

    /// `bytes` random bytes as unpadded base64url: states, nonces, verifiers, session ids.
    fn token(&mut self, bytes: usize) -> String {
        use base64::Engine;
        let mut buf = vec![0u8; bytes];
        self.fill(&mut buf);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    }
}

/// A deterministic generator for tests (xorshift; never for production use).
#[cfg(test)]
pub struct Seeded(pub u64);

#[cfg(test)]
impl Random for Seeded {
    fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
    }
}
