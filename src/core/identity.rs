//! Who the caller is, as the upstream sees it: identity headers set from verified claims,
//! and client-sent copies of them removed in every spelling.

use serde_json::{Map, Value};

use super::config::IdentityHeaders;
use super::error::AuthError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
}

impl Identity {
    /// Reads the user claim (required) and `email` (optional) from verified claims.
    pub fn from_claims(
        claims: &Map<String, Value>,
        user_claim: &str,
    ) -> Result<Identity, AuthError> {
        let user = claims
            .get(user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::MissingClaim {
                claim: user_claim.to_string(),
            })?;
        let email = claims.get("email").and_then(Value::as_str);
        for (claim, value) in [(user_claim, Some(user)), ("email", email)] {
            if value.is_some_and(|v| !header_safe(v)) {
                return Err(AuthError::ClaimNotHeaderSafe {
                    claim: claim.to_string(),
                });
            }
        }
        Ok(Identity {
            user: user.to_string(),
            email: email.map(str::to_string),
        })
    }

    /// Headers to set upstream.
    pub fn headers<'a>(&'a self, names: &'a IdentityHeaders) -> Vec<(&'a str, &'a str)> {
        let mut headers = vec![(names.user.as_str(), self.user.as_str())];
        if let Some(email) = &self.email {
            headers.push((names.email.as_str(), email.as_str()));
        }
        headers
    }
}

/// Printable and free of control characters, so a claim can never split a header.
fn header_safe(value: &str) -> bool {
    value.chars().all(|c| !c.is_control())
}

/// Equal when read case-insensitively with `_` as `-`, as proxies behind us may read them.
/// Compared byte by byte: this runs for every header of every request.
fn same_header(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// The names of request headers that pose as one of our identity headers, however spelt.
pub fn spoofed<'a>(
    request_header_names: impl Iterator<Item = &'a str>,
    names: &IdentityHeaders,
) -> Vec<&'a str> {
    request_header_names
        .filter(|name| same_header(name, &names.user) || same_header(name, &names.email))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> IdentityHeaders {
        IdentityHeaders {
            user: "x-auth-request-user".into(),
            email: "x-auth-request-email".into(),
        }
    }

    #[test]
    fn spoofed_identity_headers_are_found_in_every_spelling() {
        let request = [
            "host",
            "X-Auth-Request-User",
            "x_auth_request_email",
            "X_AUTH-request_USER",
            "x-auth-request-users",
            "authorization",
        ];
        assert_eq!(
            spoofed(request.into_iter(), &names()),
            vec![
                "X-Auth-Request-User",
                "x_auth_request_email",
                "X_AUTH-request_USER"
            ]
        );
    }

    #[test]
    fn identity_comes_from_the_configured_claim() {
        let claims =
            json!({"sub": "u-1", "preferred_username": "alice", "email": "alice@example.com"});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let identity = Identity::from_claims(&claims, "preferred_username");
        assert_eq!(
            identity,
            Ok(Identity {
                user: "alice".into(),
                email: Some("alice@example.com".into())
            })
        );
        assert_eq!(
            Identity::from_claims(&claims, "upn"),
            Err(AuthError::MissingClaim {
                claim: "upn".into()
            })
        );
    }

    #[test]
    fn claims_that_would_inject_headers_are_refused() {
        let claims = json!({"sub": "alice\r\nx-admin: true"});
        let claims = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(
            Identity::from_claims(&claims, "sub"),
            Err(AuthError::ClaimNotHeaderSafe {
                claim: "sub".into()
            })
        );
    }
}
