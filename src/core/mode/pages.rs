//! A refusal written for whoever asked: a page for a person's browser, JSON with an RFC 6750
//! challenge for a program. Neither says which rule refused: the policy is not the
//! caller's business.

use serde_json::json;

use crate::core::bearer::error::insufficient_scope_challenge;
use crate::core::page::Page;
use crate::core::refusal::{Forbidden, Refusal, Refused};
use crate::core::reply::{self, Reply};

/// `refused` as this filter writes it outside Kubernetes mode.
pub fn render(refused: Refused, browser: bool) -> Reply {
    let cookies = refused.set_cookies;
    match refused.refusal {
        Refusal::Token(error) => error.reply(cookies),
        Refusal::Forbidden(forbidden) if browser => forbidden_page(&forbidden, cookies),
        Refusal::Forbidden(forbidden) => forbidden_json(&forbidden, cookies),
        Refusal::UnlistedHost if browser => {
            let message = "No service is set up for this address.";
            reply::page_with_links(403, "Access denied", message, &[], cookies)
        }
        Refusal::BadRequest(why) if browser => reply::page(
            400,
            "Bad address",
            &format!("This address cannot be opened: {why}."),
            cookies,
        ),
        refusal => json_refusal(&refusal, cookies),
    }
}

/// A refusal as JSON: `error` (an OAuth code) and `error_description`.
fn json_refusal(refusal: &Refusal, cookies: Vec<String>) -> Reply {
    let error = match refusal {
        Refusal::BadRequest(_) | Refusal::SpoofedHeader(_) => Some("invalid_request"),
        Refusal::ClientImpersonates => None,
        _ => Some("forbidden"),
    };
    let status = refusal.status();
    let description = refusal.description();
    let (body, headers) = match error {
        Some(error) => {
            let body = json!({ "error": error, "error_description": description });
            // Byte for byte as before the refusals were one type: a `400` for a bad
            // address ends at `}`, the others with a line feed.
            let end = if matches!(refusal, Refusal::BadRequest(_)) {
                ""
            } else {
                "\n"
            };
            let headers = vec![("content-type".into(), "application/json".into())];
            (format!("{body}{end}"), headers)
        }
        None => (
            json!({ "error_description": description }).to_string(),
            Vec::new(),
        ),
    };
    reply::with_cookies(status, headers, body, cookies)
}

/// `403` for a program: RFC 6750's `insufficient_scope` with its challenge when scopes were
/// all that was missing, else `forbidden`.
fn forbidden_json(forbidden: &Forbidden, cookies: Vec<String>) -> Reply {
    let scopes = &forbidden.missing_scopes;
    let error = if scopes.is_empty() {
        "forbidden"
    } else {
        "insufficient_scope"
    };
    let description = forbidden.description();
    let body = json!({ "error": error, "error_description": description }).to_string();
    let mut headers = vec![("content-type".into(), "application/json".into())];
    if !scopes.is_empty() {
        headers.push((
            "www-authenticate".into(),
            insufficient_scope_challenge(scopes),
        ));
    }
    reply::with_cookies(403, headers, body, cookies)
}

/// `403` for a person: the account they are signed in with, and ways to switch it when
/// the host has sign-in (the operator's message, support link and request id come with the
/// branding). Never a redirect, so a refusal cannot loop through the IdP.
fn forbidden_page(forbidden: &Forbidden, cookies: Vec<String>) -> Reply {
    let mut paragraphs = vec![format!(
        "You are signed in as {}, and this account is not allowed to open this page.",
        forbidden.shown
    )];
    let mut links = Vec::new();
    if let Some(switch) = &forbidden.switch_account {
        links.push((switch.clone(), "Switch account".to_string()));
    }
    if let Some(sign_out) = &forbidden.sign_out_path {
        links.push((sign_out.clone(), "Sign out".to_string()));
    }
    if !links.is_empty() {
        paragraphs.push("If you have another account that is, switch to it.".into());
    }
    let page = Page {
        title: "Access denied".into(),
        paragraphs,
        links,
        forbidden: true,
    };
    reply::from_page(403, page, cookies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::Identity;
    use serde_json::Map;

    fn forbidden(
        identity: &Identity,
        missing_scopes: Vec<String>,
        browser: bool,
        sign_out_path: Option<&str>,
    ) -> Reply {
        let refusal = Forbidden::of(identity, missing_scopes, sign_out_path);
        render(Refusal::Forbidden(Box::new(refusal)).into(), browser)
    }

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
