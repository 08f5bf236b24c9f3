//! The Kubernetes API bed on its own, without wasm-iap: the kube-apiserver stand-in behind
//! Envoy over mutual TLS answers kubectl (with `--token` and with an exec credential plugin),
//! passes upgrades (exec) through, and refuses clients without the proxy's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::envoy::Envoy;
use support::kube::{
    header_values, kube_bootstrap, kube_url, kubectl, kubectl_with_exec_plugin, send_upgrade,
    KubeCerts, KubeStandin, PROXY_CN, PROXY_O,
};
use support::servers::free_port;

/// A JWT-shaped token; nothing checks it here.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

fn bed() -> (KubeCerts, KubeStandin, Envoy) {
    let certs = KubeCerts::generate();
    let standin = KubeStandin::start(&certs);
    let envoy = Envoy::start(&kube_bootstrap(vec![], standin.port, free_port(), &certs));
    (certs, standin, envoy)
}

fn assert_pods_listed_with_token(standin: &KubeStandin, output: &(i32, String, String)) {
    let (code, stdout, stderr) = output;
    assert_eq!(*code, 0, "kubectl failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "pod/demo", "stderr: {stderr}");
    let listed = standin.recorded_at("/api/v1/namespaces/default/pods");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let list = &listed[0];
    assert_eq!(list["method"], "GET");
    assert_eq!(list["client_cn"], PROXY_CN);
    assert_eq!(list["client_o"], PROXY_O);
    assert_eq!(
        header_values(list, "authorization"),
        vec![format!("Bearer {TOKEN}")]
    );
    assert_eq!(header_values(list, "x-forwarded-proto"), vec!["https"]);
    // Discovery went the same way, with the same token.
    let discovery = standin.recorded_at("/api");
    assert!(!discovery.is_empty(), "{:?}", standin.recorded());
    for request in standin.recorded() {
        assert_eq!(request["client_cn"], PROXY_CN, "{request}");
        assert_eq!(
            header_values(&request, "authorization"),
            vec![format!("Bearer {TOKEN}")],
            "{request}"
        );
    }
}

#[test]
fn kubectl_with_token_lists_pods_through_envoy_over_mutual_tls() {
    let (_certs, standin, envoy) = bed();
    let output = kubectl(
        &kube_url(&envoy),
        &["get", "pods", "-n", "default", "-o", "name"],
        Some(TOKEN),
    );
    assert_pods_listed_with_token(&standin, &output);
}

#[test]
fn kubectl_without_token_sends_no_authorization() {
    let (_certs, standin, envoy) = bed();
    let (code, stdout, stderr) = kubectl(&kube_url(&envoy), &["get", "pods", "-o", "name"], None);
    assert_eq!(code, 0, "kubectl failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "pod/demo");
    let recorded = standin.recorded();
    assert!(!recorded.is_empty());
    for request in recorded {
        assert!(
            header_values(&request, "authorization").is_empty(),
            "{request}"
        );
    }
}

/// Why the bed's listener also speaks TLS: kubectl keeps credentials to itself over plain HTTP.
#[test]
fn kubectl_sends_no_token_over_plain_http() {
    let (_certs, standin, envoy) = bed();
    let (code, stdout, stderr) =
        kubectl(&envoy.url(""), &["get", "pods", "-o", "name"], Some(TOKEN));
    assert_eq!(code, 0, "kubectl failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "pod/demo");
    for request in standin.recorded() {
        assert!(
            header_values(&request, "authorization").is_empty(),
            "{request}"
        );
        assert_eq!(header_values(&request, "x-forwarded-proto"), vec!["http"]);
    }
}

#[test]
fn kubectl_with_exec_credential_plugin_sends_its_token() {
    let (_certs, standin, envoy) = bed();
    let output = kubectl_with_exec_plugin(
        &kube_url(&envoy),
        &["get", "pods", "-n", "default", "-o", "name"],
        TOKEN,
    );
    assert_pods_listed_with_token(&standin, &output);
}

#[test]
fn exec_upgrade_switches_protocols_and_streams_both_ways_through_envoy() {
    let (_certs, standin, envoy) = bed();
    for upgrade in ["SPDY/3.1", "websocket"] {
        let path = "/api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true";
        let mut answer = send_upgrade(
            envoy.port,
            path,
            upgrade,
            &[
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                ("Authorization", &format!("Bearer {TOKEN}")),
            ],
        )
        .unwrap();
        assert_eq!(answer.status, 101, "{upgrade}: {}", answer.head);
        assert_eq!(
            answer.header("upgrade").map(|v| v.to_ascii_lowercase()),
            Some(upgrade.to_ascii_lowercase()),
            "{}",
            answer.head
        );
        for data in [
            &b"echo hello\n"[..],
            &[0u8, 1, 2, 255, 254][..],
            &[b'x'; 20_000][..],
        ] {
            assert_eq!(answer.echo(data).unwrap(), data, "{upgrade}");
        }
        let recorded = standin.recorded();
        let exec = recorded.last().expect("the exec request was recorded");
        assert_eq!(exec["path"], path);
        assert_eq!(exec["upgrade"], true);
        assert_eq!(exec["client_cn"], PROXY_CN);
        assert_eq!(
            header_values(exec, "upgrade")
                .iter()
                .map(|v| v.to_ascii_lowercase())
                .collect::<Vec<_>>(),
            vec![upgrade.to_ascii_lowercase()]
        );
        assert_eq!(
            header_values(exec, "authorization"),
            vec![format!("Bearer {TOKEN}")]
        );
    }
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("curl")
        .env_clear()
        .args(["-sS", "--max-time", "10", "--noproxy", "*"])
        .args(args)
        .output()
        .expect("run curl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn standin_refuses_clients_without_a_certificate_of_its_ca() {
    let certs = KubeCerts::generate();
    let standin = KubeStandin::start(&certs);
    let url = format!("{}/version", standin.url());
    let resolve = format!("localhost:{}:127.0.0.1", standin.port);
    let ca = certs.ca_cert.to_str().unwrap();
    let base = ["--resolve", resolve.as_str(), "--cacert", ca];

    // With the proxy's certificate: an answer.
    let cert = certs.client_cert.to_str().unwrap();
    let key = certs.client_key.to_str().unwrap();
    let mut args = base.to_vec();
    args.extend(["--cert", cert, "--key", key, url.as_str()]);
    let (ok, stdout, stderr) = curl(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"gitVersion\""), "{stdout}");

    // Without a certificate: no HTTP answer at all.
    let mut args = base.to_vec();
    args.push(url.as_str());
    let (ok, stdout, stderr) = curl(&args);
    assert!(!ok, "answered without a client certificate: {stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    eprintln!("without a client certificate, curl says: {}", stderr.trim());

    // With a certificate of another CA: no HTTP answer either.
    let stranger = KubeCerts::generate();
    let cert = stranger.client_cert.to_str().unwrap();
    let key = stranger.client_key.to_str().unwrap();
    let mut args = base.to_vec();
    args.extend(["--cert", cert, "--key", key, url.as_str()]);
    let (ok, stdout, stderr) = curl(&args);
    assert!(!ok, "answered a certificate of another CA: {stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    eprintln!(
        "with another CA's certificate, curl says: {}",
        stderr.trim()
    );

    // Only the request with the right certificate was recorded.
    let recorded = standin.recorded();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["client_cn"], PROXY_CN);
}
