//! The Kustomize package in wasm-manifests/, rendered by `kubectl kustomize` the way the
//! README's install commands render it: every plugin config passes the filter's own reader
//! with the secrets the gateway really receives, every secret it names reaches the VM
//! (Secret -> pod environment -> VM), every object passes a schema validator for its kind,
//! and nothing replaces cluster-wide configuration the package does not own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::kustomize::{env_names, of_kind, repo_root, secret_value_of, Package, RENDERED};
use wasm_iap::core::config::Settings;

/// Envoy Gateway runs the proxies (and so reads their Secrets) in its own namespace.
const ENVOY_GATEWAY_NAMESPACE: &str = "envoy-gateway-system";

/// One Wasm attachment: its plugin config, the names the VM may read from the host's
/// environment, and where the gateway pod's environment takes each name from.
struct Attachment {
    at: String,
    config: Value,
    vm_env: Vec<String>,
    /// env name -> (Secret namespace, Secret name, key)
    pod_env: BTreeMap<String, (String, String, String)>,
}

fn secret_refs(env: &Value, namespace: &str) -> BTreeMap<String, (String, String, String)> {
    let mut refs = BTreeMap::new();
    for var in env.as_array().into_iter().flatten() {
        let secret = &var["valueFrom"]["secretKeyRef"];
        if let (Some(name), Some(secret_name), Some(key)) = (
            var["name"].as_str(),
            secret["name"].as_str(),
            secret["key"].as_str(),
        ) {
            let target = (
                namespace.to_string(),
                secret_name.to_string(),
                key.to_string(),
            );
            refs.insert(name.to_string(), target);
        }
    }
    refs
}

/// The Istio gateway Deployments a WasmPlugin selects, and their proxies' secret env.
fn istio_attachments(objects: &[Value]) -> Vec<Attachment> {
    of_kind(objects, "WasmPlugin")
        .into_iter()
        .map(|plugin| {
            let namespace = plugin["metadata"]["namespace"].as_str().unwrap_or_default();
            let selector = plugin["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap();
            let mut pod_env = BTreeMap::new();
            for deployment in of_kind(objects, "Deployment") {
                let labels = &deployment["spec"]["template"]["metadata"]["labels"];
                let selected = selector.iter().all(|(k, v)| &labels[k] == v);
                if selected && deployment["metadata"]["namespace"].as_str() == Some(namespace) {
                    let containers = deployment["spec"]["template"]["spec"]["containers"]
                        .as_array()
                        .unwrap();
                    for container in containers.iter().filter(|c| c["name"] == "istio-proxy") {
                        pod_env.extend(secret_refs(&container["env"], namespace));
                    }
                }
            }
            let vm_env = plugin["spec"]["vmConfig"]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["valueFrom"] == "HOST")
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect();
            Attachment {
                at: format!("WasmPlugin {namespace}/{}", plugin["metadata"]["name"]),
                config: plugin["spec"]["pluginConfig"].clone(),
                vm_env,
                pod_env,
            }
        })
        .collect()
}

/// Each Wasm of an EnvoyExtensionPolicy, with the secret env of the EnvoyProxy objects.
fn envoy_gateway_attachments(objects: &[Value]) -> Vec<Attachment> {
    let mut pod_env = BTreeMap::new();
    for proxy in of_kind(objects, "EnvoyProxy") {
        let container = &proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"];
        pod_env.extend(secret_refs(&container["env"], ENVOY_GATEWAY_NAMESPACE));
    }
    let mut found = Vec::new();
    for policy in of_kind(objects, "EnvoyExtensionPolicy") {
        for wasm in policy["spec"]["wasm"].as_array().unwrap() {
            let vm_env = wasm["env"]["hostKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            found.push(Attachment {
                at: format!("EnvoyExtensionPolicy {}", policy["metadata"]["name"]),
                config: wasm["config"].clone(),
                vm_env,
                pod_env: pod_env.clone(),
            });
        }
    }
    found
}

fn rendered_with_secrets() -> Vec<(&'static str, Vec<Value>)> {
    let package = Package::with_secrets();
    RENDERED
        .iter()
        .map(|dir| {
            (
                *dir,
                package.render(dir).unwrap_or_else(|e| panic!("{dir}: {e}")),
            )
        })
        .collect()
}

/// (a) and (b): the reader accepts each config with the values the gateway pod really gets
/// from the rendered Secrets, and each secret the config names is mapped Secret -> pod -> VM.
#[test]
fn every_plugin_config_reads_with_the_secrets_the_gateway_receives() {
    let mut checked = 0;
    for (dir, objects) in rendered_with_secrets() {
        let attachments: Vec<Attachment> = istio_attachments(&objects)
            .into_iter()
            .chain(envoy_gateway_attachments(&objects))
            .collect();
        assert_eq!(attachments.len(), 1, "{dir}: one Wasm attachment");
        for attachment in attachments {
            let at = format!("{dir}: {}", attachment.at);
            for name in env_names(&attachment.config) {
                assert!(
                    attachment.vm_env.contains(&name),
                    "{at}: {name} never reaches the VM"
                );
                assert!(
                    attachment.pod_env.contains_key(&name),
                    "{at}: the pod has no {name}"
                );
            }
            let env = |name: &str| {
                let (namespace, secret, key) = attachment.pod_env.get(name)?;
                secret_value_of(&objects, namespace, secret, key)
            };
            for name in attachment.pod_env.keys() {
                assert!(
                    env(name).is_some(),
                    "{at}: {name}'s Secret or key is not rendered"
                );
            }
            let config = serde_json::to_string(&attachment.config).unwrap();
            let settings = Settings::parse_with_env(&config, &env);
            assert!(settings.is_ok(), "{at}: {:?}", settings.err());
            checked += 1;
        }
    }
    assert_eq!(checked, RENDERED.len());
}

/// The fleet overlay is the monitoring one with the cluster store and server-side sessions:
/// the store's cluster is the one Istio builds from the component's ServiceEntry.
#[test]
fn fleet_overlay_adds_the_etcd_store_to_the_monitoring_plugin() {
    let rendered = rendered_with_secrets();
    let objects = |dir: &str| &rendered.iter().find(|(d, _)| *d == dir).unwrap().1;
    let plugin = |dir: &str| of_kind(objects(dir), "WasmPlugin")[0]["spec"].clone();
    let mut fleet = plugin("overlays/monitoring-fleet");
    let entry = of_kind(objects("overlays/monitoring-fleet"), "ServiceEntry")
        .into_iter()
        .find(|e| e["metadata"]["name"] == "wasm-iap-etcd")
        .unwrap()["spec"]
        .clone();
    let config = fleet["pluginConfig"].as_object_mut().unwrap();
    let store = config.remove("cluster_store").unwrap();
    let expected = format!(
        "outbound|{}||{}",
        entry["ports"][0]["number"],
        entry["hosts"][0].as_str().unwrap()
    );
    assert_eq!(store["etcd"]["cluster"].as_str(), Some(expected.as_str()));
    for service in config["login"].as_array_mut().unwrap() {
        let removed = service.as_object_mut().unwrap().remove("session_store");
        assert_eq!(removed.as_ref().and_then(Value::as_str), Some("cluster"));
    }
    assert_eq!(
        fleet,
        plugin("overlays/monitoring"),
        "the same gateway, services and rules"
    );
}

/// Without the secret inputs nothing renders: the package carries no secret values.
#[test]
fn overlays_with_secrets_do_not_render_without_their_secrets_env() {
    let package = Package::copy();
    for dir in RENDERED {
        let has_secrets = package.dir(dir).join("secrets.env.example").exists()
            || dir.ends_with("monitoring-fleet");
        let result = package.render(dir);
        assert_eq!(result.is_err(), has_secrets, "{dir}: {result:?}");
    }
}

/// One JSON line per object from a validator script.
fn validator_results(program: &str, script: &str, objects: &[Value]) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(program)
        .arg(
            repo_root()
                .join("tests/support/manifest-validators")
                .join(script),
        )
        .current_dir(repo_root().join("tests/support/manifest-validators"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (run ./build.sh setup)"));
    let input = serde_json::to_vec(objects).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{script} failed");
    let results: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(results.len(), objects.len(), "{script}");
    results
}

/// (c): core kinds pass kubernetes-validate (strict), Istio, Gateway API and Envoy Gateway
/// kinds the validators generated from their CRDs; no kind slips through unvalidated.
#[test]
fn every_object_passes_the_schema_of_its_kind() {
    let python = repo_root().join(".venv/bin/python");
    for (dir, objects) in rendered_with_secrets() {
        let core = validator_results(python.to_str().unwrap(), "validate_core.py", &objects);
        let crds = validator_results("node", "validate.mjs", &objects);
        for ((object, core), crd) in objects.iter().zip(&core).zip(&crds) {
            let what = format!("{dir}: {} {}", object["kind"], object["metadata"]["name"]);
            for result in [core, crd] {
                assert_ne!(result["result"], "invalid", "{what}: {}", result["errors"]);
            }
            let validated = core["result"] == "valid" || crd["result"] == "valid";
            assert!(validated, "{what}: no validator");
        }
    }
}

/// (d): every object is namespaced except the impersonation RBAC the Kubernetes API overlay
/// documents; no mesh configuration (ConfigMap istio*, IstioOperator, MeshConfig).
#[test]
fn nothing_rendered_replaces_cluster_wide_configuration() {
    for (dir, objects) in rendered_with_secrets() {
        for object in &objects {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            let what = format!("{dir}: {kind} {name}");
            assert!(
                !(kind == "ConfigMap" && name.starts_with("istio")) && kind != "IstioOperator",
                "{what} replaces the mesh's configuration"
            );
            let documented = dir == "overlays/kubernetes-api"
                && ["ClusterRole", "ClusterRoleBinding"].contains(&kind)
                && name == "wasm-iap-impersonator";
            let namespaced = object["metadata"]["namespace"].as_str().is_some();
            assert!(namespaced || documented, "{what} is cluster-wide");
        }
    }
}

/// The shell lines of the README section under `heading`.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    block.lines().map(str::to_string).collect()
}

/// The README's install sections, run as far as they go without a cluster and registry:
/// the image is built and copied, the secrets file is made from its example, and every
/// directory `kubectl kustomize` or `kubectl apply -k` names renders to a Wasm attachment.
#[test]
fn readme_install_sections_render_what_they_apply() {
    for heading in ["Install on Istio", "Install on Envoy Gateway"] {
        let commands = readme_commands(heading);
        assert!(commands[0].starts_with("./build.sh image && skopeo copy oci:target/oci:"));
        let package = Package::copy();
        let (mut rendered, mut checked) = (0, 0);
        for line in &commands[1..] {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["cp", from, to] => {
                    assert!(to.ends_with("/secrets.env"), "{line}");
                    let from = package.root.join(from);
                    let filled = std::fs::read_to_string(&from)
                        .unwrap()
                        .replace("=\n", "=s3cr3t-value-of-32-bytes-or-more\n");
                    std::fs::write(package.root.join(to), filled).unwrap();
                }
                ["kubectl", "kustomize", dir, "|", "cargo", "run", "-q", "--bin", "wasm-iap", "--", "check", "-"] =>
                {
                    let text = support::kustomize::kustomize_text(&package.root.join(dir))
                        .unwrap_or_else(|e| panic!("{line}: {e}"));
                    let result = support::check::run_check(&["-"], &text);
                    let (status, out) = (result.status, result.printed());
                    assert_eq!(status, 0, "{line}: {out}");
                    assert!(
                        out.contains("checked 1 configuration(s): 0 problem(s)"),
                        "{line}: {out}"
                    );
                    checked += 1;
                }
                ["kubectl", "apply", "-k", dir] => {
                    let objects = support::kustomize::kustomize(&package.root.join(dir))
                        .unwrap_or_else(|e| panic!("{line}: {e}"));
                    let wasm = of_kind(&objects, "WasmPlugin").len()
                        + of_kind(&objects, "EnvoyExtensionPolicy").len();
                    assert_eq!(wasm, 1, "{line}");
                    rendered += 1;
                }
                _ => panic!("{heading}: a command the test does not know: {line}"),
            }
        }
        assert_eq!((rendered, checked), (1, 1), "{heading}");
    }
}
