//! Who the caller is, as the upstream sees it: identity headers set from verified claims,
//! and client-sent copies of them removed in every spelling.

use serde_json::{Map, Value};

use crate::core::reply::header_value_safe;

use crate::core::bearer::error::AuthError;

#[derive(Clone, Debug, PartialEq, Eq)]
/// The names of the headers that carry the identity upstream.
pub struct IdentityHeaders {
    pub user: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
}

/// When an `email` claim may be used (as identity, in the email header, in rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailVerification {
    /// Only with `email_verified: true` (the default, like oauth2-proxy).
    Required,
    /// Also when the IdP omits `email_verified` (Azure AD); an explicit `false` still refuses.
    WhenPresent,
}

impl Identity {
    /// Reads the user claim (required) and `email` (optional, and only when verified) from
    /// verified claims.
    pub fn from_claims(
        claims: &Map<String, Value>,
        user_claim: &str,
        email_rule: EmailVerification,
    ) -> Result<Identity, AuthError> {
        let email_trusted = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(verified)) => verified == "true",
            None | Some(Value::Null) => email_rule == EmailVerification::WhenPresent,
            Some(_) => false,
        };
        if user_claim == "email" && !email_trusted {
            return Err(AuthError::EmailNotVerified);
        }
        let user = claims
            .get(user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::MissingClaim {
                claim: user_claim.to_string(),
            })?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| email_trusted);
        for (claim, value) in [(user_claim, Some(user)), ("email", email)] {
            // Free of control characters, so a claim can never split a header.
            if value.is_some_and(|v| !header_value_safe(v)) {
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

/// Header families that upstreams built for oauth2-proxy, Pomerium or kube-oidc-proxy trust
/// as identity: a client must never be able to send them.
const STRIPPED_PREFIXES: [&str; 2] = ["x-auth-request-", "impersonate-"];
const STRIPPED_NAMES: [&str; 6] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "gap-auth",
];

/// Which request headers a client may not send: our identity headers, the families above,
/// and the configured `strip_request_headers` (an entry ending in `*` is a prefix). Every
/// name is kept lower case with `-`, the form `matches` folds client names to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrippedHeaders {
    names: Vec<String>,
    prefixes: Vec<String>,
}

fn fold(c: u8) -> u8 {
    if c == b'_' {
        b'-'
    } else {
        c.to_ascii_lowercase()
    }
}

fn folded(name: &str) -> String {
    name.bytes().map(|b| char::from(fold(b))).collect()
}

impl StrippedHeaders {
    pub fn new(identity: &IdentityHeaders, configured: &[String]) -> Self {
        let mut names: Vec<String> = STRIPPED_NAMES.iter().map(|n| n.to_string()).collect();
        names.push(folded(&identity.user));
        names.push(folded(&identity.email));
        let mut prefixes: Vec<String> = STRIPPED_PREFIXES.iter().map(|p| p.to_string()).collect();
        for entry in configured {
            match entry.strip_suffix('*') {
                Some(prefix) => prefixes.push(folded(prefix)),
                None => names.push(folded(entry)),
            }
        }
        StrippedHeaders { names, prefixes }
    }

    /// Whether a client-sent header name is one of these, read case-insensitively with `_`
    /// as `-` (as proxies behind us may read it). Byte by byte: this runs for every header.
    pub fn matches(&self, name: &[u8]) -> bool {
        let same = |ours: &str| {
            ours.len() == name.len() && ours.bytes().zip(name).all(|(o, n)| o == fold(*n))
        };
        let starts = |ours: &str| {
            ours.len() <= name.len() && ours.bytes().zip(name).all(|(o, n)| o == fold(*n))
        };
        self.names.iter().any(|n| same(n)) || self.prefixes.iter().any(|p| starts(p))
    }
}

/// The names of request headers a client may not send, however spelt. Only ASCII names
/// can match, so each is returned as text.
pub fn spoofed<'a>(
    request_header_names: impl Iterator<Item = &'a [u8]>,
    stripped: &StrippedHeaders,
) -> Vec<&'a str> {
    request_header_names
        .filter(|name| stripped.matches(name))
        .filter_map(|name| std::str::from_utf8(name).ok())
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
        let stripped = StrippedHeaders::new(&names(), &["x-internal-*".into(), "X_Tenant".into()]);
        let request = [
            "host",
            "X-Auth-Request-User",
            "x_auth_request_email",
            "X_AUTH-request_USER",
            "x-auth-request-groups",
            "X-Auth-Request-Preferred-Username",
            "x_auth_request_access_token",
            "X-Forwarded-User",
            "x_forwarded_email",
            "X-FORWARDED-GROUPS",
            "x-forwarded-preferred-username",
            "x-forwarded-access-token",
            "Impersonate-User",
            "impersonate_group",
            "Impersonate-Extra-Scopes",
            "GAP-Auth",
            "x-internal-role",
            "x-tenant",
            "authorization",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-users",
            "x-tenants",
            "x-auth-request",
        ];
        let found = spoofed(request.iter().map(|n| n.as_bytes()), &stripped);
        assert_eq!(found, request[1..18].to_vec());
    }

    #[test]
    fn configured_identity_header_names_are_stripped_too() {
        let custom = IdentityHeaders {
            user: "X-Remote-User".into(),
            email: "x-remote-email".into(),
        };
        let stripped = StrippedHeaders::new(&custom, &[]);
        assert!(stripped.matches(b"x_remote_user"));
        assert!(stripped.matches(b"X-REMOTE-EMAIL"));
        assert!(!stripped.matches(b"x-remote-address"));
        assert!(!stripped.matches(b"\xff-user"));
    }

    #[test]
    fn unverified_email_is_never_identity() {
        let claims = |extra: serde_json::Value| {
            let mut base = json!({"sub": "u-1", "email": "admin@corp.example"});
            if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            base.as_object().cloned().unwrap_or_default()
        };
        let email =
            |c: &Map<String, Value>, rule| Identity::from_claims(c, "sub", rule).map(|i| i.email);
        let required = EmailVerification::Required;
        let when_present = EmailVerification::WhenPresent;
        let verified = claims(json!({"email_verified": true}));
        let unverified = claims(json!({"email_verified": false}));
        let as_string = claims(json!({"email_verified": "true"}));
        let omitted = claims(json!({}));
        assert_eq!(
            email(&verified, required),
            Ok(Some("admin@corp.example".into()))
        );
        assert_eq!(
            email(&as_string, required),
            Ok(Some("admin@corp.example".into()))
        );
        assert_eq!(email(&unverified, required), Ok(None));
        assert_eq!(email(&unverified, when_present), Ok(None));
        assert_eq!(email(&omitted, required), Ok(None));
        assert_eq!(
            email(&omitted, when_present),
            Ok(Some("admin@corp.example".into()))
        );
        assert_eq!(
            Identity::from_claims(&unverified, "email", when_present),
            Err(AuthError::EmailNotVerified)
        );
        assert!(Identity::from_claims(&verified, "email", required).is_ok());
    }

    #[test]
    fn identity_comes_from_the_configured_claim() {
        let claims = json!({"sub": "u-1", "preferred_username": "alice", "email": "alice@example.com", "email_verified": true});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let identity =
            Identity::from_claims(&claims, "preferred_username", EmailVerification::Required);
        assert_eq!(
            identity,
            Ok(Identity {
                user: "alice".into(),
                email: Some("alice@example.com".into())
            })
        );
        assert_eq!(
            Identity::from_claims(&claims, "upn", EmailVerification::Required),
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
            Identity::from_claims(&claims, "sub", EmailVerification::Required),
            Err(AuthError::ClaimNotHeaderSafe {
                claim: "sub".into()
            })
        );
    }
}
