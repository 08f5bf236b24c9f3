//! Revocation propagation: three gateway replicas (two workers each) with a real 3-member
//! etcd as `cluster_store` and the real IdP. A session signed in through the front is signed
//! out on one replica (each in turn); the time from the sign-out's answer until the other
//! two replicas refuse its copied cookie on every worker (`401`) is one sample.

use std::time::Duration;

use serde_json::{json, Value};

use crate::report::Spread;
use crate::support::etcd::EtcdCluster;
use crate::support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use crate::support::fleet_refusals::{admits, ms, refused_after};

const REPLICAS: usize = 3;
/// The default `sync_interval`, given: what a deployment that leaves it out gets.
const SYNC_INTERVAL: &str = "1s";
/// A sample that takes longer than this fails the bench: the bound is 2 s.
const GIVE_UP: Duration = Duration::from_secs(10);

pub struct Propagation {
    pub sign_outs: usize,
    /// The store's `sync_interval`, as configured.
    pub sync_interval: String,
    /// Milliseconds until the last of the other replicas refused.
    pub spread: Spread,
    pub samples_ms: Vec<f64>,
}

/// `sign_outs` sign-outs, one after the other, each on the next replica.
pub fn measure(sign_outs: u64) -> Propagation {
    let etcd = EtcdCluster::start(3);
    let fleet = Fleet::start_plugin(
        REPLICAS,
        &[],
        vec![etcd_cluster(&etcd.client_ports())],
        |issuer| {
            let mut plugin = plugin_with_store(issuer, &json!({}), "/bench-propagation");
            plugin["cluster_store"]["sync_interval"] = json!(SYNC_INTERVAL);
            plugin
        },
    );
    let mut samples_ms = Vec::new();
    for n in 0..sign_outs as usize {
        let (mut browser, _) = fleet.logged_in(&format!("bench-{n}@example.com"), "/");
        let copied = browser.cookie_header(&fleet.replica_url(0, "/")).unwrap();
        let at = n % REPLICAS;
        let others: Vec<usize> = (0..REPLICAS).filter(|r| *r != at).collect();
        assert!(
            others.iter().all(|r| admits(&fleet, *r, &copied)),
            "the session opens everywhere before its sign-out"
        );
        let out = browser.request("GET", &fleet.replica_url(at, "/oauth2/sign_out"), None, &[]);
        let signed_out = std::time::Instant::now();
        assert_eq!(out.status, 302, "sign-out: {out:?}");
        let took = refused_after(&fleet, &others, &copied, signed_out, GIVE_UP);
        let every: Option<Vec<Duration>> = took.iter().copied().collect();
        let last = every.and_then(|t| t.into_iter().max()).unwrap_or_else(|| {
            let each: Vec<String> = took.iter().map(|t| ms(*t)).collect();
            panic!("sign-out {n} on replica {at}: {each:?} after {GIVE_UP:?}")
        });
        let sample = last.as_secs_f64() * 1000.0;
        eprintln!(
            "revocation propagation {}: sign-out on replica {at}, refused on the others after {sample:.0} ms",
            n + 1
        );
        samples_ms.push(sample);
    }
    Propagation {
        sign_outs: samples_ms.len(),
        sync_interval: SYNC_INTERVAL.into(),
        spread: Spread::of(&samples_ms),
        samples_ms,
    }
}

fn one_decimal(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

pub fn json(p: &Propagation) -> Value {
    json!({
        "what": "sign-out on one of 3 replicas (3-member etcd as cluster_store) until the other two refuse the copied cookie (401 on every worker)",
        "sign_outs": p.sign_outs,
        "sync_interval": p.sync_interval,
        "median_ms": one_decimal(p.spread.median),
        "max_ms": one_decimal(p.spread.max),
        "samples_ms": p.samples_ms.iter().map(|s| one_decimal(*s)).collect::<Vec<_>>(),
    })
}

pub fn markdown(p: &Propagation) -> String {
    format!(
        "\nRevocation propagation (3 replicas, two workers each, a 3-member etcd as \
         `cluster_store` with `sync_interval` {} (the default); a session signed out on one replica, each in \
         turn; {} sign-outs): the other two replicas refused its copied cookie on every worker \
         after a median {:.0} ms (max {:.0}) from the sign-out's answer (the bound is 2 s).\n",
        p.sync_interval, p.sign_outs, p.spread.median, p.spread.max
    )
}
