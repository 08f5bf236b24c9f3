#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `wasm-iap check` as a user runs it: the built binary on good and bad JSON files, a
//! multi-document manifest stream, stdin and an env file; every problem printed with its
//! path and place, exit status 0/1/2, and a note for each unsafe setting SECURITY.md names.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};

/// A directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("wasm-iap-check-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `stdin`, without the caller's environment; (status, stdout, stderr).
fn check(args: &[&str], stdin: &str) -> (i32, String, String) {
    let checked = support::check::run_check(args, stdin);
    (checked.status, checked.stdout, checked.stderr)
}

fn good() -> Value {
    json!({
        "providers": [{"issuer": "https://dex.example.com", "audiences": ["grafana"], "cluster": "dex"}],
        "login": [{"hosts": ["grafana.example.com"], "issuer": "https://dex.example.com",
                   "client_id": "grafana", "client_secret": {"env": "GRAFANA_CLIENT_SECRET"},
                   "cookie_secrets": [{"env": "GRAFANA_COOKIE_SECRET"}]}]
    })
}

#[test]
fn a_good_file_passes_and_names_the_secrets_it_needs() {
    let dir = TempDir::new("good");
    let file = dir.file("good.json", &good().to_string());
    let (status, out, _) = check(&[&file], "");
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{file}: env: GRAFANA_CLIENT_SECRET (not given: checked with a placeholder)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{file}: env: GRAFANA_COOKIE_SECRET (not given")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{file}: accepted: 0 problem(s), 0 note(s)")),
        "{out}"
    );
}

#[test]
fn every_problem_of_a_bad_file_is_printed_with_its_path_and_fails() {
    let dir = TempDir::new("bad");
    let mut bad = good();
    bad["providers"][0]["issuer"] = json!("dex.example.com");
    bad["login"][0]["cookie_samesite"] = json!("sometimes");
    bad["colour"] = json!("blue");
    let file = dir.file("bad.json", &bad.to_string());
    let (status, out, _) = check(&[&file], "");
    assert_eq!(status, 1, "{out}");
    for line in [
        "problem: providers[0].issuer: \"dex.example.com\" is not a URL",
        "problem: login[0].cookie_samesite: \"sometimes\" is not one of Strict, Lax, None",
        "problem: colour: unknown field",
    ] {
        assert!(out.contains(&format!("{file}: {line}")), "{line}\n{out}");
    }
    let broken = dir.file("broken.json", "{\"providers\": [,}");
    let (status, out, _) = check(&[&broken], "");
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("problem: configuration is not valid JSON"),
        "{out}"
    );
}

#[test]
fn an_env_file_gives_real_values_which_are_checked_as_given() {
    let dir = TempDir::new("env");
    let file = dir.file("good.json", &good().to_string());
    let env = dir.file(
        "secrets.env",
        "GRAFANA_CLIENT_SECRET=s3cret\nGRAFANA_COOKIE_SECRET=short\n",
    );
    let (status, out, _) = check(&["--env-file", &env, &file], "");
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains(&format!("{file}: problem: login[0].cookie_secrets")),
        "{out}"
    );
    assert!(
        out.contains("env: GRAFANA_COOKIE_SECRET (from --env-file)"),
        "{out}"
    );
}

/// `kubectl kustomize` output: several documents, only some of them plugin configurations.
const STREAM: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: wasm-iap, namespace: istio-system}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: iap, namespace: istio-system}
spec:
  failStrategy: FAIL_OPEN
  vmConfig:
    env:
    - {name: GRAFANA_CLIENT_SECRET, valueFrom: HOST}
  pluginConfig:
    providers:
    - {issuer: https://dex.example.com, audiences: [grafana], cluster: dex}
    login:
    - hosts: [grafana.example.com]
      issuer: https://dex.example.com
      client_id: grafana
      client_secret: {env: GRAFANA_CLIENT_SECRET}
      cookie_secrets: [{env: GRAFANA_COOKIE_SECRET}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: iap-eg, namespace: gateways}
spec:
  wasm:
  - name: wasm-iap
    code: {type: Image, image: {url: registry.example.com/wasm-iap:0.1.0}}
    env: {hostKeys: [GRAFANA_CLIENT_SECRET, GRAFANA_COOKIE_SECRET]}
    config:
      providers:
      - {issuer: https://dex.example.com, audiences: [], cluster: dex}
"#;

#[test]
fn a_manifest_stream_is_checked_document_by_document_from_stdin() {
    let (status, out, _) = check(&["-"], STREAM);
    assert_eq!(status, 1, "{out}");
    let plugin = "(stdin) [document 2: WasmPlugin istio-system/iap, spec.pluginConfig]";
    let policy = "(stdin) [document 3: EnvoyExtensionPolicy gateways/iap-eg, spec.wasm[0].config]";
    for line in [
        format!("{plugin}: problem: spec.vmConfig.env: GRAFANA_COOKIE_SECRET is named in the configuration but not passed into the VM"),
        format!("{plugin}: note: spec.failStrategy: lets every request through"),
        format!("{policy}: problem: providers[0].audiences: must list at least one accepted audience"),
        "checked 2 configuration(s): 2 problem(s)".to_string(),
    ] {
        assert!(out.contains(&line), "{line}\n{out}");
    }
    assert!(!out.contains("document 1"), "{out}");
}

#[test]
fn usage_errors_and_unreadable_input_exit_2() {
    assert_eq!(check(&[], "").0, 2);
    assert_eq!(check(&["--no-such-flag", "-"], "").0, 2);
    assert_eq!(check(&["/no/such/file.json"], "").0, 2);
    assert_eq!(check(&["-"], "a: [").0, 2);
    let (status, _, err) = check(&["-"], "kind: Secret\nmetadata: {name: s}\n");
    assert_eq!(status, 2);
    assert!(err.contains("no plugin configuration found"), "{err}");
}

/// An edit of the good configuration.
type Change = Box<dyn Fn(&mut Value)>;

/// Each unsafe setting SECURITY.md or docs/configuration.md names: (what to change, the
/// path its note names).
fn unsafe_settings() -> Vec<(Change, &'static str)> {
    vec![
        (
            Box::new(|c| c["login"][0]["cookie_secure"] = json!(false)),
            "login[0].cookie_secure",
        ),
        (
            Box::new(|c| c["login"][0]["pass_access_token"] = json!(true)),
            "login[0].pass_access_token",
        ),
        (
            Box::new(|c| c["login"][0]["set_authorization_header"] = json!(true)),
            "login[0].set_authorization_header",
        ),
        (
            Box::new(|c| c["login"][0]["hosts"] = json!(["*"])),
            "login[0].hosts",
        ),
        (
            Box::new(|c| c["login"][0]["allowed_redirect_hosts"] = json!([".com"])),
            "login[0].allowed_redirect_hosts[0]",
        ),
        (
            Box::new(|c| c["login"][0]["routes"] = json!([{"path_prefix": "/", "public": true}])),
            "login[0].routes[0]",
        ),
        // Regexes any path matches, however spelled (the reader anchors them).
        (
            Box::new(|c| c["login"][0]["routes"] = json!([{"path_regex": "/.*?", "public": true}])),
            "login[0].routes[0]",
        ),
        (
            Box::new(|c| {
                c["login"][0]["routes"] = json!([{"path_regex": "[^?]*", "public": true}])
            }),
            "login[0].routes[0]",
        ),
        (
            Box::new(|c| {
                c["login"][0]["routes"] = json!([{"path_regex": "(/.*)?", "public": true}])
            }),
            "login[0].routes[0]",
        ),
        (
            Box::new(|c| c["login"][0]["token_endpoint"] = json!("http://dex.example.com/token")),
            "login[0].token_endpoint",
        ),
        (
            Box::new(|c| {
                c["providers"][0]["issuer"] = json!("http://dex.example.com");
                c["login"][0]["issuer"] = json!("http://dex.example.com");
            }),
            "providers[0].issuer",
        ),
        (
            Box::new(|c| c["providers"][0]["email_verified"] = json!("when_present")),
            "providers[0].email_verified",
        ),
        (
            Box::new(|c| c["providers"][0]["require_expiry"] = json!(false)),
            "providers[0].require_expiry",
        ),
        (
            Box::new(|c| c["endpoints"] = json!({"refuse_spoofed_headers": false})),
            "endpoints.refuse_spoofed_headers",
        ),
        (
            Box::new(|c| c["endpoints"] = json!({"trust_original_url": true})),
            "endpoints.trust_original_url",
        ),
        (
            Box::new(
                |c| c["services"] = json!([{"hosts": ["kube.example.com"], "impersonate": {"allow_unprefixed": true}}]),
            ),
            "services[0].impersonate.allow_unprefixed",
        ),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("login");
            }),
            "services",
        ),
    ]
}

#[test]
fn each_unsafe_setting_gets_a_note_that_fails_only_with_strict() {
    let dir = TempDir::new("notes");
    for (i, (change, path)) in unsafe_settings().into_iter().enumerate() {
        let mut config = good();
        change(&mut config);
        let file = dir.file(&format!("unsafe-{i}.json"), &config.to_string());
        let (status, out, _) = check(&[&file], "");
        assert_eq!(status, 0, "{path}: notes do not fail\n{out}");
        assert!(
            out.contains(&format!("{file}: note: {path}: ")),
            "{path}\n{out}"
        );
        assert!(out.contains("1 note(s)"), "{path}: exactly its note\n{out}");
        let (status, _, _) = check(&["--strict", &file], "");
        assert_eq!(status, 1, "{path}: --strict fails on notes");
    }
    let file = dir.file("safe.json", &good().to_string());
    assert_eq!(check(&["--strict", &file], "").0, 0);
}

/// Every overlay of the Kustomize package, rendered as `kubectl kustomize` prints it, passes.
#[test]
fn the_shipped_manifests_pass() {
    let package = support::kustomize::Package::with_secrets();
    for dir in support::kustomize::RENDERED {
        let yaml = support::kustomize::kustomize_text(&package.dir(dir)).unwrap();
        let (status, out, err) = check(&["-"], &yaml);
        assert_eq!(status, 0, "{dir}: {out}{err}");
        assert!(
            out.contains("checked 1 configuration(s): 0 problem(s)"),
            "{dir}: {out}"
        );
    }
}
