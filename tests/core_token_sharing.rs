//! Verified tokens shared by the workers of one Envoy, and the budget of failed signature
//! checks per client address, natively: gateways on sibling workers share one in-memory
//! store, as Envoy's VMs share shared data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::host::FakeHost;
use support::mint::{self, other_keys, shared_keys, tamper_signature, KeyRing};
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::host::{Host, Metric};
use wasm_iap::core::keys::record::{Discovery, KeysRecord};
use wasm_iap::core::request_headers::RequestHeaders;

const ISSUER: &str = "https://dex.example.com";
const P0: ProviderId = ProviderId(0);

fn settings(provider: Value, top: Value) -> Rc<Settings> {
    let mut config = json!({ "providers": [provider] });
    for (k, v) in top.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Rc::new(Settings::parse(&config.to_string()).unwrap_or_else(|e| panic!("{e:#?}")))
}

fn inline(audience: &str) -> Value {
    json!({ "issuer": ISSUER, "audiences": [audience], "jwks": shared_keys().jwks() })
}

fn token_for(audience: &str, jti: &str) -> String {
    shared_keys()
        .signer("RS256")
        .sign(&mint::claims_with(ISSUER, audience, json!({ "jti": jti })))
}

fn api(token: &str) -> RequestHeaders {
    let authorization = format!("Bearer {token}");
    RequestHeaders::from_pairs([
        (":authority", &b"api.example.com"[..]),
        (":path", b"/api/v1/query"),
        (":method", b"GET"),
        ("authorization", authorization.as_bytes()),
    ])
}

/// The status of the answer, or 200 when the request goes upstream.
fn status(gateway: &mut Gateway, host: &mut FakeHost, token: &str) -> u32 {
    match gateway.decide(host, 1, &api(token)).decision {
        Decision::Forward(_) => 200,
        Decision::Respond(reply) => reply.status,
        other => panic!("unexpected {other:?}"),
    }
}

fn counts(gateway: &mut Gateway, host: &mut FakeHost) -> (usize, usize, usize) {
    gateway.tick(host);
    (
        host.count_of(Metric::TokenCacheHits),
        host.count_of(Metric::TokenCacheSharedHits),
        host.count_of(Metric::TokenCacheMisses),
    )
}

#[test]
fn a_token_verified_on_one_worker_passes_on_the_others_without_another_check() {
    let mut a_host = FakeHost::new(mint::now_secs() * 1000);
    let mut b_host = a_host.sibling(2);
    let mut a = Gateway::new(settings(inline("api"), json!({})));
    let mut b = Gateway::new(settings(inline("api"), json!({})));
    let token = token_for("api", "shared-1");
    assert_eq!(status(&mut a, &mut a_host, &token), 200);
    assert_eq!(counts(&mut a, &mut a_host), (0, 0, 1), "A checked it");
    assert_eq!(status(&mut b, &mut b_host, &token), 200);
    assert_eq!(status(&mut b, &mut b_host, &token), 200);
    assert_eq!(
        counts(&mut b, &mut b_host),
        (1, 1, 0),
        "B found it in shared data, then in its own cache"
    );
}

#[test]
fn sharing_can_be_turned_off() {
    let off = json!({ "shared_token_cache_bytes": 0 });
    let mut a_host = FakeHost::new(mint::now_secs() * 1000);
    let mut b_host = a_host.sibling(2);
    let mut a = Gateway::new(settings(inline("api"), off.clone()));
    let mut b = Gateway::new(settings(inline("api"), off));
    let token = token_for("api", "unshared");
    assert_eq!(status(&mut a, &mut a_host, &token), 200);
    assert_eq!(status(&mut b, &mut b_host, &token), 200);
    assert_eq!(counts(&mut b, &mut b_host), (0, 0, 1));
}

#[test]
fn a_worker_with_another_configuration_never_takes_a_shared_verdict() {
    let mut a_host = FakeHost::new(mint::now_secs() * 1000);
    let mut b_host = a_host.sibling(2);
    let mut grafana = Gateway::new(settings(inline("grafana"), json!({})));
    let mut prometheus = Gateway::new(settings(inline("prometheus"), json!({})));
    let token = token_for("grafana", "other-config");
    assert_eq!(status(&mut grafana, &mut a_host, &token), 200);
    assert_eq!(
        status(&mut prometheus, &mut b_host, &token),
        401,
        "a token for grafana is checked against prometheus's audience"
    );
}

fn remote() -> Value {
    json!({ "issuer": ISSUER, "audiences": ["api"], "cluster": "dex" })
}

fn record(keys: &[&KeyRing]) -> KeysRecord {
    let jwks: Vec<Value> = keys
        .iter()
        .flat_map(|k| k.jwks()["keys"].as_array().cloned().unwrap_or_default())
        .collect();
    KeysRecord {
        jwks: Some(json!({ "keys": jwks }).to_string()),
        discovery: Some(Discovery {
            jwks_uri: format!("{ISSUER}/keys"),
            ..Discovery::default()
        }),
        ..KeysRecord::default()
    }
}

#[test]
fn once_a_key_is_removed_at_the_idp_no_worker_takes_tokens_it_signed_from_shared_data() {
    let mut a_host = FakeHost::new(mint::now_secs() * 1000);
    let mut b_host = a_host.sibling(2);
    let mut a = Gateway::new(settings(remote(), json!({})));
    let mut b = Gateway::new(settings(remote(), json!({})));
    let both = record(&[shared_keys(), other_keys()]);
    a.authn.install_record(P0, &both).unwrap();
    let token = token_for("api", "rotated");
    assert_eq!(status(&mut a, &mut a_host, &token), 200);
    // B learns of the rotation first: the key that signed the token is gone.
    let rotated = KeysRecord {
        attempted_at_ms: a_host.now_ms(),
        ..record(&[other_keys()])
    };
    b.authn.install_record(P0, &rotated).unwrap();
    assert_ne!(status(&mut b, &mut b_host, &token), 200);
    assert_eq!(counts(&mut b, &mut b_host).1, 0, "no shared hit");
}

fn budgeted() -> Rc<Settings> {
    settings(
        inline("api"),
        json!({ "signature_check_budget": { "per_second": 1, "burst": 3 } }),
    )
}

#[test]
fn an_address_that_spent_its_budget_on_forged_tokens_gets_429_until_it_refills() {
    let mut host = FakeHost::new(mint::now_secs() * 1000);
    let mut gateway = Gateway::new(budgeted());
    let valid = token_for("api", "known");
    assert_eq!(status(&mut gateway, &mut host, &valid), 200);
    let forged = |i: usize| tamper_signature(&token_for("api", &format!("forged-{i}")));
    for i in 0..3 {
        assert_eq!(
            status(&mut gateway, &mut host, &forged(i)),
            401,
            "forged {i}"
        );
    }
    let reply = match gateway.decide(&mut host, 1, &api(&forged(3))).decision {
        Decision::Respond(reply) => reply,
        other => panic!("{other:?}"),
    };
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(
        status(&mut gateway, &mut host, &valid),
        200,
        "a token already verified still passes"
    );
    host.source = "198.51.100.7:5000".into();
    assert_eq!(
        status(&mut gateway, &mut host, &forged(4)),
        401,
        "other addresses keep their budget"
    );
    host.source = "192.0.2.1:41234".into();
    assert_eq!(status(&mut gateway, &mut host, &forged(5)), 429, "any port");
    host.advance(1_000);
    assert_eq!(status(&mut gateway, &mut host, &forged(6)), 401, "refilled");
    gateway.tick(&mut host);
    assert_eq!(host.count_of(Metric::Throttled), 2);
}

#[test]
fn valid_tokens_and_cheap_refusals_never_spend_the_budget() {
    let mut host = FakeHost::new(mint::now_secs() * 1000);
    let mut gateway = Gateway::new(budgeted());
    for i in 0..10 {
        let valid = token_for("api", &format!("valid-{i}"));
        assert_eq!(status(&mut gateway, &mut host, &valid), 200);
        assert_eq!(status(&mut gateway, &mut host, "not-a-token"), 401);
        let expired = shared_keys().signer("RS256").sign(&mint::claims_with(
            ISSUER,
            "api",
            json!({ "exp": mint::now_secs() - 3600, "jti": format!("expired-{i}") }),
        ));
        assert_eq!(status(&mut gateway, &mut host, &expired), 401);
    }
    let forged = tamper_signature(&token_for("api", "first-forgery"));
    assert_eq!(status(&mut gateway, &mut host, &forged), 401);
}
