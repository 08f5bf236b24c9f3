//! Who the caller is, as the upstream sees it: identity headers set from verified claims,
//! and client-sent copies of them removed in every spelling.

use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::bearer::error::AuthError;
use crate::core::policy::access::{claim, scopes_of, Subject};
use crate::core::reply::header_value_safe;

/// The headers that carry the identity upstream (names lower case), and which optional
/// ones are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub(crate) user: String,
    pub(crate) email: String,
    pub(crate) groups: String,
    pub(crate) preferred_username: String,
    /// `X-Forwarded-User` and `X-Forwarded-Email` too (oauth2-proxy's `pass_user_headers`).
    pub(crate) pass_user_headers: bool,
    /// `(header, claim)`: a claim's value (dotted name for nested claims) as a header.
    pub(crate) claim_headers: Vec<(String, String)>,
}

impl IdentityHeaders {
    /// oauth2-proxy's `X-Auth-Request-*` names, nothing more.
    pub(crate) fn oauth2_proxy() -> IdentityHeaders {
        IdentityHeaders {
            user: "x-auth-request-user".into(),
            email: "x-auth-request-email".into(),
            groups: "x-auth-request-groups".into(),
            preferred_username: "x-auth-request-preferred-username".into(),
            pass_user_headers: false,
            claim_headers: Vec::new(),
        }
    }
}

/// A verified caller: from a token's claims, or from a session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub(crate) preferred_username: Option<String>,
    pub groups: Vec<String>,
    /// From `scope` or `scp` (bearer tokens).
    pub(crate) scopes: Vec<String>,
    pub(crate) issuer: String,
    /// Only the claims rules and claim headers read; nothing else is kept.
    pub(crate) claims: Map<String, Value>,
    /// `headers()`, built on first use: a cached token or session is forwarded many times,
    /// and joining hundreds of groups each time would cost more than the rest of a request.
    #[serde(skip)]
    pub(crate) headers_built: OnceCell<Vec<(String, String)>>,
}

/// The same caller, however often their headers were built.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user
            && self.email == other.email
            && self.preferred_username == other.preferred_username
            && self.groups == other.groups
            && self.scopes == other.scopes
            && self.issuer == other.issuer
            && self.claims == other.claims
    }
}

impl Eq for Identity {}

/// When an `email` claim may be used (as identity, in the email header, in rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EmailVerification {
    /// Only with `email_verified: true` (the default, like oauth2-proxy).
    Required,
    /// Also when the IdP omits `email_verified` (Azure AD); an explicit `false` still refuses.
    WhenPresent,
}

/// Where an identity is read from in a provider's claims.
pub(crate) struct ClaimNames<'a> {
    pub(crate) user: &'a str,
    pub(crate) groups: &'a str,
    pub(crate) email: EmailVerification,
    /// Top-level claims to keep for rules and claim headers.
    pub(crate) kept: &'a [String],
}

/// Whether a value reads upstream exactly as written: header-safe, and no whitespace at
/// either end (HTTP parsers drop it from a value, and upstreams trim the items of a list:
/// `" myorg:sre"` would be read as `myorg:sre`, which no rule checked).
pub(crate) fn reads_as_written(value: &str) -> bool {
    let trimmed = |c: Option<char>| c.is_some_and(char::is_whitespace);
    header_value_safe(value) && !trimmed(value.chars().next()) && !trimmed(value.chars().last())
}

/// A claim as text for a header: strings as they are, numbers and booleans printed, lists
/// of those joined with `,`; `None` for anything else or anything that would not read as
/// written (`reads_as_written`).
fn header_text(value: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()).filter(|s| reads_as_written(s)),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    let text = match value {
        // A comma inside an item would read as two items upstream: no header then.
        Value::Array(items) => items
            .iter()
            .map(|v| scalar(v).filter(|s| !s.contains(',')))
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    header_value_safe(&text).then_some(text)
}

impl Identity {
    /// Reads the user claim (required: without it the caller is known but nameless, `403`
    /// as kube-oidc-proxy answers), `email` (only when verified), groups, scopes and the
    /// kept claims from verified claims.
    pub(crate) fn from_claims(
        claims: &Map<String, Value>,
        names: &ClaimNames,
    ) -> Result<Identity, AuthError> {
        let email_trusted = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(verified)) => verified == "true",
            None | Some(Value::Null) => names.email == EmailVerification::WhenPresent,
            Some(_) => false,
        };
        if names.user == "email" && !email_trusted {
            return Err(AuthError::EmailNotVerified);
        }
        let user = claims
            .get(names.user)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::UserClaimMissing {
                claim: names.user.to_string(),
            })?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| email_trusted);
        for (claim, value) in [(names.user, Some(user)), ("email", email)] {
            // Free of control characters, so a claim can never split a header; no spaces at
            // either end, so the upstream cannot read another user.
            if value.is_some_and(|v| !reads_as_written(v)) {
                return Err(AuthError::ClaimNotHeaderSafe {
                    claim: claim.to_string(),
                });
            }
        }
        // A group or name that would not read as written is left out, as if absent.
        let text = |v: &Value| {
            v.as_str()
                .filter(|s| reads_as_written(s))
                .map(str::to_string)
        };
        let groups = match claim(claims, names.groups) {
            Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
            Some(single) => text(single).into_iter().collect(),
            None => Vec::new(),
        };
        let kept = names
            .kept
            .iter()
            .filter_map(|name| Some((name.clone(), claims.get(name)?.clone())))
            .collect();
        Ok(Identity {
            user: user.to_string(),
            email: email.map(str::to_string),
            preferred_username: claims.get("preferred_username").and_then(text),
            groups,
            scopes: scopes_of(claims),
            issuer: claims.get("iss").and_then(text).unwrap_or_default(),
            claims: kept,
            headers_built: OnceCell::new(),
        })
    }

    /// What rules see of this caller.
    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            email: self.email.as_deref(),
            groups: &self.groups,
            scopes: &self.scopes,
            issuer: &self.issuer,
            claims: &self.claims,
        }
    }

    /// A name for log lines that is not personal data: the same caller always gets the
    /// same reference, and it does not spell out who they are.
    pub(crate) fn reference(&self) -> String {
        let digest = Sha256::new()
            .chain_update(self.issuer.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.user.as_bytes())
            .finalize();
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// A kept claim's values as header-safe texts: each item of a list, or the one value.
    pub(crate) fn claim_values(&self, name: &str) -> Vec<String> {
        match claim(&self.claims, name) {
            Some(Value::Array(items)) => items.iter().filter_map(header_text).collect(),
            Some(value) => header_text(value).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// The same headers under other names (not remembered: forward-auth answers).
    pub(crate) fn headers_named(&self, names: &IdentityHeaders) -> Vec<(String, String)> {
        self.build_headers(names)
    }

    /// Headers to set upstream (every value header-safe). `names` are the VM's settings,
    /// the same on every call: the headers are built once per identity.
    pub(crate) fn headers(&self, names: &IdentityHeaders) -> Vec<(String, String)> {
        self.headers_built
            .get_or_init(|| self.build_headers(names))
            .clone()
    }

    fn build_headers(&self, names: &IdentityHeaders) -> Vec<(String, String)> {
        let mut headers = vec![(names.user.clone(), self.user.clone())];
        if let Some(email) = &self.email {
            headers.push((names.email.clone(), email.clone()));
        }
        // A comma inside a group name would read as two groups upstream, a space at its
        // ends as another group (sessions sealed before names were checked may hold one).
        let groups: Vec<&str> = self
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !g.contains(',') && reads_as_written(g))
            .collect();
        if !groups.is_empty() {
            headers.push((names.groups.clone(), groups.join(",")));
        }
        if let Some(name) = &self.preferred_username {
            headers.push((names.preferred_username.clone(), name.clone()));
        }
        if names.pass_user_headers {
            headers.push(("x-forwarded-user".into(), self.user.clone()));
            if let Some(email) = &self.email {
                headers.push(("x-forwarded-email".into(), email.clone()));
            }
        }
        for (header, name) in &names.claim_headers {
            if let Some(value) = claim(&self.claims, name).and_then(header_text) {
                headers.push((header.clone(), value));
            }
        }
        headers
    }
}

/// Header families that upstreams built for oauth2-proxy, Pomerium or kube-oidc-proxy trust
/// as identity, and method overrides: a client must never be able to send them.
const STRIPPED_PREFIXES: [&str; 10] = [
    "x-auth-request-",
    "impersonate-",
    "x-pomerium-",
    // kube-apiserver's front-proxy (requestheader) identity headers.
    "x-remote-",
    // Grafana's auth proxy (`X-WEBAUTH-USER`, `-EMAIL`, `-NAME`, `-GROUPS`, `-ROLE`).
    "x-webauth-",
    // authentik's proxy outpost (`X-authentik-username`, `-groups`, `-email`, `-jwt`).
    "x-authentik-",
    // Google IAP (`X-Goog-Authenticated-User-Email`, `-Id`).
    "x-goog-authenticated-user-",
    // AWS ALB (`X-Amzn-Oidc-Identity`, `-Data`, `-Accesstoken`).
    "x-amzn-oidc-",
    // Azure App Service authentication (`X-MS-CLIENT-PRINCIPAL`, `-NAME`, `-ID`, `-IDP`).
    "x-ms-client-principal",
    // Vouch Proxy (`X-Vouch-User`, `X-Vouch-IdP-Claims-*`).
    "x-vouch-",
];
/// Identity headers of other proxies and of the apps behind them: oauth2-proxy's
/// `X-Forwarded-*` and `GAP-Auth`; `Remote-*` of Authelia and Authentik, which apps
/// (Gitea, Nextcloud, Grafana set up for it) read as the signed-in user; `X-User`/`X-Email`.
pub(crate) const OTHER_PROXIES_IDENTITY: [&str; 15] = [
    // Google IAP's and Cloudflare Access's signed identity.
    "x-goog-iap-jwt-assertion",
    "cf-access-jwt-assertion",
    "cf-access-authenticated-user-email",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "gap-auth",
    "remote-user",
    "remote-email",
    "remote-groups",
    "remote-name",
    "x-user",
    "x-email",
];
/// Rules decide on the method: an upstream that honours an override would act on a method
/// no rule was asked about (a `read` GET turned into a DELETE).
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// The same for the path: Symfony before 3.4.14 (CVE-2018-14773), Zend Framework and IIS
/// URL Rewrite serve `X-Original-URL` / `X-Rewrite-URL` instead of the request line's path.
pub(crate) const PATH_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

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
        let mut names: Vec<String> = OTHER_PROXIES_IDENTITY
            .iter()
            .chain(&METHOD_OVERRIDES)
            .chain(&PATH_OVERRIDES)
            .map(|n| n.to_string())
            .collect();
        for ours in [
            &identity.user,
            &identity.email,
            &identity.groups,
            &identity.preferred_username,
        ] {
            names.push(folded(ours));
        }
        names.extend(identity.claim_headers.iter().map(|(h, _)| folded(h)));
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
pub(crate) fn spoofed<'a>(
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
        IdentityHeaders::oauth2_proxy()
    }

    fn read(
        claims: &Map<String, Value>,
        user: &str,
        email: EmailVerification,
    ) -> Result<Identity, AuthError> {
        Identity::from_claims(
            claims,
            &ClaimNames {
                user,
                groups: "groups",
                email,
                kept: &[],
            },
        )
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
            "X-HTTP-Method-Override",
            "x_http_method",
            "X-Method-Override",
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
        assert_eq!(found, request[1..21].to_vec());
    }

    #[test]
    fn identity_headers_of_grafana_authelia_and_other_neighbours_are_stripped_in_every_spelling() {
        let stripped = StrippedHeaders::new(&names(), &[]);
        for name in [
            "X-WEBAUTH-USER",
            "x_webauth_email",
            "X-WebAuth-Groups",
            "x-webauth-role",
            "Remote-User",
            "remote_email",
            "REMOTE-GROUPS",
            "Remote-Name",
            "X-User",
            "x_email",
            "X-Forwarded-User",
            "x_forwarded_groups",
            "X-Forwarded-Preferred-Username",
            "x-remote-user",
        ] {
            assert!(stripped.matches(name.as_bytes()), "{name} reached the app");
        }
        for name in ["x-user-agent", "remote-addr", "x-emails", "x-webauthn"] {
            assert!(!stripped.matches(name.as_bytes()), "{name} is not identity");
        }
    }

    #[test]
    fn a_group_with_spaces_at_its_ends_never_reaches_the_groups_header() {
        let claims = json!({
            "sub": "u-1",
            "groups": [" myorg:sre", "myorg:dev ", "\u{a0}admins", "devs", "a b"],
            "preferred_username": " alice",
        });
        let claims = claims.as_object().cloned().unwrap_or_default();
        let Ok(identity) = read(&claims, "sub", EmailVerification::Required) else {
            panic!("identity expected");
        };
        assert_eq!(identity.groups, ["devs", "a b"]);
        assert_eq!(identity.preferred_username, None);
        // A session sealed before names were checked still carries such a group.
        let older = Identity {
            groups: vec![" myorg:sre".into(), "devs".into()],
            ..identity
        };
        let headers = older.headers_named(&names());
        let groups = headers.iter().find(|(h, _)| h == "x-auth-request-groups");
        assert_eq!(groups.map(|(_, v)| v.as_str()), Some("devs"));
    }

    #[test]
    fn a_user_or_email_with_spaces_at_its_ends_is_refused_not_trimmed_upstream() {
        for (user_claim, claims) in [
            ("sub", json!({"sub": "admin "})),
            ("sub", json!({"sub": "\talice"})),
            (
                "sub",
                json!({"sub": "u-1", "email": " boss@corp.example", "email_verified": true}),
            ),
        ] {
            let claims = claims.as_object().cloned().unwrap_or_default();
            assert!(
                matches!(
                    read(&claims, user_claim, EmailVerification::Required),
                    Err(AuthError::ClaimNotHeaderSafe { .. })
                ),
                "{claims:?}"
            );
        }
        let claims = json!({"sub": "u-1", "tenant": [" acme", "beta"], "team": "ops "});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let kept = vec!["tenant".to_string(), "team".to_string()];
        let claim_names = ClaimNames {
            user: "sub",
            groups: "groups",
            email: EmailVerification::Required,
            kept: &kept,
        };
        let Ok(identity) = Identity::from_claims(&claims, &claim_names) else {
            panic!("identity expected");
        };
        assert_eq!(identity.claim_values("tenant"), ["beta"]);
        assert!(identity.claim_values("team").is_empty());
    }

    #[test]
    fn configured_identity_header_names_are_stripped_too() {
        let custom = IdentityHeaders {
            user: "X-Remote-User".into(),
            email: "x-remote-email".into(),
            claim_headers: vec![("x-tenant".into(), "tenant".into())],
            ..names()
        };
        let stripped = StrippedHeaders::new(&custom, &[]);
        assert!(stripped.matches(b"x_remote_user"));
        assert!(stripped.matches(b"X-REMOTE-EMAIL"));
        assert!(stripped.matches(b"X_Tenant"), "claim headers are ours too");
        assert!(!stripped.matches(b"x-request-id"));
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
        let email = |c: &Map<String, Value>, rule| read(c, "sub", rule).map(|i| i.email);
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
            read(&unverified, "email", when_present),
            Err(AuthError::EmailNotVerified)
        );
        assert!(read(&verified, "email", required).is_ok());
    }

    #[test]
    fn identity_comes_from_the_configured_claim() {
        let claims = json!({"sub": "u-1", "preferred_username": "alice", "email": "alice@example.com", "email_verified": true});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let identity = read(&claims, "preferred_username", EmailVerification::Required);
        assert_eq!(identity.as_ref().map(|i| i.user.as_str()), Ok("alice"));
        assert_eq!(
            identity.map(|i| i.email),
            Ok(Some("alice@example.com".into()))
        );
        assert_eq!(
            read(&claims, "upn", EmailVerification::Required),
            Err(AuthError::UserClaimMissing {
                claim: "upn".into()
            })
        );
    }

    #[test]
    fn claims_that_would_inject_headers_are_refused() {
        let claims = json!({"sub": "alice\r\nx-admin: true"});
        let claims = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(
            read(&claims, "sub", EmailVerification::Required),
            Err(AuthError::ClaimNotHeaderSafe {
                claim: "sub".into()
            })
        );
    }

    #[test]
    fn groups_scopes_and_kept_claims_reach_rules_and_headers() {
        let claims = json!({
            "iss": "https://dex.example.com",
            "sub": "u-1",
            "preferred_username": "alice",
            "groups": ["myorg:sre", "bad\r\ngroup", 7],
            "scope": "read write",
            "tenant": {"id": "t-9"},
            "secret_claim": "not kept",
        });
        let claims = claims.as_object().cloned().unwrap_or_default();
        let kept = vec!["tenant".to_string()];
        let claim_names = ClaimNames {
            user: "sub",
            groups: "groups",
            email: EmailVerification::Required,
            kept: &kept,
        };
        let Ok(identity) = Identity::from_claims(&claims, &claim_names) else {
            panic!("identity expected");
        };
        assert_eq!(identity.groups, vec!["myorg:sre".to_string()]);
        assert_eq!(
            identity.scopes,
            vec!["read".to_string(), "write".to_string()]
        );
        assert_eq!(identity.issuer, "https://dex.example.com");
        assert_eq!(identity.claims.len(), 1, "only claims rules read are kept");
        let headers = identity.headers(&IdentityHeaders {
            pass_user_headers: true,
            claim_headers: vec![("x-tenant".into(), "tenant.id".into())],
            ..names()
        });
        let get = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-auth-request-groups"), Some("myorg:sre"));
        assert_eq!(get("x-auth-request-preferred-username"), Some("alice"));
        assert_eq!(get("x-forwarded-user"), Some("u-1"));
        assert_eq!(get("x-tenant"), Some("t-9"));
        assert_eq!(identity.reference().len(), 12);
        assert!(!identity.reference().contains("u-1"));
    }
}
