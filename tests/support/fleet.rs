//! A fleet of gateway replicas: N Envoy processes with the same plugin configuration, one
//! real IdP and one echoing upstream, and a front Envoy without the filter spreading requests
//! round-robin over the replicas (the balancer before an ingress gateway's pods). Everything
//! is stopped on drop.
//!
//! The IdP's `demo` client may come back to the front and to every replica, so browsers
//! sign in through the front and API-style tests may start anywhere. The scripted `Browser`
//! shares cookies across ports (as browsers do: cookies for 127.0.0.1 are host-only and
//! ignore the port), so a session signed in through the front opens on every replica.

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_iap::core::login::session::is_session_cookie;

use super::browser::Browser;
use super::envoy::{bootstrap_on, cluster_of, wasm_filter, Envoy, Started};
use super::envoy_idp_bed::{logged_in_at, login_plugin, redirect_env, COOKIE};
use super::etcd::EtcdCluster;
use super::http;
use super::idp::Idp;
use super::servers::{free_port, Upstream};

pub struct Fleet {
    /// Plain Envoy, round-robin over the replicas.
    pub front: Envoy,
    /// Envoy with the filter; replica `i` runs as node `replica-<i>`, with its own log.
    pub replicas: Vec<Envoy>,
    pub upstream: Upstream,
    pub idp: Idp,
}

impl Fleet {
    /// `replicas` replicas with the beds' login service for 127.0.0.1 (`login_overrides`
    /// merged in), the IdP started with `idp_env` (e.g. `REFRESH_ROTATION`, `TOKEN_TTL`).
    pub fn start(replicas: usize, login_overrides: &Value, idp_env: &[(&str, &str)]) -> Fleet {
        Fleet::start_plugin(replicas, idp_env, Vec::new(), |issuer| {
            login_plugin(issuer, &json!({}), login_overrides)
        })
    }

    /// `replicas` replicas whose plugin configuration is `plugin(issuer)`, each with the
    /// clusters `upstream`, `idp` and `extra_clusters` (e.g. an `etcd` cluster). The IdP
    /// counts token-endpoint calls (`idp_counts`).
    pub fn start_plugin(
        replicas: usize,
        idp_env: &[(&str, &str)],
        extra_clusters: Vec<Value>,
        plugin: impl FnOnce(&str) -> Value,
    ) -> Fleet {
        let idp_env: Vec<(String, String)> = idp_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fleet::start_plugin_idp_knowing_ports(replicas, |_| idp_env, extra_clusters, plugin)
    }

    /// As `start_plugin`, the IdP's environment made knowing the replicas' ports (e.g. a
    /// `BACKCHANNEL_LOGOUT_URI` on one replica).
    pub fn start_plugin_idp_knowing_ports(
        replicas: usize,
        idp_env: impl FnOnce(&[u16]) -> Vec<(String, String)>,
        extra_clusters: Vec<Value>,
        plugin: impl FnOnce(&str) -> Value,
    ) -> Fleet {
        let front_port = free_port();
        let replica_ports: Vec<u16> = (0..replicas).map(|_| free_port()).collect();
        let mut everywhere = vec![front_port];
        everywhere.extend(&replica_ports);
        let redirects = redirect_env(&everywhere);
        let mut env: Vec<(&str, &str)> = redirects.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("IDP_TEST_COUNTS", "1"));
        // Its port too, so the OS cannot hand it one a replica is about to bind.
        let idp_port = free_port().to_string();
        env.push(("IDP_PORT", &idp_port));
        let idp_env = idp_env(&replica_ports);
        env.extend(idp_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let idp = Idp::start(&env);
        let upstream = Upstream::start();
        let filter = wasm_filter(&plugin(&idp.issuer));
        let replicas = replica_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut config =
                    bootstrap_on(*port, vec![filter.clone()], upstream.port(), idp.port);
                config["node"] = json!({ "id": format!("replica-{i}"), "cluster": "wasm-iap" });
                let clusters = config["static_resources"]["clusters"]
                    .as_array_mut()
                    .expect("clusters");
                clusters.extend(extra_clusters.iter().cloned());
                Envoy::start(&config)
            })
            .collect();
        let mut config = bootstrap_on(front_port, vec![], 0, idp.port);
        for cluster in config["static_resources"]["clusters"]
            .as_array_mut()
            .expect("clusters")
        {
            if cluster["name"] == "upstream" {
                *cluster = cluster_of("upstream", &replica_ports);
            }
        }
        config["node"] = json!({ "id": "front", "cluster": "front" });
        let front = match Envoy::try_start(&config, 1) {
            Started::Running(envoy) => envoy,
            Started::Exited(log) => panic!("front Envoy did not start:\n{log}"),
        };
        Fleet {
            front,
            replicas,
            upstream,
            idp,
        }
    }

    /// `replicas` replicas with the login plugin and `cluster_store` on `etcd` under
    /// `prefix`.
    pub fn start_with_store(
        replicas: usize,
        idp_env: &[(&str, &str)],
        etcd: &EtcdCluster,
        prefix: &str,
    ) -> Fleet {
        Fleet::start_plugin(
            replicas,
            idp_env,
            vec![etcd_cluster(&etcd.client_ports())],
            |issuer| plugin_with_store(issuer, &json!({}), prefix),
        )
    }

    pub fn replica_url(&self, replica: usize, path: &str) -> String {
        self.replicas[replica].url(path)
    }

    pub fn front_url(&self, path: &str) -> String {
        self.front.url(path)
    }

    /// The IdP's token-endpoint calls so far, e.g. `{"refresh_token": {"ok": 3,
    /// "invalid_grant": 1}, "authorization_code": {"ok": 1}}`.
    pub fn idp_counts(&self) -> Value {
        self.idp.counts()
    }

    /// A browser that signed in as `user` through the front, having asked for `path` first.
    pub fn logged_in(&self, user: &str, path: &str) -> (Browser, http::Response) {
        logged_in_at(&self.front_url(path), &self.idp.issuer, user)
    }
}

/// Envoy's cluster `etcd` over the members on `ports`, as docs/replicas.md runs it: each
/// member health-checked every second, so a dead one is left out of the balancing. Also
/// before the cluster carried traffic: Envoy otherwise checks a cluster without traffic
/// once a minute, and a first check that timed out (Envoy busy starting its Wasm VMs)
/// would leave every member unhealthy (all balanced over) for that minute.
pub fn etcd_cluster(ports: &[u16]) -> Value {
    let mut cluster = cluster_of("etcd", ports);
    cluster["health_checks"] = json!([{
        "timeout": "1s",
        "interval": "1s",
        "no_traffic_interval": "1s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "http_health_check": { "path": "/health" },
    }]);
    cluster
}

/// The login plugin every fleet test uses, with `cluster_store` on the `etcd` cluster.
pub fn plugin_with_store(issuer: &str, login_overrides: &Value, prefix: &str) -> Value {
    let mut plugin = login_plugin(issuer, &json!({}), login_overrides);
    plugin["cluster_store"] = json!({
        "etcd": { "cluster": "etcd", "prefix": prefix, "timeout": "1s" },
        "sync_interval": "500ms",
    });
    plugin
}

/// Parallel requests each replica gets at every expiry of a race.
pub const PER_REPLICA: usize = 15;
/// How long the IdP's tokens live in a race (its `TOKEN_TTL`).
pub const TOKEN_TTL_SECS: u64 = 3;

/// Whether a response tells the browser its session is gone: refused, sent to log in, or
/// its session cookie cleared.
fn loses_the_session(response: &http::Response) -> bool {
    let clears = response.headers.iter().any(|(name, value)| {
        let cookie = super::sent_back(value).split_once('=');
        name.eq_ignore_ascii_case("set-cookie")
            && cookie
                .is_some_and(|(name, value)| is_session_cookie(name, COOKIE) && value.is_empty())
    });
    response.status != 200 || clears
}

/// What one burst of requests did.
struct Burst {
    lost: usize,
    slowest: Duration,
}

/// `PER_REPLICA` parallel API requests to each replica, all sent at once with the cookies
/// `browser` has, each response's cookies stored as it arrives (the last one wins, as in a
/// browser): how many lost the session, and the longest answer.
fn burst(fleet: &Fleet, browser: &Mutex<Browser>) -> Burst {
    let replicas = fleet.replicas.len();
    let start = Barrier::new(replicas * PER_REPLICA);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..replicas * PER_REPLICA)
            .map(|n| {
                let url = fleet.replica_url(n % replicas, "/api/v1/query_range");
                let start = &start;
                scope.spawn(move || {
                    let cookie = browser.lock().unwrap().cookie_header(&url);
                    start.wait();
                    let cookie = cookie.unwrap_or_default();
                    let headers = [("cookie", cookie.as_str()), ("accept", "application/json")];
                    let sent = Instant::now();
                    let response = http::get(&url, &headers);
                    let took = sent.elapsed();
                    browser.lock().unwrap().store(&response);
                    (loses_the_session(&response), took)
                })
            })
            .collect();
        let answers: Vec<(bool, Duration)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        Burst {
            lost: answers.iter().filter(|(lost, _)| *lost).count(),
            slowest: answers
                .iter()
                .map(|(_, took)| *took)
                .max()
                .unwrap_or_default(),
        }
    })
}

fn refresh_count(fleet: &Fleet, outcome: &str) -> u64 {
    fleet.idp_counts()["refresh_token"][outcome]
        .as_u64()
        .unwrap_or(0)
}

/// What one expiry did.
pub struct Expiry {
    /// Requests of the burst that lost the session, of `requests`.
    pub lost_requests: usize,
    pub requests: usize,
    /// Whether the browser's cookies still open a session after the burst.
    pub kept: bool,
    /// Refresh calls at the IdP: answered, refused with `invalid_grant`.
    pub refreshes: u64,
    pub refused_refreshes: u64,
    /// The burst's longest answer.
    pub slowest: Duration,
}

impl Expiry {
    pub fn lost(&self) -> bool {
        self.lost_requests > 0 || !self.kept
    }

    /// Exactly one refresh call, answered.
    pub fn refreshed_once(&self) -> bool {
        self.refreshes == 1 && self.refused_refreshes == 0
    }

    fn report(&self) -> String {
        format!(
            "{} of {} requests lost the session; session kept after: {}; refresh calls: {} ok, {} invalid_grant; slowest answer {} ms",
            self.lost_requests,
            self.requests,
            self.kept,
            self.refreshes,
            self.refused_refreshes,
            self.slowest.as_millis()
        )
    }
}

/// At each of `expiries` expiries, a burst from one browser over every replica; what each
/// expiry did. `after(n)` runs once expiry `n` (from 0) is counted, e.g. to cause a fault.
pub fn race(fleet: &Fleet, expiries: usize, mut after: impl FnMut(usize)) -> Vec<Expiry> {
    let browser = Mutex::new(fleet.logged_in("uma@example.com", "/").0);
    let mut done = Vec::new();
    for n in 0..expiries {
        std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS + 1));
        let (ok, refused) = (
            refresh_count(fleet, "ok"),
            refresh_count(fleet, "invalid_grant"),
        );
        let burst = burst(fleet, &browser);
        let cookie = browser.lock().unwrap().cookie_header(&fleet.front_url("/"));
        let after_burst = http::get(
            &fleet.replica_url(0, "/api"),
            &[
                ("cookie", cookie.as_deref().unwrap_or_default()),
                ("accept", "application/json"),
            ],
        );
        browser.lock().unwrap().store(&after_burst);
        let expiry = Expiry {
            lost_requests: burst.lost,
            requests: fleet.replicas.len() * PER_REPLICA,
            kept: after_burst.status == 200,
            refreshes: refresh_count(fleet, "ok") - ok,
            refused_refreshes: refresh_count(fleet, "invalid_grant") - refused,
            slowest: burst.slowest,
        };
        if expiry.lost() {
            // Logged out: the user signs in again, and the next expiry counts afresh.
            *browser.lock().unwrap() = fleet.logged_in("uma@example.com", "/").0;
        }
        done.push(expiry);
        after(n);
    }
    done
}

/// One line per expiry, numbered from 0.
pub fn report(expiries: &[Expiry]) -> String {
    let lines: Vec<String> = expiries
        .iter()
        .enumerate()
        .map(|(n, e)| format!("expiry {n}: {}", e.report()))
        .collect();
    lines.join("\n")
}
