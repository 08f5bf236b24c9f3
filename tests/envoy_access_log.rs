//! Decisions in Envoy's access log: real Envoy with the README's file access log (its format
//! taken from the README, so the example there is what runs here) prints each request's
//! decision, reason, service and user; a user name sent to forge a field or a line cannot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::{bootstrap, envoy_binary, wasm_filter, Envoy, TempDir};
use support::envoy_faulty_idp_bed::eventually;
use support::mint::{claims_with, shared_keys};
use support::raw::{self, RawRequest, RawResponse};
use support::servers::Upstream;

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "demo-upstream";
const APP: &str = "app.example.com";
const API: &str = "api.example.com";

fn plugin_config(access_log: bool) -> Value {
    json!({
        "access_log": access_log,
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": shared_keys().jwks() }],
        "login": [{
            "hosts": [APP],
            "issuer": ISSUER,
            "client_id": "app",
            "client_secret": "app-secret",
            "cookie_secrets": ["app-cookie-secret-0123456789abcdef"],
            "cluster": "idp",
            "authorization_endpoint": format!("{ISSUER}/auth"),
            "token_endpoint": format!("{ISSUER}/token"),
        }],
        "services": [{
            "hosts": [API],
            "routes": [{ "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }] }],
        }],
    })
}

/// The `access_log` of every YAML block of `document` that shows a file access log printing
/// the decision, as JSON.
fn documented_access_logs(document: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(document)).unwrap();
    text.split("```yaml")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| block.contains("FileAccessLog") && block.contains("wasm.wasm_iap.decision"))
        .map(|block| {
            let yaml: serde_yaml::Value = serde_yaml::from_str(block).unwrap();
            serde_json::to_value(&yaml).unwrap()["access_log"].clone()
        })
        .collect()
}

/// The file access log the README shows.
fn readme_access_log() -> Value {
    documented_access_logs("README.md")
        .into_iter()
        .next()
        .expect("the README shows a file access log printing the decision")
}

/// A bootstrap whose connection manager logs with `loggers`.
fn with_access_log(mut config: Value, loggers: Value) -> Value {
    config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["access_log"] = loggers;
    config
}

struct Bed {
    envoy: Envoy,
    _upstream: Upstream,
    log: TempDir,
}

impl Bed {
    fn start(access_log: bool) -> Bed {
        let upstream = Upstream::start();
        let log = TempDir::new("access-log");
        let mut loggers = readme_access_log();
        loggers[0]["typed_config"]["path"] = json!(log.0.join("access.log"));
        let config = bootstrap(
            vec![wasm_filter(&plugin_config(access_log))],
            upstream.port(),
            upstream.port(),
        );
        let envoy = Envoy::start(&with_access_log(config, loggers));
        Bed {
            envoy,
            _upstream: upstream,
            log,
        }
    }

    fn send(&self, request: &RawRequest) -> RawResponse {
        raw::send(self.envoy.port, request).unwrap()
    }

    /// The access log's lines, once it has `count` (Envoy writes the file every 100 ms).
    fn lines(&self, count: usize) -> Vec<String> {
        let path = self.log.0.join("access.log");
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        eventually(Duration::from_secs(15), || read().lines().count() >= count);
        read().lines().map(str::to_string).collect()
    }
}

fn token(changes: Value) -> String {
    shared_keys()
        .signer("ES256")
        .sign(&claims_with(ISSUER, AUDIENCE, changes))
}

#[test]
fn each_decision_is_printed_with_its_reason_service_and_user() {
    let bed = Bed::start(true);
    let alice = token(json!({}));
    let sent = [
        (RawRequest::get("/reports").host(API).bearer(&alice), 200),
        (
            RawRequest::get("/admin/users").host(API).bearer(&alice),
            403,
        ),
        (
            RawRequest::get("/reports")
                .host(API)
                .header("Accept", "application/json"),
            401,
        ),
        (RawRequest::get("/dashboards").host(APP).navigation(), 302),
    ];
    for (request, status) in &sent {
        let response = bed.send(request);
        assert_eq!(response.status, *status, "{}", response.summary());
    }
    let lines = bed.lines(sent.len());
    let expected = [
        "\"GET api.example.com/reports\" 200 via_upstream decision=allow reason=allowed service=\"api.example.com\" user=\"alice-id\"",
        "\"GET api.example.com/admin/users\" 403 wasm_iap_requests_denied_forbidden decision=deny reason=forbidden service=\"api.example.com\" user=\"alice-id\"",
        "\"GET api.example.com/reports\" 401 wasm_iap_requests_denied_no_credential decision=challenge reason=no_credential service=\"api.example.com\"",
        "\"GET app.example.com/dashboards\" 302 wasm_iap_requests_redirected decision=redirect reason=redirected service=\"app.example.com\"",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(
            line.ends_with(expected),
            "{line}\nexpected it to end with\n{expected}"
        );
    }
}

#[test]
fn a_hostile_user_name_cannot_forge_a_field_or_a_line() {
    let bed = Bed::start(true);
    // Quotes, a backslash and a Unicode line separator: a header carries them, a log must not.
    let hostile = "eve\" decision=allow user=\"root\\\u{2028}\"\n[info] forged";
    let token = token(json!({ "sub": hostile }));
    let response = bed.send(&RawRequest::get("/admin/users").host(API).bearer(&token));
    assert_eq!(response.status, 401, "{}", response.summary());
    // The newline made the claim unusable as a header: refused before anyone is named.
    let without_newline = "eve\" decision=allow user=\"root\\\u{2028}\"";
    let token = self::token(json!({ "sub": without_newline }));
    let response = bed.send(&RawRequest::get("/admin/users").host(API).bearer(&token));
    assert_eq!(response.status, 403, "{}", response.summary());
    let lines = bed.lines(2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0]
            .ends_with(" 401 wasm_iap_requests_denied_invalid_token decision=challenge reason=invalid_token service=\"api.example.com\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(
            " 403 wasm_iap_requests_denied_forbidden decision=deny reason=forbidden service=\"api.example.com\" \
             user=\"eve\\\" decision=allow user=\\\"root\\\\\\u{2028}\\\"\""
        ),
        "{}",
        lines[1]
    );
    for line in &lines {
        assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line:?}");
    }
}

#[test]
fn with_access_log_off_the_decision_is_not_printed() {
    let bed = Bed::start(false);
    let response = bed.send(
        &RawRequest::get("/admin/users")
            .host(API)
            .bearer(&token(json!({}))),
    );
    assert_eq!(response.status, 403, "{}", response.summary());
    let lines = bed.lines(1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].ends_with(" 403 wasm_iap_requests_denied_forbidden -"),
        "{}",
        lines[0]
    );
}

/// Every Envoy access log the README and docs/access-log.md show (text and JSON) is one
/// Envoy accepts (`--mode validate`).
#[test]
fn every_documented_access_log_is_one_envoy_accepts() {
    let mut shown = documented_access_logs("README.md");
    shown.extend(documented_access_logs("docs/access-log.md"));
    assert!(shown.len() >= 3, "{shown:#?}");
    let dir = TempDir::new("access-log-validate");
    for (i, loggers) in shown.into_iter().enumerate() {
        let config = with_access_log(bootstrap(vec![], 1, 1), loggers.clone());
        let path = dir.0.join(format!("envoy-{i}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let out = std::process::Command::new(envoy_binary())
            .args(["--mode", "validate", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{loggers}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
