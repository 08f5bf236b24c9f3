//! A token from the real OpenID provider, validated by the filter in real Envoy through
//! OIDC discovery and the provider's published keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::envoy::{bootstrap, wasm_filter, Envoy};
use support::http;
use support::idp::Idp;
use support::servers::Upstream;

#[test]
fn client_credentials_token_from_the_real_idp_reaches_the_upstream() {
    let idp = Idp::start(&[]);
    let upstream = Upstream::start();
    let plugin = json!({ "providers": [{ "issuer": idp.issuer, "audiences": ["demo-upstream"], "cluster": "idp" }] });
    let envoy = Envoy::start(&bootstrap(
        vec![wasm_filter(&plugin)],
        upstream.port(),
        idp.port,
    ));

    let token = idp.client_credentials_token();
    let response = http::bearer(&envoy.url("/metrics"), &token);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json()["headers"]["x-auth-request-user"],
        json!(["demo-cli"])
    );

    let unauthenticated = http::get(&envoy.url("/metrics"), &[]);
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(upstream.hits(), 1);
}

#[test]
fn token_for_another_audience_from_the_real_idp_is_refused() {
    let idp = Idp::start(&[("API_AUDIENCE", "grafana")]);
    let upstream = Upstream::start();
    let plugin = json!({ "providers": [{ "issuer": idp.issuer, "audiences": ["prometheus"], "cluster": "idp" }] });
    let envoy = Envoy::start(&bootstrap(
        vec![wasm_filter(&plugin)],
        upstream.port(),
        idp.port,
    ));
    let response = http::bearer(&envoy.url("/"), &idp.client_credentials_token());
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error_description"], "wrong audience");
}
