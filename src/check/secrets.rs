//! Secrets a configuration names as `{"env": "NAME"}`: the VM reads them from its
//! environment, which an offline check does not have. A name given by `--env-file` or the
//! check's own environment is checked as given; any other gets a placeholder the reader
//! accepts, so the rest of the configuration is still checked, and the name is reported.

use std::collections::BTreeMap;

use jwt_simple::prelude::{ES256KeyPair, Ed25519KeyPair};
use serde_json::Value;

/// Where the value checked for one environment variable came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Given(String),
    Placeholder,
}

/// Every `{"env": NAME}` in a configuration, with a placeholder of the right kind: a
/// private key for `identity_assertion` keys, else 32+ bytes of text (a cookie secret's
/// minimum).
pub(crate) fn referenced(config: &Value) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    walk(config, &mut |name| {
        names
            .entry(name.to_string())
            .or_insert_with(|| text_placeholder(name));
    });
    let keys = config["identity_assertion"]["keys"].as_array();
    for key in keys.into_iter().flatten() {
        if let Some(name) = key["private_key"]["env"].as_str() {
            let pem = match key["algorithm"].as_str() {
                Some("EdDSA") => Some(Ed25519KeyPair::generate().to_pem()),
                _ => ES256KeyPair::generate().to_pem().ok(),
            };
            if let Some(pem) = pem {
                names.insert(name.to_string(), pem);
            }
        }
    }
    names
}

fn text_placeholder(name: &str) -> String {
    format!("placeholder-for-{name}-0123456789abcdef0123456789abcdef")
}

/// Calls `found` with each env name.
fn walk(value: &Value, found: &mut dyn FnMut(&str)) {
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(name))) = (map.len(), map.get("env")) {
                found(name);
                return;
            }
            map.values().for_each(|v| walk(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
        _ => {}
    }
}

/// `NAME=value` lines; blank lines and `#` comments are skipped, `export ` is allowed, and
/// a value in matching quotes loses them.
pub(crate) fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected NAME=value", i + 1));
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        values.insert(name.trim().to_string(), unquoted.to_string());
    }
    Ok(values)
}

/// The value checked for each referenced name, and where it came from.
pub(crate) fn resolve(
    referenced: &BTreeMap<String, String>,
    given: &dyn Fn(&str) -> Option<(String, String)>,
) -> BTreeMap<String, (String, Source)> {
    referenced
        .iter()
        .map(|(name, placeholder)| {
            let value = match given(name) {
                Some((value, from)) => (value, Source::Given(from)),
                None => (placeholder.clone(), Source::Placeholder),
            };
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_reference_gets_a_placeholder_of_its_kind() {
        let config = json!({
            "login": [{"client_secret": {"env": "CLIENT"}, "cookie_secrets": [{"env": "COOKIE"}, "literal"]}],
            "identity_assertion": {"keys": [{"algorithm": "EdDSA", "private_key": {"env": "KEY"}}]}
        });
        let names = referenced(&config);
        assert_eq!(
            names.keys().collect::<Vec<_>>(),
            ["CLIENT", "COOKIE", "KEY"]
        );
        assert!(names["COOKIE"].len() >= 32);
        assert!(names["KEY"].starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn an_object_with_more_than_env_is_no_reference() {
        assert!(referenced(&json!({"s": {"env": "A", "x": 1}})).is_empty());
    }

    #[test]
    fn env_files_are_read_as_shells_and_compose_write_them() {
        let values = parse_env_file("# secrets\nA=1\nexport B = \"two words\"\n\nC='x'\n");
        let values = values.unwrap_or_default();
        assert_eq!(values.get("A").map(String::as_str), Some("1"));
        assert_eq!(values.get("B").map(String::as_str), Some("two words"));
        assert_eq!(values.get("C").map(String::as_str), Some("x"));
        assert!(parse_env_file("just words").is_err());
    }
}
