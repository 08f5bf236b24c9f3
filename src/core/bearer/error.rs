//! Why a request is refused, and the one place that turns that into an HTTP answer.

use std::fmt;

use crate::core::log_text::Escaped;
use crate::core::reply::{self, Reply};

/// Every reason the authentication layer refuses a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    MissingToken,
    NotBearer,
    TokenTooLarge {
        max: usize,
    },
    Malformed {
        what: &'static str,
    },
    AlgorithmNotAccepted {
        alg: String,
    },
    UntrustedIssuer,
    /// A trusted issuer, but not one the service accepts (`providers`).
    IssuerNotAccepted,
    MissingClaim {
        claim: String,
    },
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    UnknownKey {
        kid: Option<String>,
    },
    KeyDoesNotFitAlgorithm {
        kid: String,
    },
    BadSignature,
    WrongNonce,
    WrongAuthorizedParty,
    ClaimNotHeaderSafe {
        claim: String,
    },
    /// A valid token without the user claim: known but nameless (`403`, as kube-oidc-proxy).
    UserClaimMissing {
        claim: String,
    },
    /// The user claim is `email`, and the IdP does not say it is verified.
    EmailNotVerified,
    /// The `Authorization` header is not text (non-UTF-8 bytes).
    HeaderNotText,
    /// No signing keys could be had for the issuer in time: the IdP is down or unreachable.
    KeysUnavailable,
    /// The client's address spent its budget of failed signature checks (`429`).
    Throttled,
}

/// The description in answers and log lines: what the token chose (`alg`, `kid`, a claim
/// name) is escaped, so it can neither forge a log line nor break a header.
impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingToken => f.write_str("missing bearer token"),
            AuthError::NotBearer => f.write_str("authorization scheme is not Bearer"),
            AuthError::TokenTooLarge { max } => write!(f, "token larger than {max} bytes"),
            AuthError::Malformed { what } => write!(f, "malformed token: {what}"),
            AuthError::AlgorithmNotAccepted { alg } => {
                write!(f, "algorithm {} not accepted", Escaped(alg))
            }
            AuthError::UntrustedIssuer => f.write_str("untrusted issuer"),
            AuthError::IssuerNotAccepted => {
                f.write_str("tokens of this issuer are not accepted here")
            }
            AuthError::MissingClaim { claim } => write!(f, "missing claim {}", Escaped(claim)),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not yet valid"),
            AuthError::IssuedInFuture => f.write_str("token issued in the future"),
            AuthError::WrongAudience => f.write_str("wrong audience"),
            AuthError::UnknownKey { kid: Some(kid) } => {
                write!(f, "unknown signing key {}", Escaped(kid))
            }
            AuthError::UnknownKey { kid: None } => f.write_str("no signing key fits the token"),
            AuthError::KeyDoesNotFitAlgorithm { kid } => {
                write!(
                    f,
                    "signing key {} does not fit the token's algorithm",
                    Escaped(kid)
                )
            }
            AuthError::BadSignature => f.write_str("invalid signature"),
            AuthError::WrongNonce => f.write_str("ID token nonce does not match the login"),
            AuthError::WrongAuthorizedParty => {
                f.write_str("ID token was issued to another client (azp)")
            }
            AuthError::ClaimNotHeaderSafe { claim } => {
                write!(f, "claim {} cannot be sent as a header", Escaped(claim))
            }
            AuthError::UserClaimMissing { claim } => {
                write!(
                    f,
                    "the token has no {} claim to name the user",
                    Escaped(claim)
                )
            }
            AuthError::EmailNotVerified => f.write_str("email is not verified"),
            AuthError::HeaderNotText => f.write_str("authorization header is not text"),
            AuthError::KeysUnavailable => f.write_str("signing keys are not available"),
            AuthError::Throttled => {
                f.write_str("too many invalid tokens from this address; retry later")
            }
        }
    }
}

const REALM: &str = "wasm-iap";

impl AuthError {
    /// RFC 6750 error code; none when the request carried no credentials at all (§3.1).
    fn oauth_error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken => None,
            AuthError::NotBearer | AuthError::HeaderNotText => Some("invalid_request"),
            AuthError::KeysUnavailable | AuthError::Throttled => Some("temporarily_unavailable"),
            AuthError::UserClaimMissing { .. } => Some("forbidden"),
            _ => Some("invalid_token"),
        }
    }

    /// The status of the answer: `401` unless the caller is known (`403`), throttled
    /// (`429`) or the keys are missing (`503`).
    pub(crate) fn status(&self) -> u32 {
        match self {
            AuthError::KeysUnavailable => 503,
            AuthError::Throttled => 429,
            AuthError::UserClaimMissing { .. } => 403,
            _ => 401,
        }
    }

    /// The answer to a refused request: `401` with an RFC 6750 challenge and a JSON body;
    /// `403` for a valid caller who may not pass (with an `insufficient_scope` challenge
    /// naming the scopes when they were what was missing); `503` with `Retry-After` when
    /// keys are missing; `set_cookies` go along.
    pub(crate) fn reply(&self, set_cookies: Vec<String>) -> Reply {
        let description = self.to_string();
        let code = self.oauth_error_code();
        let body = serde_json::json!({
            "error": code.unwrap_or("unauthorized"),
            "error_description": description,
        })
        .to_string();
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if *self == AuthError::KeysUnavailable {
            headers.push(("retry-after".into(), "5".into()));
            return reply::with_cookies(503, headers, body, set_cookies);
        }
        if *self == AuthError::Throttled {
            headers.push(("retry-after".into(), "1".into()));
            return reply::with_cookies(429, headers, body, set_cookies);
        }
        if let AuthError::UserClaimMissing { .. } = self {
            return reply::with_cookies(403, headers, body, set_cookies);
        }
        let challenge = match code {
            None => format!("Bearer realm=\"{REALM}\""),
            Some(code) => format!(
                "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
                quoted_string_safe(&description)
            ),
        };
        headers.push(("www-authenticate".into(), challenge));
        reply::with_cookies(401, headers, body, set_cookies)
    }
}

/// RFC 6750 §3.1's challenge for a valid token that lacks `scopes`.
pub(crate) fn insufficient_scope_challenge(scopes: &[String]) -> String {
    // Scope names come from the config; quoted anyway, so nothing breaks out.
    format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
        quoted_string_safe(&scopes.join(" "))
    )
}

/// Descriptions can echo a `kid` from the token: keep the header's quoted-string intact.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(rejection: &'a Reply, name: &str) -> Option<&'a str> {
        rejection.header(name)
    }

    #[test]
    fn expired_token_gets_401_with_rfc6750_challenge_and_json() {
        let rejection = AuthError::Expired.reply(vec![]);
        assert_eq!(rejection.status, 401);
        assert_eq!(
            header(&rejection, "www-authenticate"),
            Some(
                r#"Bearer realm="wasm-iap", error="invalid_token", error_description="token expired""#
            )
        );
        let body: serde_json::Value = serde_json::from_str(&rejection.body).unwrap_or_default();
        assert_eq!(body["error_description"], "token expired");
    }

    #[test]
    fn request_without_credentials_gets_a_bare_challenge() {
        let rejection = AuthError::MissingToken.reply(vec![]);
        assert_eq!(rejection.status, 401);
        assert_eq!(
            header(&rejection, "www-authenticate"),
            Some(r#"Bearer realm="wasm-iap""#)
        );
    }

    #[test]
    fn the_status_a_refusal_is_counted_and_logged_with_is_the_one_it_is_answered_with() {
        for error in [
            AuthError::MissingToken,
            AuthError::Expired,
            AuthError::UserClaimMissing {
                claim: "sub".into(),
            },
            AuthError::KeysUnavailable,
            AuthError::Throttled,
            AuthError::IssuerNotAccepted,
        ] {
            assert_eq!(error.status(), error.reply(Vec::new()).status, "{error}");
        }
    }

    #[test]
    fn idp_outage_is_503_not_401() {
        let rejection = AuthError::KeysUnavailable.reply(vec![]);
        assert_eq!(rejection.status, 503);
        assert_eq!(header(&rejection, "www-authenticate"), None);
        assert!(header(&rejection, "retry-after").is_some());
    }

    #[test]
    fn alg_and_kid_from_a_token_cannot_forge_a_log_line() {
        for error in [
            AuthError::AlgorithmNotAccepted {
                alg: "none\r\n[critical] admin signed in".into(),
            },
            AuthError::UnknownKey {
                kid: Some("k\n\u{1b}[2J\u{2028}".into()),
            },
            AuthError::KeyDoesNotFitAlgorithm { kid: "k\r".into() },
            AuthError::MissingClaim {
                claim: "a\nb".into(),
            },
        ] {
            let line = error.to_string();
            assert!(line.chars().all(|c| (' '..='~').contains(&c)), "{line:?}");
        }
        let line = AuthError::AlgorithmNotAccepted {
            alg: "none\r\nx".into(),
        }
        .to_string();
        assert_eq!(line, "algorithm none\\r\\nx not accepted");
    }

    #[test]
    fn kid_from_an_attacker_cannot_break_the_header() {
        let rejection = AuthError::UnknownKey {
            kid: Some("a\"b\r\nx: y".into()),
        }
        .reply(vec![]);
        let challenge = header(&rejection, "www-authenticate").unwrap_or_default();
        assert!(!challenge.contains('\n') && !challenge.contains("a\"b"));
    }
}
