//! A Kubernetes API bed: a kube-apiserver stand-in (tests/support/kube_standin.mjs) behind
//! TLS that requires the proxy's client certificate, Envoy routing to it over mutual TLS with
//! upgrades (exec, port-forward) allowed, and `kubectl` run with throwaway kubeconfigs.
//! Every process is stopped on drop, also when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::envoy::{cluster, repo_root, TempDir};

/// The name of the proxy's own identity towards the apiserver (its client certificate's CN).
pub const PROXY_CN: &str = "wasm-iap-proxy";
/// The organisation (Kubernetes group) of the proxy's client certificate.
pub const PROXY_O: &str = "system:masters";
/// The Envoy cluster `kube_bootstrap` routes to.
pub const KUBE_CLUSTER: &str = "kube-apiserver";

/// A CA, a server certificate for `localhost` and `127.0.0.1`, and the proxy's client
/// certificate (CN `wasm-iap-proxy`, O `system:masters`), all signed by the CA: PEM files in a
/// directory removed on drop.
pub struct KubeCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub dir: TempDir,
}

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("req.cnf"))
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Our own `openssl req` configuration (`openssl` points `OPENSSL_CONF` at it), so no system
/// openssl.cnf decides what the certificates hold.
fn write_req_config(dir: &Path) {
    std::fs::write(
        dir.join("req.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .expect("write req.cnf");
}

/// A self-signed P-256 certificate `<label>.crt` with its key `<label>.key` in `dir`.
fn self_signed(dir: &Path, label: &str, days: &str, subject: &str, extra: &[&str]) {
    write_req_config(dir);
    let (key, crt) = (format!("{label}.key"), format!("{label}.crt"));
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &crt,
        "-days",
        days,
        "-subj",
        subject,
    ];
    args.extend_from_slice(extra);
    openssl(&args, dir);
}

fn serial() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("0x{:x}{:08x}{:04x}", nanos, std::process::id(), n)
}

impl KubeCerts {
    /// Generates the CA and both certificates with the `openssl` CLI (P-256 keys, 2 days).
    pub fn generate() -> KubeCerts {
        let dir = TempDir::new("kube-certs");
        let d = dir.0.clone();
        self_signed(
            &d,
            "ca",
            "2",
            "/CN=wasm-iap test kube CA",
            &["-extensions", "v3_ca"],
        );
        let certs = KubeCerts {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            dir,
        };
        certs.issue(
            "server",
            "/CN=localhost",
            "subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n",
        );
        certs.issue_client("client", &format!("/O={PROXY_O}/CN={PROXY_CN}"));
        certs
    }

    /// Another client certificate signed by this CA, with `subject` (e.g.
    /// `/O=system:masters/CN=someone`): `(<label>.crt, <label>.key)`.
    pub fn issue_client(&self, label: &str, subject: &str) -> (PathBuf, PathBuf) {
        self.issue(label, subject, "extendedKeyUsage = clientAuth\n")
    }

    fn issue(&self, label: &str, subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let d = &self.dir.0;
        let (key, csr, crt, ext) = (
            format!("{label}.key"),
            format!("{label}.csr"),
            format!("{label}.crt"),
            format!("{label}.ext"),
        );
        std::fs::write(
            d.join(&ext),
            format!(
                "basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 authorityKeyIdentifier = keyid\n{extensions}"
            ),
        )
        .expect("write extensions");
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
            d,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial(),
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
            d,
        );
        (d.join(crt), d.join(key))
    }
}

/// The kube-apiserver stand-in as a child process (node), stopped on drop.
pub struct KubeStandin {
    child: Child,
    pub port: u16,
    record_file: PathBuf,
    log_file: PathBuf,
    _dir: TempDir,
}

impl KubeStandin {
    /// Starts the stand-in with `certs`' server certificate, requiring client certificates
    /// signed by `certs`' CA.
    pub fn start(certs: &KubeCerts) -> KubeStandin {
        let dir = TempDir::new("kube-standin");
        let record_file = dir.0.join("recorded.jsonl");
        let log_file = dir.0.join("standin.log");
        std::fs::write(&record_file, "").expect("record file");
        let stderr = std::fs::File::create(&log_file).expect("stand-in log");
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/support/kube_standin.mjs"))
            .env("KUBE_CERT", &certs.server_cert)
            .env("KUBE_KEY", &certs.server_key)
            .env("KUBE_CA", &certs.ca_cert)
            .env("KUBE_PORT", "0")
            .env("RECORD_FILE", &record_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start node");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|ready| ready["port"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            panic!("kube stand-in did not start: {line:?}\n{log}");
        };
        KubeStandin {
            child,
            port: port as u16,
            record_file,
            log_file,
            _dir: dir,
        }
    }

    /// Its address over TLS (`https://localhost:<port>`; the certificate also names 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Every request it received so far, in arrival order: `{"method", "path", "headers":
    /// [[name, value], ...] (as sent, repeats kept), "client_cn", "client_o", "upgrade",
    /// "body"}`. A request is recorded before it is answered.
    pub fn recorded(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a recorded request is JSON"))
            .collect()
    }

    /// The recorded requests whose path (without the query) is `path`.
    pub fn recorded_at(&self, path: &str) -> Vec<Value> {
        self.recorded()
            .into_iter()
            .filter(|r| r["path"].as_str().unwrap_or_default().split('?').next() == Some(path))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

impl Drop for KubeStandin {
    /// Stops the stand-in; a failing test prints what it received and logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let recorded = std::fs::read_to_string(&self.record_file).unwrap_or_default();
            eprintln!(
                "--- kube stand-in received ---\n{recorded}--- kube stand-in log ---\n{}",
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of header `name` (any case) in a recorded request, in order, repeats kept.
pub fn header_values(record: &Value, name: &str) -> Vec<String> {
    record["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter(|pair| {
                    pair[0]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .filter_map(|pair| pair[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The names (lower case) of the headers of a recorded request that start with `prefix` (any
/// case), e.g. `impersonate-`.
pub fn header_names_with_prefix(record: &Value, prefix: &str) -> Vec<String> {
    let prefix = prefix.to_ascii_lowercase();
    record["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|pair| pair[0].as_str().map(str::to_ascii_lowercase))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// An Envoy v3 cluster to `127.0.0.1:<port>` over TLS: presents `certs`' client certificate,
/// trusts only `certs`' CA, sends SNI `localhost` and checks that the server certificate names
/// `localhost`. HTTP/1.1, as upgrades (SPDY, WebSocket) need.
pub fn envoy_cluster_with_client_cert(name: &str, port: u16, certs: &KubeCerts) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}}]}]
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "localhost",
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": { "filename": certs.client_cert },
                        "private_key": { "filename": certs.client_key }
                    }],
                    "validation_context": {
                        "trusted_ca": { "filename": certs.ca_cert },
                        "match_typed_subject_alt_names": [{
                            "san_type": "DNS",
                            "matcher": { "exact": "localhost" }
                        }]
                    }
                }
            }
        }
    })
}

/// A bootstrap like `envoy::bootstrap`: one listener on 127.0.0.1 (any port: `Envoy::port`)
/// speaking both plain HTTP (`Envoy::url`, raw clients) and HTTPS (`kube_url`, kubectl: it
/// sends credentials only over TLS) with `certs`' server certificate, HTTP/1.1 only (no ALPN),
/// with `filters` before the router; every route goes to the stand-in over mutual TLS (cluster
/// `kube-apiserver`) with no route timeout and WebSocket and SPDY/3.1 upgrades allowed; and an
/// `idp` cluster (plain HTTP) for key fetches.
pub fn kube_bootstrap(
    filters: Vec<Value>,
    standin_port: u16,
    idp_port: u16,
    certs: &KubeCerts,
) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    let connection_manager = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "use_remote_address": true,
            "upgrade_configs": [
                { "upgrade_type": "websocket" },
                { "upgrade_type": "spdy/3.1" }
            ],
            "route_config": { "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{
                    "match": { "prefix": "/" },
                    // No timeout: exec, attach, port-forward and watches stay open.
                    "route": { "cluster": KUBE_CLUSTER, "timeout": "0s" }
                }]
            }]},
            "http_filters": http_filters
        }
    });
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
                }],
                "filter_chains": [
                    {
                        "filter_chain_match": { "transport_protocol": "tls" },
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "common_tls_context": {
                                    "tls_certificates": [{
                                        "certificate_chain": { "filename": certs.server_cert },
                                        "private_key": { "filename": certs.server_key }
                                    }]
                                }
                            }
                        },
                        "filters": [connection_manager.clone()]
                    },
                    { "filters": [connection_manager] }
                ]
            }],
            "clusters": [
                envoy_cluster_with_client_cert(KUBE_CLUSTER, standin_port, certs),
                cluster("idp", idp_port)
            ]
        }
    })
}

/// The HTTPS address of a `kube_bootstrap` Envoy, for kubectl: `https://127.0.0.1:<port>`.
pub fn kube_url(envoy: &super::envoy::Envoy) -> String {
    format!("https://127.0.0.1:{}", envoy.port)
}

/// What a `kubectl` run gave: its exit code (-1: killed by a signal or the deadline), stdout
/// and stderr.
pub type KubectlOutput = (i32, String, String);

/// A kubeconfig (JSON, which kubectl reads as YAML) for cluster `server_url` with `user`.
fn kubeconfig(server_url: &str, user: Value) -> Value {
    let mut cluster = json!({ "server": server_url });
    if server_url.starts_with("https:") {
        // The bed's CA is not passed here; what is tested is the proxy, not kubectl's TLS.
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "envoy", "cluster": cluster }],
        "users": [{ "name": "user", "user": user }],
        "contexts": [{
            "name": "envoy",
            "context": { "cluster": "envoy", "user": "user", "namespace": "default" }
        }],
        "current-context": "envoy"
    })
}

/// The kubectl binary: `WASM_IAP_KUBECTL`, else `/usr/bin/kubectl`, or rather, when that is
/// the Google Cloud SDK's version dispatcher (which first asks the server's `/version` on its
/// own, without credentials), the newest `kubectl.1.<minor>` beside it.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WASM_IAP_KUBECTL") {
        return PathBuf::from(path);
    }
    let default = PathBuf::from("/usr/bin/kubectl");
    let Ok(real) = std::fs::canonicalize(&default) else {
        return default;
    };
    let versioned = real.parent().and_then(|dir| {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let minor: u32 = name.strip_prefix("kubectl.1.")?.parse().ok()?;
                Some((minor, entry.path()))
            })
            .max_by_key(|(minor, _)| *minor)
            .map(|(_, path)| path)
    });
    versioned.unwrap_or(default)
}

fn run_kubectl(dir: &TempDir, config: &Value, args: &[&str], extra: &[String]) -> KubectlOutput {
    let config_path = dir.0.join("kubeconfig");
    std::fs::write(&config_path, config.to_string()).expect("write kubeconfig");
    let stdout_path = dir.0.join("stdout");
    let stderr_path = dir.0.join("stderr");
    let mut child = Command::new(kubectl_binary())
        // Nothing from the environment (proxies, other kubeconfigs, caches) leaks in.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &dir.0)
        .env("KUBECONFIG", &config_path)
        .arg("--kubeconfig")
        .arg(&config_path)
        .arg("--request-timeout=10s")
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(&stdout_path).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("stderr file"),
        ))
        .spawn()
        .expect("start kubectl");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().unwrap_or(-1),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
        }
    };
    (
        code,
        std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

/// Runs `kubectl <args>` against `server_url` (`kube_url(&envoy)`: kubectl sends no
/// credentials over plain HTTP; an `https:` server's certificate is not verified) with a
/// throwaway kubeconfig and `HOME` (so no discovery cache is shared between runs), with
/// `--token <token>` when given, and `--request-timeout=10s`.
pub fn kubectl(server_url: &str, args: &[&str], token: Option<&str>) -> KubectlOutput {
    let dir = TempDir::new("kubectl");
    let user = if token.is_some() || !server_url.starts_with("https:") {
        json!({})
    } else {
        // With no credentials at all kubectl asks for a user name and password over HTTPS;
        // a client certificate stops that, and is never sent: Envoy does not ask for one.
        self_signed(&dir.0, "user", "1", "/CN=kubectl-user-never-sent", &[]);
        json!({
            "client-certificate": dir.0.join("user.crt"),
            "client-key": dir.0.join("user.key")
        })
    };
    let config = kubeconfig(server_url, user);
    let extra: Vec<String> = token
        .map(|t| vec!["--token".to_string(), t.to_string()])
        .unwrap_or_default();
    run_kubectl(&dir, &config, args, &extra)
}

/// As `kubectl`, with the token handed over as kubelogin (oidc-login) does: the kubeconfig's
/// user runs an exec credential plugin, a shell script printing an `ExecCredential`
/// (`client.authentication.k8s.io/v1beta1`, which kubectl 1.20 of Debian 12 and today's
/// both read) with `status.token`.
pub fn kubectl_with_exec_plugin(server_url: &str, args: &[&str], token: &str) -> KubectlOutput {
    let dir = TempDir::new("kubectl-exec");
    let credential = json!({
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": { "token": token }
    });
    let credential_path = dir.0.join("credential.json");
    std::fs::write(&credential_path, credential.to_string()).expect("write credential");
    let plugin = dir.0.join("oidc-login.sh");
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\nexec cat '{}'\n", credential_path.display()),
    )
    .expect("write plugin");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))
            .expect("chmod plugin");
    }
    let user = json!({ "exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": plugin,
        "args": []
    }});
    run_kubectl(&dir, &kubeconfig(server_url, user), args, &[])
}

/// The answer to an upgrade request sent over a raw connection.
pub struct Upgraded {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// For a status other than 101: the body (read to its `content-length`, or to the close).
    pub body: String,
    /// After a 101: the connection, now carrying the upgraded stream.
    pub stream: TcpStream,
}

impl Upgraded {
    /// The value of the answer's header `name` (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Writes `data` on the upgraded stream and reads the same number of bytes back (the
    /// stand-in echoes): what came back.
    pub fn echo(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(data)?;
        self.stream.flush()?;
        let mut back = vec![0; data.len()];
        self.stream.read_exact(&mut back)?;
        Ok(back)
    }
}

/// Sends `GET <path>` with `Connection: Upgrade`, `Upgrade: <upgrade>` (e.g. `SPDY/3.1`,
/// `websocket`) and `headers` to `127.0.0.1:<port>` (Host `127.0.0.1:<port>` unless given),
/// and reads the answer's head (and, unless 101, its body). Reads time out after 10 s.
pub fn send_upgrade(
    port: u16,
    path: &str,
    upgrade: &str,
    headers: &[(&str, &str)],
) -> Result<Upgraded, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    request.push_str(&format!("Connection: Upgrade\r\nUpgrade: {upgrade}\r\n"));
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // Byte by byte up to the blank line, so nothing of the upgraded stream is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&head))),
            Err(e) => {
                return Err(format!(
                    "read: {e} after {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
        }
        if head.len() > 64 * 1024 {
            return Err("answer head over 64 KiB".into());
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut upgraded = Upgraded {
        status,
        head,
        body: String::new(),
        stream,
    };
    if status != 101 {
        let length = upgraded
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                upgraded
                    .stream
                    .read_exact(&mut body)
                    .map_err(|e| format!("body: {e}"))?;
            }
            None => {
                let _ = upgraded.stream.read_to_end(&mut body);
            }
        }
        upgraded.body = String::from_utf8_lossy(&body).into_owned();
    }
    Ok(upgraded)
}
