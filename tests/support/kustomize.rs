//! Renders the Kustomize package in wasm-manifests/ as a user would: a copy of it, each
//! overlay's `secrets.env` written next to its committed `secrets.env.example`, then
//! `kubectl kustomize`. The copy is removed when the `Package` is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// The package's directories a user renders: every overlay and Envoy Gateway.
pub const RENDERED: &[&str] = &[
    "overlays/monitoring",
    "overlays/monitoring-fleet",
    "overlays/forward-auth",
    "overlays/kubernetes-api",
    "envoy-gateway",
];

/// A temporary copy of the repository's `wasm-manifests/` with the secret inputs filled in.
pub struct Package {
    pub root: PathBuf,
}

impl Drop for Package {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Package {
    /// Copies the package and writes a `secrets.env` beside every `secrets.env.example`.
    pub fn with_secrets() -> Package {
        let package = Package::copy();
        for example in files_named(&package.root, "secrets.env.example") {
            let text = std::fs::read_to_string(&example).unwrap();
            let filled: String = text
                .lines()
                .filter_map(|line| line.strip_suffix('='))
                .map(|key| format!("{key}={}\n", secret_value(key)))
                .collect();
            std::fs::write(example.with_file_name("secrets.env"), filled).unwrap();
        }
        package
    }

    /// Copies the package as it is in the repository (without secret inputs).
    pub fn copy() -> Package {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "wasm-iap-kustomize-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        copy_dir(
            &repo_root().join("wasm-manifests"),
            &root.join("wasm-manifests"),
        );
        Package { root }
    }

    pub fn dir(&self, relative: &str) -> PathBuf {
        self.root.join("wasm-manifests").join(relative)
    }

    /// `kubectl kustomize` of one directory of the package: the objects, or kubectl's error.
    pub fn render(&self, relative: &str) -> Result<Vec<Value>, String> {
        kustomize(&self.dir(relative))
    }
}

/// A value for a secret key: cookie secrets need 32 bytes or more.
fn secret_value(key: &str) -> String {
    format!("{}-{}", key.to_lowercase(), "s".repeat(32))
}

/// `kubectl kustomize DIR`, parsed into JSON objects.
pub fn kustomize(dir: &Path) -> Result<Vec<Value>, String> {
    let text = kustomize_text(dir)?;
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .map(|doc| serde_json::to_value(doc).unwrap())
        .collect())
}

/// `kubectl kustomize DIR` as it prints it.
pub fn kustomize_text(dir: &Path) -> Result<String, String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // A developer's own secrets never enter the test's copy.
        if name == "secrets.env" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// A Secret's value for `key`, decoded, by the Secret's namespace and name.
pub fn secret_value_of(
    objects: &[Value],
    namespace: &str,
    name: &str,
    key: &str,
) -> Option<String> {
    let secret = of_kind(objects, "Secret").into_iter().find(|s| {
        s["metadata"]["name"] == name && s["metadata"]["namespace"].as_str() == Some(namespace)
    })?;
    // kubectl folds long base64 values over several lines.
    let encoded: String = secret["data"][key].as_str()?.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Every `{"env": NAME}` a plugin config names.
pub fn env_names(config: &Value) -> Vec<String> {
    let mut names = Vec::new();
    match config {
        Value::Object(map) => {
            if let (1, Some(Value::String(name))) = (map.len(), map.get("env")) {
                names.push(name.clone());
            }
            for value in map.values() {
                names.extend(env_names(value));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names.extend(env_names(v))),
        _ => {}
    }
    names.sort();
    names.dedup();
    names
}
