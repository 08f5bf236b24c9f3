//! Browser sign-in through real Envoy and the real OpenID provider, scripted over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::browser::Browser;
use support::envoy_idp_bed::{LoginBed, COOKIE};
use support::http;
use support::idp::Idp;

fn echoed(response: &http::Response, header: &str) -> Value {
    response.json()["headers"][header].clone()
}

#[test]
fn browser_logs_in_and_lands_on_the_deep_link_then_goes_straight_through() {
    let bed = LoginBed::start(json!({}), &[]);
    let (mut browser, page) = bed.logged_in("alice@example.com", "/graph?g0.expr=up&g0.tab=1");
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["path"], "/graph?g0.expr=up&g0.tab=1");
    assert_eq!(
        echoed(&page, "x-auth-request-user"),
        json!(["alice@example.com"])
    );
    assert_eq!(
        echoed(&page, "x-auth-request-email"),
        json!(["alice@example.com"])
    );
    assert!(
        !echoed(&page, "cookie").to_string().contains(COOKIE),
        "our cookies never reach the upstream: {}",
        echoed(&page, "cookie")
    );

    let session = browser.cookie(COOKIE).expect("session cookie");
    assert!(session.http_only);
    assert!(
        !browser.cookie_names().iter().any(|n| n.contains("_login_")),
        "login cookie cleared: {:?}",
        browser.cookie_names()
    );

    let hits = bed.upstream.hits();
    let (url, again) = browser.get(&bed.url("/api/v1/query?query=up"));
    assert_eq!(
        (url.as_str(), again.status),
        (bed.url("/api/v1/query?query=up").as_str(), 200),
        "no second login"
    );
    assert_eq!(bed.upstream.hits(), hits + 1);
}

#[test]
fn upstream_keeps_its_own_cookies_but_never_sees_ours() {
    let bed = LoginBed::start(json!({}), &[]);
    let (mut browser, _) = bed.logged_in("bob@example.com", "/");
    browser.jar.push(support::browser::Cookie {
        name: "grafana_session".into(),
        value: "g".into(),
        path: "/".into(),
        http_only: true,
    });
    let (_, page) = browser.get(&bed.url("/d/home"));
    let cookie = echoed(&page, "cookie").to_string();
    assert!(cookie.contains("grafana_session=g"), "{cookie}");
    assert!(!cookie.contains(COOKIE), "{cookie}");
}

#[test]
fn api_and_xhr_clients_without_a_session_get_401_json_not_a_login_page() {
    let bed = LoginBed::start(
        json!({ "routes": [{ "path_prefix": "/always-login", "unauthenticated": "login" }] }),
        &[],
    );
    for (name, headers) in [
        ("JSON API", vec![("accept", "application/json")]),
        (
            "XHR",
            vec![("accept", "*/*"), ("x-requested-with", "XMLHttpRequest")],
        ),
        (
            "fetch()",
            vec![("accept", "*/*"), ("sec-fetch-mode", "cors")],
        ),
        ("curl", vec![]),
    ] {
        let response = http::get(&bed.url("/api/v1/query"), &headers);
        assert_eq!(response.status, 401, "{name}");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"wasm-iap\""),
            "{name}"
        );
        assert_eq!(response.json()["error"], "unauthorized", "{name}");
    }
    let post = http::request(
        "POST",
        &bed.url("/api/v1/admin"),
        &[("accept", "text/html"), ("sec-fetch-mode", "navigate")],
        Some(""),
    );
    assert_eq!(
        post.status, 401,
        "non-GET navigations are not sent to log in"
    );
    let forced = http::get(&bed.url("/always-login"), &[("accept", "application/json")]);
    assert_eq!(
        forced.status, 302,
        "a route configured for login redirects even API clients"
    );
    assert_eq!(bed.upstream.hits(), 0);
}

#[test]
fn bearer_tokens_still_work_on_a_host_with_login() {
    let bed = LoginBed::start(json!({}), &[]);
    let token = bed.idp.client_credentials_token();
    let response = http::bearer(&bed.url("/api/v1/query"), &token);
    assert_eq!(response.status, 200);
    assert_eq!(
        echoed(&response, "x-auth-request-user"),
        json!(["demo-cli"])
    );
}

#[test]
fn callback_failures_end_in_a_clear_page_never_a_session_or_a_loop() {
    let bed = LoginBed::start(json!({}), &[]);
    let cases = [
        (
            "/oauth2/callback?error=access_denied&error_description=user+said+no&state=abc",
            403,
            "access_denied",
        ),
        ("/oauth2/callback?code=abc", 400, "no code or state"),
        ("/oauth2/callback?state=abc", 400, "no code or state"),
        (
            "/oauth2/callback?code=forged&state=never-issued",
            400,
            "expired or was already completed",
        ),
    ];
    for (path, status, text) in cases {
        let mut browser = Browser::default();
        let (url, page) = browser.get(&bed.url(path));
        assert_eq!(url, bed.url(path), "{path}: no redirect");
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert!(page.body.contains(text), "{path}: {}", page.body);
        assert!(browser.cookie(COOKIE).is_none(), "{path}: no session");
    }

    // The callback URL of a completed login, replayed: the login cookie is gone.
    let (mut browser, _) = bed.logged_in("carol@example.com", "/");
    let callback = browser
        .history
        .iter()
        .find(|(u, _)| u.contains("/oauth2/callback?"))
        .unwrap()
        .0
        .clone();
    let (_, replay) = browser.get(&callback);
    assert_eq!(replay.status, 400, "{}", replay.body);

    // A login cookie from one login cannot complete another login's state.
    let mut attacker = Browser::default();
    attacker.get(&bed.url("/"));
    let planted: Vec<_> = attacker
        .jar
        .iter()
        .filter(|c| c.name.contains("_login_"))
        .cloned()
        .collect();
    let mut victim = Browser::default();
    let at_idp = victim.get(&bed.url("/"));
    victim.jar.retain(|c| !c.name.contains("_login_"));
    victim.jar.extend(planted);
    let (_, page) = victim.log_in_at_idp(at_idp, "victim@example.com");
    assert_eq!(page.status, 400, "state from another login: {}", page.body);
    assert!(victim.cookie(COOKIE).is_none());
}

#[test]
fn failing_token_endpoint_gives_an_error_page_with_a_log_line() {
    let idp_port_probe = Idp::start(&[]);
    let dead_token_endpoint = format!("{}/no-such-token-endpoint", idp_port_probe.issuer);
    drop(idp_port_probe);
    let bed = LoginBed::start(json!({}), &[]);
    let broken = LoginBed::start(
        json!({ "token_endpoint": dead_token_endpoint.replace(&dead_token_endpoint[..dead_token_endpoint.find("/no-such").unwrap()], &bed.idp.issuer) }),
        &[],
    );
    let mut browser = Browser::default();
    let at_idp = browser.get(&broken.url("/"));
    let (_, page) = browser.log_in_at_idp(at_idp, "dave@example.com");
    assert!(
        matches!(page.status, 401 | 502),
        "{}: {}",
        page.status,
        page.body
    );
    assert!(page.body.contains("Sign-in failed"));
    assert!(browser.cookie(COOKIE).is_none());
    // Logged with the service, the host and path, and the reason.
    let log = broken.envoy.log();
    assert!(
        log.lines()
            .any(|l| l.contains("login for demo on 127.0.0.1:")
                && l.contains("/oauth2/callback failed with")),
        "logged with host and path:\n{log}"
    );
}

#[test]
fn tampered_or_foreign_session_cookie_means_not_signed_in() {
    let bed = LoginBed::start(json!({}), &[]);
    let (mut browser, _) = bed.logged_in("erin@example.com", "/");
    let cookie = browser.jar.iter_mut().find(|c| c.name == COOKIE).unwrap();
    let flipped = if cookie.value.ends_with('A') {
        'B'
    } else {
        'A'
    };
    cookie.value.pop();
    cookie.value.push(flipped);
    let visit = browser.request("GET", &bed.url("/private"), None, &[]);
    assert_eq!(visit.status, 302);
    assert!(
        visit
            .header("location")
            .unwrap_or_default()
            .starts_with(&bed.idp.issuer),
        "browser asked to log in again"
    );
    let api = http::get(
        &bed.url("/private"),
        &[
            ("cookie", &format!("{COOKIE}=garbage")),
            ("accept", "application/json"),
        ],
    );
    assert_eq!(api.status, 401);
}

#[test]
fn sign_out_clears_the_session_and_the_next_visit_asks_to_log_in() {
    let bed = LoginBed::start(json!({}), &[]);
    let (mut browser, _) = bed.logged_in("frank@example.com", "/");
    let response = browser.request("GET", &bed.url("/oauth2/sign_out?rd=%2Fbye"), None, &[]);
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/bye"));
    assert!(browser.cookie(COOKIE).is_none());
    let evil = browser.request(
        "GET",
        &bed.url("/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F"),
        None,
        &[],
    );
    assert_eq!(evil.header("location"), Some("/"), "rd is validated");
    let visit = browser.request("GET", &bed.url("/"), None, &[]);
    assert_eq!(visit.status, 302);
    assert!(
        visit
            .header("location")
            .unwrap_or_default()
            .starts_with(&bed.idp.issuer),
        "asked to log in again"
    );
}

#[test]
fn sign_out_can_end_the_idp_session_too() {
    let bed = LoginBed::start(
        json!({ "end_idp_session": true, "post_logout_redirect_url": "http://127.0.0.1/signed-out" }),
        &[],
    );
    let (mut browser, _) = bed.logged_in("gina@example.com", "/");
    let response = browser.request("GET", &bed.url("/oauth2/sign_out"), None, &[]);
    let location = url::Url::parse(response.header("location").unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with(&format!("{}/session/end", bed.idp.issuer)),
        "{location}"
    );
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert!(query.contains_key("id_token_hint"));
    assert_eq!(
        query.get("post_logout_redirect_uri").map(String::as_str),
        Some("http://127.0.0.1/signed-out")
    );
    assert!(browser.cookie(COOKIE).is_none());
}

#[test]
fn expired_tokens_are_refreshed_once_while_30_parallel_requests_all_pass() {
    let bed = LoginBed::start(json!({}), &[("TOKEN_TTL", "2")]);
    let (browser, _) = bed.logged_in("hana@example.com", "/");
    let old = browser.cookie(COOKIE).unwrap().value.clone();
    std::thread::sleep(Duration::from_secs(3));
    let url = bed.url("/api/v1/query_range");
    let results: Vec<http::Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                scope.spawn(|| {
                    http::get(
                        &url,
                        &[
                            ("cookie", &format!("{COOKIE}={old}")),
                            ("accept", "application/json"),
                        ],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for response in &results {
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            echoed(response, "x-auth-request-user"),
            json!(["hana@example.com"])
        );
    }
    let renewed: Vec<&str> = results
        .iter()
        .flat_map(|r| {
            r.headers
                .iter()
                .filter(|(n, v)| n == "set-cookie" && v.starts_with(&format!("{COOKIE}=")))
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert!(
        !renewed.is_empty(),
        "the refreshed session is handed to the browser"
    );
    let new_value = support::cookie_value(renewed[0]);
    assert_ne!(new_value, old);
    let with_new = http::get(
        &url,
        &[
            ("cookie", &format!("{COOKIE}={new_value}")),
            ("accept", "application/json"),
        ],
    );
    assert_eq!(with_new.status, 200);
    assert!(
        with_new.header("set-cookie").is_none(),
        "the renewed session needs no refresh yet"
    );
}

#[test]
fn client_and_cookie_secrets_can_come_from_the_vm_environment() {
    let vm_env = [
        ("DEMO_CLIENT_SECRET", "demo-secret"),
        (
            "DEMO_COOKIE_SECRET",
            "a-cookie-secret-from-a-kubernetes-secret",
        ),
    ];
    let overrides = json!({ "client_secret": { "env": "DEMO_CLIENT_SECRET" }, "cookie_secrets": [{ "env": "DEMO_COOKIE_SECRET" }] });
    let bed = LoginBed::start_with_vm_env(overrides, &[], &vm_env);
    let (_, page) = bed.logged_in("ivan@example.com", "/");
    assert_eq!(
        echoed(&page, "x-auth-request-user"),
        json!(["ivan@example.com"])
    );
    assert!(
        !bed.envoy
            .log()
            .contains("a-cookie-secret-from-a-kubernetes-secret"),
        "secrets never logged"
    );
}
