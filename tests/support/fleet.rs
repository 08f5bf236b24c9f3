//! A fleet of gateway replicas: N Envoy processes with the same plugin configuration, one
//! real IdP and one echoing upstream, and a front Envoy without the filter spreading requests
//! round-robin over the replicas (the balancer before an ingress gateway's pods). Everything
//! is stopped on drop.
//!
//! The IdP's `demo` client may come back to the front and to every replica, so browsers
//! sign in through the front and API-style tests may start anywhere. The scripted `Browser`
//! shares cookies across ports (as browsers do: cookies for 127.0.0.1 are host-only and
//! ignore the port), so a session signed in through the front opens on every replica.

use serde_json::{json, Value};

use super::browser::Browser;
use super::envoy::{bootstrap_on, cluster_of, wasm_filter, Envoy, Started};
use super::envoy_idp_bed::{logged_in_at, login_plugin, redirect_env};
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
/// member health-checked every second, so a dead one is left out of the balancing.
pub fn etcd_cluster(ports: &[u16]) -> Value {
    let mut cluster = cluster_of("etcd", ports);
    cluster["health_checks"] = json!([{
        "timeout": "1s",
        "interval": "1s",
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
