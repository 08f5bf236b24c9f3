//! Signed identity assertions through real Envoy: the upstream verifies the header with
//! Node `jose` (not our code) against the JWKS it fetches from the gateway, for a session
//! signed in at the real IdP and for the IdP's bearer token; rotation; spoofed headers;
//! the JWKS on a login host and an API host without credentials. Keys are made by openssl
//! when the test runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use support::envoy::{
    bootstrap, bootstrap_on, cluster, ext_authz_filter, repo_root, wasm_filter_with_env, Envoy,
    Started, TempDir,
};
use support::envoy_idp_bed::{logged_in_at, login_plugin, redirect_env};
use support::http;
use support::idp::Idp;
use support::servers::free_port;

const API: &str = "api.localhost";
const JWKS_PATH: &str = "/.well-known/wasm-iap/jwks.json";
const HEADER: &str = "x-wasm-iap-jwt-assertion";

/// Private keys made by openssl for this run: an ES256 (P-256) and an Ed25519 key.
struct Keys {
    es256: String,
    eddsa: String,
    _dir: TempDir,
}

fn openssl_keys() -> Keys {
    let dir = TempDir::new("assertion-keys");
    let generate = |name: &str, args: &[&str]| {
        let path = dir.0.join(name);
        let status = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl genpkey {args:?}");
        std::fs::read_to_string(path).unwrap()
    };
    Keys {
        es256: generate(
            "es256.pem",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        eddsa: generate("ed25519.pem", &["-algorithm", "ed25519"]),
        _dir: dir,
    }
}

/// The upstream: tests/support/assertion_verifier.mjs, verifying with `jose` against
/// the gateway's JWKS at `jwks_url`. Stopped on drop.
struct Verifier {
    child: Child,
    port: u16,
    _log: TempDir,
}

impl Verifier {
    fn start(jwks_url: &str) -> Verifier {
        let log = TempDir::new("assertion-verifier");
        let stderr = std::fs::File::create(log.0.join("verifier.log")).unwrap();
        let jose = repo_root().join("envoy-local/idp/node_modules/jose/dist/webapi/index.js");
        assert!(jose.exists(), "npm packages missing: run ./build.sh test");
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/support/assertion_verifier.mjs"))
            .env("JOSE", jose)
            .env("JWKS_URL", jwks_url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start node");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|ready| ready["port"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log.0.join("verifier.log")).unwrap_or_default();
            panic!("verifier did not start: {line:?}\n{log}");
        };
        Verifier {
            child,
            port: port as u16,
            _log: log,
        }
    }

    /// Asks the verifier directly (not through the gateway) about `token`, as sent to `host`.
    fn check(&self, host: &str, token: &str) -> Value {
        let url = format!("http://127.0.0.1:{}/direct", self.port);
        let response = http::get(&url, &[("host", host), (HEADER, token)]);
        assert_eq!(response.status, 200, "{response:?}");
        response.json()["assertion"].clone()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Envoy with a login service on 127.0.0.1 (the real IdP) and an API service on
/// `api.localhost`, both asking for assertions, signed with `keys` (kid, algorithm, PEM)
/// given in the VM's environment; the verifier behind it.
struct Bed {
    envoy: Envoy,
    verifier: Verifier,
    idp: Idp,
}

impl Bed {
    fn start(keys: &[(&str, &str, &str)]) -> Bed {
        let port = free_port();
        let verifier = Verifier::start(&format!("http://127.0.0.1:{port}{JWKS_PATH}"));
        let redirects = redirect_env(&[port]);
        let env: Vec<(&str, &str)> = redirects.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let idp = Idp::start(&env);
        let mut plugin = login_plugin(
            &idp.issuer,
            &json!({}),
            &json!({ "identity_assertion": true }),
        );
        let vars: Vec<String> = (0..keys.len())
            .map(|i| format!("ASSERTION_KEY_{i}"))
            .collect();
        let entries: Vec<Value> = keys
            .iter()
            .zip(&vars)
            .map(|((kid, alg, _), var)| json!({"kid": kid, "algorithm": alg, "private_key": {"env": var}}))
            .collect();
        plugin["identity_assertion"] = json!({ "keys": entries });
        plugin["services"] = json!([{ "hosts": [API], "identity_assertion": true }]);
        let vm_env: Vec<(&str, &str)> = vars
            .iter()
            .zip(keys)
            .map(|(var, (_, _, pem))| (var.as_str(), *pem))
            .collect();
        // One worker: one VM, so one cache of assertions to see reused.
        let config = bootstrap_on(
            port,
            vec![wasm_filter_with_env(&plugin, &vm_env)],
            verifier.port,
            idp.port,
        );
        let envoy = match Envoy::try_start(&config, 1) {
            Started::Running(envoy) => envoy,
            Started::Exited(log) => panic!("Envoy did not start:\n{log}"),
        };
        Bed {
            envoy,
            verifier,
            idp,
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("http://{API}:{}{path}", self.envoy.port)
    }

    /// A request with the IdP's client-credentials token to the API host.
    fn bearer(&self, extra: &[(&str, &str)]) -> http::Response {
        let token = self.idp.client_credentials_token();
        let authorization = format!("Bearer {token}");
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend_from_slice(extra);
        let response = http::get(&self.api_url("/v1/things"), &headers);
        assert_eq!(response.status, 200, "{response:?}");
        response
    }
}

fn verified(response: &http::Response) -> Value {
    let assertion = response.json()["assertion"].clone();
    assert_eq!(assertion["verified"], true, "jose refused it: {assertion}");
    assertion
}

#[test]
fn a_sessions_upstream_verifies_the_assertion_with_jose_against_the_gateways_jwks() {
    let keys = openssl_keys();
    let bed = Bed::start(&[("2026-12", "ES256", &keys.es256)]);
    let (_, page) = logged_in_at(
        &bed.envoy.url("/dashboard"),
        &bed.idp.issuer,
        "alice@example.com",
    );
    assert_eq!(page.status, 200);
    let assertion = verified(&page);
    let (header, payload) = (&assertion["header"], &assertion["payload"]);
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("ES256"), Some("2026-12"))
    );
    assert_eq!(payload["iss"], "wasm-iap");
    assert_eq!(payload["aud"], "127.0.0.1");
    let user = &page.json()["headers"]["x-auth-request-user"];
    assert_eq!(
        &payload["sub"], user,
        "the same caller as the identity headers"
    );
    assert_eq!(payload["email"], "alice@example.com");
    assert!(payload["groups"].is_array());
    let sid = payload["sid"].as_str().expect("a session has a sid");
    assert_eq!(sid.len(), 22);
    let lifetime = payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300);
}

#[test]
fn a_bearer_callers_upstream_verifies_it_and_a_spoofed_header_never_arrives() {
    let keys = openssl_keys();
    let bed = Bed::start(&[("ed", "EdDSA", &keys.eddsa)]);
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsImF1ZCI6ImFwaS5sb2NhbGhvc3QifQ.";
    let response = bed.bearer(&[(HEADER, forged), ("X_Wasm_Iap_Jwt_Assertion", forged)]);
    let assertion = verified(&response);
    assert_eq!(assertion["header"]["alg"], "EdDSA");
    assert_eq!(assertion["payload"]["aud"], API);
    assert_eq!(assertion["payload"]["sub"], "demo-cli");
    assert!(
        assertion["payload"].get("sid").is_none(),
        "a token has no session"
    );
    let seen = response.json()["headers"].clone();
    let value = seen[HEADER].as_str().unwrap();
    assert!(!value.contains(forged) && !value.contains(','), "{seen}");
    assert!(seen.get("x_wasm_iap_jwt_assertion").is_none(), "{seen}");
    // Signed once and reused: the next requests carry the very same assertion.
    for _ in 0..5 {
        assert_eq!(
            bed.bearer(&[]).json()["headers"][HEADER].as_str(),
            Some(value)
        );
    }
    // The forged one, sent straight to the app, is what the verifier refuses.
    assert_eq!(bed.verifier.check(API, forged)["verified"], false);
}

#[test]
fn the_jwks_is_served_without_credentials_on_the_login_host_and_the_api_host() {
    let keys = openssl_keys();
    let bed = Bed::start(&[("a", "ES256", &keys.es256), ("b", "EdDSA", &keys.eddsa)]);
    for url in [bed.envoy.url(JWKS_PATH), bed.api_url(JWKS_PATH)] {
        let response = http::get(&url, &[("accept", "text/html")]);
        assert_eq!(response.status, 200, "{url}: {response:?}");
        assert_eq!(
            response.header("cache-control"),
            Some("public, max-age=300")
        );
        let jwks = response.json();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["a", "b"], "{url}");
        assert!(!response.body.contains("\"d\""), "never a private part");
    }
}

#[test]
fn rotation_an_old_keys_assertion_verifies_while_both_are_published_and_then_the_new_key_signs() {
    let keys = openssl_keys();
    let old = ("2026-12", "ES256", keys.es256.as_str());
    let new = ("2027-01", "EdDSA", keys.eddsa.as_str());
    // Step 1: the new key published second; the old one signs.
    let before = Bed::start(&[old, new]);
    let signed_old = verified(&before.bearer(&[]));
    assert_eq!(signed_old["header"]["kid"], "2026-12");
    let old_token = before.bearer(&[]).json()["headers"][HEADER]
        .as_str()
        .unwrap()
        .to_string();
    drop(before);
    // Step 2: swapped: the new key signs; the old key's assertion still verifies.
    let after = Bed::start(&[new, old]);
    assert_eq!(verified(&after.bearer(&[]))["header"]["kid"], "2027-01");
    assert_eq!(after.verifier.check(API, &old_token)["verified"], true);
    drop(after);
    // Step 3: the old key dropped: its assertions no longer verify.
    let done = Bed::start(&[new]);
    assert_eq!(verified(&done.bearer(&[]))["header"]["kid"], "2027-01");
    let refused = done.verifier.check(API, &old_token);
    assert_eq!(refused["verified"], false, "{refused}");
}

/// Envoy's own `ext_authz` asking the gateway (as docs/forward-auth.md sets it up), with the
/// assertion among the headers the check's answer may set upstream.
fn ext_authz(central_port: u16) -> Value {
    let to_check = json!([
        { "exact": "authorization", "ignore_case": true },
        { "safe_regex": { "regex": "x[-_]wasm[-_]iap[-_]jwt[-_]assertion" } }
    ]);
    let to_upstream = json!([
        { "prefix": "x-auth-request-", "ignore_case": true },
        { "exact": HEADER, "ignore_case": true }
    ]);
    ext_authz_filter(central_port, to_check, to_upstream, Value::Null)
}

#[test]
fn through_envoys_ext_authz_the_app_gets_the_checks_assertion_and_never_the_clients() {
    let keys = openssl_keys();
    let central = Bed::start(&[("k1", "ES256", &keys.es256)]);
    let jwks_url = format!("http://127.0.0.1:{}{JWKS_PATH}", central.envoy.port);
    let app = Verifier::start(&jwks_url);
    let mut front = bootstrap(
        vec![ext_authz(central.envoy.port)],
        app.port,
        central.idp.port,
    );
    front["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(cluster("wasm-iap", central.envoy.port));
    let front = Envoy::start(&front);
    let token = central.idp.client_credentials_token();
    let authorization = format!("Bearer {token}");
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let response = http::get(
        &format!("http://{API}:{}/v1/things", front.port),
        &[
            ("authorization", authorization.as_str()),
            (HEADER, forged),
            ("x_wasm_iap_jwt_assertion", forged),
        ],
    );
    assert_eq!(response.status, 200, "{response:?}");
    let assertion = verified(&response);
    assert_eq!(assertion["payload"]["aud"], API);
    assert_eq!(assertion["payload"]["sub"], "demo-cli");
    let seen = response.json()["headers"].clone();
    assert!(!seen[HEADER].as_str().unwrap().contains(forged), "{seen}");
    assert!(seen.get("x_wasm_iap_jwt_assertion").is_none(), "{seen}");
    // Without a credential the check refuses, and nothing reaches the app.
    let refused = http::get(
        &format!("http://{API}:{}/v1/things", front.port),
        &[(HEADER, forged)],
    );
    assert_eq!(refused.status, 401, "{refused:?}");
}
