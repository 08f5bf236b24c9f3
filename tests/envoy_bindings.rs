#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 16, classes 1 and 4 through real Envoy with an echoing upstream: a session cookie
//! another realm's deployment sealed (same host, client id, cookie name and secret) is no
//! session, and a token of a provider the service does not name gets `401`, whatever it
//! claims. Keys are inline: nothing is fetched.

mod support;

use serde_json::{json, Value};
use support::envoy::{bootstrap, wasm_filter, Envoy};
use support::http::{self, Response};
use support::mint::{self, claims_with, other_keys, shared_keys, KeyRing};
use support::native_bed::Bed as NativeBed;
use support::servers::{free_port, Upstream};
use wasm_iap::core::login::session::Session;

const APP: &str = "grafana.localhost";
const API: &str = "api.localhost";
const CORP: &str = "https://keycloak.example.com/realms/corp";
const SIGNUP: &str = "https://keycloak.example.com/realms/self-signup";
const AUDIENCE: &str = "grafana";
const JSON: (&str, &str) = ("accept", "application/json");

fn provider(issuer: &str, keys: &KeyRing) -> Value {
    json!({ "issuer": issuer, "audiences": [AUDIENCE], "jwks": keys.jwks() })
}

/// Both realms trusted; the app's sign-in is the realm `login_realm`'s `grafana` client (the
/// same client id, cookie name and secret in either realm), the API takes corporate tokens
/// only.
fn config(login_realm: &str) -> Value {
    json!({
        "providers": [provider(CORP, shared_keys()), provider(SIGNUP, other_keys())],
        "login": [{
            "hosts": [APP],
            "issuer": login_realm,
            "client_id": "grafana",
            "client_secret": "grafana-secret",
            "cookie_name": "_grafana",
            "cookie_secrets": ["one-secret-for-both-realms-0123456789"],
            "cookie_secure": false,
            "cluster": "idp",
            "authorization_endpoint": format!("{login_realm}/auth"),
            "token_endpoint": format!("{login_realm}/token"),
            "allowed_groups": ["myorg:sre"],
        }],
        "services": [{
            "hosts": [API],
            "providers": [CORP],
            "email_domains": ["mydomain.com"],
            "allowed_groups": ["myorg:sre"],
        }],
    })
}

struct Bed {
    upstream: Upstream,
    envoy: Envoy,
}

impl Bed {
    /// Envoy with the corporate realm's configuration.
    fn start() -> Bed {
        let upstream = Upstream::start();
        let envoy = Envoy::start(&bootstrap(
            vec![wasm_filter(&config(CORP))],
            upstream.port(),
            free_port(),
        ));
        Bed { upstream, envoy }
    }

    fn get(&self, host: &str, headers: &[(&str, &str)]) -> Response {
        http::get(&format!("http://{host}:{}/", self.envoy.port), headers)
    }
}

/// A session of an SRE member, sealed by a deployment whose sign-in is `realm`.
fn session_cookie(realm: &str) -> String {
    let now = mint::now_secs();
    let session = Session {
        sid: "sid-mallory".into(),
        user: "mallory".into(),
        email: Some("mallory@mydomain.com".into()),
        groups: vec!["myorg:sre".into()],
        expires_at: now + 3600,
        refresh_at: now + 3000,
        ..Session::default()
    };
    NativeBed::new(&config(realm)).session_cookie(0, &session)
}

fn token(issuer: &str, keys: &KeyRing) -> String {
    let claims = claims_with(
        issuer,
        AUDIENCE,
        json!({ "email": "alice@mydomain.com", "groups": ["myorg:sre"] }),
    );
    format!("Bearer {}", keys.signer("ES256").sign(&claims))
}

#[test]
fn session_sealed_by_the_self_signup_realms_deployment_is_no_session_through_envoy() {
    let bed = Bed::start();
    let foreign = session_cookie(SIGNUP);
    let response = bed.get(APP, &[("cookie", &foreign), JSON]);
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(bed.upstream.hits(), 0, "the upstream was reached");
    // The corporate deployment's own session passes, with its identity.
    let own = session_cookie(CORP);
    let response = bed.get(APP, &[("cookie", &own), JSON]);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.echoed_header("x-auth-request-user"),
        Some(vec!["mallory".to_string()])
    );
}

#[test]
fn token_from_the_self_signup_realm_gets_401_on_the_corporate_api_through_envoy() {
    let bed = Bed::start();
    let signup = token(SIGNUP, other_keys());
    for host in [API, APP] {
        let response = bed.get(host, &[("authorization", &signup), JSON]);
        assert_eq!(response.status, 401, "{host}: {response:?}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\"")
                && challenge.contains("not accepted here"),
            "{host}: {challenge}"
        );
    }
    assert_eq!(bed.upstream.hits(), 0, "the upstream was reached");
    let corporate = token(CORP, shared_keys());
    let response = bed.get(API, &[("authorization", &corporate), JSON]);
    assert_eq!(response.status, 200, "{response:?}");
}
