//! Replicas sharing a cluster store, natively: two gateways with their own shared data (two
//! Envoys) and a real etcd between them; one refresh per session across them, and a
//! revocation made on one reaching the other. The store calls the gateways make are sent to
//! etcd as Envoy would send them; the token endpoint is answered by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::etcd::EtcdCluster;
use support::mint;
use support::native_bed::{forwarded, responded};
use support::native_fleet::{Replica, HOST};
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::Metric;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::secret::Secret;

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

/// The same for every replica of a test (each test has an etcd of its own): one taken a
/// second later would not see the other's keys.
fn prefix() -> String {
    format!("/fleet-refresh-{}", std::process::id())
}

/// Two replicas on one store, under one prefix (the second may change between two calls of
/// `prefix()`), with their leases granted.
fn two_replicas(etcd: &EtcdCluster) -> (Replica, Replica) {
    let port = etcd.client_ports()[0];
    let prefix = prefix();
    (
        Replica::started(&prefix, port),
        Replica::started(&prefix, port),
    )
}

#[test]
fn two_replicas_refresh_an_expired_session_once_and_the_other_adopts_it() {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let (mut a, mut b) = two_replicas(&etcd);
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
    let mut a = Replica::started(&prefix(), etcd.client_ports()[0]);
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

#[test]
fn a_store_call_a_dead_member_did_not_answer_is_sent_to_another_and_nothing_fails() {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let mut a = Replica::started(&prefix(), etcd.client_ports()[0]);
    // A revocation sync first reaches a dead member, and is sent again.
    a.bed.host.advance(1_100);
    a.bed.gateway.sync_revocations(&mut a.bed.host);
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
    let mut b = Replica::started(&prefix(), etcd.client_ports()[0]);
    let decided = b.expired_request(&cookie, port);
    let kept = forwarded(decided.into_iter().next().expect("decided").1);
    assert!(kept.response_cookies.is_empty(), "B found A's lock");
    assert_eq!(b.token_calls(), 0, "one refresh for the fleet");
    assert_eq!(a.bed.host.count_of(Metric::StoreFailures), 0);
    let ready = responded(a.bed.get(HOST, "/ready", &[]));
    assert_eq!(ready.body.trim(), "OK");
}

#[test]
fn leases_a_store_started_again_empty_does_not_know_are_granted_again() {
    let old = EtcdCluster::start(1);
    let mut a = Replica::started(&prefix(), old.client_ports()[0]);
    drop(old);
    // The store comes back without its data: A's leases are unknown to it.
    let fresh = EtcdCluster::start(1);
    let port = Some(fresh.client_ports()[0]);
    let mut b = Replica::started(&prefix(), fresh.client_ports()[0]);
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
    let ready = responded(a.bed.get(HOST, "/ready", &[]));
    assert_eq!(ready.body.trim(), "OK");
}

#[test]
fn a_sign_out_on_one_replica_reaches_the_other_within_its_next_sync() {
    let etcd = EtcdCluster::start(1);
    let port = Some(etcd.client_ports()[0]);
    let (mut a, mut b) = two_replicas(&etcd);
    let mut session = expired_session();
    session.refresh_at = mint::now_secs() + 3600;
    let cookie = a.bed.session_cookie(0, &session);
    let api = [("cookie", cookie.as_str()), ("accept", "application/json")];
    forwarded(b.bed.get(HOST, "/api/search", &api));
    // Signed out on A: its revocation is published to the store.
    let signed_out = responded(a.bed.get(HOST, "/oauth2/sign_out", &[("cookie", &cookie)]));
    assert_eq!(signed_out.status, 302);
    a.pump(port);
    // A second later (a store just started may not have granted A's lease yet).
    a.bed.host.advance(1_000);
    a.tick(port);
    a.bed.gateway.sync_revocations(&mut a.bed.host);
    a.pump(port);
    // B reads it on its next sync (every 1 s by default): the copied cookie is refused.
    b.bed.host.advance(1_000);
    b.bed.gateway.sync_revocations(&mut b.bed.host);
    b.pump(port);
    b.bed.gateway.sync_revocations(&mut b.bed.host);
    let refused = responded(b.bed.get(HOST, "/api/search", &api));
    assert_eq!(refused.status, 401, "{refused:?}");
}

/// A server-side session's read that its member did not answer (dead, or Envoy's 503) is
/// sent once more, to another member, before the request is answered as an outage.
#[test]
fn a_server_side_session_read_nobody_answered_is_sent_once_more() {
    use base64::Engine;
    use support::native_bed::{forwarded, login_service, provider, Bed};
    use wasm_iap::core::cluster::namespace::{hash_id, Namespace};
    use wasm_iap::core::cluster::stored_session;
    use wasm_iap::core::gateway::Decision;
    let login = login_service(
        HOST,
        "grafana",
        "_grafana",
        serde_json::json!({ "session_store": "cluster" }),
    );
    let config = serde_json::json!({
        "providers": [provider()],
        "login": [login],
        "cluster_store": { "etcd": { "cluster": "etcd", "prefix": "/t" } },
    });
    let mut bed = Bed::new(&config);
    let service = &bed.gateway.settings().login[0];
    let mut random = support::random::Counter(7);
    let handle = stored_session::new_handle(&mut random).unwrap();
    let mut session = expired_session();
    session.refresh_at = mint::now_secs() + 3600;
    session.sid = hash_id(handle.as_bytes());
    let key = stored_session::key(&Namespace::new("/t"), &handle);
    let sealed =
        stored_session::seal_session(&service.idps.first().sealer, &key, &session, &mut random)
            .unwrap();
    let cookie = format!(
        "_grafana={}",
        stored_session::seal_handle(&service.idps.first().sealer, &handle, &mut random).unwrap()
    );
    let api = [("cookie", cookie.as_str()), ("accept", "application/json")];
    let Decision::Calling(pending) = bed.get(HOST, "/api/search", &api) else {
        panic!("the session is read first")
    };
    let first = bed.host.calls.last().unwrap().token;
    // No answer from that member: read once more.
    let again = bed
        .gateway
        .on_token_response(&mut bed.host, 9, *pending, first, None, b"");
    let Decision::Calling(pending) = again else {
        panic!("sent once more: {again:?}")
    };
    let second = bed.host.calls.last().unwrap().token;
    assert_ne!(first, second);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let answer = serde_json::json!({
        "header": { "revision": "5" },
        "kvs": [{ "key": b64(key.as_bytes()), "value": b64(&sealed),
                  "create_revision": "5", "mod_revision": "5" }],
        "count": "1",
    });
    let body = answer.to_string();
    let decided = bed.gateway.on_token_response(
        &mut bed.host,
        9,
        *pending,
        second,
        Some(200),
        body.as_bytes(),
    );
    forwarded(decided);
}
