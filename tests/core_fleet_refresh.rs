//! One refresh per session across replicas, natively: two gateways with their own shared
//! data (two Envoys) and a real etcd between them. The store calls the gateways make are
//! sent to etcd as Envoy would send them; the token endpoint is answered by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::etcd::EtcdCluster;
use support::http;
use support::mint::{self, shared_keys};
use support::native_bed::{forwarded, login_service, provider, responded, Bed, ISSUER};
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::Metric;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::secret::Secret;

const HOST: &str = "grafana.example.com";

fn config(prefix: &str) -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(HOST, "grafana", "_grafana", json!({}))],
        "cluster_store": { "etcd": { "cluster": "etcd", "prefix": prefix, "timeout": "2s" } },
    })
}

/// A replica (its own shared data) whose store calls go to `etcd`.
struct Replica {
    bed: Bed,
    /// Calls already answered or left to the test.
    seen: usize,
}

impl Replica {
    fn new(prefix: &str) -> Replica {
        Replica {
            bed: Bed::new(&config(prefix)),
            seen: 0,
        }
    }

    /// Sends every store call made since the last pump to etcd (or answers it with no
    /// answer when `etcd` is `None`), and hands the answers to the gateway; the decisions
    /// they made.
    fn pump(&mut self, etcd_port: Option<u16>) -> Vec<(u32, Decision)> {
        let mut decided = Vec::new();
        while self.seen < self.bed.host.calls.len() {
            let call = self.bed.host.calls[self.seen].clone();
            self.seen += 1;
            if call.cluster != "etcd" {
                continue;
            }
            let path = call.url.splitn(4, '/').nth(3).unwrap_or_default();
            let (status, body) = match etcd_port {
                Some(port) => {
                    let answer = http::request_within(
                        "POST",
                        &format!("http://127.0.0.1:{port}/{path}"),
                        &[("content-type", "application/json")],
                        Some(&call.body),
                        std::time::Duration::from_secs(2),
                    );
                    (Some(answer.status as u32), answer.body.into_bytes())
                }
                None => (None, Vec::new()),
            };
            let gateway = &mut self.bed.gateway;
            decided.extend(gateway.on_settled_call_response(
                &mut self.bed.host,
                call.token,
                status,
                &body,
            ));
        }
        decided
    }

    /// The tick: leases are asked for and granted.
    fn tick(&mut self, etcd_port: Option<u16>) {
        self.bed.gateway.tick(&mut self.bed.host);
        self.pump(etcd_port);
    }

    fn token_calls(&self) -> usize {
        let calls = &self.bed.host.calls;
        calls.iter().filter(|c| c.cluster == "dex").count()
    }

    /// A request with `cookie` whose session needs a refresh: parked, then sent from the
    /// root on the tick (to the store first), and what the store's answer made of it.
    fn expired_request(&mut self, cookie: &str, etcd_port: Option<u16>) -> Vec<(u32, Decision)> {
        let headers = [("cookie", cookie), ("accept", "application/json")];
        let parked = self.bed.get(HOST, "/api/search", &headers);
        assert!(matches!(parked, Decision::Parked), "{parked:?}");
        assert!(self.bed.gateway.settle(&mut self.bed.host, None).is_empty());
        self.pump(etcd_port)
    }

    /// Answers the last token call with a renewed ID token and refresh token.
    fn answer_refresh(&mut self, etcd_port: Option<u16>) -> Decision {
        let call = self
            .bed
            .host
            .calls
            .iter()
            .rev()
            .find(|c| c.cluster == "dex");
        let token = call.expect("a token call").token;
        let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
        claims["exp"] = json!(mint::now_secs() + 3600);
        let id_token = shared_keys().signer("RS256").sign(&claims);
        let renewed = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
        let (_, decision) = self
            .bed
            .gateway
            .on_settled_call_response(&mut self.bed.host, token, Some(200), renewed.as_bytes())
            .expect("the refresh's request");
        self.pump(etcd_port);
        decision
    }
}

fn expired_session() -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{now}"),
        user: "alice-id".into(),
        email: Some("alice@example.com".into()),
        expires_at: now + 3600,
        refresh_at: now - 1,
        refresh_token: Some(Secret::new("rt-1")),
        ..Session::default()
    }
}

fn prefix() -> String {
    format!("/fleet-test-{}", std::process::id())
}

#[test]
fn two_replicas_refresh_an_expired_session_once_and_the_other_adopts_it() {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let (mut a, mut b) = (Replica::new(&prefix()), Replica::new(&prefix()));
    a.tick(port);
    b.tick(port);
    let cookie = a.bed.session_cookie(0, &expired_session());

    // A wins the fleet's lock and calls the token endpoint.
    assert!(
        a.expired_request(&cookie, port).is_empty(),
        "waits for the IdP"
    );
    assert_eq!(a.token_calls(), 1);
    // B, another Envoy, finds A's lock: it goes on with the old session, no token call.
    let decided = b.expired_request(&cookie, port);
    let kept = forwarded(decided.into_iter().next().expect("decided").1);
    assert!(kept.response_cookies.is_empty(), "old session, no cookie");
    assert_eq!(b.token_calls(), 0, "one refresh for the fleet");

    // A's refresh succeeds; it publishes the renewed session to the store.
    let renewed = forwarded(a.answer_refresh(port));
    assert!(!renewed.response_cookies.is_empty());

    // B's next request with the old cookie (a second later) adopts it: still no token call.
    b.bed.host.advance(1_100);
    let decided = b.expired_request(&cookie, port);
    let adopted = forwarded(decided.into_iter().next().expect("decided").1);
    assert!(
        adopted
            .response_cookies
            .iter()
            .any(|c| c.starts_with("_grafana=")),
        "B hands out the renewed session: {:?}",
        adopted.response_cookies
    );
    assert_eq!(b.token_calls(), 0);
    assert_eq!(a.bed.host.count_of(Metric::Refreshed), 1);
}

#[test]
fn a_store_that_does_not_answer_leaves_each_replica_on_its_own_and_ready_says_degraded() {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let mut a = Replica::new(&prefix());
    a.tick(port);
    let cookie = a.bed.session_cookie(0, &expired_session());
    // The lock call gets no answer: the refresh goes ahead on this Envoy's lease alone.
    assert!(a.expired_request(&cookie, None).is_empty());
    assert_eq!(a.token_calls(), 1, "refreshed without the fleet's lock");
    assert!(a.bed.host.logged("cluster store unavailable"));
    assert!(a.bed.host.count_of(Metric::StoreFailures) >= 1);
    let ready = responded(a.bed.get(HOST, "/ready", &[]));
    assert_eq!(ready.status, 200);
    assert!(ready.body.starts_with("degraded"), "{}", ready.body);
    let renewed = forwarded(a.answer_refresh(None));
    assert!(
        !renewed.response_cookies.is_empty(),
        "the user sees nothing"
    );
    // The store answers again: ready says so.
    a.bed.host.advance(2_000);
    a.tick(port);
    let ready = responded(a.bed.get(HOST, "/ready", &[]));
    assert_eq!(ready.body.trim(), "OK");
    assert!(a.bed.host.logged("cluster store answers again"));
}

/// What Envoy answers for a member it cannot reach.
const ENVOY_CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

impl Replica {
    /// Answers the next store call as Envoy does for a dead member.
    fn next_call_hits_a_dead_member(&mut self) {
        let call = self.bed.host.calls[self.seen..]
            .iter()
            .find(|c| c.cluster == "etcd")
            .expect("a store call")
            .clone();
        self.seen = self.bed.host.calls.len();
        self.bed.gateway.on_settled_call_response(
            &mut self.bed.host,
            call.token,
            Some(503),
            ENVOY_CONNECT_FAILURE.as_bytes(),
        );
    }

    fn ready(&mut self) -> String {
        responded(self.bed.get(HOST, "/ready", &[])).body
    }
}

/// A one-member etcd, its port, and a replica it granted leases to.
fn a_replica_and_its_store() -> (EtcdCluster, Option<u16>, Replica) {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let mut replica = Replica::new(&prefix());
    replica.tick(port);
    (etcd, port, replica)
}

#[test]
fn a_worker_that_sends_nothing_learns_within_a_sync_interval_that_the_store_is_gone() {
    let (_etcd, port, mut a) = a_replica_and_its_store();
    a.bed.host.advance(1_100);
    a.tick(port);
    assert_eq!(a.ready().trim(), "OK");
    // No request, no lease due: the tick asks the store whether it answers.
    a.bed.host.advance(1_100);
    a.tick(None);
    assert!(a.ready().starts_with("degraded"), "{}", a.ready());
    assert!(a.bed.host.logged("cluster store unavailable (a probe"));
    a.bed.host.advance(1_100);
    a.tick(port);
    assert_eq!(a.ready().trim(), "OK");
}

#[test]
fn a_store_call_a_dead_member_did_not_answer_is_sent_to_another_and_nothing_fails() {
    let (_etcd, port, mut a) = a_replica_and_its_store();
    // The tick's probe first reaches a dead member.
    a.bed.host.advance(1_100);
    a.bed.gateway.tick(&mut a.bed.host);
    a.next_call_hits_a_dead_member();
    a.pump(port);
    // So does a refresh's lock: the second try takes it, the refresh goes on under it.
    let cookie = a.bed.session_cookie(0, &expired_session());
    let parked = a.bed.get(HOST, "/api/search", &[("cookie", &cookie)]);
    assert!(matches!(parked, Decision::Parked), "{parked:?}");
    assert!(a.bed.gateway.settle(&mut a.bed.host, None).is_empty());
    a.next_call_hits_a_dead_member();
    a.pump(port);
    assert_eq!(a.token_calls(), 1);
    let mut b = Replica::new(&prefix());
    b.tick(port);
    let decided = b.expired_request(&cookie, port);
    let kept = forwarded(decided.into_iter().next().expect("decided").1);
    assert!(kept.response_cookies.is_empty(), "B found A's lock");
    assert_eq!(b.token_calls(), 0, "one refresh for the fleet");
    assert_eq!(a.bed.host.count_of(Metric::StoreFailures), 0);
    assert_eq!(a.ready().trim(), "OK");
}

#[test]
fn leases_a_store_started_again_empty_does_not_know_are_granted_again() {
    let old = EtcdCluster::start(1);
    let mut a = Replica::new(&prefix());
    let mut b = Replica::new(&prefix());
    a.tick(Some(old.client_ports()[0]));
    drop(old);
    // The store comes back without its data: A's leases are unknown to it.
    let fresh = EtcdCluster::start(1);
    let port = Some(fresh.client_ports()[0]);
    b.tick(port);
    let cookie = a.bed.session_cookie(0, &expired_session());
    assert!(a.expired_request(&cookie, port).is_empty());
    assert_eq!(a.token_calls(), 1, "refreshed on its own meanwhile");
    assert!(a.bed.host.logged("etcd does not know this Envoy's lease"));
    a.answer_refresh(port);
    // The next tick asks for new leases: the next refresh is the fleet's again.
    a.tick(port);
    let mut next = expired_session();
    next.sid = format!("{}-next", next.sid);
    let cookie = a.bed.session_cookie(0, &next);
    assert!(a.expired_request(&cookie, port).is_empty());
    assert_eq!(a.token_calls(), 2);
    let decided = b.expired_request(&cookie, port);
    let kept = forwarded(decided.into_iter().next().expect("decided").1);
    assert!(kept.response_cookies.is_empty(), "B found A's lock");
    assert_eq!(b.token_calls(), 0, "one refresh for the fleet");
    assert_eq!(a.ready().trim(), "OK");
}
