//! The failure policy we ship brings a dead VM back: a filter built with the test-only
//! `crash-probe` feature is killed on purpose inside real Envoy, which must replace the VM
//! and go on authenticating, failing closed (never open) while it does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{bootstrap, repo_root, wasm_filter, Envoy};
use support::http;
use support::mint::{claims, shared_keys};
use support::servers::{KeyServer, Upstream};

fn crash_probe_wasm() -> PathBuf {
    let path = repo_root().join("target/crash-probe/wasm32-wasip1/release/wasm_iap.wasm");
    assert!(
        path.exists(),
        "{} is missing: ./build.sh test builds it",
        path.display()
    );
    path
}

/// The `failure_policy` of the testbed's Envoy configuration, as shipped.
fn shipped_envoy_failure_policy() -> String {
    let template =
        std::fs::read_to_string(repo_root().join("envoy-local/envoy.yaml.tmpl")).unwrap();
    let line = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("failure_policy:"))
        .expect("the testbed sets a failure_policy");
    line.trim().to_string()
}

#[test]
fn shipped_configs_never_fail_open_and_reload_a_dead_vm() {
    assert_eq!(shipped_envoy_failure_policy(), "FAIL_RELOAD");
    let manifest: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("wasm-manifests/wasmplugin.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["spec"]["failStrategy"].as_str(),
        Some("FAIL_RELOAD")
    );
}

#[test]
fn a_vm_that_dies_is_replaced_and_traffic_fails_closed_meanwhile() {
    let keys = shared_keys();
    let idp = KeyServer::start(0, keys.jwks());
    let upstream = Upstream::start();
    let plugin = json!({
        "providers": [{ "issuer": idp.issuer(), "audiences": ["prometheus"], "cluster": "idp" }],
    });
    let mut filter: Value = wasm_filter(&plugin);
    let config = &mut filter["typed_config"]["config"];
    config["vm_config"]["code"]["local"]["filename"] = json!(crash_probe_wasm());
    config["failure_policy"] = json!(shipped_envoy_failure_policy());
    let envoy = Envoy::start(&bootstrap(vec![filter], upstream.port(), idp.port));
    let token = keys
        .signer("RS256")
        .sign(&claims(&idp.issuer(), "prometheus"));
    let valid = || http::bearer(&envoy.url("/"), &token).status;
    let deadline = Instant::now() + Duration::from_secs(10);
    while valid() != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(valid(), 200, "works before the crash");

    let crashed = http::get(&envoy.url("/"), &[("x-wasm-iap-crash-probe", "1")]);
    let killed_at = Instant::now();
    assert_ne!(crashed.status, 200, "the probe itself never passes");
    // Until the new VM is up, nothing passes unauthenticated, and a valid token is not
    // let through unchecked either: every answer is a refusal or the real upstream's 200.
    let mut statuses = Vec::new();
    let recovered = loop {
        let unauthenticated = http::get(&envoy.url("/"), &[]).status;
        assert_ne!(unauthenticated, 200, "a broken VM must never fail open");
        let status = valid();
        statuses.push(status);
        if status == 200 {
            break Some(killed_at.elapsed());
        }
        if killed_at.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = envoy.log();
    assert!(log.contains("crash probe"), "the VM really died: {log}");
    let recovered = recovered.unwrap_or_else(|| panic!("VM never came back: {statuses:?}"));
    eprintln!(
        "VM replaced after {} ms; statuses meanwhile: {:?}",
        recovered.as_millis(),
        statuses
    );
    assert_eq!(valid(), 200, "the new VM keeps authenticating");
}
