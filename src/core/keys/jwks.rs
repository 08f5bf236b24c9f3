//! A JSON Web Key Set turned into verifying keys, looked up by `kid` and algorithm.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;

use crate::core::keys::algorithm::Algorithm;
use crate::core::keys::error::KeysError;
use crate::core::keys::rsa_verify::{HashAlg, RsaPublicKey};

/// One public key, ready to verify tokens of exactly one algorithm. RSA PKCS#1 v1.5 keys
/// (RS256/384/512, by their hash) are checked by `rsa_verify`; jwt-simple validates them on
/// import.
pub enum VerifyingKey {
    Pkcs1(RsaPublicKey, HashAlg),
    PS256(PS256PublicKey),
    PS384(PS384PublicKey),
    PS512(PS512PublicKey),
    ES256(ES256PublicKey),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
}

impl VerifyingKey {
    /// Imports a JWK for one algorithm; jwt-simple rejects a key whose `kty`, `crv`,
    /// `alg` or `use` do not allow it.
    fn import(alg: Algorithm, jwk: &str, value: &Value) -> Option<VerifyingKey> {
        let key = match alg {
            Algorithm::RS256 => {
                RS256PublicKey::from_jwk(jwk).ok()?;
                VerifyingKey::Pkcs1(rsa_key(value)?, HashAlg::Sha256)
            }
            Algorithm::RS384 => {
                RS384PublicKey::from_jwk(jwk).ok()?;
                VerifyingKey::Pkcs1(rsa_key(value)?, HashAlg::Sha384)
            }
            Algorithm::RS512 => {
                RS512PublicKey::from_jwk(jwk).ok()?;
                VerifyingKey::Pkcs1(rsa_key(value)?, HashAlg::Sha512)
            }
            Algorithm::PS256 => VerifyingKey::PS256(PS256PublicKey::from_jwk(jwk).ok()?),
            Algorithm::PS384 => VerifyingKey::PS384(PS384PublicKey::from_jwk(jwk).ok()?),
            Algorithm::PS512 => VerifyingKey::PS512(PS512PublicKey::from_jwk(jwk).ok()?),
            Algorithm::ES256 => VerifyingKey::ES256(ES256PublicKey::from_jwk(jwk).ok()?),
            Algorithm::ES384 => VerifyingKey::ES384(ES384PublicKey::from_jwk(jwk).ok()?),
            Algorithm::EdDSA => VerifyingKey::EdDSA(Ed25519PublicKey::from_jwk(jwk).ok()?),
        };
        Some(key)
    }

    /// Checks the signature only; claims are checked by `claims.rs` with our own clock.
    /// `options` pins jwt-simple's clock to ours so its own claim checks agree.
    pub(crate) fn verify_signature(&self, token: &str, options: VerificationOptions) -> bool {
        let options = Some(options);
        match self {
            VerifyingKey::Pkcs1(k, hash) => pkcs1v15(k, *hash, token),
            VerifyingKey::PS256(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
            VerifyingKey::PS384(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
            VerifyingKey::PS512(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
            VerifyingKey::ES256(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
            VerifyingKey::ES384(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
            VerifyingKey::EdDSA(k) => k.verify_token::<NoCustomClaims>(token, options).is_ok(),
        }
    }
}

/// A JWK's `n` and `e` as a key for `rsa_verify`.
fn rsa_key(jwk: &Value) -> Option<RsaPublicKey> {
    let part = |name: &str| URL_SAFE_NO_PAD.decode(jwk.get(name)?.as_str()?).ok();
    RsaPublicKey::from_be_bytes(&part("n")?, &part("e")?)
}

/// A compact JWS's RSASSA-PKCS1-v1_5 signature over its first two parts.
fn pkcs1v15(key: &RsaPublicKey, hash: HashAlg, token: &str) -> bool {
    let Some((signed, signature)) = token.rsplit_once('.') else {
        return false;
    };
    match URL_SAFE_NO_PAD.decode(signature) {
        Ok(signature) => key.verify_pkcs1v15(hash, signed.as_bytes(), &signature),
        Err(_) => false,
    }
}

struct Entry {
    kid: Option<String>,
    alg: Algorithm,
    key: VerifyingKey,
}

/// The usable keys of one issuer. Keys that are malformed, meant for encryption, or of an
/// algorithm we do not allow are left out, so one bad key never hides the good ones.
pub struct KeySet {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (e.kid.as_deref(), e.alg)))
            .finish()
    }
}

impl KeySet {
    /// Parses a JWKS document; an error when it is not one or holds no usable key.
    pub fn parse(document: &str, allowed: &[Algorithm]) -> Result<KeySet, KeysError> {
        let value: Value = serde_json::from_str(document).map_err(|e| KeysError::JwksNotJson {
            detail: e.to_string(),
        })?;
        Self::from_value(&value, allowed)
    }

    pub fn from_value(value: &Value, allowed: &[Algorithm]) -> Result<KeySet, KeysError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeysError::NoKeysArray)?;
        let mut entries = Vec::new();
        for jwk in keys {
            let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
            let crv = jwk.get("crv").and_then(Value::as_str);
            let declared = jwk.get("alg").and_then(Value::as_str);
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
            let text = jwk.to_string();
            for &alg in allowed {
                if !alg.fits_key(kty, crv) || declared.is_some_and(|d| d != alg.name()) {
                    continue;
                }
                if let Some(key) = VerifyingKey::import(alg, &text, jwk) {
                    entries.push(Entry {
                        kid: kid.clone(),
                        alg,
                        key,
                    });
                }
            }
        }
        if entries.is_empty() {
            return Err(KeysError::NoUsableKey { keys: keys.len() });
        }
        Ok(KeySet { entries })
    }

    /// Keys that may verify a token with this `alg` and `kid`: with a `kid`, the key so named
    /// (and keys published without a `kid`); without one, every key of the token's algorithm.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.entries
            .iter()
            .filter(move |e| {
                e.alg == alg && (kid.is_none() || e.kid.is_none() || e.kid.as_deref() == kid)
            })
            .map(|e| &e.key)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.entries.iter().any(|e| e.kid.as_deref() == Some(kid))
    }
}
