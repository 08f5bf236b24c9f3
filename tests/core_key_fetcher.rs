//! Keeping keys fresh, natively: several workers share one in-memory host; one fetches for
//! all under a lease, every worker takes the record in and settles its waiting requests,
//! and a failed refresh keeps the last good keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::json;
use support::host::FakeHost;
use support::mint::{self, shared_keys};
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::keys::fetch::CalloutResponse;
use wasm_iap::core::keys::fetcher::KeyFetcher;
use wasm_iap::core::request_headers::RequestHeaders;

const ISSUER: &str = "https://dex.example.com";

fn settings() -> Rc<Settings> {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["api"], "cluster": "dex",
                        "jwks_refresh_interval": "10m" }],
    });
    Rc::new(Settings::parse(&config.to_string()).unwrap())
}

fn ok(body: &str) -> (Option<u32>, String) {
    (Some(200), body.to_string())
}

fn answer(
    fetcher: &mut KeyFetcher,
    host: &mut FakeHost,
    gateway: &mut Gateway,
    token: u32,
    (status, body): (Option<u32>, String),
) -> Vec<(u32, Decision)> {
    let response = CalloutResponse {
        status,
        cache_control: None,
        body: body.as_bytes(),
    };
    let changed = fetcher
        .on_response(host, gateway, token, &response)
        .expect("a fetch of ours");
    gateway.keys_changed(host, &changed)
}

/// A tick of the fetcher, and the requests the keys it took in settle.
fn tick(
    fetcher: &mut KeyFetcher,
    host: &mut FakeHost,
    gateway: &mut Gateway,
) -> Vec<(u32, Decision)> {
    let changed = fetcher.tick(host, gateway);
    gateway.keys_changed(host, &changed)
}

fn bearer_request() -> RequestHeaders {
    // Valid for an hour: the tests move their clock by minutes.
    let claims = mint::claims_with(ISSUER, "api", json!({ "exp": mint::now_secs() + 3600 }));
    let token = shared_keys().signer("ES256").sign(&claims);
    let authorization = format!("Bearer {token}");
    RequestHeaders::from_pairs([
        (":authority", &b"api.example.com"[..]),
        (":path", b"/"),
        ("authorization", authorization.as_bytes()),
    ])
}

#[test]
fn one_worker_fetches_for_all_and_every_worker_settles_its_waiting_requests() {
    let now = mint::now_secs() * 1000;
    let mut a_host = FakeHost::new(now);
    let mut b_host = a_host.sibling(5);
    let (mut a, mut b) = (Gateway::new(settings()), Gateway::new(settings()));
    let (mut a_keys, mut b_keys) = (KeyFetcher::new(settings()), KeyFetcher::new(settings()));
    assert!(matches!(
        b.decide(&mut b_host, 41, &bearer_request()).decision,
        Decision::Parked
    ));
    assert!(tick(&mut a_keys, &mut a_host, &mut a).is_empty());
    assert!(tick(&mut b_keys, &mut b_host, &mut b).is_empty());
    assert_eq!(
        a_host.calls.len(),
        1,
        "A took the lease and asked for discovery"
    );
    assert_eq!(b_host.calls.len(), 0, "B leaves the fetch to A");
    assert_eq!(
        a_host.calls[0].url,
        format!("{ISSUER}/.well-known/openid-configuration")
    );
    let discovery = json!({ "issuer": ISSUER, "jwks_uri": format!("{ISSUER}/keys") });
    let token = a_host.calls[0].token;
    answer(
        &mut a_keys,
        &mut a_host,
        &mut a,
        token,
        ok(&discovery.to_string()),
    );
    assert_eq!(a_host.calls[1].url, format!("{ISSUER}/keys"));
    let token = a_host.calls[1].token;
    answer(
        &mut a_keys,
        &mut a_host,
        &mut a,
        token,
        ok(&shared_keys().jwks().to_string()),
    );
    // B sees the published record on its next tick, and its waiting request goes on.
    let mut decided = tick(&mut b_keys, &mut b_host, &mut b);
    assert_eq!(decided.len(), 1);
    let (context, decision) = decided.remove(0);
    assert_eq!(context, 41);
    assert!(matches!(decision, Decision::Forward(_)), "{decision:?}");
    assert_eq!(b_host.calls.len(), 0, "B never fetched");
    assert!(a_host.logged("keys for https://dex.example.com fetched"));
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys_and_backs_off() {
    let now = mint::now_secs() * 1000;
    let mut host = FakeHost::new(now);
    let mut gateway = Gateway::new(settings());
    let mut keys = KeyFetcher::new(settings());
    tick(&mut keys, &mut host, &mut gateway);
    let discovery = json!({ "issuer": ISSUER, "jwks_uri": format!("{ISSUER}/keys") });
    let token = host.calls[0].token;
    answer(
        &mut keys,
        &mut host,
        &mut gateway,
        token,
        ok(&discovery.to_string()),
    );
    let token = host.calls[1].token;
    answer(
        &mut keys,
        &mut host,
        &mut gateway,
        token,
        ok(&shared_keys().jwks().to_string()),
    );
    // Ten minutes later the refresh is due, and the IdP is down.
    host.advance(600_000);
    tick(&mut keys, &mut host, &mut gateway);
    let token = host.calls.last().unwrap().token;
    answer(
        &mut keys,
        &mut host,
        &mut gateway,
        token,
        (None, String::new()),
    );
    assert!(host.logged("keeping the last good keys; retry in 1 s"));
    assert!(matches!(
        gateway.decide(&mut host, 42, &bearer_request()).decision,
        Decision::Forward(_)
    ));
    // Discovery is asked again after a failure, but not before the backoff.
    let calls = host.calls.len();
    tick(&mut keys, &mut host, &mut gateway);
    assert_eq!(host.calls.len(), calls, "no retry within the backoff");
    host.advance(1_000);
    tick(&mut keys, &mut host, &mut gateway);
    assert_eq!(host.calls.len(), calls + 1);
    assert_eq!(
        host.calls.last().unwrap().url,
        format!("{ISSUER}/.well-known/openid-configuration")
    );
}

fn forged_request(n: u32) -> RequestHeaders {
    let claims = mint::claims_with(
        ISSUER,
        "api",
        json!({ "exp": mint::now_secs() + 3600, "jti": format!("forged-{n}") }),
    );
    let forged = mint::tamper_signature(&shared_keys().signer("ES256").sign(&claims));
    let authorization = format!("Bearer {forged}");
    RequestHeaders::from_pairs([
        (":authority", &b"api.example.com"[..]),
        (":path", b"/"),
        ("authorization", authorization.as_bytes()),
    ])
}

fn status_of(decision: &Decision) -> u32 {
    match decision {
        Decision::Respond(reply) => reply.status,
        Decision::Forward(_) => 200,
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_tokens_that_waited_for_keys_are_charged_to_their_address_when_finally_checked() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["api"], "cluster": "dex" }],
        "signature_check_budget": { "per_second": 1, "burst": 2 },
    });
    let settings = Rc::new(Settings::parse(&config.to_string()).unwrap());
    let mut host = FakeHost::new(mint::now_secs() * 1000);
    let mut gateway = Gateway::new(Rc::clone(&settings));
    let mut keys = KeyFetcher::new(settings);
    tick(&mut keys, &mut host, &mut gateway);
    // Before the first keys arrive, an attacker's forged tokens wait like everyone's.
    host.source = "198.51.100.66:4000".into();
    for n in 0..4 {
        let decision = gateway
            .decide(&mut host, 100 + n, &forged_request(n))
            .decision;
        assert!(matches!(decision, Decision::Parked), "{decision:?}");
    }
    // The keys come on the root's tick, where no request's address can be read.
    host.source = "203.0.113.1:1".into();
    let discovery = json!({ "issuer": ISSUER, "jwks_uri": format!("{ISSUER}/keys") });
    let token = host.calls[0].token;
    answer(
        &mut keys,
        &mut host,
        &mut gateway,
        token,
        ok(&discovery.to_string()),
    );
    let token = host.calls[1].token;
    let mut decided = answer(
        &mut keys,
        &mut host,
        &mut gateway,
        token,
        ok(&shared_keys().jwks().to_string()),
    );
    decided.sort_by_key(|(context, _)| *context);
    let statuses: Vec<u32> = decided.iter().map(|(_, d)| status_of(d)).collect();
    assert_eq!(
        statuses,
        [401, 401, 429, 429],
        "the waiting forgeries were checked without limit"
    );
    // The attacker's address spent its budget; the root's stand-in address did not.
    host.source = "198.51.100.66:4001".into();
    let next = gateway.decide(&mut host, 200, &forged_request(9)).decision;
    assert_eq!(status_of(&next), 429);
    host.source = "203.0.113.1:1".into();
    let other = gateway.decide(&mut host, 201, &forged_request(10)).decision;
    assert_eq!(status_of(&other), 401);
}
