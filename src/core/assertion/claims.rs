//! What an identity assertion says: `iss`, `aud`, `sub`, `email`, `groups`, `iat`, `exp`,
//! and for a session a `sid` derived from ours (never ours: it names the session to the
//! refresh protocol and the cluster store).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{Audiences, Duration, JWTClaims};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::core::identity::Identity;

/// The claims beside the registered ones.
#[derive(Serialize)]
pub(crate) struct Extra<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// The `sid` an upstream sees for session `sid`: stable for the session, and saying
/// nothing of it. base64url(SHA-256("wasm-iap assertion sid\0" + sid)), 22 characters.
pub fn derived_sid(sid: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"wasm-iap assertion sid\0");
    digest.update(sid.as_bytes());
    let mut text = URL_SAFE_NO_PAD.encode(digest.finalize());
    text.truncate(22);
    text
}

/// The claims of one assertion, issued at `now_secs`.
pub(crate) fn claims<'a>(
    issuer: &str,
    audience: &str,
    identity: &'a Identity,
    session_sid: Option<&str>,
    now_secs: u64,
    lifetime_secs: u64,
) -> JWTClaims<Extra<'a>> {
    JWTClaims {
        issued_at: Some(Duration::from_secs(now_secs)),
        expires_at: Some(Duration::from_secs(now_secs.saturating_add(lifetime_secs))),
        invalid_before: None,
        issuer: Some(issuer.to_string()),
        subject: Some(identity.user.clone()),
        audiences: Some(Audiences::AsString(audience.to_string())),
        jwt_id: None,
        nonce: None,
        custom: Extra {
            email: identity.email.as_deref(),
            groups: &identity.groups,
            sid: session_sid.map(derived_sid),
        },
    }
}
