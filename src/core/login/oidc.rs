//! The OAuth2/OIDC messages of the authorization-code flow with PKCE (RFC 7636): the
//! authorization URL, token requests (code exchange and refresh), and token responses.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::form_urlencoded;
use url::Url;

use super::settings::{ClientAuth, LoginService};
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
}

impl PendingLogin {
    pub fn new(
        return_to: String,
        now_secs: u64,
        timeout_secs: u64,
        random: &mut dyn Random,
    ) -> Self {
        PendingLogin {
            state: random.token(32),
            nonce: random.token(32),
            verifier: Secret::new(random.token(32)),
            return_to,
            expires_at: now_secs.saturating_add(timeout_secs),
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn authorization_url(
    endpoint: &Url,
    service: &LoginService,
    redirect_uri: &str,
    login: &PendingLogin,
) -> String {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &service.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &service.scopes.join(" "))
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &pkce_challenge(login.verifier.expose()))
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// A POST to the token endpoint; the body holds secrets and is never logged.
#[derive(Debug)]
pub struct TokenRequest {
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Secret,
}

fn token_request(endpoint: &Url, service: &LoginService, params: &[(&str, &str)]) -> TokenRequest {
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
    match service.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!(
                "{}:{}",
                encode(&service.client_id),
                encode(service.client_secret.expose())
            );
            headers.push((
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            ));
        }
        ClientAuth::Post => {
            body.append_pair("client_id", &service.client_id);
            body.append_pair("client_secret", service.client_secret.expose());
        }
    }
    TokenRequest {
        url: endpoint.clone(),
        headers,
        body: Secret::new(body.finish()),
    }
}

pub fn code_exchange(
    endpoint: &Url,
    service: &LoginService,
    redirect_uri: &str,
    code: &str,
    verifier: &Secret,
) -> TokenRequest {
    token_request(
        endpoint,
        service,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ],
    )
}

pub fn refresh(endpoint: &Url, service: &LoginService, refresh_token: &Secret) -> TokenRequest {
    token_request(
        endpoint,
        service,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ],
    )
}

#[derive(Debug, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<u64>,
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
    refresh_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
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
                refresh_token: raw.refresh_token.map(Secret::new),
                expires_in: raw.expires_in,
            })
        }
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
    fn token_responses_are_classified() {
        let ok = read_tokens(
            Some(200),
            br#"{"id_token":"a.b.c","refresh_token":"r","expires_in":300,"access_token":"x"}"#,
        );
        assert_eq!(
            ok,
            Ok(Tokens {
                id_token: Some(Secret::new("a.b.c")),
                refresh_token: Some(Secret::new("r")),
                expires_in: Some(300)
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
    }
}
