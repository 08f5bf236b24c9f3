//! Envoy with a login service for 127.0.0.1, the real IdP and an echoing upstream.

use serde_json::{json, Value};

use super::browser::Browser;
use super::envoy::{bootstrap_on, wasm_filter_with_env, Envoy};
use super::http;
use super::idp::Idp;
use super::servers::{free_port, Upstream};

pub const COOKIE: &str = "_wasm_iap";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// Envoy with a login service for 127.0.0.1, the real IdP, and an echoing upstream.
pub struct LoginBed {
    pub envoy: Envoy,
    pub upstream: Upstream,
    pub idp: Idp,
    idp_env: Vec<(String, String)>,
}

impl LoginBed {
    pub fn start(login_overrides: Value, idp_env: &[(&str, &str)]) -> LoginBed {
        LoginBed::start_with_vm_env(login_overrides, idp_env, &[])
    }

    /// As `start`, with environment variables given to the Wasm VM.
    pub fn start_with_vm_env(
        login_overrides: Value,
        idp_env: &[(&str, &str)],
        vm_env: &[(&str, &str)],
    ) -> LoginBed {
        LoginBed::start_full(json!({}), login_overrides, idp_env, vm_env)
    }

    /// As `start_with_vm_env`, with `provider_overrides` merged into the provider.
    pub fn start_full(
        provider_overrides: Value,
        login_overrides: Value,
        idp_env: &[(&str, &str)],
        vm_env: &[(&str, &str)],
    ) -> LoginBed {
        LoginBed::start_plugin(free_port(), idp_env, vm_env, |issuer| {
            login_plugin(issuer, &provider_overrides, &login_overrides)
        })
    }

    /// Envoy listening on `port` (from `free_port`, so that redirect URIs can name it before
    /// anything starts) with the whole plugin configuration `plugin(issuer)`, the real IdP
    /// (its `demo` client redirecting to `http://127.0.0.1:<port>/oauth2/callback`; `idp_env`
    /// adds e.g. `EXTRA_CLIENTS` or `IDP_USERS`), and an echoing upstream. Envoy's `idp`
    /// cluster reaches the IdP.
    pub fn start_plugin(
        port: u16,
        idp_env: &[(&str, &str)],
        vm_env: &[(&str, &str)],
        plugin: impl FnOnce(&str) -> Value,
    ) -> LoginBed {
        let redirects = redirect_env(&[port]);
        let mut env: Vec<(&str, &str)> = redirects.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(idp_env);
        let idp = Idp::start(&env);
        let upstream = Upstream::start();
        let plugin = plugin(&idp.issuer);
        let envoy = Envoy::start(&bootstrap_on(
            port,
            vec![wasm_filter_with_env(&plugin, vm_env)],
            upstream.port(),
            idp.port,
        ));
        let idp_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LoginBed {
            envoy,
            upstream,
            idp,
            idp_env,
        }
    }

    /// Replaces the IdP by a fresh one on the same issuer: new signing keys, and every code,
    /// refresh token and IdP session of the old one forgotten.
    pub fn restart_idp(&mut self) {
        let port = self.idp.port.to_string();
        let mut env: Vec<(&str, &str)> = self
            .idp_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("IDP_PORT", &port));
        self.idp.restart(&env);
    }

    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }

    /// A browser that logged in as `user`, having asked for `path` first.
    pub fn logged_in(&self, user: &str, path: &str) -> (Browser, http::Response) {
        logged_in_at(&self.url(path), &self.idp.issuer, user)
    }
}

/// The plugin configuration of the beds: provider `issuer` (through the `idp` cluster) and
/// one login service for 127.0.0.1 with the `demo` client, each with the given fields
/// overridden.
pub fn login_plugin(issuer: &str, provider_overrides: &Value, login_overrides: &Value) -> Value {
    let mut login = json!({
        "hosts": ["127.0.0.1"],
        "issuer": issuer,
        "client_id": "demo",
        "client_secret": "demo-secret",
        "cookie_secrets": [SECRET],
        "cookie_secure": false,
        "scopes": ["openid", "email", "profile", "groups"],
    });
    for (k, v) in login_overrides.as_object().cloned().unwrap_or_default() {
        login[k] = v;
    }
    let mut provider =
        json!({ "issuer": issuer, "audiences": ["demo-upstream"], "cluster": "idp" });
    for (k, v) in provider_overrides.as_object().cloned().unwrap_or_default() {
        provider[k] = v;
    }
    json!({ "providers": [provider], "login": [login] })
}

/// The IdP settings that let the `demo` client come back to Envoy on each of `ports`: its
/// callback there, and after sign-out its root or `http://127.0.0.1/signed-out`.
pub fn redirect_env(ports: &[u16]) -> Vec<(&'static str, String)> {
    let callbacks: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/oauth2/callback"))
        .collect();
    let mut post_logout = vec!["http://127.0.0.1/signed-out".to_string()];
    post_logout.extend(ports.iter().map(|port| format!("http://127.0.0.1:{port}/")));
    vec![
        ("REDIRECT_URIS", callbacks.join(",")),
        ("POST_LOGOUT_REDIRECT_URIS", post_logout.join(",")),
    ]
}

/// A browser that asked for `url` (behind a login service), was sent to the IdP at
/// `issuer`, logged in there as `user` and landed back on `url`.
pub fn logged_in_at(url: &str, issuer: &str, user: &str) -> (Browser, http::Response) {
    let mut browser = Browser::default();
    let at_idp = browser.get(url);
    assert!(
        at_idp.0.starts_with(issuer),
        "sent to the IdP first: {:#?} {}",
        browser.history,
        at_idp.1.body
    );
    let (landed, page) = browser.log_in_at_idp(at_idp, user);
    assert_eq!(
        landed, url,
        "lands on the deep link: {:#?}",
        browser.history
    );
    (browser, page)
}
