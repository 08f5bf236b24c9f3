//! The answer to a caller who is known but may not pass: JSON with an RFC 6750 challenge
//! for programs (through `AuthError`, where every refusal becomes HTTP), a page for people.
//! Neither says which rule refused: the policy is not the caller's business.

use crate::core::bearer::error::AuthError;
use crate::core::identity::Identity;
use crate::core::policy::path::PathError;
use crate::core::reply::{self, Reply};

/// `403` for `identity`: a page when a person's browser asked (naming the account, with a
/// way to switch it when the host has sign-in), JSON otherwise. Never a redirect, so a
/// refusal cannot loop through the IdP.
pub fn forbidden(
    identity: &Identity,
    missing_scopes: Vec<String>,
    browser: bool,
    sign_out_path: Option<&str>,
) -> Reply {
    if !browser {
        return AuthError::Forbidden { missing_scopes }.reply(Vec::new());
    }
    let shown = identity
        .email
        .as_deref()
        .or(identity.preferred_username.as_deref())
        .unwrap_or(&identity.user);
    let message = format!(
        "You are signed in as {shown}, and this account is not allowed to open this page. \
         If you have another account that is, sign out and sign in with it."
    );
    let links: Vec<(&str, &str)> = sign_out_path
        .map(|path| (path, "Sign out to switch accounts"))
        .into_iter()
        .collect();
    reply::page_with_links(403, "Access denied", &message, &links, Vec::new())
}

/// `400` for a path no rule can be matched against safely.
pub fn bad_path(error: &PathError, browser: bool) -> Reply {
    bad_request(&error.to_string(), browser)
}

/// `400` for an address no rule can be matched against safely.
pub fn bad_request(why: &str, browser: bool) -> Reply {
    if browser {
        return reply::page(
            400,
            "Bad address",
            &format!("This address cannot be opened: {why}."),
            Vec::new(),
        );
    }
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": why,
    })
    .to_string();
    reply::with_cookies(
        400,
        vec![("content-type".into(), "application/json".into())],
        body,
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn mallory() -> Identity {
        Identity {
            user: "u-7".into(),
            email: Some("mallory<b>@example.com".into()),
            preferred_username: None,
            groups: vec!["myorg:dev".into()],
            scopes: Vec::new(),
            issuer: "https://dex.example.com".into(),
            claims: Map::new(),
            ..Identity::default()
        }
    }

    #[test]
    fn a_person_sees_who_they_are_and_how_to_switch_accounts() {
        let page = forbidden(&mallory(), Vec::new(), true, Some("/oauth2/sign_out"));
        assert_eq!(page.status, 403);
        assert!(
            page.body.contains("mallory&lt;b&gt;@example.com"),
            "{}",
            page.body
        );
        assert!(page.body.contains("href=\"/oauth2/sign_out\""));
        assert!(
            !page.body.contains("myorg"),
            "the policy and groups are not shown"
        );
        assert_eq!(page.header("location"), None);
    }

    #[test]
    fn a_program_gets_json_and_the_missing_scopes() {
        let reply = forbidden(&mallory(), vec!["write".into()], false, None);
        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="wasm-iap", error="insufficient_scope", scope="write""#)
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
        assert_eq!(body["error"], "insufficient_scope");
        let plain = forbidden(&mallory(), Vec::new(), false, None);
        assert_eq!(plain.header("www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_str(&plain.body).unwrap_or_default();
        assert_eq!(body["error"], "forbidden");
    }
}
