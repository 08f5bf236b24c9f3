#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Review of issue 20: `wasm-iap check` must never accept what the filter, as the host
//! really starts it, would refuse or run differently; and the Kustomize package must not
//! change the mesh outside what it owns.

mod support;

use support::kustomize::{kustomize_text, Package, RENDERED};

/// `wasm-iap check [args] -` on `stdin`, without the caller's environment.
fn check(args: &[&str], stdin: &str) -> (i32, String) {
    let args: Vec<&str> = args.iter().copied().chain(["-"]).collect();
    let checked = support::check::run_check(&args, stdin);
    (checked.status, checked.printed())
}

const CONFIG: &str = r#"{"providers": [{"issuer": "https://i.example", "audiences": ["a"], "cluster": "c"}],
  "login": [{"hosts": ["a.example"], "issuer": "https://i.example", "client_id": "a",
             "client_secret": {"env": "CLIENT"}, "cookie_secrets": [{"env": "COOKIE"}]}]}"#;

fn wasm_plugin(spec_extra: &str, env: &str) -> String {
    format!(
        "kind: WasmPlugin\nmetadata: {{name: w, namespace: n}}\nspec:\n{spec_extra}  vmConfig:\n    env:\n{env}  pluginConfig: {CONFIG}\n"
    )
}

const HOST_ENV: &str =
    "    - {name: CLIENT, valueFrom: HOST}\n    - {name: COOKIE, valueFrom: HOST}\n";

/// Istio's `valueFrom` defaults to INLINE: an entry without `valueFrom: HOST` gives the VM
/// its `value` (or an empty one), never the gateway's variable.
#[test]
fn inline_vm_env_entries_are_checked_with_the_value_istio_passes() {
    let env = "    - {name: CLIENT}\n    - {name: COOKIE, value: short}\n";
    let (status, out) = check(&[], &wasm_plugin("", env));
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("login[0].client_secret"), "{out}");
    assert!(out.contains("login[0].cookie_secrets"), "{out}");
}

/// The Secrets of `kubectl kustomize` output are what the gateway gets: an empty one (the
/// README's `cp secrets.env.example secrets.env` left unfilled) is a problem, not a
/// placeholder.
#[test]
fn secrets_in_the_stream_are_checked_as_the_gateway_receives_them() {
    let stream = format!(
        "kind: Secret\nmetadata: {{name: s, namespace: n}}\ndata: {{CLIENT: Y2xpZW50, COOKIE: ''}}\n---\n\
         kind: Deployment\nmetadata: {{name: g, namespace: n}}\nspec:\n  template:\n    spec:\n      containers:\n\
         \x20     - name: istio-proxy\n        env:\n\
         \x20       - {{name: CLIENT, valueFrom: {{secretKeyRef: {{name: s, key: CLIENT}}}}}}\n\
         \x20       - {{name: COOKIE, valueFrom: {{secretKeyRef: {{name: s, key: COOKIE}}}}}}\n---\n{}",
        wasm_plugin("", HOST_ENV)
    );
    let (status, out) = check(&[], &stream);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("login[0].cookie_secrets"), "{out}");
    assert!(out.contains("Secret s key COOKIE"), "{out}");
}

/// The README's install commands, run with the secrets file copied but not filled in: the
/// check must fail before `kubectl apply` ships empty secrets to the gateway.
#[test]
fn the_readme_check_fails_on_an_unfilled_secrets_file() {
    let package = Package::copy();
    for dir in ["overlays/monitoring", "envoy-gateway"] {
        let example = package.dir(dir).join("secrets.env.example");
        std::fs::copy(&example, example.with_file_name("secrets.env")).unwrap();
        let text = kustomize_text(&package.dir(dir)).unwrap();
        let (status, out) = check(&[], &text);
        assert_eq!(status, 1, "{dir}: {out}");
        assert!(out.contains("is not set in the VM"), "{dir}: {out}");
    }
}

/// Envoy Gateway hands the filter `config`'s JSON; a YAML string there reaches the filter as
/// a JSON string, which it refuses (and Istio refuses a non-object pluginConfig).
#[test]
fn a_manifest_config_given_as_a_string_is_refused() {
    let policy = "kind: EnvoyExtensionPolicy\nmetadata: {name: p}\nspec:\n  wasm:\n  - name: w\n    config: '{\"providers\": [{\"issuer\": \"https://i.example\", \"audiences\": [\"a\"], \"cluster\": \"c\"}], \"services\": [{\"hosts\": [\"x\"]}]}'\n";
    let (status, out) = check(&[], policy);
    assert_eq!(status, 1, "{out}");
}

fn envoy_bootstrap(config_fields: &str) -> String {
    let value =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(CONFIG).unwrap()).unwrap();
    format!(
        "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n\
         \x20         - typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n\
         \x20             config:\n{config_fields}\
         \x20               configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n\
         \x20                 value: '{value}'\n"
    )
}

/// Envoy reads its bootstrap by proto or JSON (lowerCamelCase) field names and enums by name
/// or number; `key_values` are what the VM gets, whatever the check's environment says.
#[test]
fn envoy_bootstraps_are_read_as_envoy_reads_them() {
    let host =
        "                vmConfig: {environmentVariables: {hostEnvKeys: [CLIENT, COOKIE]}}\n";
    let (status, out) = check(&[], &envoy_bootstrap(host));
    assert_eq!(status, 0, "camelCase host keys are passed: {out}");
    for open in [
        "                failurePolicy: FAIL_OPEN\n",
        "                failure_policy: 2\n",
        "                failOpen: true\n",
    ] {
        let (status, out) = check(&["--strict"], &envoy_bootstrap(&(open.to_string() + host)));
        assert_eq!(status, 1, "{open}: {out}");
        assert!(
            out.contains("unauthenticated when the VM fails"),
            "{open}: {out}"
        );
    }
    let inline = "                vm_config: {environment_variables: {host_env_keys: [CLIENT], key_values: {COOKIE: short}}}\n";
    let (status, out) = check(&[], &envoy_bootstrap(inline));
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("login[0].cookie_secrets"), "{out}");
}

/// Kubernetes' YAML reader applies `<<` merge keys; a FAIL_OPEN merged in is still noted.
#[test]
fn yaml_merge_keys_are_applied_as_kubernetes_applies_them() {
    let stream = format!(
        "kind: WasmPlugin\nmetadata: {{name: w}}\nspec:\n  <<: &common {{failStrategy: FAIL_OPEN}}\n  vmConfig:\n    env:\n{HOST_ENV}  pluginConfig: {CONFIG}\n"
    );
    let (status, out) = check(&["--strict"], &stream);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("spec.failStrategy"), "{out}");
}

/// A ServiceEntry or DestinationRule exported to every namespace changes how every sidecar
/// of the mesh reaches that host (a DestinationRule originating TLS double-encrypts the
/// HTTPS of every other workload calling the IdP): the package's stay in their namespace.
#[test]
fn mesh_routing_objects_stay_in_their_namespace() {
    let package = Package::with_secrets();
    for dir in RENDERED {
        let objects = package.render(dir).unwrap();
        for object in &objects {
            let kind = object["kind"].as_str().unwrap();
            if ["ServiceEntry", "DestinationRule"].contains(&kind) {
                let name = &object["metadata"]["name"];
                assert_eq!(
                    object["spec"]["exportTo"],
                    serde_json::json!(["."]),
                    "{dir}: {kind} {name} is exported to the whole mesh"
                );
            }
        }
    }
}
