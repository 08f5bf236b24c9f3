//! The configurations we ship as examples are accepted by the filter as they stand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use wasm_iap::core::config::Settings;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[test]
fn istio_wasmplugin_plugin_config_is_valid() {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&repo("wasm-manifests/wasmplugin.yaml")).unwrap();
    let plugin_config = serde_json::to_string(&manifest["spec"]["pluginConfig"]).unwrap();
    // What the gateway pod passes into the VM from the Kubernetes Secret.
    let env = |name: &str| match name {
        "PROMETHEUS_CLIENT_SECRET" => Some("client-secret".to_string()),
        "PROMETHEUS_COOKIE_SECRET" => Some("c".repeat(32)),
        _ => None,
    };
    let settings = Settings::parse_with_env(&plugin_config, &env);
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
        ["PROMETHEUS_CLIENT_SECRET", "PROMETHEUS_COOKIE_SECRET"],
        "every secret the config names reaches the VM"
    );
}

#[test]
fn testbed_plugin_config_is_valid() {
    let text =
        repo("envoy-local/plugin-config.json").replace("{{ISSUER}}", "http://127.0.0.1:9000");
    let settings = Settings::parse(&text);
    assert!(settings.is_ok(), "{:?}", settings.err());
}
