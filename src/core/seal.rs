//! Sealing cookie values with AES-256-GCM. Keys come from the configured secrets through
//! HKDF-SHA256; the first secret seals, every secret opens (rotation). The issuer and the
//! service go into both the key derivation and the associated data, and the purpose into the
//! associated data: a value sealed for one login service, IdP or purpose opens nowhere else,
//! even where two services share a secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::core::random::Random;
use crate::core::secret::Secret;

/// 2: bound to the issuer as well as the service (values of 1 no longer open).
const VERSION: u8 = 2;
const NONCE_BYTES: usize = 12;
const SALT: &[u8] = b"wasm-iap cookie sealing v2";
/// Shortest secret accepted: 32 bytes, as for oauth2-proxy's AES-256 cookie secret.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

pub struct Sealer {
    ciphers: Vec<Aes256Gcm>,
    /// The IdP whose users' sessions this sealer keeps: a session stores it and is opened
    /// only where it matches (defence in depth beside the binding).
    issuer: String,
    /// Issuer and service, unambiguously encoded: a value sealed under one binding does not
    /// open under another.
    binding: Vec<u8>,
    /// A service with several IdPs: `<tag>.` before each value, so a cookie finds its IdP's
    /// sealer without trying each (the tag is in the binding too: another tag never opens).
    tag: Option<String>,
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
    /// A sealer for the sessions of `issuer`'s users at `service` (a stable name of the
    /// login service: what tells it from every other deployment using the same secret).
    pub fn new(secrets: &[Secret], issuer: &str, service: &str) -> Result<Sealer, SealerError> {
        let binding = encode(&[issuer, service]);
        let mut info = b"aes-256-gcm key\n".to_vec();
        info.extend_from_slice(&binding);
        let mut ciphers = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            let ikm = secret.expose().as_bytes();
            if ikm.len() < MIN_SECRET_BYTES {
                return Err(SealerError::ShortSecret { index: i });
            }
            let mut key = [0u8; 32];
            Hkdf::<Sha256>::new(Some(SALT), ikm)
                .expand(&info, &mut key)
                .map_err(|_| SealerError::KeyDerivation)?;
            ciphers.push(Aes256Gcm::new_from_slice(&key).map_err(|_| SealerError::KeyDerivation)?);
        }
        if ciphers.is_empty() {
            return Err(SealerError::NoSecret);
        }
        Ok(Sealer {
            ciphers,
            issuer: issuer.to_string(),
            binding,
            tag: None,
        })
    }

    /// This sealer, writing `<tag>.` before each value and opening only values that carry
    /// it. The caller puts the tag in `service` too, so a value moved to another tag's
    /// prefix does not open either.
    pub(crate) fn tagged(self, tag: &str) -> Sealer {
        Sealer {
            tag: Some(tag.to_string()),
            ..self
        }
    }

    /// The tag of this sealer's values, if any.
    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The issuer this sealer's sessions belong to.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    fn aad(&self, purpose: &str) -> Vec<u8> {
        let mut aad = encode(&[purpose]);
        aad.extend_from_slice(&self.binding);
        aad
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
        let encoded = URL_SAFE_NO_PAD.encode(out);
        Some(match &self.tag {
            Some(tag) => format!("{tag}.{encoded}"),
            None => encoded,
        })
    }

    /// Opens a sealed value; `None` for anything tampered, truncated, foreign or garbage.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let sealed = match &self.tag {
            Some(tag) => sealed.strip_prefix(tag.as_str())?.strip_prefix('.')?,
            None => sealed,
        };
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

/// Each field with its length first: no two lists of fields encode alike (a client id
/// ending in a newline cannot pass for another field).
fn encode(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::random::Seeded;

    fn secret(fill: char) -> Secret {
        Secret::new(fill.to_string().repeat(32))
    }

    fn sealer(secrets: &[Secret]) -> Sealer {
        Sealer::new(secrets, "https://dex.example.com", "prometheus").unwrap()
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
        let other_service =
            Sealer::new(&[secret('a')], "https://dex.example.com", "alertmanager").unwrap();
        assert_eq!(
            other_service.open("session", &sealed),
            None,
            "bound to its service"
        );
        let other_issuer =
            Sealer::new(&[secret('a')], "https://other.example.com", "prometheus").unwrap();
        assert_eq!(
            other_issuer.open("session", &sealed),
            None,
            "bound to its issuer"
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
    fn a_tagged_value_opens_only_under_its_tag() {
        let tagged = |tag: &str| {
            Sealer::new(
                &[secret('a')],
                "https://dex.example.com",
                &format!("p idp={tag}"),
            )
            .unwrap()
            .tagged(tag)
        };
        let corp = tagged("corp");
        let sealed = corp.seal("session", b"alice", &mut Seeded(6)).unwrap();
        assert!(sealed.starts_with("corp."), "{sealed}");
        assert_eq!(
            corp.open("session", &sealed).as_deref(),
            Some(&b"alice"[..])
        );
        let moved = sealed.replacen("corp.", "home.", 1);
        assert_eq!(
            tagged("home").open("session", &moved),
            None,
            "bound to its tag"
        );
        assert_eq!(sealer(&[secret('a')]).open("session", &sealed), None);
        assert_eq!(corp.open("session", &sealed["corp.".len()..]), None);
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        assert!(Sealer::new(&[Secret::new("short")], "i", "x").is_err());
        assert!(Sealer::new(&[], "i", "x").is_err());
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
