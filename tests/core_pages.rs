#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Branded pages, natively: the `pages` block and its problems, a service's own fields over
//! the top-level ones, the 403 page's details (who, switch account, sign out, request id,
//! the operator's message, support), hostile values escaped everywhere, the content
//! security policy, and programs still getting the JSON they got before.

mod support;

use serde_json::{json, Value};
use support::native_bed::*;
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;

const APP: &str = "grafana.example.com";
const API: &str = "api.example.com";

fn session_of(email: &str, groups: &[&str]) -> Session {
    let now = support::mint::now_secs();
    Session {
        sid: "sid-bob".into(),
        user: "bob-id".into(),
        email: Some(email.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    }
}

fn top_pages() -> Value {
    json!({
        "product_name": "Acme Cloud",
        "logo_url": "https://cdn.acme.test/logo.svg",
        "accent_color": "#0a7f5a",
        "support_url": "https://help.acme.test/access",
        "footer_text": "Acme Corp, internal use only",
        "forbidden_message": "Ask for access in #it-access."
    })
}

fn bed_with(top: Value, app_pages: Value, api_pages: Value) -> Bed {
    let app = login_service(
        APP,
        "grafana",
        "_grafana_iap",
        json!({ "allowed_groups": ["myorg:sre"], "pages": app_pages }),
    );
    Bed::new(&json!({
        "providers": [provider()],
        "pages": top,
        "login": [app],
        "services": [{ "hosts": [API], "allowed_groups": ["myorg:sre"], "pages": api_pages }],
    }))
}

/// A signed-in browser without the group, asking for `/d/abc` with this request id.
fn forbidden_page(bed: &mut Bed, email: &str, request_id: &str) -> Reply {
    let cookie = bed.session_cookie(0, &session_of(email, &["myorg:dev"]));
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    headers.push(("x-request-id", request_id));
    responded(bed.get(APP, "/d/abc?orgId=1", &headers))
}

/// Every tag the page has: only the layout's own, whatever the values said.
fn tags(body: &str) -> Vec<String> {
    body.split('<')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == '/')
                .collect()
        })
        .collect()
}

const LAYOUT_TAGS: [&str; 16] = [
    "!doctype", "html", "head", "meta", "title", "style", "body", "main", "header", "img", "span",
    "h1", "p", "nav", "a", "code",
];

fn only_layout_tags(body: &str) {
    for tag in tags(body) {
        let name = tag.trim_start_matches('/');
        assert!(
            LAYOUT_TAGS.contains(&name) || name == "footer",
            "tag <{tag}> in {body}"
        );
    }
    assert_eq!(body.matches("<img").count(), 1, "only the logo: {body}");
}

#[test]
fn the_403_page_names_the_account_and_offers_switch_account_sign_out_and_help() {
    let mut bed = bed_with(
        top_pages(),
        json!({ "product_name": "Grafana" }),
        Value::Null,
    );
    let page = forbidden_page(&mut bed, "bob@mydomain.com", "3c1f-77a0");
    assert_eq!(page.status, 403, "{page:?}");
    assert_eq!(page.header("location"), None, "never a redirect");
    let body = &page.body;
    for expected in [
        "<title>Access denied · Grafana</title>",
        "You are signed in as bob@mydomain.com",
        "<a href=\"/oauth2/start?prompt=select_account&amp;rd=%2Fd%2Fabc\">Switch account</a>",
        "<a href=\"/oauth2/sign_out\">Sign out</a>",
        "<p class=\"note\">Ask for access in #it-access.</p>",
        "<a href=\"https://help.acme.test/access\">Contact support</a>",
        "Request ID: <code>3c1f-77a0</code>",
        "<img src=\"https://cdn.acme.test/logo.svg\" alt=\"Grafana\">",
        "--accent:#0a7f5a",
        "Acme Corp, internal use only · wasm-iap · HTTP 403",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        "@media(prefers-color-scheme:dark)",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    assert!(!body.contains("myorg"), "groups and policy are not shown");
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'none'; style-src 'unsafe-inline'; img-src https://cdn.acme.test; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

#[test]
fn hostile_values_in_every_field_are_written_as_text() {
    let hostile = "\"'><script>alert(1)</script><img src=x onerror=alert(1)>";
    let pages = json!({
        "product_name": hostile,
        "logo_url": "https://cdn.acme.test/l.svg?a=\"><script>alert(1)</script>",
        "support_url": "https://help.acme.test/?q=\"><script>alert(1)</script>",
        "footer_text": hostile,
        "forbidden_message": hostile,
    });
    let mut bed = bed_with(pages, Value::Null, Value::Null);
    let email = "bob\"><script>alert(1)</script>@mydomain.com";
    let page = forbidden_page(&mut bed, email, "<script>alert(1)</script>");
    only_layout_tags(&page.body);
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(
        page.body
            .contains("&quot;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Request ID: <code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("bob&quot;&gt;&lt;script&gt;"),
        "{}",
        page.body
    );
}

#[test]
fn a_request_id_is_shown_only_when_it_is_short_printable_ascii() {
    let mut bed = bed_with(top_pages(), Value::Null, Value::Null);
    for unshown in ["x".repeat(129), "a b".into(), "é".into()] {
        let page = forbidden_page(&mut bed, "bob@mydomain.com", &unshown);
        assert!(
            !page.body.contains("Request ID"),
            "{unshown:?}: {}",
            page.body
        );
    }
    let longest = "r".repeat(128);
    let page = forbidden_page(&mut bed, "bob@mydomain.com", &longest);
    assert!(page.body.contains(&format!("<code>{longest}</code>")));
}

#[test]
fn a_program_gets_the_same_json_as_before_byte_for_byte() {
    let mut bed = bed_with(top_pages(), Value::Null, Value::Null);
    let cookie = bed.session_cookie(0, &session_of("bob@mydomain.com", &["myorg:dev"]));
    let headers = [("cookie", cookie.as_str()), JSON, ("x-request-id", "abc")];
    let reply = responded(bed.get(APP, "/api/dashboards", &headers));
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.body,
        r#"{"error":"forbidden","error_description":"access to this resource is not allowed"}"#
    );
    assert_eq!(
        reply.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
        ]
    );
}

#[test]
fn each_page_carries_the_branding_of_the_service_it_belongs_to() {
    let mut bed = bed_with(
        top_pages(),
        json!({ "product_name": "Grafana" }),
        json!({ "product_name": "Acme API", "accent_color": "#c00" }),
    );
    // A host no service lists: the top-level block.
    let unlisted = responded(bed.get("other.example.com", "/", &BROWSER));
    assert_eq!(unlisted.status, 403);
    assert!(
        unlisted.body.contains("<span>Acme Cloud</span>"),
        "{}",
        unlisted.body
    );
    assert!(
        !unlisted.body.contains("Ask for access"),
        "not a refusal by the rules"
    );
    // A bad address on the API host: its own name and accent over the top-level rest.
    let bad = responded(bed.get(API, "/a%2Fb", &BROWSER));
    assert_eq!(bad.status, 400);
    for expected in ["<span>Acme API</span>", "--accent:#c00", "Contact support"] {
        assert!(bad.body.contains(expected), "{expected}: {}", bad.body);
    }
    // A sign-in error on the login host (the IdP refused): the login service's name.
    let path =
        "/oauth2/callback?error=access_denied&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let error = responded(bed.get(APP, path, &BROWSER));
    assert_eq!(error.status, 403, "{}", error.body);
    assert!(
        error.body.contains("<span>Grafana</span>"),
        "{}",
        error.body
    );
    assert!(error.body.contains("Sign-in refused"), "{}", error.body);
    assert!(error.header("content-security-policy").is_some());
}

#[test]
fn without_a_pages_block_the_pages_are_ours_and_load_nothing() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "login": [login_service(APP, "grafana", "_grafana_iap", json!({ "allowed_groups": ["myorg:sre"] }))],
    }));
    let page = forbidden_page(&mut bed, "bob@mydomain.com", "id-1");
    assert!(
        !page.body.contains("<header>") && !page.body.contains("<img"),
        "{}",
        page.body
    );
    assert!(page.body.contains("wasm-iap · HTTP 403"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(!csp.contains("img-src"), "{csp}");
}

#[test]
fn every_bad_pages_field_is_reported_with_its_path() {
    let config = json!({
        "providers": [provider()],
        "pages": { "accent_color": "green", "logo_url": "http://cdn.acme.test/logo.png" },
        "login": [login_service(APP, "grafana", "_grafana_iap", json!({
            "pages": { "background_color": "#12", "support_url": "javascript:alert(1)",
                       "footer_text": "two\nlines" }
        }))],
        "services": [{ "hosts": [API], "pages": { "text_color": "#fff;}body{x:y", "logo": "x" } }],
    });
    let problems = Settings::parse(&config.to_string()).expect_err("refused");
    for path in [
        "pages.accent_color:",
        "pages.logo_url:",
        "login[0].pages.background_color:",
        "login[0].pages.support_url:",
        "login[0].pages.footer_text:",
        "services[0].pages.text_color:",
        "services[0].pages.logo: unknown field",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(path)),
            "{path}: {problems:#?}"
        );
    }
}

#[test]
fn in_front_of_an_apiserver_a_refusal_stays_the_apiservers_status_even_for_a_browser() {
    let dashboard = login_service(
        APP,
        "grafana",
        "_grafana_iap",
        json!({
            "allowed_groups": ["myorg:sre"],
            "impersonate": { "group_prefix": "oidc:", "allow_unprefixed": true },
        }),
    );
    let mut bed = Bed::new(&json!({
        "providers": [provider()], "pages": top_pages(), "login": [dashboard],
    }));
    let page = forbidden_page(&mut bed, "bob@mydomain.com", "id-1");
    assert_eq!(page.status, 403);
    assert_eq!(page.header("content-type"), Some("application/json"));
    assert_eq!(page.header("content-security-policy"), None);
    let status: Value = serde_json::from_str(&page.body).expect(&page.body);
    assert_eq!(status["kind"], "Status");
}
