//! The configuration examples of the README and `docs/*.md`: each JSON block (completed
//! with the providers it names when it is a fragment) and each plugin configuration in
//! their Envoy YAML (tests/readme_examples.rs, tests/config_schema.rs).

use std::path::Path;

use serde_json::{json, Value};

use super::mint::shared_keys;

/// The README and every `docs/*.md`, by their path in the repository, in a stable order.
pub fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name)).unwrap();
            (name, text)
        })
        .collect()
}

/// The fenced blocks of `lang`, with the line each starts on.
pub fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let fence = format!("```{lang}");
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == fence => current = Some((i + 1, String::new())),
            Some(_) if trimmed == "```" => found.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    found
}

/// Issuers an example names (in login services' `issuer` and in `providers`).
fn issuers_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "issuer" || k == "providers" {
                    match v {
                        Value::String(s) if s.starts_with("http") => out.push(s.clone()),
                        Value::Array(items) => items
                            .iter()
                            .filter_map(Value::as_str)
                            .filter(|s| s.starts_with("http"))
                            .for_each(|s| out.push(s.to_string())),
                        _ => {}
                    }
                }
                issuers_in(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| issuers_in(v, out)),
        _ => {}
    }
}

/// An example as a whole configuration: a fragment (`"login": [...]`) is wrapped, and
/// given a provider, with inline keys, for every issuer it names; remote providers get the
/// same inline keys, so tokens minted here verify at once.
pub fn completed(example: &str) -> Value {
    let text = example.trim();
    let mut config: Value = if text.starts_with('{') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(&format!("{{{text}}}"))
    }
    .unwrap_or_else(|e| panic!("an example is not JSON ({e}):\n{text}"));
    let mut issuers = Vec::new();
    issuers_in(&config, &mut issuers);
    if issuers.is_empty() {
        issuers.push("https://dex.example.com".into());
    }
    issuers.sort();
    issuers.dedup();
    let providers: Vec<Value> = match config.get("providers").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|p| {
                let mut p = p.clone();
                let map = p.as_object_mut().unwrap();
                for remote in ["cluster", "jwks_uri", "discovery"] {
                    map.remove(remote);
                }
                map.insert("jwks".into(), shared_keys().jwks());
                p
            })
            .collect(),
        None => issuers
            .iter()
            .map(|i| json!({ "issuer": i, "audiences": ["example"], "jwks": shared_keys().jwks() }))
            .collect(),
    };
    config["providers"] = json!(providers);
    // Inline keys mean no discovery: name the endpoints and the cluster discovery gave.
    // `get_mut`, not indexing: indexing would add `"login": null` to a bearer-only example.
    let services = config
        .get_mut("login")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    // A service with `idps` names them in each IdP (docs/several-idps.md).
    for service in services.flat_map(idps_of) {
        let issuer = service["issuer"].as_str().unwrap_or_default().to_string();
        let map = service.as_object_mut().unwrap();
        map.entry("cluster").or_insert_with(|| json!("idp"));
        map.entry("authorization_endpoint")
            .or_insert_with(|| json!(format!("{issuer}/auth")));
        map.entry("token_endpoint")
            .or_insert_with(|| json!(format!("{issuer}/token")));
    }
    config
}

/// The IdPs of a login service: the service itself, or each of its `idps`.
fn idps_of(service: &mut Value) -> Vec<&mut Value> {
    if service.get("idps").is_some() {
        service["idps"].as_array_mut().unwrap().iter_mut().collect()
    } else {
        vec![service]
    }
}

pub fn env_secret(name: &str) -> Option<String> {
    // Identity assertion keys are PEM keys (ES256, as the documents' examples use).
    static ASSERTION_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if name.contains("ASSERTION_KEY") {
        use jwt_simple::prelude::ES256KeyPair;
        let pem = ASSERTION_KEY.get_or_init(|| ES256KeyPair::generate().to_pem().unwrap());
        return Some(pem.clone());
    }
    Some(format!("{name}-0123456789abcdef0123456789abcdef"))
}

/// The JSON examples of every document and the plugin configurations in their Envoy YAML,
/// each named by its file and line.
pub fn examples() -> Vec<(String, Value)> {
    documents()
        .iter()
        .flat_map(|(name, text)| examples_in(name, text))
        .collect()
}

pub fn examples_in(name: &str, text: &str) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = blocks(text, "json")
        .into_iter()
        .map(|(line, body)| (format!("{name}:{line}"), completed(&body)))
        .collect();
    for (line, body) in blocks(text, "yaml") {
        let yaml: serde_yaml::Value = match serde_yaml::from_str(&body) {
            Ok(v) => v,
            Err(e) => panic!("{name}:{line}: YAML does not parse: {e}"),
        };
        let mut configs = Vec::new();
        plugin_configs(&yaml, &mut configs);
        // `{ "providers": [ ... ] }   # the JSON above` points at an example already run.
        for config in configs.into_iter().filter(|c| !c.contains("...")) {
            found.push((
                format!("{name}:{line} (plugin in Envoy YAML)"),
                completed(&config),
            ));
        }
    }
    found
}

/// The plugin configuration strings inside Envoy's Wasm filters.
pub fn plugin_configs(yaml: &serde_yaml::Value, out: &mut Vec<String>) {
    match yaml {
        serde_yaml::Value::Mapping(map) => {
            if let Some(value) = map
                .get("configuration")
                .and_then(|c| c.get("value"))
                .and_then(serde_yaml::Value::as_str)
            {
                out.push(value.to_string());
            }
            map.values().for_each(|v| plugin_configs(v, out));
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| plugin_configs(v, out)),
        _ => {}
    }
}
