//! The built filter inside real Envoy, with a key server on loopback playing the IdP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{bootstrap, wasm_filter, Envoy, Started};
use support::envoy_faulty_idp_bed::eventually;
use support::http::{self, Response};
use support::mint::{self, claims, claims_with, forge, other_keys, shared_keys};
use support::servers::{free_port, JwksAnswer, KeyServer, Upstream};

const AUDIENCE: &str = "prometheus";

/// Plugin config for one provider at `issuer`, with `extra` fields merged into the provider.
fn plugin_config(issuer: &str, extra: Value) -> Value {
    let mut provider =
        json!({ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp", "timeout": "2s" });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        provider[k] = v;
    }
    json!({ "providers": [provider], "keys_wait_timeout": "2s", "max_token_size": 8192 })
}

/// A key server publishing `jwks`, an echoing upstream, and Envoy with the filter trusting
/// that issuer (`extra` merged into its provider).
fn bed(jwks: Value, extra: Value) -> (KeyServer, Upstream, Envoy) {
    let idp = KeyServer::start(0, jwks);
    let upstream = Upstream::start();
    let envoy = start_envoy(&plugin_config(&idp.issuer(), extra), &upstream, idp.port);
    (idp, upstream, envoy)
}

fn start_envoy(plugin: &Value, upstream: &Upstream, idp_port: u16) -> Envoy {
    Envoy::start(&bootstrap(
        vec![wasm_filter(plugin)],
        upstream.port(),
        idp_port,
    ))
}

fn assert_rejected(response: &Response, description: &str, case: &str) {
    assert_eq!(response.status, 401, "{case}: {response:?}");
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"wasm-iap\""),
        "{case}: {challenge}"
    );
    assert_eq!(
        response.json()["error_description"],
        description,
        "{case}: {}",
        response.body
    );
    if !description.starts_with("missing bearer") {
        assert!(
            challenge.contains(&format!("error_description=\"{description}\"")),
            "{case}: {challenge}"
        );
    }
}

#[test]
fn valid_tokens_of_every_algorithm_reach_the_upstream_with_identity_headers() {
    let keys = shared_keys();
    let (idp, _upstream, envoy) = bed(keys.jwks(), json!({}));
    for alg in mint::ALGORITHMS {
        let token = keys.signer(alg).sign(&claims(&idp.issuer(), AUDIENCE));
        let response = http::get(
            &envoy.url("/api/v1/query?query=up"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("X-Auth-Request-User", "admin"),
                ("x_auth_request_email", "root@evil.example"),
                ("X-AUTH-REQUEST-EMAIL", "root@evil.example"),
            ],
        );
        assert_eq!(response.status, 200, "{alg}: {response:?}");
        assert_eq!(response.json()["path"], "/api/v1/query?query=up", "{alg}");
        assert_eq!(
            response.echoed_header("x-auth-request-user"),
            Some(vec!["alice-id".into()]),
            "{alg}"
        );
        assert_eq!(
            response.echoed_header("x-auth-request-email"),
            Some(vec!["alice@example.com".into()]),
            "{alg}"
        );
        assert_eq!(
            response.echoed_header("x_auth_request_email"),
            None,
            "{alg}: spoofed header must be gone"
        );
        assert!(
            response.echoed_header("authorization").is_some(),
            "{alg}: token forwarded by default"
        );
    }
    assert_eq!(
        idp.state.lock().unwrap().discovery_fetches,
        1,
        "two workers, one discovery"
    );
}

#[test]
fn every_bad_token_gets_401_with_its_reason_and_never_reaches_the_upstream() {
    let keys = shared_keys();
    let (idp, upstream, envoy) = bed(keys.jwks(), json!({}));
    let issuer = idp.issuer();
    let rs = keys.signer("RS256");
    let good = rs.sign(&claims(&issuer, AUDIENCE));
    let now = mint::now_secs();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "expired",
            rs.sign(&claims_with(&issuer, AUDIENCE, json!({"exp": now - 3600}))),
            "token expired".into(),
        ),
        (
            "not yet valid",
            rs.sign(&claims_with(&issuer, AUDIENCE, json!({"nbf": now + 3600}))),
            "token not yet valid".into(),
        ),
        (
            "wrong issuer",
            rs.sign(&claims("http://127.0.0.1:1", AUDIENCE)),
            "untrusted issuer".into(),
        ),
        (
            "wrong audience",
            rs.sign(&claims(&issuer, "alertmanager")),
            "wrong audience".into(),
        ),
        (
            "tampered payload",
            mint::tamper_payload(
                &good,
                &claims_with(&issuer, AUDIENCE, json!({"sub": "admin"})),
            ),
            "invalid signature".into(),
        ),
        (
            "tampered signature",
            mint::tamper_signature(&good),
            "invalid signature".into(),
        ),
        (
            "alg none",
            forge(&json!({"alg": "none"}), &claims(&issuer, AUDIENCE), b"x"),
            "algorithm none not accepted".into(),
        ),
        (
            "HS256 keyed with the RSA public key",
            mint::hs256_with_public_key(keys, &claims(&issuer, AUDIENCE)),
            "algorithm HS256 not accepted".into(),
        ),
        (
            "unknown kid",
            other_keys()
                .signer("ES256")
                .sign(&claims(&issuer, AUDIENCE)),
            format!("unknown signing key {}", other_keys().signer("ES256").kid),
        ),
        (
            "malformed base64",
            "eyJhbGciOiJSUzI1NiJ9.***.c2ln".into(),
            "malformed token: payload is not base64url JSON".into(),
        ),
        (
            "malformed JSON",
            format!(
                "{}.{}.c2ln",
                mint::b64(r#"{"alg":"RS256"}"#),
                mint::b64("{not json")
            ),
            "malformed token: payload is not base64url JSON".into(),
        ),
        (
            "oversized",
            rs.sign(&claims_with(
                &issuer,
                AUDIENCE,
                json!({"pad": "x".repeat(9000)}),
            )),
            "token larger than 8192 bytes".into(),
        ),
    ];
    for (case, token, description) in &cases {
        assert_rejected(&http::bearer(&envoy.url("/"), token), description, case);
    }
    assert_rejected(
        &http::get(&envoy.url("/"), &[]),
        "missing bearer token",
        "no header",
    );
    assert_rejected(
        &http::get(
            &envoy.url("/"),
            &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
        ),
        "authorization scheme is not Bearer",
        "basic auth",
    );
    assert_eq!(
        upstream.hits(),
        0,
        "no refused request may reach the upstream"
    );
}

#[test]
fn key_rotated_at_the_idp_is_picked_up_on_the_first_token_that_uses_it() {
    let keys = shared_keys();
    let (idp, _upstream, envoy) = bed(
        keys.jwks_of(&["RS256"]),
        json!({ "jwks_min_refetch_interval": "0s" }),
    );
    let old = keys.signer("RS256").sign(&claims(&idp.issuer(), AUDIENCE));
    assert_eq!(http::bearer(&envoy.url("/"), &old).status, 200);

    idp.set_jwks(JwksAnswer::Keys(other_keys().jwks_of(&["ES256"])));
    let rotated = other_keys()
        .signer("ES256")
        .sign(&claims(&idp.issuer(), AUDIENCE));
    let response = http::bearer(&envoy.url("/"), &rotated);
    assert_eq!(
        response.status, 200,
        "first token with the new kid: {response:?}"
    );
    // Every worker drops the retired key within one tick of seeing the new key set.
    let retired = |r: &Response| {
        r.status == 401
            && r.json()["error_description"]
                == format!("unknown signing key {}", keys.signer("RS256").kid)
    };
    assert!(
        eventually(Duration::from_secs(2), || (0..4)
            .all(|_| retired(&http::bearer(&envoy.url("/"), &old)))),
        "a key removed at the IdP stops verifying tokens"
    );
}

#[test]
fn unknown_kid_refetches_are_rate_limited() {
    let keys = shared_keys();
    let (idp, _upstream, envoy) = bed(keys.jwks(), json!({ "jwks_min_refetch_interval": "1h" }));
    let good = keys.signer("ES256").sign(&claims(&idp.issuer(), AUDIENCE));
    assert_eq!(http::bearer(&envoy.url("/"), &good).status, 200);
    let fetches = idp.jwks_fetches();
    for i in 0..20 {
        let stranger = other_keys().signer("ES256").sign(&claims_with(
            &idp.issuer(),
            AUDIENCE,
            json!({"jti": i.to_string()}),
        ));
        assert_eq!(http::bearer(&envoy.url("/"), &stranger).status, 401);
    }
    assert_eq!(
        idp.jwks_fetches(),
        fetches,
        "unknown kids must not make us hammer the IdP"
    );
}

#[test]
fn idp_down_at_start_answers_503_after_a_bounded_wait_then_recovers() {
    let keys = shared_keys();
    let port = free_port();
    let issuer = KeyServer::issuer_for(port);
    let upstream = Upstream::start();
    let config = plugin_config(&issuer, json!({ "jwks_min_refetch_interval": "1s" }));
    let envoy = start_envoy(&config, &upstream, port);
    let token = keys.signer("PS256").sign(&claims(&issuer, AUDIENCE));

    let started = Instant::now();
    let response = http::bearer(&envoy.url("/"), &token);
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.json()["error"], "temporarily_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait is bounded"
    );
    assert_eq!(upstream.hits(), 0);

    let _idp = KeyServer::start(port, keys.jwks());
    assert!(
        eventually(Duration::from_secs(30), || http::bearer(
            &envoy.url("/"),
            &token
        )
        .status
            == 200),
        "requests pass once the IdP is back"
    );
    assert!(envoy.log().contains("no keys yet"), "the outage is logged");
}

#[test]
fn idp_down_later_keeps_the_cached_keys_working() {
    let keys = shared_keys();
    let (mut idp, _upstream, envoy) = bed(keys.jwks(), json!({ "jwks_refresh_interval": "1s" }));
    let issuer = idp.issuer();
    let first = keys.signer("EdDSA").sign(&claims(&issuer, AUDIENCE));
    assert_eq!(http::bearer(&envoy.url("/"), &first).status, 200);

    idp.set_jwks(JwksAnswer::Garbage);
    let fetches = idp.jwks_fetches();
    assert!(
        eventually(Duration::from_secs(10), || idp.jwks_fetches() > fetches),
        "a refresh happened"
    );
    let fresh = keys.signer("ES384").sign(&claims_with(
        &issuer,
        AUDIENCE,
        json!({"jti": "after-garbage"}),
    ));
    assert_eq!(
        http::bearer(&envoy.url("/"), &fresh).status,
        200,
        "garbage JWKS does not replace good keys"
    );

    idp.stop();
    std::thread::sleep(Duration::from_secs(3)); // several failed refreshes
    let later = keys.signer("RS512").sign(&claims_with(
        &issuer,
        AUDIENCE,
        json!({"jti": "while-down"}),
    ));
    assert_eq!(
        http::bearer(&envoy.url("/"), &later).status,
        200,
        "cached keys verify new tokens while the IdP is down"
    );
    assert!(
        envoy.log().contains("keeping the last good keys"),
        "{}",
        envoy.log()
    );
}

#[test]
fn bad_plugin_config_makes_envoy_refuse_it_with_a_readable_log() {
    let upstream = Upstream::start();
    let plugin = json!({ "providers": [{ "issuer": "dex.example.com", "audiences": [], "colour": "blue" }] });
    let config = bootstrap(vec![wasm_filter(&plugin)], upstream.port(), free_port());
    let Started::Exited(log) = Envoy::try_start(&config, 1) else {
        panic!("Envoy must refuse a bad plugin configuration");
    };
    for expected in [
        "configuration rejected: providers[0].issuer: \"dex.example.com\" is not a URL",
        "configuration rejected: providers[0].audiences: must list at least one accepted audience",
        "configuration rejected: providers[0].colour: unknown field",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
}

#[test]
fn envoy_stats_count_allowed_and_refused_requests() {
    let keys = shared_keys();
    let (idp, _upstream, envoy) = bed(keys.jwks(), json!({}));
    let token = keys.signer("ES256").sign(&claims(&idp.issuer(), AUDIENCE));
    assert!(eventually(Duration::from_secs(5), || {
        http::bearer(&envoy.url("/"), &token).status == 200
    }));
    let counter = |name: &str| -> u64 {
        let stats = http::get(
            &format!(
                "http://127.0.0.1:{}/stats?filter=wasmcustom",
                envoy.admin_port
            ),
            &[],
        );
        stats
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("wasmcustom.{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let refused_before = counter("wasm_iap_requests_refused");
    for _ in 0..3 {
        assert_eq!(http::get(&envoy.url("/"), &[]).status, 401);
    }
    // Allowed requests are added up per worker and reported on the root's tick.
    assert!(eventually(Duration::from_secs(5), || counter(
        "wasm_iap_requests_allowed"
    ) >= 1));
    assert_eq!(counter("wasm_iap_requests_refused") - refused_before, 3);
}

#[test]
fn debug_lines_are_written_once_envoy_is_set_to_debug_at_run_time() {
    let (_idp, _upstream, envoy) = bed(shared_keys().jwks(), json!({}));
    let line = "refused with 401: missing bearer token";
    assert_eq!(http::get(&envoy.url("/"), &[]).status, 401);
    if std::env::var("WASM_IAP_ENVOY_LOG").is_err() {
        assert!(!envoy.log().contains(line), "Envoy runs at info");
    }
    // The filter asks Envoy's level on each tick rather than sending every line.
    let debug = format!("http://127.0.0.1:{}/logging?wasm=debug", envoy.admin_port);
    assert_eq!(http::request("POST", &debug, &[], None).status, 200);
    assert!(
        eventually(Duration::from_secs(5), || {
            http::get(&envoy.url("/"), &[]).status == 401 && envoy.log().contains(line)
        }),
        "a refusal's debug line once Envoy logs at debug"
    );
}
