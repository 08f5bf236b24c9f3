//! What `wasm-iap check` reads: a JSON plugin configuration, or YAML (one or many documents:
//! Kubernetes manifests, `kubectl kustomize` output, an Envoy bootstrap) holding plugin
//! configurations, each with what its host passes into the VM.

use serde::Deserialize;
use serde_json::Value;

/// One plugin configuration found in an input, with where it came from.
#[derive(Debug)]
pub(crate) struct Found {
    /// `file`, or `file [document 2: WasmPlugin istio-system/wasm-iap, spec.pluginConfig]`.
    pub(crate) place: String,
    /// The configuration as JSON text (Envoy hands the filter text; so does this).
    pub(crate) text: String,
    /// Environment variables the host passes into the VM, with the field that lists them;
    /// `None` where the input does not say (a plain JSON file).
    pub(crate) vm_env: Option<(String, Vec<String>)>,
    /// A failure policy that lets traffic through a broken VM, with its field.
    pub(crate) fail_open: Option<String>,
}

/// The plugin configurations in `text` (read from `name`); `Err` when it is neither JSON nor
/// YAML.
pub(crate) fn plugin_configs(name: &str, text: &str) -> Result<Vec<Found>, String> {
    // A JSON object is a plugin configuration (even a broken one: the reader says why),
    // unless it is a manifest or a bootstrap written in JSON.
    let parsed = serde_json::from_str::<Value>(text).ok();
    let manifest = parsed
        .as_ref()
        .is_some_and(|v| v.get("kind").is_some() || v.get("static_resources").is_some());
    if text.trim_start().starts_with('{') && !manifest {
        {
            return Ok(vec![Found {
                place: name.to_string(),
                text: text.to_string(),
                vm_env: None,
                fail_open: None,
            }]);
        }
    }
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let yaml = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("{name}: neither JSON nor YAML: {e}"))?;
        let value: Value = serde_json::to_value(&yaml)
            .map_err(|e| format!("{name}: document {}: {e}", index + 1))?;
        in_document(name, index + 1, &value, &mut found);
    }
    Ok(found)
}

fn in_document(name: &str, index: usize, doc: &Value, found: &mut Vec<Found>) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let here = |what: &str| {
        format!(
            "{name} [document {index}: {kind} {}, {what}]",
            object_name(doc)
        )
    };
    match kind {
        "WasmPlugin" => {
            let spec = &doc["spec"];
            let env = spec["vmConfig"]["env"]
                .as_array()
                .map(|list| strings_at(list, "name"))
                .unwrap_or_default();
            let fail_open = (spec["failStrategy"].as_str() == Some("FAIL_OPEN"))
                .then(|| "spec.failStrategy".to_string());
            found.push(Found {
                place: here("spec.pluginConfig"),
                text: config_text(&spec["pluginConfig"]),
                vm_env: Some(("spec.vmConfig.env".into(), env)),
                fail_open,
            });
        }
        "EnvoyExtensionPolicy" => {
            for (i, wasm) in doc["spec"]["wasm"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let keys = wasm["env"]["hostKeys"].as_array().map(|l| plain_strings(l));
                found.push(Found {
                    place: here(&format!("spec.wasm[{i}].config")),
                    text: config_text(&wasm["config"]),
                    vm_env: Some((
                        format!("spec.wasm[{i}].env.hostKeys"),
                        keys.unwrap_or_default(),
                    )),
                    fail_open: (wasm["failOpen"].as_bool() == Some(true))
                        .then(|| format!("spec.wasm[{i}].failOpen")),
                });
            }
        }
        "List" => {
            for item in doc["items"].as_array().into_iter().flatten() {
                in_document(name, index, item, found);
            }
        }
        // A plugin configuration written in YAML.
        "" if doc.get("providers").is_some() => found.push(Found {
            place: format!("{name} [document {index}]"),
            text: doc.to_string(),
            vm_env: None,
            fail_open: None,
        }),
        "" => envoy_filters(name, index, doc, "", found),
        _ => {}
    }
}

/// Wasm HTTP filters anywhere in an Envoy bootstrap (`configuration.value` is the plugin's).
fn envoy_filters(name: &str, index: usize, value: &Value, path: &str, found: &mut Vec<Found>) {
    match value {
        Value::Object(map) => {
            let is_wasm = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("filters.http.wasm.v3.Wasm"));
            if is_wasm {
                found.push(envoy_filter(name, index, &value["config"], path));
                return;
            }
            for (key, child) in map {
                envoy_filters(name, index, child, &format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                envoy_filters(name, index, child, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn envoy_filter(name: &str, index: usize, config: &Value, path: &str) -> Found {
    let path = path.trim_start_matches('.');
    let variables = &config["vm_config"]["environment_variables"];
    let mut env = variables["host_env_keys"]
        .as_array()
        .map(|l| plain_strings(l))
        .unwrap_or_default();
    if let Some(pairs) = variables["key_values"].as_object() {
        env.extend(pairs.keys().cloned());
    }
    let value = &config["configuration"]["value"];
    Found {
        place: format!(
            "{name} [document {index}: Envoy Wasm filter, {path}.config.configuration.value]"
        ),
        text: value
            .as_str()
            .map_or_else(|| config_text(value), str::to_string),
        vm_env: Some((
            format!("{path}.config.vm_config.environment_variables"),
            env,
        )),
        fail_open: (config["failure_policy"].as_str() == Some("FAIL_OPEN")
            || config["fail_open"].as_bool() == Some(true))
        .then(|| format!("{path}.config.failure_policy")),
    }
}

/// `namespace/name`, or `name`.
fn object_name(doc: &Value) -> String {
    let meta = &doc["metadata"];
    let name = meta["name"].as_str().unwrap_or("(unnamed)");
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// A configuration given as YAML or JSON in a manifest; a string is JSON text already.
fn config_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings_at(list: &[Value], field: &str) -> Vec<String> {
    list.iter()
        .filter_map(|item| item[field].as_str().map(str::to_string))
        .collect()
}

fn plain_strings(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_file_is_one_configuration() {
        let found = plugin_configs("c.json", r#"{"providers": []}"#).unwrap_or_default();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].place, "c.json");
        assert!(found[0].vm_env.is_none());
    }

    #[test]
    fn every_wasm_plugin_and_extension_policy_of_a_stream_is_found() {
        let text = "kind: Secret\nmetadata: {name: s}\n---\n\
            kind: WasmPlugin\nmetadata: {name: iap, namespace: istio-system}\n\
            spec:\n  failStrategy: FAIL_OPEN\n  vmConfig: {env: [{name: A, valueFrom: HOST}]}\n  pluginConfig: {providers: []}\n---\n\
            kind: EnvoyExtensionPolicy\nmetadata: {name: p}\n\
            spec:\n  wasm:\n  - config: {providers: []}\n    env: {hostKeys: [B]}\n    failOpen: true\n";
        let found = plugin_configs("k.yaml", text).unwrap_or_default();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].place,
            "k.yaml [document 2: WasmPlugin istio-system/iap, spec.pluginConfig]"
        );
        assert_eq!(found[0].text, r#"{"providers":[]}"#);
        assert_eq!(
            found[0].vm_env.as_ref().map(|e| e.1.clone()),
            Some(vec!["A".into()])
        );
        assert_eq!(found[0].fail_open.as_deref(), Some("spec.failStrategy"));
        assert_eq!(
            found[1].place,
            "k.yaml [document 3: EnvoyExtensionPolicy p, spec.wasm[0].config]"
        );
        assert_eq!(
            found[1].vm_env.as_ref().map(|e| e.1.clone()),
            Some(vec!["B".into()])
        );
        assert_eq!(found[1].fail_open.as_deref(), Some("spec.wasm[0].failOpen"));
    }

    #[test]
    fn an_envoy_bootstraps_wasm_filter_is_found_with_its_string_value() {
        let text = r#"static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                failure_policy: FAIL_RELOAD
                vm_config: {environment_variables: {host_env_keys: [S]}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"providers": []}'
"#;
        let found = plugin_configs("envoy.yaml", text).unwrap_or_default();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].text, r#"{"providers": []}"#);
        assert_eq!(
            found[0].vm_env.as_ref().map(|e| e.1.clone()),
            Some(vec!["S".into()])
        );
        assert!(found[0].fail_open.is_none());
    }

    #[test]
    fn broken_json_is_a_configuration_and_broken_yaml_unreadable() {
        let found = plugin_configs("x.json", "{\"providers\": [],}").unwrap_or_default();
        assert_eq!(found.len(), 1);
        assert_eq!(
            plugin_configs("x.yaml", "kind: Secret\n").map(|f| f.len()),
            Ok(0)
        );
        assert!(plugin_configs("x.yaml", "a: [").is_err());
    }
}
