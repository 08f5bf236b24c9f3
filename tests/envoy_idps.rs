//! Several IdPs behind one login service, in real Envoy with two real OpenID providers
//! (two npm oidc-provider instances): the chooser, `/oauth2/start?provider=`, the
//! remembered choice, and a session cookie of one IdP refused as the other's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::browser::Browser;
use support::envoy_idp_bed::COOKIE;
use support::http;
use support::two_idps_bed::TwoIdps;

fn echoed(page: &http::Response, header: &str) -> Value {
    page.json()["headers"][header].clone()
}

/// The chooser's link to `provider` (as the browser reads it: `&amp;` unescaped).
fn link_to(chooser: &str, provider: &str) -> String {
    let marker = format!("href=\"/oauth2/start?provider={provider}&amp;");
    let start = chooser.find(&marker).expect("a link per IdP") + "href=\"".len();
    let end = start + chooser[start..].find('"').unwrap();
    chooser[start..end].replace("&amp;", "&")
}

/// Signs in at the IdP the browser was sent to (`at` is where it stands), as `user`.
fn log_in(
    browser: &mut Browser,
    at: (String, http::Response),
    user: &str,
) -> (String, http::Response) {
    browser.log_in_at_idp(at, user)
}

#[test]
fn a_browser_chooses_an_idp_signs_in_through_it_and_is_remembered() {
    let bed = TwoIdps::start();
    let mut browser = Browser::default();
    let deep = bed.url("/graph?g0.expr=up");
    let (url, chooser) = browser.get(&deep);
    assert_eq!((url.as_str(), chooser.status), (deep.as_str(), 200));
    assert!(chooser.body.contains("IdP One") && chooser.body.contains("IdP Two"));
    let at_idp = browser.get(&bed.url(&link_to(&chooser.body, "two")));
    assert!(
        at_idp.0.starts_with(&bed.two.issuer),
        "sent to IdP two: {:?}",
        at_idp.0
    );
    let (landed, page) = log_in(&mut browser, at_idp, "alice@example.com");
    assert_eq!(landed, deep, "{:#?}", browser.history);
    assert_eq!(
        echoed(&page, "x-auth-request-user"),
        json!(["alice@example.com"])
    );
    let session = browser.cookie(COOKIE).expect("a session").value.clone();
    assert!(session.starts_with("two."), "{session}");
    let remembered = format!("{COOKIE}_idp");
    assert_eq!(
        browser.cookie(&remembered).map(|c| c.value.as_str()),
        Some("two")
    );
    assert!(
        !echoed(&page, "cookie").to_string().contains(COOKIE),
        "{}",
        echoed(&page, "cookie")
    );

    // Without its session, the browser goes straight to the IdP it chose.
    browser.jar.retain(|c| c.name != COOKIE);
    let first = browser.request("GET", &bed.url("/other"), None, &[]);
    assert_eq!(first.status, 302, "{}", first.body);
    let location = first.header("location").unwrap();
    assert!(location.starts_with(&bed.two.issuer), "{location}");

    // "Switch account" shows the chooser again.
    let switch = bed.url("/oauth2/start?prompt=select_account&rd=%2Fother");
    let again = browser.request("GET", &switch, None, &[]);
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains("provider=one"));
}

#[test]
fn the_provider_parameter_signs_in_at_that_idp_and_a_cookie_of_one_idp_is_not_the_others() {
    let bed = TwoIdps::start();
    let mut browser = Browser::default();
    let at_idp = browser.get(&bed.url("/oauth2/start?provider=one&rd=%2Fhere"));
    assert!(
        at_idp.0.starts_with(&bed.one.issuer),
        "sent to IdP one: {:?}",
        at_idp.0
    );
    let (landed, page) = log_in(&mut browser, at_idp, "bob@example.com");
    assert_eq!(landed, bed.url("/here"), "{:#?}", browser.history);
    assert_eq!(
        echoed(&page, "x-auth-request-user"),
        json!(["bob@example.com"])
    );

    let session = browser.cookie(COOKIE).unwrap().value.clone();
    assert!(session.starts_with("one."), "{session}");
    let api = [("accept", "application/json")];
    let own = format!("{COOKIE}={session}");
    let ok = http::get(&bed.url("/api"), &[api[0], ("cookie", &own)]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let moved = format!("{COOKIE}={}", session.replacen("one.", "two.", 1));
    let refused = http::get(&bed.url("/api"), &[api[0], ("cookie", &moved)]);
    assert_eq!(refused.status, 401, "{}", refused.body);

    let unknown = http::get(&bed.url("/oauth2/start?provider=three"), &[]);
    assert_eq!(unknown.status, 400, "{}", unknown.body);
}
