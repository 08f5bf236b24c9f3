//! Envoy's own remote Wasm source: the filter fetched over HTTP (`vm_config.code.remote`)
//! with its sha256, as a deployment without an image puller loads it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::envoy::{bootstrap, cluster, wasm_filter, wasm_path, Envoy};
use support::file_server::FileServer;
use support::http;
use support::mint::{claims, shared_keys};
use support::servers::{KeyServer, Upstream};

const AUDIENCE: &str = "prometheus";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A bootstrap whose Wasm filter is fetched from `source` and must hash to `sha256`.
fn remote_bootstrap(
    idp: &KeyServer,
    upstream: &Upstream,
    source: &FileServer,
    sha256: &str,
) -> Value {
    let plugin = json!({
        "providers": [{ "issuer": idp.issuer(), "audiences": [AUDIENCE], "cluster": "idp", "timeout": "2s" }],
        "keys_wait_timeout": "2s"
    });
    let mut filter = wasm_filter(&plugin);
    filter["typed_config"]["config"]["vm_config"]["code"] = json!({ "remote": {
        "http_uri": {
            "uri": format!("http://127.0.0.1:{}/wasm_iap.wasm", source.port),
            "cluster": "wasm-source",
            "timeout": "10s"
        },
        "sha256": sha256
    }});
    let mut config = bootstrap(vec![filter], upstream.port(), idp.port);
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(cluster("wasm-source", source.port));
    config
}

/// A key server, an echoing upstream, a file server with the built module, and Envoy told
/// to fetch the module from there and check it against `sha256` (`None`: the module's).
fn bed(sha256: Option<String>) -> (KeyServer, Upstream, FileServer, Envoy) {
    let wasm = std::fs::read(wasm_path()).unwrap();
    let sha256 = sha256.unwrap_or_else(|| sha256_hex(&wasm));
    let idp = KeyServer::start(0, shared_keys().jwks());
    let upstream = Upstream::start();
    let source = FileServer::start(wasm);
    let envoy = Envoy::start(&remote_bootstrap(&idp, &upstream, &source, &sha256));
    (idp, upstream, source, envoy)
}

#[test]
fn the_module_fetched_over_http_with_its_sha256_guards_the_api() {
    let (idp, upstream, source, envoy) = bed(None);
    assert!(source.fetches() >= 1, "Envoy never fetched the module");

    let refused = http::get(&envoy.url("/api/v1/query"), &[]);
    assert_eq!(refused.status, 401, "{refused:?}");
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"wasm-iap\""),
        "{challenge}"
    );

    let token = shared_keys()
        .signer("RS256")
        .sign(&claims(&idp.issuer(), AUDIENCE));
    let allowed = http::get(
        &envoy.url("/api/v1/query"),
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.echoed_header("x-auth-request-user"),
        Some(vec!["alice-id".into()])
    );
    assert_eq!(
        upstream.hits(),
        1,
        "only the request with a valid token got through"
    );
}

#[test]
fn a_module_that_does_not_match_its_sha256_serves_nothing() {
    // Envoy downloads the module, finds another hash, gives up after its retry, and the
    // filter, failing closed (the default failure policy), answers 503 to everything.
    let (idp, upstream, source, envoy) = bed(Some(sha256_hex(b"another module")));
    assert!(source.fetches() >= 1, "Envoy never fetched the module");
    let token = shared_keys()
        .signer("RS256")
        .sign(&claims(&idp.issuer(), AUDIENCE));
    for headers in [vec![], vec![("authorization", format!("Bearer {token}"))]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = http::get(&envoy.url("/api/v1/query"), &headers);
        assert_eq!(response.status, 503, "{response:?}");
    }
    assert_eq!(upstream.hits(), 0, "nothing reached the upstream");
    assert!(
        envoy.log().contains("Plugin wasm-iap failed to load"),
        "{}",
        envoy.log()
    );
}
