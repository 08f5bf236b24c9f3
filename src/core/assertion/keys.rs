//! The gateway's own signing keys for identity assertions: read from PEM PKCS#8, signing
//! with jwt-simple (pure Rust), published as a JWKS. Never printed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair, Ed25519KeyPair, EdDSAKeyPairLike,
    JWTClaims,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::core::secret::Secret;

/// The algorithms an assertion may be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    EdDsa,
}

impl Algorithm {
    pub(crate) fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

enum Pair {
    Es256(ES256KeyPair),
    EdDsa(Ed25519KeyPair),
}

/// One signing key and its `kid`; `Debug` shows the `kid` and algorithm only.
pub struct SigningKey {
    kid: String,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm().name())
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    /// Reads a PEM PKCS#8 private key (`openssl genpkey`) of `algorithm`; `Err` says what
    /// was expected, never what was given.
    pub(crate) fn from_pem(
        kid: &str,
        algorithm: Algorithm,
        pem: &Secret,
    ) -> Result<SigningKey, String> {
        let pem = pem.expose().trim();
        let pair = match algorithm {
            Algorithm::Es256 => ES256KeyPair::from_pem(pem)
                .map(|p| Pair::Es256(p.with_key_id(kid)))
                .map_err(|_| {
                    "is not a PEM PKCS#8 P-256 private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)"
                }),
            Algorithm::EdDsa => Ed25519KeyPair::from_pem(pem)
                .map(|p| Pair::EdDsa(p.with_key_id(kid)))
                .map_err(|_| {
                    "is not a PEM PKCS#8 Ed25519 private key (openssl genpkey -algorithm ed25519)"
                }),
        };
        Ok(SigningKey {
            kid: kid.to_string(),
            pair: pair.map_err(str::to_string)?,
        })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Es256(_) => Algorithm::Es256,
            Pair::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// A compact JWS of `claims`, with this key's `kid` in its header.
    pub(crate) fn sign<C: Serialize>(&self, claims: JWTClaims<C>) -> Result<String, String> {
        let signed = match &self.pair {
            Pair::Es256(pair) => pair.sign(claims),
            Pair::EdDsa(pair) => pair.sign(claims),
        };
        signed.map_err(|e| e.to_string())
    }

    /// The public half as a JWK (RFC 7517/8037), for the JWKS.
    pub(crate) fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.pair {
            Pair::Es256(pair) => {
                let point = pair.public_key().public_key().to_bytes_uncompressed();
                // 0x04 || x (32 bytes) || y (32 bytes)
                let x = point.get(1..33).unwrap_or_default();
                let y = point.get(33..65).unwrap_or_default();
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y),
                       "kid": self.kid, "alg": "ES256", "use": "sig"})
            }
            Pair::EdDsa(pair) => {
                let public = pair.public_key().to_bytes();
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public),
                       "kid": self.kid, "alg": "EdDSA", "use": "sig"})
            }
        }
    }
}

/// The JWKS document of `keys`: every key, the signing one first.
pub(crate) fn jwks_document(keys: &[SigningKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(SigningKey::public_jwk).collect();
    json!({ "keys": keys }).to_string()
}
