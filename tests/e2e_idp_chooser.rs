//! End to end in headless Chromium: a person picks an IdP on the chooser, types their
//! credentials into that IdP's login form and lands signed in on the page they asked for,
//! through real Envoy with two real OpenID providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::envoy_idp_bed::COOKIE;
use support::looks::{every_look, Expected};
use support::two_idps_bed::TwoIdps;
use support::webdriver::Chrome;

#[test]
fn a_person_picks_an_idp_on_the_chooser_and_lands_signed_in() {
    let bed = TwoIdps::start();
    let chrome = Chrome::start();
    let deep_link = bed.url("/graph?g0.expr=up");
    chrome.go(&deep_link);
    assert_eq!(
        chrome.url(),
        deep_link,
        "the chooser is shown where the person asked"
    );
    let page = chrome.text();
    assert!(
        page.contains("IdP One") && page.contains("IdP Two"),
        "{page}"
    );

    chrome.click("a[href*='provider=two']");
    chrome.sign_in_at_idp(&bed.two.issuer, "carol@example.com", &bed.url("/"));
    chrome.wait_for_url("the deep link", |u| u == deep_link);
    let page = chrome.text();
    assert!(
        page.contains("\"x-auth-request-user\":[\"carol@example.com\"]"),
        "{page}"
    );
    let cookies = chrome.cookies();
    let value_of = |name: &str| {
        cookies
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(str::to_string))
    };
    assert!(value_of(COOKIE).expect("a session").starts_with("two."));
    assert_eq!(value_of(&format!("{COOKIE}_idp")).as_deref(), Some("two"));

    // A reload rides on the session: no chooser, no IdP.
    chrome.go(&deep_link);
    assert_eq!(chrome.url(), deep_link);
    assert!(chrome
        .text()
        .contains("\"x-auth-request-user\":[\"carol@example.com\"]"));
}

#[test]
fn the_chooser_is_branded_on_a_phone_and_a_desktop_in_light_and_dark() {
    let product = "Acme <Cloud> & \"Ops\"";
    let bed = TwoIdps::start_with(json!({
        "product_name": product,
        "accent_color": "#0a7f5a",
        "footer_text": "Acme Corp · internal use only",
        "support_url": "mailto:it-help@acme.test",
    }));
    let chrome = Chrome::start();
    chrome.go(&bed.url("/graph"));
    let page = chrome.text();
    for expected in [
        "IdP One",
        "IdP Two",
        "Contact support",
        "Acme Corp · internal use only",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let looks = Expected {
        product,
        logo: false,
    };
    every_look(&chrome, "chooser", &looks);
}
