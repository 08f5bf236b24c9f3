//! Sign-in hints and the idle timeout through real Envoy and the real OpenID provider
//! (`oidc-provider`), scripted over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::Browser;
use support::envoy_idp_bed::{LoginBed, COOKIE};
use support::http;

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[test]
fn start_passes_allowed_hints_to_the_idp_which_honours_login_hint_and_prompt_login() {
    let bed = LoginBed::start(json!({ "start_parameters": ["prompt", "login_hint"] }), &[]);
    let (mut browser, _) = bed.logged_in("alice@example.com", "/");

    // The IdP knows alice now: a plain start comes straight back, no form.
    let (landed, page) = browser.get(&bed.url("/oauth2/start?rd=%2Fplain"));
    assert_eq!(landed, bed.url("/plain"), "{:#?}", browser.history);
    assert_eq!(page.status, 200);

    // Asked for `prompt=login` and a hint: the authorization URL carries both, encoded, and
    // the IdP asks to sign in again (despite its session) with the hinted login filled in.
    let start = bed.url("/oauth2/start?prompt=login&login_hint=alice%40example.com&domain_hint=example.com&rd=%2Fagain");
    let redirect = browser.request("GET", &start, None, &[]);
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").unwrap().to_string();
    assert!(location.starts_with(&bed.idp.issuer), "{location}");
    assert!(
        location.contains("&prompt=login&login_hint=alice%40example.com"),
        "{location}"
    );
    let q = query(&location);
    assert!(!q.contains_key("domain_hint"), "not allowed: ignored");
    let at_idp = browser.get(&location);
    assert!(
        at_idp.1.body.contains("name=\"login\"")
            && at_idp.1.body.contains("value=\"alice@example.com\""),
        "oidc-provider fills in login_hint: {}",
        at_idp.1.body
    );
    let (landed, page) = browser.log_in_at_idp(at_idp, "alice@example.com");
    assert_eq!(landed, bed.url("/again"));
    assert_eq!(
        page.json()["headers"]["x-auth-request-user"],
        json!(["alice@example.com"])
    );

    // A hostile hint stays a value: the client and redirect URI are the filter's.
    let hostile = browser.request(
        "GET",
        &bed.url("/oauth2/start?login_hint=x%26client_id%3Devil%26redirect_uri%3Dhttp%3A%2F%2Fevil.example%2F"),
        None,
        &[],
    );
    let q = query(hostile.header("location").unwrap());
    assert_eq!(q["client_id"], "demo");
    assert_eq!(q["redirect_uri"], bed.url("/oauth2/callback"));
    assert_eq!(
        q["login_hint"],
        "x&client_id=evil&redirect_uri=http://evil.example/"
    );
}

#[test]
fn switch_account_sends_prompt_select_account_even_when_no_hint_is_allowed() {
    let bed = LoginBed::start(json!({}), &[]);
    let mut browser = Browser::default();
    let redirect = browser.request(
        "GET",
        &bed.url("/oauth2/start?prompt=select_account&rd=%2Fadmin&login_hint=x"),
        None,
        &[],
    );
    assert_eq!(redirect.status, 302);
    let q = query(redirect.header("location").unwrap());
    assert_eq!(q["prompt"], "select_account");
    assert!(!q.contains_key("login_hint"), "{q:?}");
}

/// GET `path` with `browser`'s cookies, as a page load, without following redirects.
fn load(bed: &LoginBed, browser: &mut Browser, path: &str) -> http::Response {
    browser.request("GET", &bed.url(path), None, &[])
}

fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn an_idle_session_is_sent_back_to_sign_in_while_a_used_one_goes_on() {
    let bed = LoginBed::start(json!({ "idle_timeout": "1m" }), &[]);
    let (mut idle, _) = bed.logged_in("idle@example.com", "/");
    let (mut busy, _) = bed.logged_in("busy@example.com", "/");
    let signed_in = Instant::now();
    let first = busy.cookie(COOKIE).unwrap().value.clone();
    for at in [20, 40] {
        sleep_until(signed_in + Duration::from_secs(at));
        let page = load(&bed, &mut busy, "/busy");
        assert_eq!(page.status, 200, "at {at} s");
        assert!(
            page.headers
                .iter()
                .any(|(n, v)| n == "set-cookie" && v.starts_with(&format!("{COOKIE}="))),
            "at {at} s its activity is written (every 6 s at most): {:?}",
            page.headers
        );
    }
    assert_ne!(busy.cookie(COOKIE).unwrap().value, first);
    sleep_until(signed_in + Duration::from_secs(62));

    let page = load(&bed, &mut busy, "/busy");
    assert_eq!(page.status, 200, "used 22 s ago: goes on");
    let page = load(&bed, &mut idle, "/deep?x=1");
    assert_eq!(page.status, 302, "unused for a minute: {page:?}");
    assert!(
        page.header("location")
            .unwrap()
            .starts_with(&bed.idp.issuer),
        "sent to sign in"
    );
    assert!(idle.cookie(COOKIE).is_none(), "its session cookie cleared");
    let log = bed.envoy.log();
    assert!(
        log.contains("of demo ended: unused for") && log.contains("(idle_timeout 60 s)"),
        "{log}"
    );
}
