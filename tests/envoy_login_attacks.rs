//! Attacks on browser sign-in through real Envoy and the real IdP: each test is named after
//! the attack, and fails if the filter lets it through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy_idp_bed::{LoginBed, COOKIE};
use support::http;
use support::mint::b64;

fn echoed(response: &http::Response, header: &str) -> Value {
    response.json()["headers"][header].clone()
}

#[test]
fn refused_refresh_never_redirects_a_browser_to_another_host() {
    // No race grace: the refusal ends the session at once.
    let login = json!({ "refresh_race_grace": "0s" });
    let mut bed = LoginBed::start(login, &[("TOKEN_TTL", "2")]);
    let (browser, _) = bed.logged_in("mallory@example.com", "/");
    let session = browser.cookie(COOKIE).unwrap().value.clone();
    std::thread::sleep(Duration::from_secs(3));
    // A fresh IdP knows no refresh token of the old one: the refresh is refused.
    bed.restart_idp();
    let response = http::get(
        &bed.url("//evil.example/landing"),
        &[
            ("cookie", &format!("{COOKIE}={session}")),
            ("accept", "text/html"),
            ("sec-fetch-mode", "navigate"),
        ],
    );
    assert_eq!(response.status, 302, "{response:?}");
    assert_eq!(response.header("location"), Some("/"), "{response:?}");
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n == "set-cookie" && v.starts_with(&format!("{COOKIE}=;"))),
        "the ended session is cleared: {response:?}"
    );
}

#[test]
fn session_plus_unchecked_bearer_header_never_reaches_the_upstream() {
    let bed = LoginBed::start(json!({}), &[]);
    let (browser, _) = bed.logged_in("nina@example.com", "/");
    let session = browser.cookie(COOKIE).unwrap().value.clone();
    let header = b64(json!({"alg": "none", "typ": "JWT"}).to_string());
    let claims =
        b64(json!({"sub": "admin", "iss": bed.idp.issuer, "aud": "demo-upstream"}).to_string());
    let forged = format!("Bearer {header}.{claims}.");
    let response = http::get(
        &bed.url("/api/v1/query"),
        &[
            ("cookie", &format!("{COOKIE}={session}")),
            ("authorization", &forged),
            ("accept", "application/json"),
        ],
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        echoed(&response, "x-auth-request-user"),
        json!(["nina@example.com"])
    );
    assert_eq!(
        echoed(&response, "authorization"),
        Value::Null,
        "the unchecked token is removed"
    );
}

#[test]
fn id_token_signed_with_a_key_rotated_after_start_still_signs_in() {
    // Keys were fetched at start; the rotation comes within the refetch rate limit, so the
    // sign-in must wait for the next allowed fetch rather than fail.
    let mut bed = LoginBed::start_full(
        json!({ "jwks_min_refetch_interval": "5s" }),
        json!({}),
        &[],
        &[],
    );
    bed.logged_in("olga@example.com", "/");
    // New signing keys at the IdP; the filter has only the old ones cached.
    bed.restart_idp();
    let (_, page) = bed.logged_in("olga@example.com", "/after-rotation");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        echoed(&page, "x-auth-request-user"),
        json!(["olga@example.com"])
    );
}

#[test]
fn refused_login_logs_its_reason_but_forged_callbacks_cannot_flood_the_log() {
    let bed = LoginBed::start(json!({}), &[]);
    for forged in [
        "/oauth2/callback?code=x&state=forged",
        "/oauth2/callback?error=forged&error_description=flood",
    ] {
        for _ in 0..10 {
            assert!(http::get(&bed.url(forged), &[]).status >= 400);
        }
    }
    let log = bed.envoy.log();
    assert!(
        !log.contains("callback state is malformed") && !log.contains("flood"),
        "what any client can send is logged at debug only"
    );
    // The IdP refusing a login this browser started is worth a line, with its reason.
    let mut browser = support::browser::Browser::default();
    let start = browser.request("GET", &bed.url("/"), None, &[]);
    let location = url::Url::parse(start.header("location").unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let refused = browser.request(
        "GET",
        &bed.url(&format!(
            "/oauth2/callback?error=access_denied&error_description=user%0Asaid%20no&state={state}"
        )),
        None,
        &[],
    );
    assert_eq!(refused.status, 403);
    let log = bed.envoy.log();
    assert!(
        log.contains(r"the IdP refused the sign-in: access_denied (user\nsaid no)"),
        "reason logged on one line: {log}"
    );
}

/// Envoy at the edge (`use_remote_address`) sets `:scheme` from the connection; the filter
/// must use that, not the client's header.
#[test]
fn forwarded_proto_from_a_client_never_changes_the_redirect_uri() {
    let bed = LoginBed::start(json!({}), &[]);
    let start = |extra: &[(&str, &str)]| {
        let mut headers = vec![("accept", "text/html"), ("sec-fetch-mode", "navigate")];
        headers.extend_from_slice(extra);
        let response = http::get(&bed.url("/"), &headers);
        assert_eq!(response.status, 302, "{response:?}");
        let location = url::Url::parse(response.header("location").unwrap()).unwrap();
        let redirect_uri = location
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned());
        redirect_uri.unwrap()
    };
    let plain = start(&[]);
    assert!(plain.starts_with("http://127.0.0.1:"), "{plain}");
    assert_eq!(start(&[("x-forwarded-proto", "https")]), plain);
    assert_eq!(start(&[("x-forwarded-proto", "javascript")]), plain);
}
