//! Several gateway replicas (real Envoy processes with the same configuration), the real IdP
//! with and without a cluster store (a real 3-member etcd): what a user notices when
//! requests spread over the replicas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Barrier, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::browser::Browser;
use support::envoy_idp_bed::COOKIE;
use support::etcd::EtcdCluster;
use support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use support::http;
use wasm_iap::core::login::session::is_session_cookie;

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
const PER_REPLICA: usize = 15;
const EXPIRIES: usize = 5;
const TOKEN_TTL_SECS: u64 = 3;

/// Whether a response tells the browser its session is gone: refused, sent to log in, or
/// its session cookie cleared.
fn loses_the_session(response: &http::Response) -> bool {
    let clears = response.headers.iter().any(|(name, value)| {
        let cookie = support::sent_back(value).split_once('=');
        name.eq_ignore_ascii_case("set-cookie")
            && cookie
                .is_some_and(|(name, value)| is_session_cookie(name, COOKIE) && value.is_empty())
    });
    response.status != 200 || clears
}

/// `PER_REPLICA` parallel API requests to each replica, all sent at once with the cookies
/// `browser` has, each response's cookies stored as it arrives (the last one wins, as in a
/// browser); how many lost the session.
fn burst(fleet: &Fleet, browser: &Mutex<Browser>) -> usize {
    let start = Barrier::new(REPLICAS * PER_REPLICA);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..REPLICAS * PER_REPLICA)
            .map(|n| {
                let url = fleet.replica_url(n % REPLICAS, "/api/v1/query_range");
                let start = &start;
                scope.spawn(move || {
                    let cookie = browser.lock().unwrap().cookie_header(&url);
                    start.wait();
                    let cookie = cookie.unwrap_or_default();
                    let headers = [("cookie", cookie.as_str()), ("accept", "application/json")];
                    let response = http::get(&url, &headers);
                    browser.lock().unwrap().store(&response);
                    loses_the_session(&response)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|lost| *lost)
            .count()
    })
}

fn refresh_count(fleet: &Fleet, outcome: &str) -> u64 {
    fleet.idp_counts()["refresh_token"][outcome]
        .as_u64()
        .unwrap_or(0)
}

/// What one expiry did.
struct Expiry {
    /// Requests of the burst that lost the session.
    lost_requests: usize,
    /// Whether the browser's cookies still open a session after the burst.
    kept: bool,
    /// Refresh calls at the IdP: answered, refused with `invalid_grant`.
    refreshes: u64,
    refused_refreshes: u64,
}

impl Expiry {
    fn lost(&self) -> bool {
        self.lost_requests > 0 || !self.kept
    }

    fn report(&self) -> String {
        format!(
            "{} of {} requests lost the session; session kept after: {}; refresh calls: {} ok, {} invalid_grant",
            self.lost_requests,
            REPLICAS * PER_REPLICA,
            self.kept,
            self.refreshes,
            self.refused_refreshes
        )
    }
}

/// At each of `EXPIRIES` expiries, a burst from one browser over every replica; what each
/// expiry did.
fn race(fleet: &Fleet) -> Vec<Expiry> {
    let browser = Mutex::new(fleet.logged_in("uma@example.com", "/").0);
    let mut expiries = Vec::new();
    for _ in 0..EXPIRIES {
        std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS + 1));
        let (ok, refused) = (
            refresh_count(fleet, "ok"),
            refresh_count(fleet, "invalid_grant"),
        );
        let lost_requests = burst(fleet, &browser);
        let cookie = browser.lock().unwrap().cookie_header(&fleet.front_url("/"));
        let after = http::get(
            &fleet.replica_url(0, "/api"),
            &[
                ("cookie", cookie.as_deref().unwrap_or_default()),
                ("accept", "application/json"),
            ],
        );
        browser.lock().unwrap().store(&after);
        let expiry = Expiry {
            lost_requests,
            kept: after.status == 200,
            refreshes: refresh_count(fleet, "ok") - ok,
            refused_refreshes: refresh_count(fleet, "invalid_grant") - refused,
        };
        if expiry.lost() {
            // Logged out: the user signs in again, and the next expiry counts afresh.
            *browser.lock().unwrap() = fleet.logged_in("uma@example.com", "/").0;
        }
        expiries.push(expiry);
    }
    expiries
}

fn report(expiries: &[Expiry]) -> String {
    let lines: Vec<String> = expiries.iter().map(Expiry::report).collect();
    lines.join("\n")
}

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
    let expiries = race(&fleet);
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
    let fleet = Fleet::start_plugin(
        REPLICAS,
        &[("REFRESH_ROTATION", rotation), ("TOKEN_TTL", &ttl)],
        vec![etcd_cluster(&etcd.client_ports())],
        |issuer| plugin_with_store(issuer, &json!({}), &prefix),
    );
    let expiries = race(&fleet);
    let twice = expiries
        .iter()
        .filter(|e| e.refreshes != 1 || e.refused_refreshes != 0)
        .count();
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
