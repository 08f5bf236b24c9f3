//! The configurations we ship as examples are accepted by the filter as they stand, and do
//! what their comments say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::json;
use support::host::FakeHost;
use support::mint::{claims_with, shared_keys};
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::keys::record::KeysRecord;
use wasm_iap::core::request_headers::RequestHeaders;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[test]
fn istio_wasmplugin_plugin_config_is_valid() {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&repo("wasm-manifests/overlays/monitoring/wasmplugin.yaml")).unwrap();
    let settings = wasmplugin_settings(&manifest);
    assert!(settings.is_ok(), "{:?}", settings.err());
    let env_names: Vec<String> = manifest["spec"]["vmConfig"]["env"]
        .as_sequence()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        env_names,
        [
            "PROMETHEUS_CLIENT_SECRET",
            "PROMETHEUS_COOKIE_SECRET",
            "ALERTMANAGER_CLIENT_SECRET",
            "ALERTMANAGER_COOKIE_SECRET"
        ],
        "every secret the config names reaches the VM"
    );
}

/// The manifest's plugin config, with the secrets the gateway pod passes into the VM.
fn wasmplugin_settings(manifest: &serde_yaml::Value) -> Result<Settings, Vec<String>> {
    let plugin_config = serde_json::to_string(&manifest["spec"]["pluginConfig"]).unwrap();
    let env = |name: &str| match name {
        "PROMETHEUS_CLIENT_SECRET" | "ALERTMANAGER_CLIENT_SECRET" => {
            Some("client-secret".to_string())
        }
        "PROMETHEUS_COOKIE_SECRET" => Some("p".repeat(32)),
        "ALERTMANAGER_COOKIE_SECRET" => Some("a".repeat(32)),
        _ => None,
    };
    Settings::parse_with_env(&plugin_config, &env)
}

#[test]
fn istio_wasmplugin_admits_the_sre_team_to_prometheus_and_alertmanager_only() {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&repo("wasm-manifests/overlays/monitoring/wasmplugin.yaml")).unwrap();
    let settings = Rc::new(wasmplugin_settings(&manifest).unwrap());
    let issuer = settings.providers[0].rules.issuer.clone();
    let mut gateway = Gateway::new(Rc::clone(&settings));
    let mut host = FakeHost::new(support::mint::now_secs() * 1000);
    let record = KeysRecord {
        jwks: Some(shared_keys().jwks().to_string()),
        ..KeysRecord::default()
    };
    gateway
        .authn
        .install_record(ProviderId(0), &record)
        .unwrap();
    let token = |email: &str, group: &str| {
        shared_keys().signer("RS256").sign(&claims_with(
            &issuer,
            "prometheus",
            json!({"email": email, "email_verified": true, "groups": [group]}),
        ))
    };
    let status = |gateway: &mut Gateway,
                  host: &mut FakeHost,
                  site: &str,
                  path: &str,
                  token: Option<&str>| {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut pairs: Vec<(&str, &[u8])> = vec![
            (":authority", site.as_bytes()),
            (":path", path.as_bytes()),
            (":method", b"GET"),
            (":scheme", b"https"),
            ("accept", b"application/json"),
        ];
        if let Some(a) = &authorization {
            pairs.push(("authorization", a.as_bytes()));
        }
        match gateway
            .decide(host, 1, &RequestHeaders::from_pairs(pairs))
            .decision
        {
            Decision::Forward(_) => 200,
            Decision::Respond(reply) => reply.status,
            other => panic!("{other:?}"),
        }
    };
    let sre = token("ops@myorg.example", "myorg:sre");
    let dev = token("dev@myorg.example", "myorg:dev");
    for site in ["prometheus.example.com", "alertmanager.example.com"] {
        assert_eq!(
            status(&mut gateway, &mut host, site, "/api/v1/query", Some(&sre)),
            200,
            "{site}"
        );
        assert_eq!(
            status(&mut gateway, &mut host, site, "/api/v1/query", Some(&dev)),
            403,
            "{site}"
        );
        assert_eq!(
            status(&mut gateway, &mut host, site, "/api/v1/query", None),
            401,
            "{site}"
        );
        assert_eq!(
            status(&mut gateway, &mut host, site, "/-/healthy", None),
            200,
            "{site} probe"
        );
        assert_eq!(
            status(
                &mut gateway,
                &mut host,
                site,
                "/-/healthy/../api/v1/query",
                None
            ),
            400,
            "{site}: the probe path opens nothing else"
        );
    }
}

#[test]
fn testbed_plugin_config_is_valid() {
    let text =
        repo("envoy-local/plugin-config.json").replace("{{ISSUER}}", "http://127.0.0.1:9000");
    let settings = Settings::parse(&text);
    assert!(settings.is_ok(), "{:?}", settings.err());
}

/// Every WasmPlugin in a manifest file, parsed as the filter would parse its config.
fn plugin_configs(file: &str) -> Vec<Result<Settings, Vec<String>>> {
    let text = repo(file);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| doc["kind"].as_str() == Some("WasmPlugin"))
        .map(|doc| {
            let config = serde_json::to_string(&doc["spec"]["pluginConfig"]).unwrap();
            let env = |_: &str| Some("s".repeat(32));
            Settings::parse_with_env(&config, &env)
        })
        .collect()
}

#[test]
fn forward_auth_and_kubernetes_manifests_carry_valid_plugin_configs() {
    for file in [
        "wasm-manifests/overlays/forward-auth/wasmplugin.yaml",
        "wasm-manifests/overlays/kubernetes-api/wasmplugin.yaml",
    ] {
        let configs = plugin_configs(file);
        assert_eq!(configs.len(), 1, "{file}");
        for config in configs {
            assert!(config.is_ok(), "{file}: {:?}", config.err());
        }
    }
    let kube = plugin_configs("wasm-manifests/overlays/kubernetes-api/wasmplugin.yaml")
        .remove(0)
        .unwrap();
    let impersonation = kube.services[0].impersonation.as_ref().unwrap();
    assert_eq!(impersonation.group_prefix, "oidc:");
}

// The fleet overlay (the monitoring plugin with the etcd store) is checked as rendered, in
// tests/kustomize_package.rs.

/// Every YAML document under wasm-manifests/.
fn manifest_documents() -> Vec<(String, serde_yaml::Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-manifests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.display().to_string();
            serde_yaml::Deserializer::from_str(&text)
                .map(|doc| (name.clone(), serde_yaml::Value::deserialize(doc).unwrap()))
                .filter(|(_, doc)| !doc.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// No file of the package may replace what the mesh's owner configured, and
/// Istio (1.23+) refuses a route timeout of 1 ms or less: leaving it out disables it.
#[test]
fn no_manifest_replaces_the_mesh_config_or_sets_a_timeout_istio_refuses() {
    let documents = manifest_documents();
    assert!(documents.len() >= 10, "{}", documents.len());
    for (file, doc) in &documents {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            !(kind == "ConfigMap" && name.starts_with("istio")) && kind != "IstioOperator",
            "{file} replaces the mesh's configuration ({kind} {name})"
        );
        if kind != "VirtualService" {
            continue;
        }
        for route in doc["spec"]["http"].as_sequence().into_iter().flatten() {
            if let Some(timeout) = route.get("timeout") {
                let text = timeout.as_str().unwrap_or_default();
                let millis = duration_millis(text);
                assert!(
                    millis.is_some_and(|ms| ms > 1.0),
                    "{file}: {name} has timeout {text:?}, which Istio refuses"
                );
            }
        }
    }
}

/// A protobuf duration as Istio writes it (`30s`, `1.5s`, `250ms`, `1m`), in milliseconds.
fn duration_millis(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}
