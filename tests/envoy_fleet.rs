//! Several gateway replicas (real Envoy processes with the same configuration), the real IdP
//! with and without a cluster store (a real 3-member etcd): what a user notices when
//! requests spread over the replicas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::etcd::EtcdCluster;
use support::fleet::{race, report, Fleet, TOKEN_TTL_SECS};
use support::http;

fn echoed_user(response: &http::Response) -> Value {
    response.json()["headers"]["x-auth-request-user"].clone()
}

#[test]
fn a_session_signed_in_through_the_front_opens_on_every_replica() {
    let fleet = Fleet::start(3, &json!({}), &[]);
    let (browser, page) = fleet.logged_in("tara@example.com", "/");
    assert_eq!(echoed_user(&page), json!(["tara@example.com"]));
    let cookie = browser.cookie_header(&fleet.replica_url(0, "/")).unwrap();
    for replica in 0..fleet.replicas.len() {
        let response = http::get(
            &fleet.replica_url(replica, "/api"),
            &[("cookie", &cookie), ("accept", "application/json")],
        );
        assert_eq!(response.status, 200, "replica {replica}: {response:?}");
        assert_eq!(echoed_user(&response), json!(["tara@example.com"]));
    }
    let served = |fleet: &Fleet| -> Vec<u64> {
        // Requests each replica sent its upstream (the admin's own requests are not counted).
        let metric = "envoy_cluster_upstream_rq_total";
        let count = |envoy: &support::envoy::Envoy| {
            let upstream = "envoy_cluster_name=\"upstream\"";
            envoy.prometheus_metric_where(metric, upstream).unwrap_or(0)
        };
        fleet.replicas.iter().map(count).collect()
    };
    let before = served(&fleet);
    for _ in 0..6 {
        let response = http::get(&fleet.front_url("/api"), &[("cookie", &cookie)]);
        assert_eq!(response.status, 200, "{response:?}");
    }
    let after = served(&fleet);
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "the front spreads requests over every replica: {before:?} -> {after:?}"
    );
}

const REPLICAS: usize = 3;
const EXPIRIES: usize = 5;

/// Issue 18's first measurement, without a store: an IdP whose refresh tokens are each
/// usable once, three replicas, and at each expiry 15 parallel requests per replica from one
/// browser. Every replica refreshes; the losers' `invalid_grant` must not log the user out.
#[test]
fn refresh_races_across_replicas_lose_no_session_with_one_use_refresh_tokens() {
    let ttl = TOKEN_TTL_SECS.to_string();
    let fleet = Fleet::start(
        REPLICAS,
        &json!({}),
        &[("REFRESH_ROTATION", "strict"), ("TOKEN_TTL", &ttl)],
    );
    let expiries = race(&fleet, EXPIRIES, |_| {});
    let lost = expiries.iter().filter(|e| e.lost()).count();
    assert_eq!(
        lost,
        0,
        "sessions lost at {lost} of {EXPIRIES} expiries:\n{}",
        report(&expiries)
    );
}

/// With the cluster store: one refresh per expiry for the whole fleet, none refused, no
/// session lost, for one-use refresh tokens and for an IdP that revokes the whole token
/// family when one is used twice (Auth0, Keycloak), where a second refresh would be fatal.
fn one_refresh_per_expiry_with_the_store(rotation: &str) {
    let etcd = EtcdCluster::start(3);
    let ttl = TOKEN_TTL_SECS.to_string();
    let prefix = format!("/fleet-{rotation}");
    let idp_env = [("REFRESH_ROTATION", rotation), ("TOKEN_TTL", &ttl)];
    let fleet = Fleet::start_with_store(REPLICAS, &idp_env, &etcd, &prefix);
    let expiries = race(&fleet, EXPIRIES, |_| {});
    let twice = expiries.iter().filter(|e| !e.refreshed_once()).count();
    let lost = expiries.iter().filter(|e| e.lost()).count();
    assert_eq!(
        (lost, twice),
        (0, 0),
        "sessions lost, expiries not refreshed exactly once:\n{}",
        report(&expiries)
    );
}

#[test]
fn with_the_store_one_use_refresh_tokens_are_refreshed_once_per_expiry_for_the_fleet() {
    one_refresh_per_expiry_with_the_store("strict");
}

#[test]
fn with_the_store_an_idp_revoking_the_token_family_on_reuse_loses_no_session() {
    one_refresh_per_expiry_with_the_store("family");
}
