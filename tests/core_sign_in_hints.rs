//! Sign-in hints natively: what `/oauth2/start` passes on to the IdP's authorization
//! endpoint (`start_parameters`, `acr_values`), what it ignores, and that no value can add
//! or change another parameter of the authorization request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::native_bed::{login_service, parse, provider};
use support::random::Counter;
use url::Url;
use wasm_iap::core::config::login::Unauthenticated;
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::flow::{self, Endpoints, Request, Step};
use wasm_iap::core::login::request_kind::RequestHints;

const HOST: &str = "grafana.example.com";

fn settings(extra: Value) -> std::rc::Rc<Settings> {
    parse(&json!({
        "providers": [provider()],
        "login": [login_service(HOST, "grafana", "_grafana", extra)],
    }))
}

fn endpoints() -> Endpoints {
    Endpoints {
        authorization: Url::parse("https://dex.example.com/auth?tenant=t1").unwrap(),
        token: Url::parse("https://dex.example.com/token").unwrap(),
        end_session: None,
    }
}

fn browser(path: &str) -> Request<'_> {
    Request {
        scheme: "https",
        authority: HOST,
        path,
        cookie_header: None,
        has_authorization: false,
        hints: RequestHints {
            method: "GET",
            accept: Some("text/html"),
            sec_fetch_mode: Some("navigate"),
            x_requested_with: None,
        },
        unauthenticated: Unauthenticated::Auto,
        may_wait: true,
    }
}

/// The query of the IdP URL a request to `path` is sent to, every pair in order.
fn authorize_query(settings: &Settings, path: &str) -> Vec<(String, String)> {
    let step = flow::decide(
        &settings.login[0],
        &browser(path),
        Some(&endpoints()),
        support::mint::now_secs(),
        &mut Counter(0),
    );
    let Step::StartLogin(reply) = step else {
        panic!("{path}: expected a login, got {step:?}")
    };
    let location = reply.header("location").unwrap();
    assert!(location.starts_with("https://dex.example.com/auth?"));
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn values<'a>(query: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    query
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

const HINTS: [&str; 4] = ["prompt", "login_hint", "domain_hint", "acr_values"];

#[test]
fn allowed_hints_reach_the_idp_encoded_and_nothing_else_changes() {
    let settings = settings(json!({
        "start_parameters": HINTS,
        "acr_values": ["urn:example:mfa", "silver"],
    }));
    let query = authorize_query(
        &settings,
        "/oauth2/start?rd=%2Fd%2Fhome&prompt=login%20consent&login_hint=J%C3%B6rg%20%2B%20alice%40example.com&domain_hint=example.com&acr_values=silver%20urn%3Aexample%3Amfa",
    );
    assert_eq!(values(&query, "prompt"), ["login consent"]);
    assert_eq!(values(&query, "login_hint"), ["Jörg + alice@example.com"]);
    assert_eq!(values(&query, "domain_hint"), ["example.com"]);
    assert_eq!(values(&query, "acr_values"), ["silver urn:example:mfa"]);
    // The request as without hints: the endpoint's own query first, then ours.
    let names: Vec<&str> = query.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant",
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "prompt",
            "login_hint",
            "domain_hint",
            "acr_values"
        ]
    );
}

#[test]
fn by_default_hints_are_ignored_but_select_account_always_passes() {
    let settings = settings(json!({}));
    let query = authorize_query(
        &settings,
        "/oauth2/start?prompt=login&login_hint=alice%40example.com&domain_hint=example.com&acr_values=silver",
    );
    for hint in HINTS {
        assert!(values(&query, hint).is_empty(), "{hint}: {query:?}");
    }
    // Switch account, as the 403 page links it.
    let query = authorize_query(&settings, "/oauth2/start?prompt=select_account&rd=%2Fadmin");
    assert_eq!(values(&query, "prompt"), ["select_account"]);
    let query = authorize_query(&settings, "/oauth2/start?prompt=select_account%20login");
    assert!(
        values(&query, "prompt").is_empty(),
        "only select_account alone passes when prompt is not allowed: {query:?}"
    );
    // Only `/oauth2/start` passes hints: an app's own query is the app's.
    let query = authorize_query(&settings, "/search?prompt=select_account&login_hint=x");
    assert!(values(&query, "prompt").is_empty() && values(&query, "login_hint").is_empty());
}

#[test]
fn only_the_listed_parameters_pass() {
    let settings = settings(json!({ "start_parameters": ["login_hint"] }));
    let query = authorize_query(
        &settings,
        "/oauth2/start?prompt=none&login_hint=alice%40example.com&domain_hint=example.com",
    );
    assert_eq!(values(&query, "login_hint"), ["alice@example.com"]);
    assert!(values(&query, "prompt").is_empty());
    assert!(values(&query, "domain_hint").is_empty());
}

#[test]
fn invalid_values_are_ignored_and_the_login_still_starts() {
    let settings = settings(json!({
        "start_parameters": HINTS,
        "acr_values": ["urn:example:mfa"],
    }));
    let long = "a".repeat(257);
    for (hint, value) in [
        ("prompt", "none%20login"),
        ("prompt", "login%20login"),
        ("prompt", "create"),
        ("prompt", ""),
        ("login_hint", "a%0D%0Ab"),
        ("login_hint", "%09alice"),
        ("login_hint", &long),
        ("login_hint", ""),
        ("domain_hint", "example.com%20evil.com"),
        ("acr_values", "urn:example:mfa%20gold"),
        ("acr_values", "gold"),
    ] {
        let query = authorize_query(&settings, &format!("/oauth2/start?{hint}={value}"));
        assert!(values(&query, hint).is_empty(), "{hint}={value}: {query:?}");
    }
}

#[test]
fn a_hint_cannot_add_or_replace_a_parameter_of_the_authorization_request() {
    let settings = settings(json!({ "start_parameters": HINTS, "acr_values": ["silver"] }));
    let clean = authorize_query(&settings, "/oauth2/start");
    let hostile = [
        "login_hint=a%26client_id%3Devil%26redirect_uri%3Dhttps%3A%2F%2Fevil.example%2F",
        "login_hint=a%23fragment&domain_hint=x%26prompt%3Dnone",
        "login_hint=%26scope%3Dopenid%2520admin",
        "client_id=evil&redirect_uri=https%3A%2F%2Fevil.example%2F&scope=admin&state=x&response_type=token",
        "prompt=login&prompt=none",
    ];
    for query in hostile {
        let got = authorize_query(&settings, &format!("/oauth2/start?{query}"));
        for name in [
            "tenant",
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "code_challenge_method",
        ] {
            assert_eq!(
                values(&got, name),
                values(&clean, name),
                "{query}: {name} unchanged"
            );
        }
        for (name, _) in &got {
            assert!(
                clean.iter().any(|(n, _)| n == name) || HINTS.contains(&name.as_str()),
                "{query}: no new parameter {name}"
            );
            assert_eq!(values(&got, name).len(), 1, "{query}: {name} once");
        }
    }
    let got = authorize_query(
        &settings,
        "/oauth2/start?login_hint=a%26client_id%3Devil%26redirect_uri%3Dx",
    );
    assert_eq!(
        values(&got, "login_hint"),
        ["a&client_id=evil&redirect_uri=x"]
    );
    let got = authorize_query(&settings, "/oauth2/start?prompt=login&prompt=none");
    assert_eq!(values(&got, "prompt"), ["login"], "the first of each");
}

fn problems_of(extra: Value) -> Vec<String> {
    let config = json!({
        "providers": [provider()],
        "login": [login_service(HOST, "grafana", "_grafana", extra)],
    });
    Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default()
}

#[test]
fn start_parameters_are_checked_at_configuration() {
    for (extra, expected) in [
        (
            json!({ "start_parameters": ["prompt", "redirect_uri"] }),
            "login[0].start_parameters[1]: \"redirect_uri\" is not one of",
        ),
        (
            json!({ "start_parameters": ["prompt", "prompt"] }),
            "login[0].start_parameters[1]: is listed twice",
        ),
        (
            json!({ "start_parameters": ["acr_values"] }),
            "login[0].acr_values: must list the values",
        ),
        (
            json!({ "acr_values": ["silver"] }),
            "login[0].acr_values: needs \"acr_values\" in start_parameters",
        ),
        (
            json!({ "start_parameters": ["acr_values"], "acr_values": ["a b"] }),
            "login[0].acr_values[0]: must be 1 to 256 visible ASCII",
        ),
    ] {
        let problems = problems_of(extra.clone());
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{extra}: {problems:#?}"
        );
    }
    assert!(problems_of(json!({ "start_parameters": HINTS, "acr_values": ["silver"] })).is_empty());
}
