//! End to end in headless Chromium: the real IdP's login form, typed credentials, the deep
//! link, reload, XHR, sign-out and a tampered cookie, through real Envoy with the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::envoy_idp_bed::{LoginBed, COOKIE};
use support::webdriver::Chrome;

/// Types the credentials into the IdP's form and accepts the consent page.
fn log_in(chrome: &Chrome, bed: &LoginBed, user: &str) {
    chrome.sign_in_at_idp(&bed.idp.issuer, user, &bed.url("/"));
}

#[test]
fn person_signs_in_with_the_browser_and_out_again() {
    let bed = LoginBed::start(json!({ "end_idp_session": true }), &[]);
    let chrome = Chrome::start();
    let deep_link = bed.url("/graph?g0.expr=up&g0.tab=1");

    // First visit: the IdP's login form, then back on exactly the deep link.
    chrome.go(&deep_link);
    log_in(&chrome, &bed, "alice@example.com");
    chrome.wait_for_url("the deep link", |u| u == deep_link);
    let page = chrome.text();
    assert!(
        page.contains("\"path\":\"/graph?g0.expr=up&g0.tab=1\""),
        "{page}"
    );
    assert!(
        page.contains("\"x-auth-request-user\":[\"alice@example.com\"]"),
        "{page}"
    );
    let session = chrome
        .cookies()
        .into_iter()
        .find(|c| c["name"] == COOKIE)
        .expect("session cookie");
    assert_eq!(session["httpOnly"], true);

    // Reload keeps the session: no trip to the IdP, the upstream answers again.
    let hits = bed.upstream.hits();
    chrome.go(&deep_link);
    assert_eq!(chrome.url(), deep_link);
    assert!(bed.upstream.hits() > hits);
    assert!(chrome
        .text()
        .contains("\"x-auth-request-user\":[\"alice@example.com\"]"));

    // An XHR from the page rides on the session.
    let status = chrome.run_async("fetch('/api/v1/query', {headers: {'X-Requested-With': 'XMLHttpRequest'}}).then(r => done(r.status))");
    assert_eq!(status, json!(200));

    // Sign-out ends the session here and at the IdP (which asks for confirmation); back on
    // the app there is no session, so the browser lands on the IdP's login form.
    chrome.go(&bed.url("/oauth2/sign_out"));
    confirm_idp_sign_out(&chrome, &bed);

    // Without a session, an XHR from a page of the app gets 401, not a login page.
    chrome.go(&bed.url("/oauth2/callback"));
    let status = chrome.run_async("fetch('/api/v1/query', {headers: {'X-Requested-With': 'XMLHttpRequest'}}).then(r => done(r.status))");
    assert_eq!(status, json!(401));

    // The next visit asks to log in again.
    chrome.go(&deep_link);
    chrome.wait_for_url("the IdP login form again", |u| {
        u.starts_with(&bed.idp.issuer) && chrome.has("input[name=login]")
    });
}

#[test]
fn tampered_session_cookie_in_the_browser_asks_to_log_in_again() {
    let bed = LoginBed::start(json!({}), &[]);
    let chrome = Chrome::start();
    chrome.go(&bed.url("/"));
    log_in(&chrome, &bed, "bob@example.com");
    chrome.wait_for_url("the app", |u| u == bed.url("/"));

    let mut cookie = chrome
        .cookies()
        .into_iter()
        .find(|c| c["name"] == COOKIE)
        .expect("session cookie");
    let value = cookie["value"].as_str().unwrap().to_string();
    let flipped = if value.ends_with('A') { 'B' } else { 'A' };
    cookie["value"] = json!(format!("{}{flipped}", &value[..value.len() - 1]));
    chrome.set_cookie(
        json!({ "name": COOKIE, "value": cookie["value"], "path": "/", "httpOnly": true }),
    );
    chrome.go(&bed.url("/private"));
    // The filter sends the browser to log in; the IdP, still signed in, sends it straight
    // back with a code, so the proof of a fresh login is a brand-new session cookie.
    chrome.wait_for_url("the app after a fresh login", |u| u == bed.url("/private"));
    let fresh = chrome
        .cookies()
        .into_iter()
        .find(|c| c["name"] == COOKIE)
        .expect("a new session");
    assert_ne!(
        fresh["value"].as_str(),
        Some(value.as_str()),
        "not the old session"
    );
    assert_ne!(fresh["value"], cookie["value"], "not the tampered one");
}

#[test]
fn person_without_the_group_sees_access_denied_and_switches_accounts() {
    let users = r#"{"dana@example.com": {"groups": ["myorg:dev"]}, "sam@example.com": {"groups": ["myorg:sre"]}}"#;
    let bed = LoginBed::start(
        json!({ "allowed_groups": ["myorg:sre"], "end_idp_session": true }),
        &[("IDP_USERS", users)],
    );
    let chrome = Chrome::start();
    // A phone: the whole journey, and the 403 page in particular, in a 390 x 844 viewport.
    chrome.set_viewport_size(390, 844);
    let deep_link = bed.url("/graph?g0.expr=up&g0.tab=1");
    let status = "return performance.getEntriesByType('navigation')[0].responseStatus";

    // Dana logs in and comes back to the deep link, where the policy refuses her: a page
    // that names her account, not her groups, and never reaches the upstream.
    let hits = bed.upstream.hits();
    chrome.go(&deep_link);
    log_in(&chrome, &bed, "dana@example.com");
    chrome.wait_for_url("the deep link", |u| u == deep_link);
    assert_eq!(chrome.run(status), json!(403));
    assert_eq!(chrome.run("return document.title"), json!("Access denied"));
    assert_eq!(chrome.text_of("h1"), "Access denied");
    let page = chrome.text();
    assert!(page.contains("dana@example.com"), "{page}");
    assert!(
        !page.contains("myorg"),
        "groups and policy are not shown: {page}"
    );
    assert_eq!(bed.upstream.hits(), hits, "the upstream never saw Dana");
    assert!(
        chrome.cookies().iter().any(|c| c["name"] == COOKIE),
        "Dana is signed in"
    );

    // Laid out for the phone: no sideways scrolling, the way out on screen.
    let link = "main a[href='/oauth2/sign_out']";
    assert_eq!(chrome.text_of(link), "Sign out");
    assert!(chrome.displayed(link));
    let layout = chrome.run(
        "const a = document.querySelector(\"main a[href='/oauth2/sign_out']\").getBoundingClientRect();
         return { scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                  innerHeight: window.innerHeight,
                  link: [a.left, a.top, a.right, a.bottom] };",
    );
    let inner = layout["inner"].as_f64().unwrap();
    assert_eq!(
        (&layout["inner"], &layout["innerHeight"]),
        (&json!(390), &json!(844)),
        "a phone's viewport"
    );
    assert!(
        layout["scroll"].as_f64().unwrap() <= inner,
        "no horizontal scroll: {layout}"
    );
    let rect: Vec<f64> = layout["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        rect[0] >= 0.0
            && rect[1] >= 0.0
            && rect[2] <= inner
            && rect[3] <= layout["innerHeight"].as_f64().unwrap()
            && rect[2] > rect[0]
            && rect[3] > rect[1],
        "the link is within the first screen: {layout}"
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = chrome.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots.join("forbidden-phone.png"), png).unwrap();

    // The link signs her out here and at the IdP (which asks for confirmation); back on
    // the app without a session, the browser is at the IdP's login form again.
    chrome.click(link);
    confirm_idp_sign_out(&chrome, &bed);

    // Sam, in the group, signs in on the same browser and reaches the upstream.
    log_in(&chrome, &bed, "sam@example.com");
    chrome.wait_for_url("the app", |u| u == bed.url("/"));
    assert_eq!(chrome.run(status), json!(200));
    let page = chrome.text();
    assert!(
        page.contains("\"x-auth-request-email\":[\"sam@example.com\"]"),
        "{page}"
    );
    assert!(
        page.contains("\"x-auth-request-groups\":[\"myorg:sre\"]"),
        "{page}"
    );
    chrome.go(&deep_link);
    assert_eq!(chrome.url(), deep_link);
    assert_eq!(chrome.run(status), json!(200));
    assert!(
        chrome
            .text()
            .contains("\"path\":\"/graph?g0.expr=up&g0.tab=1\""),
        "{}",
        chrome.text()
    );
}

/// After our sign-out sent the browser to the IdP's end-session page: confirm it (the IdP
/// asks), land on the IdP's login form, and hold no session cookie of ours.
fn confirm_idp_sign_out(chrome: &Chrome, bed: &LoginBed) {
    chrome.wait_for_url("the IdP's sign-out page", |u| {
        u.starts_with(&bed.idp.issuer)
    });
    if chrome.has("button[autofocus]") && !chrome.has("input[name=login]") {
        chrome.click("button[autofocus]");
    }
    chrome.wait_for_url("the IdP login form", |u| {
        u.starts_with(&bed.idp.issuer) && chrome.has("input[name=login]")
    });
    assert!(
        !chrome.cookies().iter().any(|c| c["name"] == COOKIE),
        "session cookie gone"
    );
}

/// Issue 16: with `cookie_secure` (the default) and no `cookie_domain`, the default session
/// cookie is `__Host-wasm_iap`; Chromium keeps Secure cookies of http://127.0.0.1 (loopback
/// is a secure context), so sign-in works there as over https.
#[test]
fn default_host_prefixed_session_cookie_is_kept_by_chromium_and_signs_in() {
    let bed = LoginBed::start(json!({ "cookie_secure": true }), &[]);
    let chrome = Chrome::start();
    chrome.go(&bed.url("/"));
    log_in(&chrome, &bed, "alice@example.com");
    chrome.wait_for_url("the app", |u| u == bed.url("/"));
    assert!(chrome
        .text()
        .contains("\"x-auth-request-user\":[\"alice@example.com\"]"));
    let session = chrome
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "__Host-wasm_iap")
        .expect("a __Host-wasm_iap session cookie");
    assert_eq!(session["secure"], true);
    assert_eq!(session["path"], "/");
}
