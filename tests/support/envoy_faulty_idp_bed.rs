//! One Envoy (one worker, so every request meets the same Wasm VM) with the filter in front
//! of an echoing upstream, trusting a `FaultIdp`: bearer validation on every host, and a
//! browser-login service on `login.test`. Requests are sent as raw bytes (`raw.rs`).
//! Everything is stopped on drop, also when a test fails.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::envoy::{bootstrap, wasm_filter, Envoy, Started};
use super::fault_idp::FaultIdp;
use super::mint::{claims_with, shared_keys};
use super::raw::{self, RawRequest, RawResponse};
use super::servers::Upstream;

pub const LOGIN_HOST: &str = "login.test";
pub const API_HOST: &str = "api.test";
pub const AUDIENCE: &str = "gateway-api";
pub const CLIENT_ID: &str = "gateway-web";
pub const COOKIE: &str = "_wasm_iap";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-gateway";

/// Merges the fields of `extra` (an object) into `target`.
pub fn merge(target: &mut Value, extra: &Value) {
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        target[k] = v;
    }
}

/// The plugin configuration: one provider at `issuer` (cluster `idp`), one login service
/// for `login.test`, `api.test` for bearer tokens; `provider`, `login` and `top` are merged
/// into their parts.
pub fn plugin_config(issuer: &str, provider: &Value, login: &Value, top: &Value) -> Value {
    let mut p =
        json!({ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp", "timeout": "2s" });
    merge(&mut p, provider);
    let mut l = json!({
        "hosts": [LOGIN_HOST],
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": "gateway-secret",
        "cookie_secrets": [SECRET],
        "cookie_secure": false,
    });
    merge(&mut l, login);
    // The bearer host is a service of its own: a host no service lists is refused.
    let mut config = json!({
        "providers": [p], "login": [l], "keys_wait_timeout": "2s",
        "services": [{ "hosts": [API_HOST] }],
    });
    merge(&mut config, top);
    config
}

pub struct GatewayBed {
    pub envoy: Envoy,
    pub upstream: Upstream,
    pub idp: FaultIdp,
    pub plugin: Value,
    /// Merged into Envoy's HTTP connection manager.
    pub hcm: Value,
    /// Envoy restarts so far (after a probe killed the VM).
    pub restarts: usize,
    /// How long `send` waits for an answer (10 s unless a test sets it).
    pub answer_within: Duration,
}

/// Repeats `attempt` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut attempt: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if attempt() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_envoy(
    plugin: &Value,
    hcm: &Value,
    upstream: &Upstream,
    idp: &FaultIdp,
) -> Result<Envoy, String> {
    let mut config = bootstrap(vec![wasm_filter(plugin)], upstream.port(), idp.port);
    merge(
        &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"],
        hcm,
    );
    match Envoy::try_start(&config, 1) {
        Started::Running(envoy) => Ok(envoy),
        Started::Exited(log) => {
            let ours: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("wasm-iap") || l.contains("[critical]"))
                .collect();
            Err(ours.join("\n"))
        }
    }
}

impl GatewayBed {
    /// Starts the fault IdP, the upstream and Envoy with `plugin_config(.., provider, login, top)`.
    /// `Err` with the filter's log lines when Envoy refuses the configuration.
    pub fn try_start(provider: Value, login: Value, top: Value) -> Result<GatewayBed, String> {
        GatewayBed::try_start_with(FaultIdp::start(CLIENT_ID), provider, login, top)
    }

    /// As `try_start`, with an IdP the test prepared (e.g. failing before Envoy first asks).
    pub fn try_start_with(
        idp: FaultIdp,
        provider: Value,
        login: Value,
        top: Value,
    ) -> Result<GatewayBed, String> {
        GatewayBed::try_start_with_hcm(idp, provider, login, top, json!({}))
    }

    /// As `try_start_with`, with `hcm` merged into Envoy's HTTP connection manager (e.g.
    /// `max_request_headers_kb`, so that large requests reach the filter).
    pub fn try_start_with_hcm(
        idp: FaultIdp,
        provider: Value,
        login: Value,
        top: Value,
        hcm: Value,
    ) -> Result<GatewayBed, String> {
        let upstream = Upstream::start();
        let plugin = plugin_config(&idp.issuer(), &provider, &login, &top);
        let envoy = start_envoy(&plugin, &hcm, &upstream, &idp)?;
        Ok(GatewayBed {
            envoy,
            upstream,
            idp,
            plugin,
            hcm,
            restarts: 0,
            answer_within: Duration::from_secs(10),
        })
    }

    pub fn start(provider: Value, login: Value, top: Value) -> GatewayBed {
        GatewayBed::try_start(provider, login, top)
            .unwrap_or_else(|log| panic!("Envoy refused the configuration:\n{log}"))
    }

    /// A fresh Envoy (same configuration, IdP and upstream); the old one is stopped first.
    pub fn restart_envoy(&mut self) {
        let fresh = start_envoy(&self.plugin, &self.hcm, &self.upstream, &self.idp)
            .unwrap_or_else(|log| panic!("Envoy did not restart:\n{log}"));
        // Dropping the old value stops the old Envoy.
        self.envoy = fresh;
        self.restarts += 1;
    }

    /// Sends a request; `Err` when no answer came within `self.answer_within`.
    pub fn send(&self, request: &RawRequest) -> Result<RawResponse, String> {
        raw::send_bytes(self.envoy.port, &request.bytes(), self.answer_within)
    }

    pub fn issuer(&self) -> String {
        self.idp.issuer()
    }

    /// A valid bearer token for the API audience; `jti` makes it unique (no cache hit).
    pub fn token(&self, jti: &str) -> String {
        shared_keys().signer("ES256").sign(&claims_with(
            &self.issuer(),
            AUDIENCE,
            json!({ "jti": jti }),
        ))
    }

    /// A valid token to the bearer host reaches the upstream with the filter's identity.
    /// `Err` says what came back instead.
    pub fn check_alive(&self, label: &str) -> Result<(), String> {
        let token = self.token(&format!("alive-{label}-{}", super::mint::now_secs()));
        let request = RawRequest::get("/alive").host(API_HOST).bearer(&token);
        let mut last = String::new();
        let ok = eventually(Duration::from_millis(500), || match self.send(&request) {
            Ok(r) if r.status == 200 => {
                let user = &r.json()["headers"]["x-auth-request-user"];
                if *user == json!(["alice-id"]) {
                    true
                } else {
                    last = format!("200 without the identity header: {}", r.summary());
                    false
                }
            }
            Ok(r) => {
                last = r.summary();
                false
            }
            Err(e) => {
                last = e;
                false
            }
        });
        if ok {
            Ok(())
        } else {
            Err(last)
        }
    }

    /// Waits until the issuer's keys are loaded (a valid token passes).
    pub fn wait_for_keys(&self) {
        let alive = eventually(Duration::from_secs(10), || self.check_alive("keys").is_ok());
        assert!(
            alive,
            "keys never loaded: {:?}\n{}",
            self.check_alive("keys"),
            self.filter_log()
        );
    }

    /// The filter's lines in Envoy's log, and Envoy's critical lines.
    pub fn filter_log(&self) -> String {
        self.envoy
            .log()
            .lines()
            .filter(|l| l.contains("wasm-iap") || l.contains("[critical]"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines of Envoy's log that show the Wasm VM crashed: the filter's panic hook, or a trap
    /// reported by the runtime.
    pub fn crash_lines(&self) -> Vec<String> {
        self.envoy
            .log()
            .lines()
            .filter(|l| {
                let wasm = l.contains("][wasm]");
                wasm && (l.contains("panic")
                    || l.contains("RuntimeError")
                    || l.contains("unreachable")
                    || l.contains("Uncaught"))
            })
            .map(str::to_string)
            .collect()
    }

    /// The first half of a browser login: a navigation to `path` on the login host, which
    /// must be sent to the IdP's authorization endpoint.
    pub fn start_login(&self, path: &str) -> Result<StartedLogin, String> {
        let start = self.send(&RawRequest::get(path).host(LOGIN_HOST).navigation())?;
        let location = start.header("location").unwrap_or_default();
        if start.status != 302 || !location.starts_with(&self.issuer()) {
            return Err(format!("not sent to the IdP: {}", start.summary()));
        }
        let url = url::Url::parse(&location).map_err(|e| format!("{location}: {e}"))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let cookies: Vec<String> = start
            .all("set-cookie")
            .iter()
            .map(|c| super::sent_back(c).to_string())
            .filter(|c| c.contains("_login_") && !c.ends_with('='))
            .collect();
        Ok(StartedLogin {
            state: param("state"),
            nonce: param("nonce"),
            cookie_header: cookies.join("; "),
        })
    }

    /// The second half: the IdP sends the browser back with a code (the fault IdP's token
    /// endpoint takes the code to be the nonce) and the login's state.
    pub fn finish_login(&self, login: &StartedLogin) -> Result<RawResponse, String> {
        let encode =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let callback = format!(
            "/oauth2/callback?code={}&state={}",
            encode(&login.nonce),
            encode(&login.state)
        );
        self.send(
            &RawRequest::get(callback)
                .host(LOGIN_HOST)
                .navigation()
                .header("Cookie", &login.cookie_header),
        )
    }

    /// Count of log lines of the filter that contain every one of `words`.
    pub fn log_count(&self, words: &[&str]) -> usize {
        self.envoy
            .log()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    }

    /// A whole browser login through Envoy and the fault IdP, starting at `path` on the login
    /// host: returns the `Cookie` header value that carries the session, and the response of
    /// the callback (a redirect back to `path`).
    pub fn login(&self, path: &str) -> Result<(String, RawResponse), String> {
        let started = self.start_login(path)?;
        let back = self.finish_login(&started)?;
        let session = session_cookies(&back);
        if back.status != 302 || session.is_empty() {
            return Err(format!("no session after the callback: {}", back.summary()));
        }
        Ok((session.join("; "), back))
    }
}

/// A login sent to the IdP: what the callback needs.
pub struct StartedLogin {
    pub state: String,
    pub nonce: String,
    /// The login cookie(s), as a `Cookie` header value.
    pub cookie_header: String,
}

/// The session cookies (ours, not a login in flight, not a deletion) a response sets, as
/// `name=value`.
pub fn session_cookies(response: &RawResponse) -> Vec<String> {
    response
        .all("set-cookie")
        .iter()
        .filter(|c| {
            let lower = c.to_ascii_lowercase();
            !lower.contains("max-age=0") && !lower.contains("1970")
        })
        .map(|c| super::sent_back(c).to_string())
        .filter(|c| c.starts_with(COOKIE) && !c.contains("_login_") && !c.ends_with('='))
        .collect()
}
