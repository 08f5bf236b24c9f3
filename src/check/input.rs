//! What `wasm-iap check` reads: a JSON plugin configuration, or YAML (one or many documents:
//! Kubernetes manifests, `kubectl kustomize` output, an Envoy bootstrap) holding plugin
//! configurations, each with what its host passes into the VM.

use std::collections::BTreeMap;

use base64::Engine;
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
    /// Variables whose value the host gives the VM itself (WasmPlugin `vmConfig.env` entries
    /// without `valueFrom: HOST`, Envoy's `key_values`): the VM sees exactly these, whatever
    /// the check's environment or `--env-file` say.
    pub(crate) inline: BTreeMap<String, String>,
    /// Values the same input gives the gateway's environment: a container `env` entry with a
    /// `value`, or a `secretKeyRef` to a Secret of the input (`kubectl kustomize` output
    /// carries the Secrets its generators made), with where each came from.
    pub(crate) manifest_env: BTreeMap<String, (String, String)>,
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
                inline: BTreeMap::new(),
                manifest_env: BTreeMap::new(),
                fail_open: None,
            }]);
        }
    }
    let mut found = Vec::new();
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut yaml = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("{name}: neither JSON nor YAML: {e}"))?;
        // `<<: *anchor` merges as Kubernetes' YAML reader does (else it stays a key "<<").
        yaml.apply_merge()
            .map_err(|e| format!("{name}: document {}: {e}", index + 1))?;
        let value: Value = serde_json::to_value(&yaml)
            .map_err(|e| format!("{name}: document {}: {e}", index + 1))?;
        in_document(name, index + 1, &value, &mut found);
        documents.push(value);
    }
    let manifest_env = gateway_env(&documents);
    for config in &mut found {
        config.manifest_env = manifest_env.clone();
    }
    Ok(found)
}

/// Objects of the stream, `List`s opened.
fn objects<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    if value["kind"] == "List" {
        for item in value["items"].as_array().into_iter().flatten() {
            objects(item, out);
        }
    } else {
        out.push(value);
    }
}

/// What the stream's workloads (Deployments, Envoy Gateway's EnvoyProxy, ...) put into their
/// containers' environment, where the value is in the stream: a literal `value`, or a key of
/// a Secret the stream holds (matched by name: Envoy Gateway's proxies read a Secret of
/// another namespace than their EnvoyProxy's).
fn gateway_env(documents: &[Value]) -> BTreeMap<String, (String, String)> {
    let mut all = Vec::new();
    documents.iter().for_each(|d| objects(d, &mut all));
    let mut secrets: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for secret in all.iter().filter(|o| o["kind"] == "Secret") {
        let Some(name) = secret["metadata"]["name"].as_str() else {
            continue;
        };
        let keys = secrets.entry(name).or_default();
        for (key, value) in secret["data"].as_object().into_iter().flatten() {
            // kubectl folds long base64 values over several lines.
            let decoded = value
                .as_str()
                .map(|v| v.split_whitespace().collect::<String>())
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            keys.insert(key.clone(), decoded);
        }
        for (key, value) in secret["stringData"].as_object().into_iter().flatten() {
            keys.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
        }
    }
    let mut env = BTreeMap::new();
    let workload =
        |o: &&&Value| !["Secret", "WasmPlugin"].contains(&o["kind"].as_str().unwrap_or(""));
    for object in all.iter().filter(workload) {
        let what = format!(
            "{} {}",
            object["kind"].as_str().unwrap_or("object"),
            object_name(object)
        );
        container_env(object, &mut |entry: &Value| {
            let Some(name) = entry["name"].as_str() else {
                return;
            };
            let reference = &entry["valueFrom"]["secretKeyRef"];
            let value = match (entry["value"].as_str(), reference["name"].as_str()) {
                (Some(value), _) => Some((value.to_string(), format!("{what}: value"))),
                (None, Some(secret)) => {
                    let key = reference["key"].as_str().unwrap_or_default();
                    secrets.get(secret).map(|keys| {
                        let value = keys.get(key).cloned().unwrap_or_default();
                        (value, format!("{what}: Secret {secret} key {key}"))
                    })
                }
                _ => None,
            };
            if let Some(value) = value {
                env.insert(name.to_string(), value);
            }
        });
    }
    env
}

/// Calls `found` with every entry of a `containers[].env` list anywhere in `value`.
fn container_env(value: &Value, found: &mut dyn FnMut(&Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("env", Value::Array(entries)) => entries.iter().for_each(&mut *found),
                    _ => container_env(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| container_env(item, found)),
        _ => {}
    }
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
            let entries = spec["vmConfig"]["env"].as_array();
            let env = entries
                .map(|list| strings_at(list, "name"))
                .unwrap_or_default();
            // valueFrom defaults to INLINE: the VM gets `value` (or nothing), not the host's.
            let inline = entries
                .into_iter()
                .flatten()
                .filter(|entry| entry["valueFrom"] != "HOST" && entry["valueFrom"] != 1)
                .filter_map(|entry| {
                    let name = entry["name"].as_str()?;
                    let value = entry["value"].as_str().unwrap_or_default();
                    Some((name.to_string(), value.to_string()))
                })
                .collect();
            // Istio reads enums by name or number (FAIL_OPEN is 1).
            let open = spec["failStrategy"] == "FAIL_OPEN" || spec["failStrategy"] == 1;
            found.push(Found {
                place: here("spec.pluginConfig"),
                text: manifest_config_text(&spec["pluginConfig"]),
                vm_env: Some(("spec.vmConfig.env".into(), env)),
                inline,
                manifest_env: BTreeMap::new(),
                fail_open: open.then(|| "spec.failStrategy".to_string()),
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
                    text: manifest_config_text(&wasm["config"]),
                    inline: BTreeMap::new(),
                    manifest_env: BTreeMap::new(),
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
            inline: BTreeMap::new(),
            manifest_env: BTreeMap::new(),
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

/// A field of an Envoy proto object, as Envoy reads YAML and JSON: by its proto name or its
/// lowerCamelCase JSON name.
fn proto_field<'a>(object: &'a Value, name: &str) -> &'a Value {
    match &object[name] {
        Value::Null => {
            let mut camel = String::new();
            let mut upper = false;
            for c in name.chars() {
                match (c, upper) {
                    ('_', _) => upper = true,
                    (c, true) => {
                        camel.extend(c.to_uppercase());
                        upper = false;
                    }
                    (c, false) => camel.push(c),
                }
            }
            &object[camel.as_str()]
        }
        value => value,
    }
}

fn envoy_filter(name: &str, index: usize, config: &Value, path: &str) -> Found {
    let path = path.trim_start_matches('.');
    let variables = proto_field(proto_field(config, "vm_config"), "environment_variables");
    let mut env = proto_field(variables, "host_env_keys")
        .as_array()
        .map(|l| plain_strings(l))
        .unwrap_or_default();
    let mut inline = BTreeMap::new();
    if let Some(pairs) = proto_field(variables, "key_values").as_object() {
        env.extend(pairs.keys().cloned());
        for (key, value) in pairs {
            inline.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
        }
    }
    let value = &proto_field(config, "configuration")["value"];
    // FailurePolicy FAIL_OPEN is 2; the deprecated fail_open: true means the same.
    let policy = proto_field(config, "failure_policy");
    let open = policy == "FAIL_OPEN"
        || policy == 2
        || proto_field(config, "fail_open").as_bool() == Some(true);
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
        inline,
        manifest_env: BTreeMap::new(),
        fail_open: open.then(|| format!("{path}.config.failure_policy")),
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

/// A configuration a manifest gives as an object. A string is no configuration: Istio's
/// pluginConfig is an object, and Envoy Gateway hands the filter a JSON string literal, which
/// the reader refuses as the filter would.
fn manifest_config_text(value: &Value) -> String {
    match value {
        Value::String(_) => value.to_string(),
        other => config_text(other),
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
