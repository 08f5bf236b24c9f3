#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 16, classes 1 and 4 and the cookie-prefix item of 10, natively: a session (and a
//! login in flight) opens only on the login service and issuer that sealed it; a service
//! takes identities only from the providers it names; the default cookie name carries the
//! `__Host-` prefix where it can.

mod support;

use serde_json::{json, Value};
use std::rc::Rc;
use support::mint::{self, claims_with, other_keys, shared_keys};
use support::native_bed::*;

use support::host::FakeHost;
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::keys::record::KeysRecord;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;
use wasm_iap::core::request_headers::RequestHeaders;

const GRAFANA: &str = "grafana.example.com";
const REALM_A: &str = "https://keycloak.example.com/realms/corp";
const REALM_B: &str = "https://keycloak.example.com/realms/partners";
const SIGNUP: &str = "https://signup.example.com";
const CORP: &str = "corp.example.com";
const SECRET: &str = "one-cookie-secret-reused-everywhere-0123";

fn problems_of(config: &Value) -> Vec<String> {
    Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default()
}

fn assert_problem(config: &Value, path: &str, fragment: &str) {
    let problems = problems_of(config);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{path}:")) && p.contains(fragment)),
        "expected {path}: ...{fragment}... in {problems:#?}"
    );
}

fn session_of(user: &str, groups: &[&str]) -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{user}"),
        user: user.into(),
        email: Some(format!("{user}@mydomain.com")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires_at: now + 3600,
        refresh_at: now + 3000,
        ..Session::default()
    }
}

/// A `grafana` client on `hosts` in the realm `issuer`, with the cookie secret and cookie
/// name every deployment here shares.
fn grafana_in(issuer: &str, hosts: &[&str], extra: Value) -> Value {
    let mut entry = json!({
        "hosts": hosts,
        "issuer": issuer,
        "client_id": "grafana",
        "client_secret": "grafana-secret",
        "cookie_secrets": [SECRET],
        "cookie_name": "_grafana",
        "cluster": "keycloak",
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        entry[k] = v;
    }
    entry
}

fn realm(issuer: &str, keys: &mint::KeyRing) -> Value {
    json!({ "issuer": issuer, "audiences": ["grafana"], "jwks": keys.jwks() })
}

/// One deployment: realm `issuer`'s grafana on `hosts`, admitting the group `sre`.
fn deployment(issuer: &str, hosts: &[&str]) -> Value {
    json!({
        "providers": [realm(issuer, shared_keys())],
        "login": [grafana_in(issuer, hosts, json!({ "allowed_groups": ["sre"] }))],
    })
}

fn is_no_session(decision: &Decision) -> bool {
    matches!(decision, Decision::Respond(reply) if reply.status == 401)
}

// --- class 1: a session opens only where it was sealed ----------------------------------

#[test]
fn session_sealed_for_one_realm_does_not_open_on_a_service_of_another_realm() {
    // The same host, client id, cookie name and secret: only the realm differs.
    let mut partners = Bed::new(&deployment(REALM_B, &[GRAFANA]));
    let cookie = partners.session_cookie(0, &session_of("mallory", &["sre"]));
    let mut corp = Bed::new(&deployment(REALM_A, &[GRAFANA]));
    let decision = corp.get(GRAFANA, "/", &[("cookie", &cookie), JSON]);
    assert!(
        is_no_session(&decision),
        "a partners-realm session opened in the corp realm: {decision:?}"
    );
    // Its own realm still opens it.
    forwarded(partners.get(GRAFANA, "/", &[("cookie", &cookie), JSON]));
}

#[test]
fn session_of_one_deployment_does_not_open_on_another_that_reuses_its_client_and_secret() {
    let mut staging = Bed::new(&deployment(REALM_A, &["grafana.staging.example.com"]));
    let cookie = staging.session_cookie(0, &session_of("mallory", &["sre"]));
    let mut production = Bed::new(&deployment(REALM_A, &[GRAFANA]));
    let decision = production.get(GRAFANA, "/", &[("cookie", &cookie), JSON]);
    assert!(
        is_no_session(&decision),
        "a staging session opened in production: {decision:?}"
    );
}

#[test]
fn session_of_one_login_service_does_not_open_on_another_with_another_issuer_in_one_config() {
    let mut bed = Bed::new(&json!({
        "providers": [realm(REALM_A, shared_keys()), realm(REALM_B, other_keys())],
        "login": [
            grafana_in(REALM_A, &[GRAFANA], json!({})),
            grafana_in(REALM_B, &["grafana.partners.example.com"], json!({})),
        ],
    }));
    let cookie = bed.session_cookie(1, &session_of("mallory", &["sre"]));
    let decision = bed.get(GRAFANA, "/", &[("cookie", &cookie), JSON]);
    assert!(is_no_session(&decision), "{decision:?}");
}

#[test]
fn login_started_in_one_realm_does_not_complete_at_the_callback_of_another() {
    let mut partners = Bed::new(&deployment(REALM_B, &[GRAFANA]));
    let start = responded(partners.get(GRAFANA, "/dashboards", &BROWSER));
    assert_eq!(start.status, 302, "{start:?}");
    let login_cookie = start
        .set_cookies()
        .find(|c| c.contains("_login_"))
        .map(|c| support::sent_back(c).to_string())
        .expect("a login cookie");
    let location = start.header("location").unwrap_or_default().to_string();
    let state = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let callback = format!("/oauth2/callback?code=c0de&state={state}");
    let mut corp = Bed::new(&deployment(REALM_A, &[GRAFANA]));
    let decision = corp.get(GRAFANA, &callback, &[("cookie", &login_cookie)]);
    assert!(
        matches!(&decision, Decision::Respond(reply) if reply.status >= 400),
        "the corp realm exchanged a code for a login the partners realm started: {decision:?}"
    );
    // At its own service the same callback goes on to the token endpoint.
    let own = partners.get(GRAFANA, &callback, &[("cookie", &login_cookie)]);
    assert!(matches!(own, Decision::Calling(_)), "{own:?}");
}

#[test]
fn login_services_whose_shared_cookie_reaches_each_other_are_a_configuration_error() {
    let shared = json!({ "cookie_domain": ".example.com" });
    let config = json!({
        "providers": [realm(REALM_A, shared_keys())],
        "login": [
            grafana_in(REALM_A, &[GRAFANA], shared.clone()),
            grafana_in(REALM_A, &["prometheus.example.com"], shared),
        ],
    });
    assert_problem(
        &config,
        "login[1].cookie_name",
        "\"_grafana\" is also the session cookie of login[0]",
    );
    // A cookie on the parent domain reaches a sibling's host-only cookie's host too.
    let config = json!({
        "providers": [realm(REALM_A, shared_keys())],
        "login": [
            grafana_in(REALM_A, &[GRAFANA], json!({})),
            grafana_in(REALM_A, &["auth.example.com"], json!({ "cookie_domain": "example.com" })),
        ],
    });
    assert_problem(
        &config,
        "login[1].cookie_name",
        "is also the session cookie",
    );
    // Host-only cookies, or names of their own: no ambiguity.
    for second in [
        grafana_in(REALM_A, &["prometheus.example.com"], json!({})),
        grafana_in(
            REALM_A,
            &["prometheus.example.com"],
            json!({ "cookie_domain": ".example.com", "cookie_name": "_prometheus" }),
        ),
    ] {
        let config = json!({
            "providers": [realm(REALM_A, shared_keys())],
            "login": [grafana_in(REALM_A, &[GRAFANA], json!({})), second],
        });
        assert_eq!(problems_of(&config), Vec::<String>::new());
    }
}

// --- class 4: a service accepts only the providers it names ------------------------------

/// A corporate IdP (Dex) and a self-sign-up one: the corporate API and the login host take
/// corporate identities only; the community API takes both.
fn two_idps() -> Value {
    json!({
        "providers": [
            provider(),
            { "issuer": SIGNUP, "audiences": [AUDIENCE], "jwks": other_keys().jwks() },
        ],
        "login": [login_service(GRAFANA, "grafana", "_grafana", json!({
            "email_domains": ["mydomain.com"],
        }))],
        "services": [
            { "hosts": [CORP], "providers": [ISSUER],
              "email_domains": ["mydomain.com"], "allowed_groups": ["myorg:sre"] },
            { "hosts": ["community.example.com"], "providers": [ISSUER, SIGNUP] },
        ],
    })
}

/// A self-registered account claiming a verified corporate address and the SRE group.
fn self_signup_token() -> String {
    bearer(&other_keys().signer("ES256").sign(&claims_with(
        SIGNUP,
        AUDIENCE,
        json!({ "email": "alice@mydomain.com", "groups": ["myorg:sre"] }),
    )))
}

fn corporate_token() -> String {
    bearer(&token(
        json!({ "email": "alice@mydomain.com", "groups": ["myorg:sre"] }),
    ))
}

fn assert_issuer_refused(reply: &Reply) {
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("not accepted here"),
        "{challenge}"
    );
}

#[test]
fn token_from_the_self_signup_idp_is_refused_on_a_corporate_service() {
    let mut bed = Bed::new(&two_idps());
    let signup = self_signup_token();
    assert_issuer_refused(&responded(bed.get(CORP, "/", &with_bearer(&signup))));
    // The corporate IdP's token for the same person passes.
    forwarded(bed.get(CORP, "/", &with_bearer(&corporate_token())));
}

#[test]
fn token_from_the_self_signup_idp_is_refused_on_a_login_host_whose_sign_in_is_corporate() {
    let mut bed = Bed::new(&two_idps());
    let reply = responded(bed.get(GRAFANA, "/", &with_bearer(&self_signup_token())));
    assert_issuer_refused(&reply);
    forwarded(bed.get(GRAFANA, "/", &with_bearer(&corporate_token())));
}

#[test]
fn a_cached_self_signup_token_accepted_elsewhere_is_still_refused_on_the_corporate_service() {
    let mut bed = Bed::new(&two_idps());
    let signup = self_signup_token();
    forwarded(bed.get("community.example.com", "/", &with_bearer(&signup)));
    // Verified and cached now: the cache hit still meets the corporate service's list.
    assert_issuer_refused(&responded(bed.get(CORP, "/", &with_bearer(&signup))));
}

#[test]
fn forward_auth_check_of_a_corporate_host_refuses_the_self_signup_token_with_401() {
    let mut bed = Bed::new(&two_idps());
    let reply = responded(bed.get(CORP, "/oauth2/auth", &with_bearer(&self_signup_token())));
    assert_issuer_refused(&reply);
    let reply = responded(bed.get(CORP, "/oauth2/auth", &with_bearer(&corporate_token())));
    assert!(reply.status < 300, "{reply:?}");
}

#[test]
fn self_signup_token_that_waited_for_its_keys_is_refused_on_the_corporate_service() {
    // Both providers' keys are fetched: the token waits for them, then is decided again.
    let remote = |issuer: &str| {
        json!({ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp",
                "jwks_uri": format!("{issuer}/keys") })
    };
    let mut config = two_idps();
    config["providers"] = json!([remote(ISSUER), remote(SIGNUP)]);
    config.as_object_mut().unwrap().remove("login");
    let settings = Rc::new(Settings::parse(&config.to_string()).unwrap());
    let now_ms = mint::now_secs() * 1000;
    let mut host = FakeHost::new(now_ms);
    let mut gateway = Gateway::new(settings);
    let signup = self_signup_token();
    let request = RequestHeaders::from_pairs(vec![
        (":authority", CORP.as_bytes()),
        (":path", b"/".as_slice()),
        (":method", b"GET".as_slice()),
        (":scheme", b"https".as_slice()),
        ("authorization", signup.as_bytes()),
    ]);
    let decision = gateway.decide(&mut host, 7, &request).decision;
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    let signup_provider = ProviderId(1);
    let record = KeysRecord {
        jwks: Some(other_keys().jwks().to_string()),
        attempted_at_ms: now_ms,
        ..KeysRecord::default()
    };
    gateway
        .authn
        .install_record(signup_provider, &record)
        .unwrap();
    let (context, decision) = gateway.settle(&mut host, Some(signup_provider)).remove(0);
    assert_eq!(context, 7);
    assert_issuer_refused(&responded(decision));
}

#[test]
fn a_login_service_may_name_more_providers_for_bearer_tokens() {
    let mut config = two_idps();
    config["login"][0]["providers"] = json!([SIGNUP]);
    let mut bed = Bed::new(&config);
    forwarded(bed.get(GRAFANA, "/", &with_bearer(&self_signup_token())));
    forwarded(bed.get(GRAFANA, "/", &with_bearer(&corporate_token())));
}

#[test]
fn with_one_provider_a_service_needs_not_name_it() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [CORP] }],
    }));
    forwarded(bed.get(CORP, "/", &with_bearer(&bearer(&token(json!({}))))));
}

#[test]
fn a_service_without_providers_when_two_are_configured_is_a_configuration_error() {
    let mut config = two_idps();
    config["services"][0]
        .as_object_mut()
        .unwrap()
        .remove("providers");
    assert_problem(
        &config,
        "services[0].providers",
        "is required when more than one provider is configured",
    );
}

#[test]
fn a_provider_list_naming_an_unknown_issuer_is_a_configuration_error() {
    let mut config = two_idps();
    config["services"][1]["providers"] = json!([ISSUER, "https://typo.example.com"]);
    config["login"][0]["providers"] = json!(["https://nobody.example.com"]);
    assert_problem(
        &config,
        "services[1].providers[1]",
        "\"https://typo.example.com\" is not the issuer of any provider",
    );
    assert_problem(
        &config,
        "login[0].providers[0]",
        "\"https://nobody.example.com\" is not the issuer of any provider",
    );
    config["services"][1]["providers"] = json!([]);
    assert_problem(
        &config,
        "services[1].providers",
        "must name at least one provider",
    );
}

// --- class 10: the default cookie name ---------------------------------------------------

fn default_name(extra: Value) -> String {
    let config = json!({
        "providers": [provider()],
        "login": [login_service(GRAFANA, "grafana", "unused", extra)],
    });
    let mut config = config;
    config["login"][0]
        .as_object_mut()
        .unwrap()
        .remove("cookie_name");
    let settings = Settings::parse(&config.to_string()).unwrap_or_else(|e| panic!("{e:#?}"));
    settings.login[0].cookie_name.clone()
}

#[test]
fn default_cookie_name_carries_the_host_prefix_where_the_cookie_can() {
    assert_eq!(default_name(json!({})), "__Host-wasm_iap");
    assert_eq!(
        default_name(json!({ "cookie_domain": ".example.com" })),
        "__Secure-wasm_iap"
    );
    assert_eq!(
        default_name(json!({ "cookie_path": "/app" })),
        "__Secure-wasm_iap"
    );
    assert_eq!(default_name(json!({ "cookie_secure": false })), "_wasm_iap");
}

#[test]
fn a_default_host_prefixed_session_cookie_is_set_secure_on_path_slash_without_domain() {
    let mut config = json!({
        "providers": [provider()],
        "login": [login_service(GRAFANA, "grafana", "unused", json!({}))],
    });
    config["login"][0]
        .as_object_mut()
        .unwrap()
        .remove("cookie_name");
    let mut bed = Bed::new(&config);
    let cookie = bed.session_cookie(0, &session_of("alice", &[]));
    assert!(cookie.starts_with("__Host-wasm_iap="), "{cookie}");
    let start = responded(bed.get(GRAFANA, "/", &BROWSER));
    let login = start
        .set_cookies()
        .find(|c| c.contains("_login_"))
        .unwrap_or_default();
    assert!(
        login.starts_with("__Host-wasm_iap_login_")
            && login.contains("Secure")
            && login.contains("Path=/;")
            && !login.contains("Domain"),
        "{login}"
    );
    forwarded(bed.get(GRAFANA, "/", &[("cookie", &cookie), JSON]));
}
