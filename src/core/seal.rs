//! Sealing cookie values with AES-256-GCM. Keys come from the configured secrets through
//! HKDF-SHA256; the first secret seals, every secret opens (rotation). The associated data
//! binds a sealed value to its service and purpose, so it cannot be replayed elsewhere.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::core::random::Random;
use crate::core::secret::Secret;

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;
const SALT: &[u8] = b"wasm-iap cookie sealing v1";
/// Shortest secret accepted: 32 bytes, as for oauth2-proxy's AES-256 cookie secret.
pub const MIN_SECRET_BYTES: usize = 32;

pub struct Sealer {
    ciphers: Vec<Aes256Gcm>,
    /// Names the service: a value sealed for one service does not open for another.
    binding: String,
}

/// Why cookie secrets cannot seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealerError {
    ShortSecret { index: usize },
    NoSecret,
    KeyDerivation,
}

impl std::fmt::Display for SealerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealerError::ShortSecret { index } => {
                write!(f, "secret {index} is shorter than {MIN_SECRET_BYTES} bytes")
            }
            SealerError::NoSecret => f.write_str("at least one secret is required"),
            SealerError::KeyDerivation => f.write_str("key derivation failed"),
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys, [redacted])", self.ciphers.len())
    }
}

impl Sealer {
    pub fn new(secrets: &[Secret], binding: &str) -> Result<Sealer, SealerError> {
        let mut ciphers = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            let ikm = secret.expose().as_bytes();
            if ikm.len() < MIN_SECRET_BYTES {
                return Err(SealerError::ShortSecret { index: i });
            }
            let mut key = [0u8; 32];
            Hkdf::<Sha256>::new(Some(SALT), ikm)
                .expand(b"aes-256-gcm key", &mut key)
                .map_err(|_| SealerError::KeyDerivation)?;
            ciphers.push(Aes256Gcm::new_from_slice(&key).map_err(|_| SealerError::KeyDerivation)?);
        }
        if ciphers.is_empty() {
            return Err(SealerError::NoSecret);
        }
        Ok(Sealer {
            ciphers,
            binding: binding.to_string(),
        })
    }

    fn aad(&self, purpose: &str) -> Vec<u8> {
        format!("{purpose}\n{}", self.binding).into_bytes()
    }

    /// Seals `plaintext` for `purpose` ("session", "login", ...) as unpadded base64url.
    pub fn seal(&self, purpose: &str, plaintext: &[u8], random: &mut dyn Random) -> Option<String> {
        let cipher = self.ciphers.first()?;
        let mut nonce = [0u8; NONCE_BYTES];
        random.fill(&mut nonce).ok()?;
        let aad = self.aad(purpose);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a sealed value; `None` for anything tampered, truncated, foreign or garbage.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let aad = self.aad(purpose);
        self.ciphers.iter().find_map(|cipher| {
            cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::random::Seeded;

    fn secret(fill: char) -> Secret {
        Secret::new(fill.to_string().repeat(32))
    }

    fn sealer(secrets: &[Secret]) -> Sealer {
        Sealer::new(secrets, "prometheus").unwrap()
    }

    #[test]
    fn sealed_value_opens_only_for_the_same_purpose_and_service() {
        let s = sealer(&[secret('a')]);
        let sealed = s.seal("session", b"alice", &mut Seeded(1)).unwrap();
        assert_eq!(s.open("session", &sealed).as_deref(), Some(&b"alice"[..]));
        assert_eq!(
            s.open("login", &sealed),
            None,
            "a login cookie is not a session"
        );
        let other_service = Sealer::new(&[secret('a')], "alertmanager").unwrap();
        assert_eq!(
            other_service.open("session", &sealed),
            None,
            "bound to its service"
        );
    }

    #[test]
    fn tampered_truncated_or_garbage_values_do_not_open() {
        let s = sealer(&[secret('a')]);
        let sealed = s.seal("session", b"alice", &mut Seeded(2)).unwrap();
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [
            tampered.as_str(),
            &sealed[..sealed.len() - 4],
            "",
            "garbage!",
            "AQ",
        ] {
            assert_eq!(s.open("session", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rotation_first_secret_seals_all_open() {
        let old = sealer(&[secret('o')]);
        let from_old = old.seal("session", b"kept", &mut Seeded(3)).unwrap();
        let rotated = sealer(&[secret('n'), secret('o')]);
        assert_eq!(
            rotated.open("session", &from_old).as_deref(),
            Some(&b"kept"[..])
        );
        let from_new = rotated.seal("session", b"new", &mut Seeded(4)).unwrap();
        assert_eq!(old.open("session", &from_new), None, "the new key seals");
        assert_eq!(
            sealer(&[secret('n')]).open("session", &from_new).as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        assert!(Sealer::new(&[Secret::new("short")], "x").is_err());
        assert!(Sealer::new(&[], "x").is_err());
    }

    #[test]
    fn nonces_differ_so_equal_values_seal_differently() {
        let s = sealer(&[secret('a')]);
        let mut random = Seeded(5);
        assert_ne!(
            s.seal("session", b"x", &mut random),
            s.seal("session", b"x", &mut random)
        );
    }
}
