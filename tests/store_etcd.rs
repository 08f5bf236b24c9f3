//! The etcd client of the cluster store against a real 3-member etcd (Debian's 3.4): the
//! callouts the core builds are sent as Envoy would send them, and etcd's answers are read
//! by the core's parsers. Values, prefixes and revisions, racing creators, leases,
//! deletes, a dead member, and a quorum lost and healed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use support::etcd::EtcdCluster;
use support::http;
use support::random::Counter;
use wasm_iap::core::cluster::etcd::{self, Keys, LeaseId, Range};
use wasm_iap::core::cluster::etcd_answer::{
    read_create, read_delete, read_lease, read_put, read_range, EtcdError, KeyValue,
};
use wasm_iap::core::cluster::namespace::{Kind, Namespace};
use wasm_iap::core::cluster::sealed_value::{open_value, seal_value};
use wasm_iap::core::config::cluster_store::Etcd;
use wasm_iap::core::host::Callout;
use wasm_iap::core::keys::fetch::CalloutResponse;
use wasm_iap::core::seal::Sealer;
use wasm_iap::core::secret::Secret;

const TIMEOUT_MS: u64 = 1_000;

fn store() -> Etcd {
    Etcd {
        cluster: "etcd".into(),
        authority: "etcd.store.svc:2379".into(),
        prefix: "/wasm-iap-test".into(),
        timeout_ms: TIMEOUT_MS,
    }
}

/// Sends `call` to the member on `port` as Envoy's callout would (method, path, headers,
/// body, the store's timeout), and reads the answer with `read`.
fn ask<T>(
    port: u16,
    call: &Callout,
    read: fn(&CalloutResponse) -> Result<T, EtcdError>,
) -> Result<T, EtcdError> {
    let pseudo = |name: &str| {
        call.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let answer = http::request_within(
        pseudo(":method"),
        &format!("http://127.0.0.1:{port}{}", pseudo(":path")),
        &headers,
        call.body.as_ref().map(Secret::expose),
        Duration::from_millis(store().timeout_ms),
    );
    // Status 0: no HTTP answer (refused, reset, timed out), as Envoy reports no status.
    read(&CalloutResponse {
        status: (answer.status != 0).then_some(u32::from(answer.status)),
        cache_control: None,
        body: answer.body.as_bytes(),
    })
}

fn get(port: u16, key: &str) -> Result<Vec<KeyValue>, EtcdError> {
    let range = Range {
        keys: Keys::One(key.as_bytes()),
        min_mod_revision: 0,
        limit: 0,
    };
    ask(port, &etcd::range(&store(), &range), read_range).map(|r| r.kvs)
}

fn put(port: u16, key: &str, value: &[u8]) -> i64 {
    ask(
        port,
        &etcd::put(&store(), key.as_bytes(), value, None),
        read_put,
    )
    .expect("put")
    .revision
}

fn keys_of(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[test]
fn values_round_trip_and_a_sync_reads_only_what_changed() {
    let cluster = EtcdCluster::start(3);
    let ports = cluster.client_ports();
    let ns = Namespace::new(&store().prefix);

    let every_byte: Vec<u8> = (0..=255).collect();
    let key = ns.key(Kind::Sessions, b"handle-1");
    put(ports[0], &key, &every_byte);
    for &port in &ports {
        let kvs = get(port, &key).expect("range");
        assert_eq!(keys_of(&kvs), std::slice::from_ref(&key));
        assert_eq!(kvs[0].value, every_byte, "binary value read back on {port}");
    }

    let sealer = Sealer::new(&[Secret::new("s".repeat(32))], "https://idp", "app").unwrap();
    let sealed = seal_value(&sealer, &key, b"{\"groups\":[\"admins\"]}", &mut Counter(1)).unwrap();
    put(ports[1], &key, &sealed);
    let stored = get(ports[2], &key).expect("range").remove(0).value;
    assert!(!String::from_utf8_lossy(&stored).contains("admins"));
    assert_eq!(
        open_value(&sealer, &key, &stored).as_deref(),
        Some(&b"{\"groups\":[\"admins\"]}"[..])
    );
    let elsewhere = ns.key(Kind::Sessions, b"handle-2");
    assert_eq!(open_value(&sealer, &elsewhere, &stored), None);

    // A sync of the revoked set: everything first, then only what changed since.
    let revoked = ns.kind_prefix(Kind::Revoked);
    let first = ns.key(Kind::Revoked, b"session-a");
    let synced_at = put(ports[0], &first, b"");
    put(ports[0], &ns.key(Kind::Sessions, b"not revoked"), b"x");
    // "/wasm-iap-test/revoked0", where the prefix's range ends: outside it.
    put(
        ports[0],
        &format!("{}0", revoked.trim_end_matches('/')),
        b"x",
    );
    let later: Vec<String> = [b"session-b", b"session-c"]
        .iter()
        .map(|id| ns.key(Kind::Revoked, *id))
        .collect();
    for key in &later {
        put(ports[1], key, b"");
    }
    let sync = |from: i64, limit: u64| {
        let range = Range {
            keys: Keys::Prefix(revoked.as_bytes()),
            min_mod_revision: from,
            limit,
        };
        ask(ports[2], &etcd::range(&store(), &range), read_range).expect("sync")
    };
    let all = sync(0, 0);
    let mut expected = later.clone();
    expected.push(first.clone());
    expected.sort();
    assert_eq!(
        keys_of(&all.kvs),
        expected,
        "the whole prefix, nothing else"
    );
    let newer = sync(synced_at + 1, 0);
    let mut expected_newer = later.clone();
    expected_newer.sort();
    assert_eq!(
        keys_of(&newer.kvs),
        expected_newer,
        "only entries after the last sync"
    );
    assert!(!newer.more);
    let page = sync(synced_at + 1, 1);
    assert_eq!(page.kvs.len(), 1);
    assert!(page.more, "a limit says more are left");
    let nothing_new = sync(newer.revision + 1, 0);
    assert!(nothing_new.kvs.is_empty());
    assert!(nothing_new.revision >= newer.revision);

    let delete = || {
        ask(
            ports[1],
            &etcd::delete(&store(), first.as_bytes()),
            read_delete,
        )
    };
    assert_eq!(delete().map(|d| d.deleted), Ok(1));
    assert_eq!(get(ports[0], &first), Ok(vec![]));
    assert_eq!(delete().map(|d| d.deleted), Ok(0), "already gone");
}

#[test]
fn one_of_two_racing_creators_wins_and_a_lease_takes_its_key_away() {
    let cluster = EtcdCluster::start(3);
    let ports = cluster.client_ports();
    let ns = Namespace::new(&store().prefix);
    let lease = ask(ports[0], &etcd::grant_lease(&store(), 30), read_lease).expect("lease");
    assert!(lease.id.0 > 0 && lease.ttl_secs == 30, "{lease:?}");

    for round in 0..10u8 {
        let key = ns.key(Kind::Refresh, &[round]);
        let start = Barrier::new(2);
        let answers: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = [(ports[0], b"replica-a"), (ports[1], b"replica-b")]
                .into_iter()
                .map(|(port, value)| {
                    let call =
                        etcd::create_if_absent(&store(), key.as_bytes(), value, Some(lease.id));
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        (value, ask(port, &call, read_create).expect("create"))
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winners: Vec<_> = answers.iter().filter(|(_, a)| a.succeeded).collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let (winner_value, _) = winners[0];
        let (_, loser) = answers.iter().find(|(_, a)| !a.succeeded).unwrap();
        let existing = loser
            .existing
            .as_ref()
            .expect("the loser reads the winner's entry");
        assert_eq!(&existing.value[..], &winner_value[..], "round {round}");
        assert_eq!(existing.lease, Some(lease.id));
    }

    let short = ask(ports[2], &etcd::grant_lease(&store(), 2), read_lease).expect("lease");
    let key = ns.key(Kind::Refresh, b"held for 2 s");
    let call = etcd::put(&store(), key.as_bytes(), b"lock", Some(short.id));
    ask(ports[0], &call, read_put).expect("put with lease");
    assert_eq!(get(ports[1], &key).map(|kvs| kvs.len()), Ok(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(ports[1], &key).map(|kvs| kvs.len()) != Ok(0) {
        assert!(Instant::now() < deadline, "the key outlived its 2 s lease");
        std::thread::sleep(Duration::from_millis(200));
    }
    let expired = ask(ports[0], &call, read_put);
    assert!(
        matches!(&expired, Err(EtcdError::Refused { status: 404, message }) if message.contains("lease not found")),
        "a put with an expired lease: {expired:?}"
    );
    let unknown = etcd::create_if_absent(&store(), key.as_bytes(), b"v", Some(LeaseId(12_345)));
    assert!(ask(ports[0], &unknown, read_create).is_err());
}

#[test]
fn a_dead_member_is_an_error_and_the_others_serve() {
    let mut cluster = EtcdCluster::start(3);
    let ports = cluster.client_ports();
    let key = Namespace::new(&store().prefix).key(Kind::Revoked, b"s");
    let value = |port: u16| get(port, &key).map(|kvs| kvs.first().map(|kv| kv.value.clone()));

    // A follower down: the others go on at once.
    let leader = cluster.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.kill(follower);
    assert_eq!(get(ports[follower], &key), Err(EtcdError::NoAnswer));
    let put_on_dead = etcd::put(&store(), key.as_bytes(), b"v", None);
    assert_eq!(
        ask(ports[follower], &put_on_dead, read_put),
        Err(EtcdError::NoAnswer)
    );
    put(ports[other], &key, b"one follower down");
    assert_eq!(
        value(ports[leader]),
        Ok(Some(b"one follower down".to_vec()))
    );
    cluster.restart(follower);
    assert_eq!(
        value(ports[follower]),
        Ok(Some(b"one follower down".to_vec())),
        "the member came back and caught up"
    );

    // The leader down: the others elect a new one (about one election timeout, 1 s), and
    // until then a call may fail; it never hangs past the request timeout.
    let leader = cluster.leader().expect("a leader");
    let survivor = (leader + 1) % 3;
    cluster.kill(leader);
    assert_eq!(value(ports[leader]), Err(EtcdError::NoAnswer));
    let call = etcd::put(&store(), key.as_bytes(), b"leader down", None);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(10);
    let mut failed = Vec::new();
    loop {
        let started = Instant::now();
        let answer = ask(ports[survivor], &call, read_put);
        assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 1_000));
        match answer {
            Ok(_) => break,
            Err(e) => failed.push(e),
        }
        assert!(Instant::now() < deadline, "no new leader: {failed:?}");
    }
    eprintln!(
        "leader down: written after {:?}, failures before: {failed:?}",
        killed.elapsed()
    );
    assert_eq!(
        value(ports[(leader + 2) % 3]),
        Ok(Some(b"leader down".to_vec()))
    );
    cluster.restart(leader);
    assert_eq!(value(ports[leader]), Ok(Some(b"leader down".to_vec())));
}

#[test]
fn a_lost_quorum_gives_errors_in_bounded_time_and_heals() {
    let mut cluster = EtcdCluster::start(3);
    let ports = cluster.client_ports();
    let ns = Namespace::new(&store().prefix);
    let before = ns.key(Kind::Sessions, b"before");
    put(ports[0], &before, b"kept");

    cluster.kill(1);
    cluster.kill(2);
    let during = ns.key(Kind::Sessions, b"during");
    let started = Instant::now();
    let write = ask(
        ports[0],
        &etcd::put(&store(), during.as_bytes(), b"v", None),
        read_put,
    );
    let read = get(ports[0], &before);
    let waited = started.elapsed();
    assert!(write.is_err(), "a write without quorum: {write:?}");
    assert!(
        read.is_err(),
        "a linearizable read without quorum: {read:?}"
    );
    // Two calls, each cut at the request timeout: nothing hangs.
    assert!(
        waited < Duration::from_millis(2 * TIMEOUT_MS + 1_000),
        "{waited:?}"
    );
    eprintln!("without quorum: write {write:?}, read {read:?}, {waited:?}");

    cluster.restart_all();
    let after = ns.key(Kind::Sessions, b"after");
    put(ports[2], &after, b"healed");
    for &port in &ports {
        assert_eq!(
            get(port, &before).map(|kvs| kvs[0].value.clone()),
            Ok(b"kept".to_vec())
        );
        assert_eq!(
            get(port, &after).map(|kvs| kvs[0].value.clone()),
            Ok(b"healed".to_vec())
        );
    }

    cluster.kill_all();
    assert_eq!(get(ports[0], &before), Err(EtcdError::NoAnswer));
    cluster.restart_all();
    assert_eq!(
        get(ports[1], &before).map(|kvs| kvs[0].value.clone()),
        Ok(b"kept".to_vec()),
        "nothing lost when every member restarts"
    );
}
