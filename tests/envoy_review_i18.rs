//! Issue 18 under attack, in real Envoy: what a replica puts in the cluster store while it
//! answers a request (a sign-out's revocation) must reach the store although the request
//! is over by then (Envoy answers a callout to the context that sent it, and cancels the
//! callouts of a request that ended): a put that fails is tried again until the store takes
//! it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use support::etcd::EtcdCluster;
use support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use support::http;

/// How many revocations the store holds under `prefix`.
fn revocations_in_store(port: u16, prefix: &str) -> usize {
    let range = json!({
        "key": STANDARD.encode(format!("{prefix}/revoked/")),
        "range_end": STANDARD.encode(format!("{prefix}/revoked0")),
        "count_only": true,
    });
    let url = format!("http://127.0.0.1:{port}/v3/kv/range");
    let answer = http::request("POST", &url, &[], Some(&range.to_string())).json();
    answer["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Two replicas on the etcd member at `port`, and a browser's cookie signed in on both.
fn signed_in_on_two(port: u16, prefix: &str) -> (Fleet, String) {
    let fleet = Fleet::start_plugin(2, &[], vec![etcd_cluster(&[port])], |issuer| {
        plugin_with_store(issuer, &json!({}), prefix)
    });
    let (browser, page) = fleet.logged_in("tara@example.com", "/");
    assert_eq!(page.status, 200, "{page:?}");
    let cookie = browser.cookie_header(&fleet.replica_url(0, "/")).unwrap();
    for replica in 0..2 {
        assert_eq!(status_with(&fleet, replica, &cookie), 200);
    }
    (fleet, cookie)
}

/// What an API request with `cookie` gets from `replica`.
fn status_with(fleet: &Fleet, replica: usize, cookie: &str) -> u16 {
    let headers = [("cookie", cookie), ("accept", "application/json")];
    http::get(&fleet.replica_url(replica, "/api"), &headers).status
}

/// A sign-out on a replica whose store is down: refused there at once, and on the other
/// replica within seconds of the store coming back.
#[test]
fn a_sign_out_made_while_the_store_is_down_reaches_the_other_replica_once_it_is_back() {
    let mut etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let prefix = format!("/review-sign-out-down-{}", std::process::id());
    let (fleet, cookie) = signed_in_on_two(port, &prefix);
    let api = |replica: usize| status_with(&fleet, replica, &cookie);
    etcd.kill(0);
    // Envoy's health check (every second) takes the member out.
    std::thread::sleep(Duration::from_secs(2));
    let signed_out = http::get(
        &fleet.replica_url(0, "/oauth2/sign_out"),
        &[("cookie", &cookie)],
    );
    assert_eq!(signed_out.status, 302, "{signed_out:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api(0), 401, "refused where it signed out");
    etcd.restart(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while api(1) != 401 {
        assert!(
            Instant::now() < deadline,
            "the copied cookie still opens on the other replica 10 s after the store came \
             back; revocations in the store: {}",
            revocations_in_store(port, &prefix)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_sign_out_on_one_replica_is_refused_on_the_other_within_two_seconds() {
    let etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let prefix = format!("/review-sign-out-{}", std::process::id());
    let (fleet, cookie) = signed_in_on_two(port, &prefix);
    let api = |replica: usize| status_with(&fleet, replica, &cookie);
    let before = revocations_in_store(port, &prefix);
    let signed_out = http::get(
        &fleet.replica_url(0, "/oauth2/sign_out"),
        &[("cookie", &cookie)],
    );
    assert_eq!(signed_out.status, 302, "{signed_out:?}");
    // Within 2 s on every replica (each worker takes it in on its tick), and a second more
    // for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(3);
    while (api(0), api(1)) != (401, 401) {
        assert!(
            Instant::now() < deadline,
            "the copied cookie still opens 3 s after sign-out (replica 0: {}, replica 1: {}); \
             revocations in the store: {} before, {} now",
            api(0),
            api(1),
            before,
            revocations_in_store(port, &prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
