//! What tokens cost inside real Envoy: a token is verified once per Envoy, not once per
//! worker, and an address that keeps sending tokens that fail runs out of signature checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::{bootstrap, cluster, ext_authz_filter, wasm_filter, Envoy, Started};
use support::envoy_faulty_idp_bed::eventually;
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
    start_with_hcm(idp, upstream, top, workers, json!({}))
}

/// As `start`, with `hcm` merged into the HTTP connection manager.
fn start_with_hcm(
    idp: &KeyServer,
    upstream: &Upstream,
    top: Value,
    workers: u32,
    hcm: Value,
) -> Envoy {
    let mut config = bootstrap(
        vec![wasm_filter(&plugin_config(&idp.issuer(), top))],
        upstream.port(),
        idp.port,
    );
    merge_hcm(&mut config, &hcm);
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

fn merge_hcm(config: &mut Value, hcm: &Value) {
    let manager = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    for (k, v) in hcm.as_object().cloned().unwrap_or_default() {
        manager[k] = v;
    }
}

/// docs/forward-auth.md's Envoy behind NGINX: the client is the `X-Forwarded-For` entry
/// the proxy in front appended (the rightmost), never one the client wrote.
fn behind_one_proxy() -> Value {
    json!({ "use_remote_address": true, "xff_num_trusted_hops": 1 })
}

fn forged_with_xff(envoy: &Envoy, issuer: &str, n: u32, xff: &str) -> u16 {
    let forged = tamper_signature(&token_numbered(issuer, n));
    http::get(
        &envoy.url("/"),
        &[
            ("authorization", &format!("Bearer {forged}")),
            ("x-forwarded-for", xff),
        ],
    )
    .status
}

#[test]
fn behind_a_proxy_a_client_can_neither_evade_the_budget_nor_spend_anothers_with_x_forwarded_for() {
    let idp = KeyServer::start(0, shared_keys().jwks());
    let upstream = Upstream::start();
    // A refill every 100 s: nothing comes back during the test.
    let budget = json!({ "signature_check_budget": { "per_second": 1, "burst": 3 } });
    let envoy = start_with_hcm(&idp, &upstream, budget, 1, behind_one_proxy());
    let issuer = idp.issuer();
    let valid = token_numbered(&issuer, 0);
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&envoy.url("/"), &valid).status == 200
    }));
    // The attacker, 198.51.100.66, writes a new address of its own left of the entry the
    // proxy appends (NGINX's $proxy_add_x_forwarded_for), and names its victim, 203.0.113.7.
    let attacker = "198.51.100.66";
    let statuses: Vec<u16> = (1..=6)
        .map(|n| {
            let spoof = if n % 2 == 0 {
                "203.0.113.7".to_string()
            } else {
                format!("10.9.{n}.1")
            };
            forged_with_xff(&envoy, &issuer, n, &format!("{spoof}, {attacker}"))
        })
        .collect();
    assert!(statuses.starts_with(&[401, 401, 401]), "{statuses:?}");
    assert_eq!(
        &statuses[3..],
        &[429, 429, 429],
        "a made-up X-Forwarded-For entry bought more checks"
    );
    // The victim, through the same proxy (NGINX's $remote_addr: one entry), is still checked.
    assert_eq!(
        forged_with_xff(&envoy, &issuer, 20, "203.0.113.7"),
        401,
        "the attacker spent the victim's budget"
    );
    assert_eq!(forged_with_xff(&envoy, &issuer, 21, attacker), 429);
}

#[test]
fn through_envoy_ext_authz_a_client_cannot_evade_the_central_budget_with_x_forwarded_for() {
    let idp = KeyServer::start(0, shared_keys().jwks());
    let central_upstream = Upstream::start();
    let budget = json!({ "signature_check_budget": { "per_second": 1, "burst": 3 } });
    let central = start_with_hcm(&idp, &central_upstream, budget, 1, behind_one_proxy());
    let app = Upstream::start();
    // docs/forward-auth.md's front Envoy: an edge (use_remote_address) whose checks carry the
    // X-Forwarded-For it appended the client's address to.
    let to_check = json!([
        { "exact": "authorization", "ignore_case": true },
        { "exact": "x-forwarded-for", "ignore_case": true }
    ]);
    let ext_authz = ext_authz_filter(central.port, to_check, Value::Null, Value::Null);
    let mut front = bootstrap(vec![ext_authz], app.port(), idp.port);
    front["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
        .push(cluster("wasm-iap", central.port));
    let front = Envoy::start(&front);
    let issuer = idp.issuer();
    let valid = token_numbered(&issuer, 0);
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&front.url("/"), &valid).status == 200
    }));
    let statuses: Vec<u16> = (1..=6)
        .map(|n| forged_with_xff(&front, &issuer, n, &format!("10.7.{n}.1")))
        .collect();
    assert!(statuses.starts_with(&[401, 401, 401]), "{statuses:?}");
    assert_eq!(
        &statuses[3..],
        &[429, 429, 429],
        "a made-up X-Forwarded-For entry bought more checks through ext_authz"
    );
}
