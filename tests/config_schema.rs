#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped JSON Schema (schema/wasm-iap-config.schema.json) and the filter's reader agree:
//! on every configuration the README and docs/ show, every shipped one (envoy-local/,
//! wasm-manifests/) and a generated corpus of valid configurations and of invalid ones (one
//! unknown field, wrong type, bad enum value or missing required field each), the schema
//! accepts a file exactly when the reader does. Validated by PyPI check-jsonschema (installed
//! by ./build.sh setup), run once over a directory of every file.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use support::config_corpus;
use support::doc_examples::{env_secret, examples};
use wasm_iap::core::config::Settings;

const SCHEMA: &str = "schema/wasm-iap-config.schema.json";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every shipped plugin configuration: the testbed's, and each WasmPlugin's.
fn shipped() -> Vec<(String, Value)> {
    let testbed = std::fs::read_to_string(repo("envoy-local/plugin-config.json"))
        .unwrap()
        .replace("{{ISSUER}}", "http://127.0.0.1:9000");
    let mut found = vec![(
        "envoy-local/plugin-config.json".to_string(),
        serde_json::from_str(&testbed).unwrap(),
    )];
    let mut dirs = vec![repo("wasm-manifests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let doc = serde_yaml::Value::deserialize(doc).unwrap();
                if doc["kind"].as_str() == Some("WasmPlugin") {
                    let config = serde_json::to_value(&doc["spec"]["pluginConfig"]).unwrap();
                    found.push((path.display().to_string(), config));
                }
            }
        }
    }
    found
}

fn check_jsonschema() -> PathBuf {
    let path = std::env::var_os("WASM_IAP_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".venv/bin/check-jsonschema"));
    assert!(
        path.exists(),
        "{} is missing: run ./build.sh setup",
        path.display()
    );
    path
}

/// The files the schema refuses, with why, by check-jsonschema over all of them at once.
fn refused_by_schema(files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<String>> {
    let output = Command::new(check_jsonschema())
        .arg("--schemafile")
        .arg(repo(SCHEMA))
        .args(["--output-format", "JSON"])
        .args(files)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check-jsonschema: {e}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        report["parse_errors"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    let mut refused: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for error in report["errors"].as_array().unwrap() {
        let file = PathBuf::from(error["filename"].as_str().unwrap());
        let why = format!("{}: {}", error["path"], error["message"]);
        refused.entry(file).or_default().push(why);
    }
    refused
}

#[test]
fn the_schema_accepts_a_configuration_exactly_when_the_reader_does() {
    let mut corpus: Vec<(String, Value)> = examples();
    let examples_count = corpus.len();
    corpus.extend(shipped());
    let valid = config_corpus::valid(300);
    for (i, config) in valid.iter().enumerate() {
        corpus.push((format!("generated valid #{i}"), config.clone()));
    }
    for (i, config) in valid.iter().enumerate() {
        for seed in [
            i as u64 * 4,
            i as u64 * 4 + 1,
            i as u64 * 4 + 2,
            i as u64 * 4 + 3,
        ] {
            if let Some((what, invalid)) = config_corpus::mutated(config, seed) {
                corpus.push((format!("generated #{i}, {what}"), invalid));
            }
        }
    }
    let dir = TempDir(std::env::temp_dir().join(format!("wasm-iap-schema-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut files = Vec::new();
    let mut accepted = Vec::new();
    for (i, (_, config)) in corpus.iter().enumerate() {
        let file = dir.0.join(format!("{i:05}.json"));
        let text = serde_json::to_string_pretty(config).unwrap();
        std::fs::write(&file, &text).unwrap();
        files.push(file);
        accepted.push(Settings::parse_with_env(&text, &env_secret));
    }
    let refused = refused_by_schema(&files);
    let mut disagreements = Vec::new();
    for (((place, config), file), reader) in corpus.iter().zip(&files).zip(&accepted) {
        let schema_refuses = refused.get(file);
        if schema_refuses.is_none() != reader.is_ok() {
            disagreements.push(format!(
                "{place}: schema {schema_refuses:?}, reader {:?}\n{config}",
                reader.as_ref().err()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n\n")
    );
    let reader_ok = accepted.iter().filter(|r| r.is_ok()).count();
    assert!(examples_count >= 9, "only {examples_count} examples");
    assert!(reader_ok >= 300 + examples_count, "{reader_ok} accepted");
    assert!(
        corpus.len() - reader_ok >= 900,
        "{} refused",
        corpus.len() - reader_ok
    );
}

/// JSON Schema's "integer" is any number without a fraction (`8192.0` too), and Istio's
/// pluginConfig numbers are doubles: the reader takes them alike; a number beyond what the
/// reader holds is refused by both.
#[test]
fn whole_numbers_written_as_floats_and_huge_numbers_agree() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("wasm-iap-numbers-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let provider = r#"{"issuer": "https://dex.example.com", "audiences": ["a"], "cluster": "dex"}"#;
    let cases = [
        (r#""max_token_size": 8192.0"#, true),
        (r#""max_token_size": 1e3"#, true),
        (r#""shared_token_cache_bytes": 0.0"#, true),
        (
            r#""signature_check_budget": {"per_second": 5.0, "burst": 2e1}"#,
            true,
        ),
        (r#""max_token_size": 8192.5"#, false),
        (r#""max_token_size": 1e30"#, false),
        (r#""shared_token_cache_bytes": 18446744073709551616"#, false),
    ];
    let mut files = Vec::new();
    for (i, (field, _)) in cases.iter().enumerate() {
        let file = dir.0.join(format!("{i}.json"));
        std::fs::write(&file, format!(r#"{{"providers": [{provider}], {field}}}"#)).unwrap();
        files.push(file);
    }
    let refused = refused_by_schema(&files);
    for ((field, valid), file) in cases.iter().zip(&files) {
        let text = std::fs::read_to_string(file).unwrap();
        let reader = Settings::parse_with_env(&text, &env_secret);
        assert_eq!(
            reader.is_ok(),
            *valid,
            "reader on {field}: {:?}",
            reader.err()
        );
        assert_eq!(
            !refused.contains_key(file),
            *valid,
            "schema on {field}: {:?}",
            refused.get(file)
        );
    }
}
