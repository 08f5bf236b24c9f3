//! Kubernetes API mode through real Envoy (seed 004, kube-oidc-proxy's job): the real
//! `kubectl`, with `--token` and with an exec-plugin kubeconfig (as kubelogin hands over an
//! OIDC token), talks to Envoy + wasm-iap, which talks over mutual TLS to a stand-in for
//! kube-apiserver that records what it received: only the user's impersonation headers,
//! never the token, never a client's own `Impersonate-*`; refusals are the apiserver's
//! `Status`; an exec-style upgrade streams through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::envoy::{wasm_filter, Envoy};
use support::kube::{
    header_names_with_prefix, header_values, kube_bootstrap, kube_url, kubectl,
    kubectl_with_exec_plugin, send_upgrade, KubeCerts, KubeStandin, PROXY_CN,
};
use support::mint::{claims_with, shared_keys};
use support::servers::KeyServer;

const AUDIENCE: &str = "kubernetes";

struct Bed {
    _certs: KubeCerts,
    standin: KubeStandin,
    _idp: KeyServer,
    envoy: Envoy,
    issuer: String,
}

impl Bed {
    fn start() -> Bed {
        let certs = KubeCerts::generate();
        let standin = KubeStandin::start(&certs);
        let idp = KeyServer::start(0, shared_keys().jwks());
        let plugin = json!({
            "providers": [{ "issuer": idp.issuer(), "audiences": [AUDIENCE], "cluster": "idp" }],
            "services": [{
                "hosts": ["127.0.0.1"],
                "impersonate": {
                    "user_prefix": "oidc:",
                    "group_prefix": "oidc:",
                    "extra_claims": { "tenant": "tenant" },
                },
            }],
        });
        let envoy = Envoy::start(&kube_bootstrap(
            vec![wasm_filter(&plugin)],
            standin.port,
            idp.port,
            &certs,
        ));
        let issuer = idp.issuer();
        Bed {
            _certs: certs,
            standin,
            _idp: idp,
            envoy,
            issuer,
        }
    }

    fn token(&self, changes: Value) -> String {
        shared_keys()
            .signer("RS256")
            .sign(&claims_with(&self.issuer, AUDIENCE, changes))
    }

    /// `kubectl get pods` until the filter has its keys (the first seconds after start).
    fn list_pods(&self, token: &str) -> (i32, String, String) {
        let mut output = (0, String::new(), String::new());
        for _ in 0..50 {
            output = kubectl(
                &kube_url(&self.envoy),
                &["get", "pods", "-n", "default", "-o", "name"],
                Some(token),
            );
            if !output.2.contains("ServiceUnavailable") && !output.2.contains("503") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        output
    }
}

fn alice(bed: &Bed) -> String {
    bed.token(json!({ "groups": ["devs", "ops"], "tenant": "acme" }))
}

/// Every request the apiserver received carries exactly alice's impersonation, no token,
/// and comes from the proxy's certificate.
fn assert_only_alice_arrived(standin: &KubeStandin) {
    let recorded = standin.recorded();
    assert!(!recorded.is_empty());
    for request in recorded {
        assert_eq!(request["client_cn"], PROXY_CN, "{request}");
        assert_eq!(
            header_values(&request, "authorization"),
            Vec::<String>::new(),
            "{request}"
        );
        assert_eq!(
            header_values(&request, "impersonate-user"),
            ["oidc:alice-id"],
            "{request}"
        );
        assert_eq!(
            header_values(&request, "impersonate-group"),
            ["oidc:devs", "oidc:ops"],
            "{request}"
        );
        assert_eq!(
            header_values(&request, "impersonate-extra-tenant"),
            ["acme"],
            "{request}"
        );
        let mut names = header_names_with_prefix(&request, "impersonate-");
        names.sort();
        names.dedup();
        assert_eq!(
            names,
            [
                "impersonate-extra-tenant",
                "impersonate-group",
                "impersonate-user"
            ],
            "{request}"
        );
    }
}

#[test]
fn kubectl_with_a_token_acts_as_the_user_through_impersonation() {
    let bed = Bed::start();
    let (code, stdout, stderr) = bed.list_pods(&alice(&bed));
    assert_eq!(code, 0, "kubectl failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "pod/demo");
    assert!(!bed
        .standin
        .recorded_at("/api/v1/namespaces/default/pods")
        .is_empty());
    assert_only_alice_arrived(&bed.standin);
}

#[test]
fn a_kubeconfig_with_an_oidc_exec_plugin_works_the_same() {
    let bed = Bed::start();
    let token = alice(&bed);
    assert_eq!(bed.list_pods(&token).0, 0, "keys loaded");
    let (code, stdout, stderr) = kubectl_with_exec_plugin(
        &kube_url(&bed.envoy),
        &["get", "pods", "-n", "default", "-o", "name"],
        &token,
    );
    assert_eq!(code, 0, "kubectl failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "pod/demo");
    assert_only_alice_arrived(&bed.standin);
}

#[test]
fn kubectl_as_another_user_is_forbidden_and_never_reaches_the_apiserver() {
    let bed = Bed::start();
    let token = alice(&bed);
    assert_eq!(bed.list_pods(&token).0, 0, "keys loaded");
    let before = bed.standin.recorded().len();
    let (code, stdout, stderr) = kubectl(
        &kube_url(&bed.envoy),
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods",
            "--as=system:admin",
            "--as-group=system:masters",
        ],
        Some(&token),
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("Error from server (Forbidden)")
            && stderr.contains("impersonation headers are not allowed"),
        "kubectl prints the Status: {stderr}"
    );
    assert_eq!(
        bed.standin.recorded().len(),
        before,
        "nothing reached the apiserver"
    );
    assert_only_alice_arrived(&bed.standin);
}

#[test]
fn bad_and_nameless_tokens_get_the_apiservers_unauthorized_and_forbidden() {
    let bed = Bed::start();
    assert_eq!(bed.list_pods(&alice(&bed)).0, 0, "keys loaded");
    let before = bed.standin.recorded().len();
    let raw = |token: &str| {
        kubectl(
            &kube_url(&bed.envoy),
            &["get", "--raw", "/api/v1/namespaces/default/pods"],
            Some(token),
        )
    };
    let expired = bed.token(json!({ "exp": 1_000_000 }));
    let (code, _, stderr) = raw(&expired);
    assert_ne!(code, 0);
    // client-go's words for a 401 from the apiserver.
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
    let nameless = bed.token(json!({ "sub": null }));
    let (code, _, stderr) = raw(&nameless);
    assert_ne!(code, 0);
    assert!(stderr.contains("Error from server (Forbidden)"), "{stderr}");
    assert_eq!(
        bed.standin.recorded().len(),
        before,
        "nothing reached the apiserver"
    );
}

#[test]
fn an_exec_upgrade_streams_through_as_the_user_and_not_without_a_token() {
    let bed = Bed::start();
    let token = alice(&bed);
    assert_eq!(bed.list_pods(&token).0, 0, "keys loaded");
    let path = "/api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true";
    let authorization = format!("Bearer {token}");
    for upgrade in ["SPDY/3.1", "websocket"] {
        let mut answer = send_upgrade(
            bed.envoy.port,
            path,
            upgrade,
            &[
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                ("Authorization", &authorization),
            ],
        )
        .unwrap();
        assert_eq!(answer.status, 101, "{upgrade}: {}", answer.head);
        for data in [&b"ls /\n"[..], &[0u8, 1, 255][..], &[b'x'; 20_000][..]] {
            assert_eq!(answer.echo(data).unwrap(), data, "{upgrade}");
        }
    }
    let exec = bed
        .standin
        .recorded_at("/api/v1/namespaces/default/pods/demo/exec");
    assert_eq!(exec.len(), 2, "{exec:?}");
    assert_only_alice_arrived(&bed.standin);

    let refused = send_upgrade(bed.envoy.port, path, "SPDY/3.1", &[]).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.head);
    let status: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        bed.standin
            .recorded_at("/api/v1/namespaces/default/pods/demo/exec")
            .len(),
        2
    );
}

#[test]
fn a_request_for_another_host_never_reaches_the_apiserver_without_impersonation() {
    use support::raw::{send, RawRequest};
    let bed = Bed::start();
    let token = alice(&bed);
    // The keys are in once a listed request passes.
    let (code, _, stderr) = bed.list_pods(&token);
    assert_eq!(code, 0, "{stderr}");
    let secrets = "/api/v1/namespaces/kube-system/secrets";
    let port = bed.envoy.port;
    let listed = format!("127.0.0.1:{port}");
    // Envoy's catch-all virtual host (`domains: ["*"]`) routes each of these to the filter
    // and on to the apiserver unless the filter refuses.
    let requests = [
        (
            "Host: another name",
            RawRequest::get(secrets).host("kube.other.test"),
        ),
        (
            "Host: localhost",
            RawRequest::get(secrets).host(format!("localhost:{port}")),
        ),
        (
            "absolute form",
            RawRequest::get(format!("http://other.test{secrets}")).host(&listed),
        ),
        (
            "userinfo in the absolute form",
            RawRequest::get(format!("http://{listed}@other.test{secrets}")).host(&listed),
        ),
    ];
    for (case, request) in requests {
        let before = bed.standin.recorded().len();
        let answer = send(port, &request.bearer(&token)).unwrap();
        assert!(
            [400, 403].contains(&answer.status),
            "{case}: {}",
            answer.summary()
        );
        assert_eq!(
            bed.standin.recorded().len(),
            before,
            "{case}: reached the apiserver"
        );
    }
    assert_only_alice_arrived(&bed.standin);
}
