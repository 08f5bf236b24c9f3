//! The failure policy we ship brings a dead VM back: a filter built with the test-only
//! `crash-probe` feature is killed on purpose inside real Envoy, which must replace the VM
//! and go on authenticating, failing closed (never open) while it does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{bootstrap, repo_root, wasm_filter, Envoy, Started};
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
        &std::fs::read_to_string(repo_root().join("wasm-manifests/base/wasmplugin.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["spec"]["failStrategy"].as_str(),
        Some("FAIL_RELOAD")
    );
}

/// One worker (so one VM) with the crash-probe build under `failure_policy` (`None`:
/// Envoy's default), a key server and an upstream; the VM killed once after a valid token
/// passed.
struct Crashed {
    envoy: Envoy,
    token: String,
    killed_at: Instant,
    _idp: KeyServer,
    _upstream: Upstream,
}

impl Crashed {
    fn start(failure_policy: Option<&str>) -> Crashed {
        let keys = shared_keys();
        let idp = KeyServer::start(0, keys.jwks());
        let upstream = Upstream::start();
        let plugin = json!({
            "providers": [{ "issuer": idp.issuer(), "audiences": ["prometheus"], "cluster": "idp" }],
        });
        let mut filter: Value = wasm_filter(&plugin);
        let config = &mut filter["typed_config"]["config"];
        config["vm_config"]["code"]["local"]["filename"] = json!(crash_probe_wasm());
        if let Some(policy) = failure_policy {
            config["failure_policy"] = json!(policy);
        }
        let bootstrap = bootstrap(vec![filter], upstream.port(), idp.port);
        let Started::Running(envoy) = Envoy::try_start(&bootstrap, 1) else {
            panic!("Envoy did not start")
        };
        let token = keys
            .signer("RS256")
            .sign(&claims(&idp.issuer(), "prometheus"));
        let mut crashed = Crashed {
            envoy,
            token,
            killed_at: Instant::now(),
            _idp: idp,
            _upstream: upstream,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while crashed.valid() != 200 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(crashed.valid(), 200, "works before the crash");
        let probe = http::get(&crashed.envoy.url("/"), &[("x-wasm-iap-crash-probe", "1")]);
        crashed.killed_at = Instant::now();
        assert_ne!(probe.status, 200, "the probe itself never passes");
        assert!(
            crashed.envoy.log().contains("crash probe"),
            "the VM really died"
        );
        crashed
    }

    fn valid(&self) -> u16 {
        http::bearer(&self.envoy.url("/"), &self.token).status
    }

    fn unauthenticated(&self) -> u16 {
        http::get(&self.envoy.url("/"), &[]).status
    }
}

#[test]
fn without_reload_a_dead_vm_fails_every_request_for_good() {
    let crashed = Crashed::start(None);
    for _ in 0..20 {
        assert_ne!(
            crashed.valid(),
            200,
            "the default policy keeps a dead VM dead"
        );
        assert_ne!(crashed.unauthenticated(), 200, "and never fails open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_vm_that_dies_is_replaced_and_traffic_fails_closed_meanwhile() {
    let crashed = Crashed::start(Some(&shipped_envoy_failure_policy()));
    // Until the new VM is up, nothing passes unauthenticated: every answer to a valid
    // token is a refusal or, once the VM is back, the real upstream's 200.
    let mut statuses = Vec::new();
    let recovered = loop {
        assert_ne!(
            crashed.unauthenticated(),
            200,
            "a broken VM must never fail open"
        );
        let status = crashed.valid();
        statuses.push(status);
        if status == 200 {
            break Some(crashed.killed_at.elapsed());
        }
        if crashed.killed_at.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let recovered = recovered.unwrap_or_else(|| panic!("VM never came back: {statuses:?}"));
    eprintln!(
        "VM replaced after {} ms; statuses meanwhile: {statuses:?}",
        recovered.as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(crashed.valid(), 200, "the new VM keeps authenticating");
}
