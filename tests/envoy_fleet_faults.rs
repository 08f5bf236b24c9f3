//! A fleet with its cluster store failing: three replicas, a real 3-member etcd, an IdP
//! whose refresh tokens are each usable once, requests spread over the replicas at every
//! expiry (tests/envoy_fleet.rs's race). One member down changes nothing a user sees; the
//! whole store down leaves each Envoy on its own (no session lost, bounded waits, `/ready`
//! and the log say so); the store back heals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::etcd::EtcdCluster;
use support::fleet::{race, report, Expiry, Fleet, TOKEN_TTL_SECS};
use support::http;

const REPLICAS: usize = 3;
const EXPIRIES: usize = 5;
/// No request waits longer than the store's timeout (1 s, tried twice) and a token call.
const SLOWEST_ANSWER: Duration = Duration::from_secs(5);
/// How soon `/ready` tells on every replica that the store left or came back.
const READY_WITHIN: Duration = Duration::from_secs(5);

fn strict_fleet(etcd: &EtcdCluster, prefix: &str) -> Fleet {
    let ttl = TOKEN_TTL_SECS.to_string();
    let idp_env = [("REFRESH_ROTATION", "strict"), ("TOKEN_TTL", ttl.as_str())];
    Fleet::start_with_store(REPLICAS, &idp_env, etcd, prefix)
}

/// Polls every replica's `/ready` until it answers `200` starting with `wanted` several
/// times in a row (each answer may come from another worker); how long that took.
fn ready_says(fleet: &Fleet, wanted: &str) -> Duration {
    let started = Instant::now();
    for replica in 0..fleet.replicas.len() {
        let mut in_a_row = 0;
        let mut last = String::new();
        while in_a_row < 4 {
            assert!(
                started.elapsed() < READY_WITHIN,
                "replica {replica}'s /ready does not say {wanted:?} within {READY_WITHIN:?}: {last:?}"
            );
            let answer = http::get(&fleet.replica_url(replica, "/ready"), &[]);
            last = format!("{} {}", answer.status, answer.body.trim());
            if answer.status == 200 && answer.body.starts_with(wanted) {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    started.elapsed()
}

fn assert_figures(expiries: &[Expiry], once: impl Fn(usize) -> bool, what: &str) {
    let lost: Vec<usize> = (0..expiries.len())
        .filter(|&n| expiries[n].lost())
        .collect();
    let not_once: Vec<usize> = (0..expiries.len())
        .filter(|&n| once(n) && !expiries[n].refreshed_once())
        .collect();
    let slow: Vec<usize> = (0..expiries.len())
        .filter(|&n| expiries[n].slowest >= SLOWEST_ANSWER)
        .collect();
    assert!(
        lost.is_empty() && not_once.is_empty() && slow.is_empty(),
        "{what}: sessions lost at expiries {lost:?}, not refreshed exactly once at {not_once:?}, \
         an answer slower than {SLOWEST_ANSWER:?} at {slow:?}:\n{}",
        report(expiries)
    );
}

/// The leader is killed after the first expiry, then (once it is back) a follower: every
/// expiry is still one refresh for the fleet, none refused, no session lost.
#[test]
fn one_etcd_member_down_changes_nothing_a_user_sees() {
    let mut etcd = EtcdCluster::start(3);
    let fleet = strict_fleet(&etcd, "/faults-member");
    let mut killed = Vec::new();
    let mut old_leader = 0;
    let expiries = race(&fleet, EXPIRIES, |n| match n {
        0 => {
            old_leader = etcd.leader().expect("a leader");
            etcd.kill(old_leader);
            killed.push(format!("leader m{old_leader} after expiry 0"));
        }
        2 => {
            etcd.restart(old_leader);
            let leader = etcd.leader();
            let follower = (0..3)
                .find(|&m| Some(m) != leader && m != old_leader)
                .expect("a follower");
            etcd.kill(follower);
            killed.push(format!("follower m{follower} after expiry 2"));
        }
        _ => {}
    });
    let failures: Vec<u64> = fleet
        .replicas
        .iter()
        .map(|envoy| {
            envoy
                .prometheus_metric("wasm_iap_store_failures")
                .unwrap_or(0)
        })
        .collect();
    eprintln!(
        "killed {killed:?}; store calls failed per replica (after a second try): {failures:?}\n{}",
        report(&expiries)
    );
    assert_figures(&expiries, |_| true, &format!("killed: {killed:?}"));
    ready_says(&fleet, "OK");
}

/// How the whole store goes away.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Every member killed: connections refused at once.
    Killed,
    /// Every member frozen: connections taken, nothing answered (calls time out).
    Frozen,
}

impl Outage {
    fn begin(self, etcd: &mut EtcdCluster) {
        match self {
            Outage::Killed => etcd.kill_all(),
            Outage::Frozen => etcd.freeze_all(),
        }
    }

    /// Every member back and healthy.
    fn end(self, etcd: &mut EtcdCluster) {
        match self {
            Outage::Killed => etcd.restart_all(),
            Outage::Frozen => etcd.thaw_all(),
        }
    }
}

/// The whole store away after the first expiry: each Envoy refreshes on its own (the
/// losers' refused refreshes keep the session by the grace rule), no answer waits long,
/// `/ready` says degraded and the log names the outage; the store back after the third:
/// `/ready` is OK again and the next expiries are one refresh each for the fleet.
fn the_whole_store_away_then_back(outage: Outage) {
    let mut etcd = EtcdCluster::start(3);
    let fleet = strict_fleet(&etcd, &format!("/faults-{outage:?}"));
    let (mut degraded_in, mut healed_in) = (None, None);
    let expiries = race(&fleet, EXPIRIES, |n| match n {
        0 => {
            outage.begin(&mut etcd);
            degraded_in = Some(ready_says(&fleet, "degraded"));
        }
        2 => {
            outage.end(&mut etcd);
            healed_in = Some(ready_says(&fleet, "OK"));
        }
        _ => {}
    });
    eprintln!(
        "{outage:?}: /ready said degraded after {degraded_in:?}, OK again after {healed_in:?}:\n{}",
        report(&expiries)
    );
    let store_up = |n: usize| n == 0 || n >= 3;
    let what = format!("store {outage:?} after expiry 0, back after 2");
    assert_figures(&expiries, store_up, &what);
    for (replica, envoy) in fleet.replicas.iter().enumerate() {
        let log = envoy.log();
        for line in ["cluster store unavailable", "cluster store answers again"] {
            assert!(log.contains(line), "replica {replica} logged no {line:?}");
        }
    }
}

#[test]
fn every_etcd_member_killed_leaves_each_envoy_on_its_own_and_their_return_heals() {
    the_whole_store_away_then_back(Outage::Killed);
}

#[test]
fn every_etcd_member_frozen_leaves_each_envoy_on_its_own_in_bounded_time_and_heals() {
    the_whole_store_away_then_back(Outage::Frozen);
}
