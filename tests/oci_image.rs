//! The OCI image of the filter (`./build.sh image`, tools/oci_image.py): pushed to a real
//! registry (Debian's docker-registry) and pulled back with a real client (Debian's skopeo),
//! it is the built module, in the forms Istio's WasmPlugin and Envoy Gateway pull
//! (their reader: pkg/wasm/imagefetcher.go in Istio, internal/wasm/imagefetcher.go in
//! Envoy Gateway), with digests that depend only on the module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::envoy::{repo_root, wasm_path, TempDir};
use support::registry::{layout_blob, skopeo, Registry};

const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TAG: &str = "test";
const COMPAT_TAG: &str = "test-compat";

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A layout written by tools/oci_image.py, with the digests it printed per tag.
struct Layout {
    dir: TempDir,
    printed: String,
}

impl Layout {
    /// Writes the layout of the module at `wasm`, as `./build.sh image` does.
    fn build(wasm: &Path) -> Layout {
        let dir = TempDir::new("oci-layout");
        let output = Command::new("python3")
            .arg(repo_root().join("tools/oci_image.py"))
            .arg(wasm)
            .arg(dir.0.join("oci"))
            .arg(TAG)
            .output()
            .expect("python3");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        Layout { dir, printed }
    }

    fn path(&self) -> PathBuf {
        self.dir.0.join("oci")
    }

    /// The `manifest` or `layer` digest printed for `tag`.
    fn printed(&self, tag: &str, what: &str) -> String {
        let line = self
            .printed
            .lines()
            .find(|line| line.split(' ').next() == Some(tag))
            .unwrap_or_else(|| panic!("no line for {tag} in:\n{}", self.printed));
        let words: Vec<&str> = line.split(' ').collect();
        let at = words.iter().position(|w| *w == what).expect(what);
        words[at + 1].to_string()
    }

    /// Pushes `tag` to `registry` as `wasm-iap:<tag>`, the documented skopeo command.
    fn push(&self, tag: &str, registry: &Registry) -> String {
        let destination = registry.reference(&format!("wasm-iap:{tag}"));
        let source = format!("oci:{}:{tag}", self.path().display());
        skopeo(&["copy", "--dest-tls-verify=false", &source, &destination]);
        destination
    }
}

/// The manifest the registry serves for `reference`, as raw bytes.
fn served_manifest(reference: &str) -> Vec<u8> {
    skopeo(&["inspect", "--raw", "--tls-verify=false", reference]).stdout
}

/// Pulls `reference` with skopeo into a fresh layout; its manifest and the layout's path.
fn pull(reference: &str, into: &TempDir) -> (Value, PathBuf) {
    let layout = into.0.join("pulled");
    let destination = format!("oci:{}:{TAG}", layout.display());
    skopeo(&["copy", "--src-tls-verify=false", reference, &destination]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = serde_json::from_slice(&layout_blob(&layout, digest)).unwrap();
    (manifest, layout)
}

fn layers_of_type<'a>(manifest: &'a Value, media_type: &str) -> Vec<&'a Value> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|layer| layer["mediaType"] == media_type)
        .collect()
}

#[test]
fn the_wasm_artifact_pushed_and_pulled_back_is_the_built_module() {
    let wasm = std::fs::read(wasm_path()).unwrap();
    let layout = Layout::build(&wasm_path());
    let registry = Registry::start();
    let reference = layout.push(TAG, &registry);

    let served = served_manifest(&reference);
    assert_eq!(
        sha256(&served),
        layout.printed(TAG, "manifest"),
        "the registry serves the manifest as built"
    );
    let manifest: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    // Istio and Envoy Gateway read this variant only with exactly two layers, one of them
    // the module itself.
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    let wasm_layers = layers_of_type(&manifest, WASM_LAYER);
    assert_eq!(wasm_layers.len(), 1, "{manifest}");
    assert_eq!(wasm_layers[0]["digest"], sha256(&wasm));
    assert_eq!(wasm_layers[0]["digest"], layout.printed(TAG, "layer"));
    assert_eq!(wasm_layers[0]["size"], wasm.len());
    assert_eq!(
        layers_of_type(&manifest, WASM_CONFIG).len(),
        1,
        "{manifest}"
    );

    let scratch = TempDir::new("oci-pull");
    let (pulled, pulled_layout) = pull(&reference, &scratch);
    assert_eq!(pulled, manifest);
    let module = layout_blob(&pulled_layout, wasm_layers[0]["digest"].as_str().unwrap());
    assert!(module == wasm, "the pulled layer is not the built module");
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let runtime: Value =
        serde_json::from_slice(&layout_blob(&pulled_layout, config_digest)).unwrap();
    assert_eq!(runtime["type"], "envoy_proxy", "{runtime}");
    assert_eq!(runtime["config"]["root_ids"][0], "wasm-iap", "{runtime}");
}

#[test]
fn the_compat_image_is_a_plain_image_whose_single_layer_holds_plugin_wasm() {
    let wasm = std::fs::read(wasm_path()).unwrap();
    let layout = Layout::build(&wasm_path());
    let registry = Registry::start();
    let reference = layout.push(COMPAT_TAG, &registry);

    let served = served_manifest(&reference);
    assert_eq!(sha256(&served), layout.printed(COMPAT_TAG, "manifest"));
    let manifest: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = layers_of_type(&manifest, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(layers[0]["digest"], layout.printed(COMPAT_TAG, "layer"));

    // An ordinary image: skopeo's image inspection (which refuses artifacts) reads it.
    let inspected: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &reference]).stdout)
            .unwrap();
    assert_eq!(inspected["Digest"], layout.printed(COMPAT_TAG, "manifest"));

    let scratch = TempDir::new("oci-pull");
    let (_, pulled_layout) = pull(&reference, &scratch);
    let archive = scratch.0.join("layer.tar.gz");
    std::fs::write(
        &archive,
        layout_blob(&pulled_layout, layers[0]["digest"].as_str().unwrap()),
    )
    .unwrap();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "plugin.wasm\n");
    let unpacked = scratch.0.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let module = std::fs::read(unpacked.join("plugin.wasm")).unwrap();
    assert!(module == wasm, "plugin.wasm is not the built module");
}

#[test]
fn the_same_module_gives_the_same_digests_and_another_module_other_ones() {
    let first = Layout::build(&wasm_path());
    // A second later, so that a time stamp anywhere in the image would show.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = Layout::build(&wasm_path());
    for tag in [TAG, COMPAT_TAG] {
        assert_eq!(
            first.printed(tag, "manifest"),
            second.printed(tag, "manifest"),
            "{tag}: {}\nthen {}",
            first.printed,
            second.printed
        );
    }
    assert_eq!(
        std::fs::read(first.path().join("index.json")).unwrap(),
        std::fs::read(second.path().join("index.json")).unwrap()
    );

    // One byte more (an empty custom section) is another module, hence other images.
    let scratch = TempDir::new("oci-other");
    let other_wasm = scratch.0.join("other.wasm");
    let mut bytes = std::fs::read(wasm_path()).unwrap();
    bytes.extend_from_slice(&[0, 2, 1, b'x']);
    std::fs::write(&other_wasm, &bytes).unwrap();
    let other = Layout::build(&other_wasm);
    for tag in [TAG, COMPAT_TAG] {
        assert_ne!(
            first.printed(tag, "manifest"),
            other.printed(tag, "manifest"),
            "{tag}"
        );
    }
    assert_eq!(other.printed(TAG, "layer"), sha256(&bytes));
}

/// IMAGE_TAG becomes the layout's tag and the `skopeo copy oci:target/oci:TAG` reference:
/// one that is no registry tag is refused, and the tool never removes a directory that is
/// not an image layout of its own.
#[test]
fn the_tool_refuses_a_bad_tag_and_a_directory_that_is_no_layout() {
    let dir = TempDir::new("oci-refusals");
    let wasm = dir.0.join("m.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let run = |out: &Path, tag: &str| {
        Command::new("python3")
            .arg(repo_root().join("tools/oci_image.py"))
            .arg(&wasm)
            .arg(out)
            .arg(tag)
            .output()
            .unwrap()
            .status
            .success()
    };
    for tag in ["../x", "a/b", "v1:2", "-x", "", &"x".repeat(130)] {
        assert!(!run(&dir.0.join("oci"), tag), "{tag:?} accepted");
    }
    let precious = dir.0.join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep").unwrap();
    assert!(
        !run(&precious, "ok"),
        "a directory that is no layout replaced"
    );
    assert!(precious.join("notes.txt").exists());
    // A layout of its own is rewritten, stale blobs gone.
    let layout = dir.0.join("oci");
    assert!(run(&layout, "ok"));
    std::fs::write(layout.join("blobs/sha256/stale"), "old").unwrap();
    assert!(run(&layout, "0.1.0"));
    assert!(!layout.join("blobs/sha256/stale").exists());
}
