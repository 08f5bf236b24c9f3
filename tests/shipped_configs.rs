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
    let settings = Settings::parse(&plugin_config);
    assert!(settings.is_ok(), "{:?}", settings.err());
}

#[test]
fn testbed_plugin_config_is_valid() {
    let text =
        repo("envoy-local/plugin-config.json").replace("{{ISSUER}}", "http://127.0.0.1:9000");
    let settings = Settings::parse(&text);
    assert!(settings.is_ok(), "{:?}", settings.err());
}
