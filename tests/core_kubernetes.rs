#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Kubernetes API mode, natively (kube-oidc-proxy's behaviour): the apiserver learns the
//! caller only from `Impersonate-*` headers, never from the client's `Authorization`; a
//! client that tries to impersonate, a nameless token and a bad token are refused with the
//! apiserver's `Status` JSON.

mod support;

use serde_json::{json, Value};
use support::mint;
use support::native_bed::*;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::{Decision, Forward};
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;
use wasm_iap::core::secret::Secret;

const KUBE: &str = "kube.example.com";
const DASHBOARD: &str = "dashboard.example.com";

fn config() -> Value {
    let impersonate = json!({
        "user_prefix": "oidc:",
        "group_prefix": "oidc:",
        "extra_claims": { "tenant": "tenant", "scopes": "scp" },
    });
    json!({
        "providers": [provider()],
        "login": [login_service(DASHBOARD, "dashboard", "_dash", json!({
            // The dashboard's users are named by the IdP alone, unprefixed on purpose.
            "impersonate": { "group_prefix": "oidc:", "allow_unprefixed": true },
        }))],
        "services": [{
            "hosts": [KUBE],
            "impersonate": impersonate,
            "routes": [{ "path": "/healthz", "public": true }],
        }],
    })
}

fn all(forward: &Forward, name: &str) -> Vec<String> {
    forward
        .set_headers
        .iter()
        .chain(&forward.add_headers)
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn status_of(reply: &Reply) -> Value {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_str(&reply.body).unwrap()
}

#[test]
fn a_token_becomes_impersonation_headers_and_its_authorization_never_reaches_the_apiserver() {
    let mut bed = Bed::new(&config());
    let token = bearer(&token(json!({
        "groups": ["devs", "ops"], "tenant": "acme", "scp": ["read", "write"],
    })));
    let forward = forwarded(bed.get(
        KUBE,
        "/api/v1/namespaces/default/pods",
        &with_bearer(&token),
    ));
    assert_eq!(all(&forward, "impersonate-user"), ["oidc:alice-id"]);
    assert_eq!(
        all(&forward, "impersonate-group"),
        ["oidc:devs", "oidc:ops"]
    );
    assert_eq!(all(&forward, "impersonate-extra-tenant"), ["acme"]);
    assert_eq!(all(&forward, "impersonate-extra-scopes"), ["read", "write"]);
    assert!(forward
        .remove_headers
        .contains(&"authorization".to_string()));
    assert!(
        forward
            .set_headers
            .iter()
            .all(|(n, _)| n.starts_with("impersonate-")),
        "only impersonation goes to the apiserver: {forward:?}"
    );
    // On a host no service lists it is refused: never forwarded without impersonation.
    let reply = responded(bed.get("other.example.com", "/", &with_bearer(&token)));
    assert_eq!(reply.status, 403, "{reply:?}");
}

#[test]
fn a_client_that_sends_impersonation_headers_gets_403_whatever_its_token() {
    let mut bed = Bed::new(&config());
    let token = bearer(&token(json!({})));
    for header in [
        "Impersonate-User",
        "impersonate-group",
        "IMPERSONATE-EXTRA-scopes",
        "Impersonate-Uid",
    ] {
        let mut extra = with_bearer(&token);
        extra.push((header, "system:admin"));
        let reply = responded(bed.get(KUBE, "/api/v1/secrets", &extra));
        assert_eq!(reply.status, 403, "{header}: {reply:?}");
        let status = status_of(&reply);
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(status["code"], 403);
        assert_eq!(
            status["message"],
            "Forbidden: impersonation headers are not allowed"
        );
    }
}

#[test]
fn bad_and_nameless_tokens_are_refused_in_the_apiservers_words() {
    let mut bed = Bed::new(&config());
    let reply = responded(bed.get(KUBE, "/api", &[JSON]));
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").is_some());
    let status = status_of(&reply);
    assert_eq!(
        (
            status["kind"].as_str(),
            status["reason"].as_str(),
            status["code"].as_u64()
        ),
        (Some("Status"), Some("Unauthorized"), Some(401))
    );
    let forged = bearer(&mint::tamper_signature(&token(json!({}))));
    let reply = responded(bed.get(KUBE, "/api", &with_bearer(&forged)));
    assert_eq!(status_of(&reply)["code"], 401);
    let nameless = bearer(&token(json!({ "sub": null })));
    let reply = responded(bed.get(KUBE, "/api", &with_bearer(&nameless)));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(status_of(&reply)["reason"], "Forbidden");
}

#[test]
fn a_public_route_is_anonymous_at_the_apiserver_never_the_proxys_own_identity() {
    let mut bed = Bed::new(&config());
    let forward = forwarded(bed.get(KUBE, "/healthz", &[("authorization", "Bearer garbage")]));
    assert_eq!(all(&forward, "impersonate-user"), ["system:anonymous"]);
    assert_eq!(
        all(&forward, "impersonate-group"),
        ["system:unauthenticated"]
    );
    assert!(forward
        .remove_headers
        .contains(&"authorization".to_string()));
}

#[test]
fn a_dashboard_session_is_impersonated_too() {
    let mut bed = Bed::new(&config());
    let now = mint::now_secs();
    let session = Session {
        sid: "sid-1".into(),
        user: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["sre".into()],
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    };
    let cookie = format!("{}; theme=dark", bed.session_cookie(0, &session));
    let forward = forwarded(bed.get(DASHBOARD, "/api/v1/pods", &[("cookie", &cookie)]));
    assert_eq!(all(&forward, "impersonate-user"), ["alice@example.com"]);
    assert_eq!(all(&forward, "impersonate-group"), ["oidc:sre"]);
    assert_eq!(
        all(&forward, "cookie"),
        ["theme=dark"],
        "our cookie stays ours"
    );
}

/// Before issue 17 the refused refresh's `401` was OAuth JSON here, while the same `401`
/// on the direct path was a `Status`: `finish` was the one exit that did not write it.
#[test]
fn a_refused_refresh_on_a_kubernetes_login_host_is_the_apiservers_status() {
    let mut bed = Bed::new(&config());
    let now = mint::now_secs();
    let session = Session {
        sid: "sid-2".into(),
        user: "alice@example.com".into(),
        expires_at: now + 3600,
        // Expired two minutes ago: past the refresh race grace, a refusal ends the session.
        refresh_at: now - 120,
        refresh_token: Some(Secret::new("rt-1")),
        ..Session::default()
    };
    let cookie = bed.session_cookie(0, &session);
    let kubectl = [("cookie", cookie.as_str()), ("accept", "application/json")];
    let waits = bed.get(DASHBOARD, "/api/v1/pods", &kubectl);
    assert!(matches!(waits, Decision::Parked), "{waits:?}");
    assert!(bed.gateway.settle(&mut bed.host, None).is_empty(), "sent");
    let call = bed.host.calls.last().unwrap();
    assert!(call.body.contains("grant_type=refresh_token"));
    let token = call.token;
    let refused = br#"{"error":"invalid_grant"}"#;
    let (_, decision) = bed
        .gateway
        .on_settled_call_response(&mut bed.host, token, Some(400), refused)
        .unwrap();
    let reply = responded(decision);
    let status = status_of(&reply);
    assert_eq!(
        (&status["kind"], &status["reason"], &status["code"]),
        (&json!("Status"), &json!("Unauthorized"), &json!(401)),
        "{status}"
    );
    assert!(
        reply.set_cookies().any(|c| c.starts_with("_dash=;")),
        "the ended session is cleared: {reply:?}"
    );
}

#[test]
fn impersonation_settings_that_could_not_be_written_are_refused_at_configure() {
    let mut config = config();
    config["services"][0]["impersonate"] = json!({
        "user_prefix": "a\r\nb",
        "group_prefix": "x,y",
        "extra_claims": { "Tenant": "tenant", "ok": "" },
        "colour": "blue",
    });
    let problems = Settings::parse(&config.to_string()).err().unwrap();
    for expected in [
        "services[0].impersonate.user_prefix: must be text",
        "services[0].impersonate.group_prefix: must be text",
        "services[0].impersonate.extra_claims.Tenant: must be a lowercase",
        "services[0].impersonate.extra_claims.ok: must name a claim",
        "services[0].impersonate.colour: unknown field",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} in {problems:#?}"
        );
    }
}

#[test]
fn names_the_apiserver_would_read_otherwise_are_never_written() {
    let mut config = config();
    // No prefixes: what the IdP says is what the apiserver would read.
    config["services"][0]["impersonate"] = json!({ "allow_unprefixed": true });
    let mut bed = Bed::new(&config);
    // Go trims header values: " " would be no user (the proxy itself), "alice " another one.
    for sub in [
        " ",
        "alice ",
        " admin",
        "system:kube-controller-manager",
        "kubeadm:admin",
    ] {
        let token = bearer(&token(json!({ "sub": sub })));
        let decision = bed.get(KUBE, "/api/v1/secrets", &with_bearer(&token));
        let reply = responded(decision);
        assert!(reply.status >= 400, "{sub:?}: {reply:?}");
        assert_eq!(status_of(&reply)["kind"], "Status", "{sub:?}");
    }
    let token = bearer(&token(json!({
        "groups": ["system:masters", "kubeadm:cluster-admins", "devs", " ops"]
    })));
    let forward = forwarded(bed.get(KUBE, "/api", &with_bearer(&token)));
    assert_eq!(all(&forward, "impersonate-group"), ["devs"]);
}

#[test]
fn an_empty_impersonation_prefix_that_would_let_idp_groups_become_cluster_admins_is_refused() {
    for impersonate in [
        json!({}),
        json!({ "user_prefix": "oidc:" }),
        json!({ "user_prefix": "", "group_prefix": "oidc:" }),
    ] {
        let mut config = config();
        config["services"][0]["impersonate"] = impersonate.clone();
        let problems = Settings::parse(&config.to_string()).err();
        assert!(
            problems.as_ref().is_some_and(|problems| problems
                .iter()
                .any(|p| p.starts_with("services[0].impersonate.")
                    && p.contains("must not be empty"))),
            "{impersonate} was accepted: {problems:#?}"
        );
    }
    let mut config = config();
    config["services"][0]["impersonate"] = json!({ "allow_unprefixed": true });
    assert!(Settings::parse(&config.to_string()).is_ok(), "opted into");
}

#[test]
fn an_unprefixed_idp_group_in_the_clusters_own_namespace_never_becomes_an_impersonated_group() {
    let mut config = config();
    config["services"][0]["impersonate"] = json!({ "allow_unprefixed": true });
    let mut bed = Bed::new(&config);
    let with_groups = bearer(&token(json!({
        "groups": ["kubeadm:cluster-admins", "KubeAdm:cluster-admins", "system:masters", "myorg:sre"]
    })));
    let forward = forwarded(bed.get(KUBE, "/api", &with_bearer(&with_groups)));
    assert_eq!(all(&forward, "impersonate-group"), ["myorg:sre"]);
    let named_admins = bearer(&token(json!({ "sub": "kubeadm:cluster-admins" })));
    let reply = responded(bed.get(KUBE, "/api", &with_bearer(&named_admins)));
    assert!(reply.status >= 400, "{reply:?}");
}

#[test]
fn front_proxy_identity_headers_never_reach_the_apiserver() {
    let mut bed = Bed::new(&config());
    let token = bearer(&token(json!({})));
    let mut extra = with_bearer(&token);
    extra.extend([
        ("X-Remote-User", "system:admin"),
        ("x-remote-group", "system:masters"),
    ]);
    let sent = bed.send("GET", KUBE, "/api", &extra);
    assert!(
        sent.strip.contains(&"X-Remote-User".to_string()),
        "{:?}",
        sent.strip
    );
    assert!(sent.strip.contains(&"x-remote-group".to_string()));
    forwarded(sent.decision);
}

/// Every decision on a Kubernetes host is a refusal or a forward that impersonates: never
/// the client's `Authorization` to the apiserver, never the proxy's own identity.
fn assert_never_as_the_proxy(case: &str, decision: wasm_iap::core::gateway::Decision) {
    match decision {
        wasm_iap::core::gateway::Decision::Respond(reply) => {
            assert!(reply.status >= 400, "{case}: {reply:?}")
        }
        wasm_iap::core::gateway::Decision::Forward(forward) => {
            assert_eq!(
                all(&forward, "impersonate-user").len(),
                1,
                "{case}: {forward:?}"
            );
            assert!(
                forward
                    .remove_headers
                    .contains(&"authorization".to_string()),
                "{case}: {forward:?}"
            );
            assert!(
                all(&forward, "authorization").is_empty(),
                "{case}: {forward:?}"
            );
        }
        other => panic!("{case}: {other:?}"),
    }
}

#[test]
fn unlisted_hosts_absolute_form_and_a_disagreeing_host_header_never_reach_the_apiserver_as_the_proxy(
) {
    let token = bearer(&token(json!({ "groups": ["devs"] })));
    // What Envoy hands the filter for `Host: 127.0.0.1`, `GET http://other.test/admin`,
    // `GET http://kube.example.com@other.test/` and an h2 `:authority` beside another `host`.
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("Host: 127.0.0.1", "127.0.0.1", None),
        ("Host: 127.0.0.1:6443", "127.0.0.1:6443", None),
        ("absolute form", "other.test", None),
        ("userinfo", "kube.example.com@other.test", None),
        ("empty Host", "", None),
        ("h2 host differs", KUBE, Some("other.test")),
        ("h2 host differs the other way", "other.test", Some(KUBE)),
    ];
    let mut bed = Bed::new(&config());
    for (case, authority, host_header) in cases {
        let mut headers = with_bearer(&token);
        if let Some(host) = host_header {
            headers.push(("host", host));
        }
        let decision = bed.get(authority, "/api/v1/namespaces/default/secrets", &headers);
        let reply = responded(decision);
        assert!(
            [400, 403].contains(&reply.status),
            "{case}: an unlisted host must be refused: {reply:?}"
        );
    }
    // A catch-all Kubernetes service: every host is impersonated, never the proxy itself.
    let mut catch_all = config();
    catch_all["services"][0]["hosts"] = json!(["*"]);
    let mut bed = Bed::new(&catch_all);
    for (case, authority, host_header) in cases {
        let mut headers = with_bearer(&token);
        if let Some(host) = host_header {
            headers.push(("host", host));
        }
        let decision = bed.get(authority, "/api/v1/namespaces/default/secrets", &headers);
        assert_never_as_the_proxy(case, decision);
    }
    let decision = bed.get("anything.test", "/healthz", &[]);
    assert_never_as_the_proxy("public route", decision);
}
