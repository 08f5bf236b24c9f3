//! What tokens cost inside real Envoy: a token is verified once per Envoy, not once per
//! worker, and an address that keeps sending tokens that fail runs out of signature checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::{bootstrap, wasm_filter, Envoy, Started};
use support::gateway_bed::eventually;
use support::http;
use support::mint::{claims_with, shared_keys, tamper_signature};
use support::servers::{KeyServer, Upstream};

const AUDIENCE: &str = "prometheus";

fn plugin_config(issuer: &str, top: Value) -> Value {
    let mut config = json!({
        "providers": [{ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp" }],
        "keys_wait_timeout": "2s",
    });
    for (k, v) in top.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    config
}

fn start(idp: &KeyServer, upstream: &Upstream, top: Value, workers: u32) -> Envoy {
    let config = bootstrap(
        vec![wasm_filter(&plugin_config(&idp.issuer(), top))],
        upstream.port(),
        idp.port,
    );
    match Envoy::try_start(&config, workers) {
        Started::Running(envoy) => envoy,
        Started::Exited(log) => panic!("Envoy did not start:\n{log}"),
    }
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.prometheus_metric(name).unwrap_or(0)
}

fn token_numbered(issuer: &str, n: u32) -> String {
    let claims = claims_with(issuer, AUDIENCE, json!({ "jti": format!("token-{n}") }));
    shared_keys().signer("RS256").sign(&claims)
}

#[test]
fn a_token_is_verified_once_per_envoy_and_found_by_the_other_worker() {
    let idp = KeyServer::start(0, shared_keys().jwks());
    let upstream = Upstream::start();
    let envoy = start(&idp, &upstream, json!({}), 2);
    // Keys first (a request parked until they arrive is looked up twice), with another token.
    let warm_up = token_numbered(&idp.issuer(), 0);
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&envoy.url("/"), &warm_up).status == 200
    }));
    // Counters are reported on each worker's tick.
    std::thread::sleep(Duration::from_millis(1500));
    let looked_up = |name: &str| counter(&envoy, name);
    let (misses, hits, shared) = (
        looked_up("wasm_iap_token_cache_misses"),
        looked_up("wasm_iap_token_cache_hits"),
        looked_up("wasm_iap_token_cache_shared_hits"),
    );
    let token = token_numbered(&idp.issuer(), 1);
    // A new connection each time: the kernel spreads them over both workers.
    for _ in 0..30 {
        assert_eq!(http::bearer(&envoy.url("/"), &token).status, 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let new_shared = looked_up("wasm_iap_token_cache_shared_hits") - shared;
            let new_hits = looked_up("wasm_iap_token_cache_hits") - hits;
            new_shared >= 1 && new_shared + new_hits >= 29
        }),
        "the second worker never found the token in shared data: hits {}, shared {}",
        looked_up("wasm_iap_token_cache_hits") - hits,
        looked_up("wasm_iap_token_cache_shared_hits") - shared
    );
    assert_eq!(
        looked_up("wasm_iap_token_cache_misses") - misses,
        1,
        "the token was checked more than once"
    );
}

#[test]
fn an_address_that_spends_its_budget_on_failing_tokens_gets_429_without_a_check() {
    let idp = KeyServer::start(0, shared_keys().jwks());
    let upstream = Upstream::start();
    let budget = json!({ "signature_check_budget": { "per_second": 1, "burst": 3 } });
    let envoy = start(&idp, &upstream, budget, 1);
    let issuer = idp.issuer();
    let valid = token_numbered(&issuer, 0);
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&envoy.url("/"), &valid).status == 200
    }));
    let statuses: Vec<u16> = (1..=6)
        .map(|n| {
            http::bearer(
                &envoy.url("/"),
                &tamper_signature(&token_numbered(&issuer, n)),
            )
        })
        .map(|response| {
            if response.status == 429 {
                assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
            }
            response.status
        })
        .collect();
    // The first ones are checked (a refill of one may come in between), then refused unchecked.
    assert!(statuses.starts_with(&[401, 401, 401]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(counter(&envoy, "wasm_iap_requests_throttled") >= 1);
    // A token verified before stays good; a new valid one waits for the budget to refill.
    assert_eq!(http::bearer(&envoy.url("/"), &valid).status, 200);
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&envoy.url("/"), &token_numbered(&issuer, 100)).status == 200
    }));
}
