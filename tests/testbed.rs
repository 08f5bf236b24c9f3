//! The README's first command: the local testbed starts, and the flows it prints work
//! (an API client with a token; a browser sent to log in).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::envoy::{envoy_binary, repo_root, wasm_path};

#[test]
fn testbed_starts_and_its_printed_curl_flow_works() {
    wasm_path();
    let output = Command::new("node")
        .arg("envoy-local/testbed.mjs")
        .arg("--self-test")
        .current_dir(repo_root())
        .env("WASM_IAP_ENVOY", envoy_binary())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "testbed self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("curl -i -H \"Authorization: Bearer $TOKEN\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("self-test: with token 200 as demo-cli; without token 401; browser sent to log in: true"),
        "{stdout}"
    );
    assert!(
        stdout.contains("demo login: alice@example.com / demo"),
        "{stdout}"
    );
}
