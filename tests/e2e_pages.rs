//! Branded pages through real Envoy, looked at in headless Chromium: the 403 page of a
//! signed-in person without the group, a sign-in error page and a bad address, each on a
//! phone and a desktop, light and dark (`support::looks`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::envoy_idp_bed::{login_plugin, LoginBed};
use support::http;
use support::looks::{every_look, Expected};
use support::servers::{free_port, Served};
use support::webdriver::Chrome;

const LOGO: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"120\" height=\"40\" \
viewBox=\"0 0 120 40\"><rect width=\"40\" height=\"40\" rx=\"8\" fill=\"#0a7f5a\"/>\
<path d=\"M10 30 L20 10 L30 30 Z\" fill=\"#fff\"/><text x=\"48\" y=\"27\" \
font-family=\"sans-serif\" font-size=\"16\" fill=\"#0a7f5a\">ACME</text></svg>";

/// The product's name, with characters that would be markup if not escaped.
const PRODUCT: &str = "Acme <Cloud> & \"Ops\"";

fn pages(logo_port: u16) -> Value {
    json!({
        "product_name": "Acme Cloud",
        "logo_url": format!("http://127.0.0.1:{logo_port}/logo.svg"),
        "accent_color": "#0a7f5a",
        "background_color": "#eef3f1",
        "text_color": "#15211c",
        "dark_accent_color": "#5fd3a6",
        "dark_background_color": "#0d1512",
        "dark_text_color": "#e3ece8",
        "support_url": "mailto:it-help@acme.test",
        "footer_text": "Acme Corp · internal use only",
        "forbidden_message": "Dashboards are for the SRE team. Ask in #it-access for access.",
    })
}

fn start() -> (LoginBed, Served) {
    let logo = Served::start(0, |_| {
        let headers = vec![("content-type".to_string(), "image/svg+xml".to_string())];
        (200, headers, LOGO.to_string())
    });
    let users = r#"{"dana.longname-with-a-very-long-address@engineering.example.com": {"groups": ["myorg:dev"]}}"#;
    let logo_port = logo.port;
    let bed = LoginBed::start_plugin(free_port(), &[("IDP_USERS", users)], &[], |issuer| {
        let login = json!({
            "allowed_groups": ["myorg:sre"],
            // The service's own name over the top-level one.
            "pages": { "product_name": PRODUCT },
        });
        let mut plugin = login_plugin(issuer, &json!({}), &login);
        plugin["pages"] = pages(logo_port);
        plugin
    });
    (bed, logo)
}

const LOOKS: Expected = Expected {
    product: PRODUCT,
    logo: true,
};

#[test]
fn branded_pages_on_a_phone_and_a_desktop_in_light_and_dark() {
    let (bed, _logo) = start();
    let chrome = Chrome::start();
    let status = "return performance.getEntriesByType('navigation')[0].responseStatus";

    // Dana signs in and is refused by the rules: the branded 403 page.
    let deep_link = bed.url("/d/abc?orgId=1");
    chrome.go(&deep_link);
    chrome.sign_in_at_idp(
        &bed.idp.issuer,
        "dana.longname-with-a-very-long-address@engineering.example.com",
        &bed.url("/"),
    );
    chrome.wait_for_url("the deep link", |u| u == deep_link);
    assert_eq!(chrome.run(status), json!(403));
    assert_eq!(
        chrome.run("return document.title"),
        json!(format!("Access denied · {PRODUCT}"))
    );
    let text = chrome.text();
    for expected in [
        "You are signed in as dana.longname-with-a-very-long-address@engineering.example.com",
        "Dashboards are for the SRE team. Ask in #it-access for access.",
        "Switch account",
        "Sign out",
        "Contact support",
        "Request ID:",
        "Acme Corp · internal use only · wasm-iap · HTTP 403",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let switch = chrome.run("return document.querySelector('nav a').getAttribute('href')");
    assert_eq!(
        switch,
        json!("/oauth2/start?prompt=select_account&rd=%2Fd%2Fabc")
    );
    let request_id = chrome.text_of("main code");
    assert!(!request_id.is_empty() && request_id.len() <= 128);
    every_look(&chrome, "forbidden", &LOOKS);

    // A sign-in the IdP refused: the error page, branded the same.
    let refused = "/oauth2/callback?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E\
                   &state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    chrome.go(&bed.url(refused));
    assert_eq!(chrome.text_of("h1"), "Sign-in refused");
    assert!(
        chrome.text().contains("(<b>no</b>)"),
        "as text: {}",
        chrome.text()
    );
    every_look(&chrome, "sign-in-error", &LOOKS);

    // An address no rule can judge: the 400 page.
    chrome.go(&bed.url("/a%2Fb"));
    assert_eq!(chrome.run(status), json!(400));
    every_look(&chrome, "bad-address", &LOOKS);

    // What Envoy sent: the page's policy allows the logo's origin and inline style only.
    let page = http::get(
        &bed.url(refused),
        &[("accept", "text/html"), ("sec-fetch-mode", "navigate")],
    );
    assert_eq!(page.status, 403);
    let logo_origin = format!(
        "img-src http://127.0.0.1:{}",
        bed_logo_port(&page.body).expect("the logo on the page")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline'; ")
            && csp.contains(&logo_origin)
            && !csp.contains("script"),
        "{csp}"
    );
}

/// The logo's port, read from the page (the logo server picked it).
fn bed_logo_port(body: &str) -> Option<u16> {
    let after = body.split("<img src=\"http://127.0.0.1:").nth(1)?;
    after.split('/').next()?.parse().ok()
}
