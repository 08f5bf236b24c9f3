//! The OAuth2/OIDC messages of the authorization-code flow with PKCE (RFC 7636): the
//! authorization URL, token requests (code exchange and refresh), and token responses.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::form_urlencoded;
use url::Url;

use crate::core::config::idp::{Idp, IdpId};
use crate::core::config::login::ClientAuth;
use crate::core::random::Random;
use crate::core::secret::Secret;

/// A login in flight, kept sealed in its own short-lived cookie until the callback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: Secret,
    /// Where the browser goes after login: a validated path or allowed URL.
    pub return_to: String,
    pub expires_at: u64,
    /// The IdP the login went to: the one whose sealer opened its cookie.
    #[serde(skip)]
    pub idp: IdpId,
}

impl PendingLogin {
    /// `None` when the host has no randomness: a login must never start with guessable
    /// state, nonce or verifier.
    pub fn new(
        return_to: String,
        now_secs: u64,
        timeout_secs: u64,
        random: &mut dyn Random,
    ) -> Option<Self> {
        Some(PendingLogin {
            state: random.token(STATE_BYTES)?,
            nonce: random.token(32)?,
            verifier: Secret::new(random.token(32)?),
            return_to,
            expires_at: now_secs.saturating_add(timeout_secs),
            idp: IdpId::default(),
        })
    }
}

/// Random bytes in a `state`; as base64url without padding it is `STATE_CHARS` long.
const STATE_BYTES: usize = 32;
const STATE_CHARS: usize = 43;

/// Whether `state` has exactly the shape `PendingLogin::new` makes. Anything else is refused
/// before it is used anywhere, a cookie name included.
pub fn is_well_formed_state(state: &str) -> bool {
    state.len() == STATE_CHARS
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub(crate) fn authorization_url(
    endpoint: &Url,
    idp: &Idp,
    redirect_uri: &str,
    login: &PendingLogin,
) -> String {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &idp.scopes.join(" "))
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &pkce_challenge(login.verifier.expose()))
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// A POST to the token endpoint; the body and the `Authorization` header hold secrets and
/// are never logged.
pub struct TokenRequest {
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Secret,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| match *name {
                "authorization" => (*name, "[redacted]"),
                _ => (*name, value.as_str()),
            })
            .collect();
        f.debug_struct("TokenRequest")
            .field("url", &self.url.as_str())
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

fn token_request(endpoint: &Url, idp: &Idp, params: &[(&str, &str)]) -> TokenRequest {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        body.append_pair(k, v);
    }
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept", "application/json".to_string()),
    ];
    match idp.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!(
                "{}:{}",
                encode(&idp.client_id),
                encode(idp.client_secret.expose())
            );
            headers.push((
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            ));
        }
        ClientAuth::Post => {
            body.append_pair("client_id", &idp.client_id);
            body.append_pair("client_secret", idp.client_secret.expose());
        }
    }
    TokenRequest {
        url: endpoint.clone(),
        headers,
        body: Secret::new(body.finish()),
    }
}

pub(crate) fn code_exchange(
    endpoint: &Url,
    idp: &Idp,
    redirect_uri: &str,
    code: &str,
    verifier: &Secret,
) -> TokenRequest {
    token_request(
        endpoint,
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ],
    )
}

pub(crate) fn refresh(endpoint: &Url, idp: &Idp, refresh_token: &Secret) -> TokenRequest {
    token_request(
        endpoint,
        idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ],
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<u64>,
    /// The scopes granted, when the IdP says (RFC 6749 §5.1).
    pub scope: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No answer, a timeout, or a server error: worth trying again later.
    Unavailable(String),
    /// The IdP said no (`invalid_grant` and friends): the code or refresh token is dead.
    Refused(String),
    Garbage,
}

#[derive(Deserialize)]
struct RawTokens {
    id_token: Option<String>,
    /// Only used when configured: a malformed one must not fail the sign-in.
    #[serde(default)]
    access_token: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
}

/// `expires_in` as a number, or as a numeric string (Azure AD v1 sends `"3599"`); anything
/// else is as if absent.
fn seconds(value: Option<serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Reads a token endpoint response (`status` is `None` when the call failed).
pub fn read_tokens(status: Option<u32>, body: &[u8]) -> Result<Tokens, TokenError> {
    let parsed: Option<RawTokens> = serde_json::from_slice(body).ok();
    match status {
        None => Err(TokenError::Unavailable(
            "no response (unreachable or timed out)".into(),
        )),
        Some(200) => {
            let raw = parsed.ok_or(TokenError::Garbage)?;
            Ok(Tokens {
                id_token: raw.id_token.map(Secret::new),
                access_token: text(raw.access_token).map(Secret::new),
                refresh_token: raw.refresh_token.map(Secret::new),
                expires_in: seconds(raw.expires_in),
                scope: text(raw.scope),
            })
        }
        // Throttled or timed out: try again later, the code or refresh token still stands.
        Some(status @ (408 | 429)) => Err(TokenError::Unavailable(format!("HTTP {status}"))),
        Some(status @ 400..=499) => {
            let error = parsed
                .and_then(|r| r.error)
                .unwrap_or_else(|| "no error code".into());
            Err(TokenError::Refused(format!("HTTP {status}: {error}")))
        }
        Some(status) => Err(TokenError::Unavailable(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn expires_in_as_a_string_is_read_like_azure_ad_v1_sends_it() {
        let tokens = read_tokens(Some(200), br#"{"id_token":"a.b.c","expires_in":"3599"}"#);
        assert_eq!(tokens.map(|t| t.expires_in), Ok(Some(3599)));
        let odd = read_tokens(Some(200), br#"{"id_token":"a.b.c","expires_in":[1]}"#);
        assert_eq!(odd.map(|t| t.expires_in), Ok(None));
    }

    #[test]
    fn token_request_debug_hides_the_client_secret() {
        let request = TokenRequest {
            url: Url::parse("https://idp.example/token").unwrap(),
            headers: vec![("authorization", "Basic ZGVtbzpzM2NyZXQ=".into())],
            body: Secret::new("client_secret=s3cret&code=c0de"),
        };
        let printed = format!("{request:?}");
        assert!(
            !printed.contains("ZGVtbzpzM2NyZXQ")
                && !printed.contains("s3cret")
                && !printed.contains("c0de"),
            "{printed}"
        );
    }

    #[test]
    fn only_states_of_our_own_shape_are_well_formed() {
        assert!(is_well_formed_state(&"A".repeat(43)));
        for bad in [
            "",
            "short",
            &"A".repeat(44),
            &format!("{}\r\nx", "A".repeat(40)),
            &format!("{}%0D", "A".repeat(40)),
            &format!("{}=", "A".repeat(42)),
        ] {
            assert!(!is_well_formed_state(bad), "{bad:?}");
        }
    }

    #[test]
    fn token_responses_are_classified() {
        let ok = read_tokens(
            Some(200),
            br#"{"id_token":"a.b.c","refresh_token":"r","expires_in":300,"access_token":"x","scope":"openid groups"}"#,
        );
        assert_eq!(
            ok,
            Ok(Tokens {
                id_token: Some(Secret::new("a.b.c")),
                access_token: Some(Secret::new("x")),
                refresh_token: Some(Secret::new("r")),
                expires_in: Some(300),
                scope: Some("openid groups".into()),
            })
        );
        assert_eq!(
            read_tokens(Some(400), br#"{"error":"invalid_grant"}"#),
            Err(TokenError::Refused("HTTP 400: invalid_grant".into()))
        );
        assert_eq!(
            read_tokens(Some(401), b"nope"),
            Err(TokenError::Refused("HTTP 401: no error code".into()))
        );
        assert!(matches!(
            read_tokens(Some(503), b""),
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            read_tokens(None, b""),
            Err(TokenError::Unavailable(_))
        ));
        assert_eq!(read_tokens(Some(200), b"<html>"), Err(TokenError::Garbage));
        for throttled in [408, 429] {
            assert!(
                matches!(
                    read_tokens(Some(throttled), b""),
                    Err(TokenError::Unavailable(_))
                ),
                "{throttled} must not end a session"
            );
        }
    }
}
