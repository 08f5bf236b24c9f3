//! Keys generated in the test and tokens minted from them, for every algorithm we accept.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type SignFn = Box<dyn Fn(JWTClaims<Map<String, Value>>) -> String + Send + Sync>;

/// One signing key, published under `kid`, for one algorithm.
pub struct Signer {
    pub alg: &'static str,
    pub kid: String,
    pub public_jwk: Value,
    sign: SignFn,
    sign_without_kid: SignFn,
    sign_as_logout: SignFn,
}

impl Signer {
    /// Signs a claims object given in full as JSON (iss, aud, exp, ... as the test wants).
    pub fn sign(&self, claims: &Value) -> String {
        let claims: JWTClaims<Map<String, Value>> =
            serde_json::from_value(claims.clone()).expect("claims are a JSON object");
        (self.sign)(claims)
    }

    /// Signs as `sign` does, typed `logout+jwt` (OIDC Back-Channel Logout's header).
    pub fn sign_as_logout(&self, claims: &Value) -> String {
        let claims: JWTClaims<Map<String, Value>> =
            serde_json::from_value(claims.clone()).expect("claims are a JSON object");
        (self.sign_as_logout)(claims)
    }

    /// Signs with the same key but no `kid` in the header.
    pub fn sign_without_kid(&self, claims: &Value) -> String {
        let claims: JWTClaims<Map<String, Value>> =
            serde_json::from_value(claims.clone()).expect("claims are a JSON object");
        (self.sign_without_kid)(claims)
    }
}

/// `$make` builds the same key pair each time it is called.
macro_rules! signer {
    ($make:expr, $alg:literal, $kid:expr) => {{
        let make = $make;
        let plain = make();
        let pair = make().with_key_id(&$kid);
        let typed = make().with_key_id(&$kid);
        let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).expect("jwk");
        jwk["kid"] = json!($kid);
        jwk["alg"] = json!($alg);
        jwk["use"] = json!("sig");
        Signer {
            alg: $alg,
            kid: $kid,
            public_jwk: jwk,
            sign: Box::new(move |claims| pair.sign(claims).expect("signing works")),
            sign_without_kid: Box::new(move |claims| plain.sign(claims).expect("signing works")),
            sign_as_logout: Box::new(move |claims| {
                let header = HeaderOptions {
                    signature_type: Some("logout+jwt".into()),
                    ..HeaderOptions::default()
                };
                typed
                    .sign_with_options(claims, &header)
                    .expect("signing works")
            }),
        }
    }};
}

/// A full set of keys, one per algorithm; RSA algorithms share one 2048-bit key.
pub struct KeyRing {
    pub signers: Vec<Signer>,
    pub rsa_public_pem: String,
}

impl KeyRing {
    pub fn generate(prefix: &str) -> KeyRing {
        let rsa = RS256KeyPair::generate(2048).expect("rsa key");
        let der = rsa.to_der().expect("der");
        let rsa_public_pem = rsa.public_key().to_pem().expect("pem");
        let kid = |alg: &str| format!("{prefix}-{}", alg.to_lowercase());
        let es256 = ES256KeyPair::generate().to_bytes();
        let es384 = ES384KeyPair::generate().to_bytes();
        let ed25519 = Ed25519KeyPair::generate().to_bytes();
        let signers = vec![
            signer!(
                || RS256KeyPair::from_der(&der).expect("k"),
                "RS256",
                kid("RS256")
            ),
            signer!(
                || RS384KeyPair::from_der(&der).expect("k"),
                "RS384",
                kid("RS384")
            ),
            signer!(
                || RS512KeyPair::from_der(&der).expect("k"),
                "RS512",
                kid("RS512")
            ),
            signer!(
                || PS256KeyPair::from_der(&der).expect("k"),
                "PS256",
                kid("PS256")
            ),
            signer!(
                || PS384KeyPair::from_der(&der).expect("k"),
                "PS384",
                kid("PS384")
            ),
            signer!(
                || PS512KeyPair::from_der(&der).expect("k"),
                "PS512",
                kid("PS512")
            ),
            signer!(
                || ES256KeyPair::from_bytes(&es256).expect("k"),
                "ES256",
                kid("ES256")
            ),
            signer!(
                || ES384KeyPair::from_bytes(&es384).expect("k"),
                "ES384",
                kid("ES384")
            ),
            signer!(
                || Ed25519KeyPair::from_bytes(&ed25519).expect("k"),
                "EdDSA",
                kid("EdDSA")
            ),
        ];
        KeyRing {
            signers,
            rsa_public_pem,
        }
    }

    pub fn signer(&self, alg: &str) -> &Signer {
        self.signers
            .iter()
            .find(|s| s.alg == alg)
            .expect("known algorithm")
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": self.signers.iter().map(|s| s.public_jwk.clone()).collect::<Vec<_>>() })
    }

    /// The JWKS with only the named algorithms' keys.
    pub fn jwks_of(&self, algs: &[&str]) -> Value {
        let keys: Vec<Value> = self
            .signers
            .iter()
            .filter(|s| algs.contains(&s.alg))
            .map(|s| s.public_jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

/// Keys made once per test binary: RSA generation is slow.
pub fn shared_keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::generate("main"))
}

/// A second, unrelated set of keys, for rotation and wrong-key cases.
pub fn other_keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::generate("other"))
}

/// Valid claims for `issuer`/`audience`, good for five minutes.
pub fn claims(issuer: &str, audience: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": "alice-id",
        "email": "alice@example.com",
        "email_verified": true,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}

/// `claims` with some fields replaced (null removes one).
pub fn claims_with(issuer: &str, audience: &str, changes: Value) -> Value {
    let mut base = claims(issuer, audience);
    for (k, v) in changes.as_object().expect("object").clone() {
        if v.is_null() {
            base.as_object_mut().expect("object").remove(&k);
        } else {
            base[k] = v;
        }
    }
    base
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with the given header and claims and whatever signature bytes the attack wants.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(claims.to_string()),
        b64(signature)
    )
}

/// The classic algorithm-confusion attack: HS256 keyed with the RSA public key.
pub fn hs256_with_public_key(keys: &KeyRing, claims: &Value) -> String {
    let key =
        HS256Key::from_bytes(keys.rsa_public_pem.as_bytes()).with_key_id(&keys.signer("RS256").kid);
    let claims: JWTClaims<Map<String, Value>> =
        serde_json::from_value(claims.clone()).expect("claims");
    key.authenticate(claims).expect("hmac")
}

/// Replaces the payload, keeping header and signature: the signature no longer fits.
pub fn tamper_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(claims.to_string()), parts[2])
}

/// Flips one bit of the signature.
pub fn tamper_signature(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("signature is base64url");
    signature[0] ^= 1;
    format!("{}.{}.{}", parts[0], parts[1], b64(signature))
}

/// A JWT's claims as they are written, unverified (to look into the IdP's tokens).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is base64url");
    serde_json::from_slice(&bytes).expect("payload is JSON")
}
