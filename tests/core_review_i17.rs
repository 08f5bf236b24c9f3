#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 17's adversarial review: the requests whose answer the refactor changed. One was
//! undone (a `400`'s body bytes); three are declared and asserted here as the new answer,
//! each with what it was before (a82f824) and why it changed.

mod support;

use serde_json::{json, Value};
use support::mint;
use support::native_bed::*;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;
use wasm_iap::core::secret::Secret;

const KUBE: &str = "kube.example.com";
const DASHBOARD: &str = "dashboard.example.com";
const APP: &str = "app.example.com";

/// A Kubernetes API host and a Kubernetes-mode login host (the dashboard), both open to
/// the `admins` group only, and a plain service.
fn config() -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(DASHBOARD, "dashboard", "_dash", json!({
            "impersonate": { "group_prefix": "oidc:", "allow_unprefixed": true },
            "allowed_groups": ["admins"],
        }))],
        "services": [
            {
                "hosts": [KUBE],
                "impersonate": { "user_prefix": "oidc:", "group_prefix": "oidc:" },
                "allowed_groups": ["admins"],
            },
            { "hosts": [APP] },
        ],
    })
}

fn alice(refresh_at_offset: i64) -> Session {
    let now = mint::now_secs();
    Session {
        sid: "sid-review".into(),
        user: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["sre".into()],
        expires_at: now + 3600,
        refresh_at: now.saturating_add_signed(refresh_at_offset),
        refresh_token: Some(Secret::new("rt-review")),
        ..Session::default()
    }
}

fn body(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or(Value::Null)
}

/// Declared. Old: `decide_unstripped` wrote every `401`/`403` of a Kubernetes host as the
/// apiserver's `Status`, the sign-in flow's own pages included: the IdP's refusal at the
/// callback was `{"kind":"Status","message":"Forbidden"}` in the person's browser. New: our
/// sign-in endpoints answer a person with their pages in every mode; only refusals of
/// requests meant for the apiserver are its `Status`.
#[test]
fn the_idps_refusal_at_a_kubernetes_login_hosts_callback_is_the_sign_in_page() {
    let mut bed = Bed::new(&config());
    let reply = responded(bed.get(
        DASHBOARD,
        "/oauth2/callback?error=access_denied&state=x",
        &BROWSER,
    ));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("Sign-in refused"), "{}", reply.body);
}

/// Declared. Old: a browser refused by the rules on a Kubernetes host got the access-denied
/// page re-read as JSON for its `error_description`; a page has none, so the `Status` said
/// only `Forbidden`. New: the `Status` is built from the refusal (issue 17), so it says why,
/// as it always did for programs.
#[test]
fn a_browser_refused_on_a_kubernetes_host_reads_why_in_the_status() {
    let mut bed = Bed::new(&config());
    let token = bearer(&token(json!({ "groups": ["sre"] })));
    let mut headers = BROWSER.to_vec();
    headers.push(("authorization", &token));
    let reply = responded(bed.get(KUBE, "/api/v1/pods", &headers));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(body(&reply)["kind"], "Status", "{}", reply.body);
    let why = "Forbidden: access to this resource is not allowed";
    assert_eq!(body(&reply)["message"], why, "{}", reply.body);
    // The dashboard's signed-in person likewise.
    let cookie = bed.session_cookie(0, &alice(300));
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let reply = responded(bed.get(DASHBOARD, "/", &headers));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(body(&reply)["message"], why, "{}", reply.body);
}

/// Undone. `denial::bad_request` wrote `{"error":"invalid_request",...}` with no line end
/// (the `403` for an unlisted host and the `400` for a spoofed header had one); the first
/// refactor added one to every JSON refusal.
#[test]
fn a_programs_400_body_is_byte_for_byte_as_before() {
    let mut bed = Bed::new(&config());
    for (path, extra) in [
        ("/a%2fb", vec![JSON]),
        ("/", vec![JSON, ("host", "other.example.com")]),
    ] {
        let reply = responded(bed.get(APP, path, &extra));
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert_eq!(body(&reply)["error"], "invalid_request");
        assert!(
            !reply.body.ends_with('\n'),
            "{path}: the old body had no line end: {:?}",
            reply.body
        );
    }
}

/// Declared, the same fix as the refused refresh's `401`. A dashboard session whose tokens
/// expired: its refresh is sent from the root, the IdP is down (503), so the old session is
/// kept; alice is not an admin. Old: `finish` and `send_queued_refreshes` never wrote a
/// refusal for the Kubernetes host, so this `403` was OAuth JSON or the HTML page, while the
/// same refusal on the direct path was a `Status`. New: every path leaves through `exit`.
#[test]
fn a_refusal_after_a_refresh_answer_on_a_kubernetes_login_host_is_the_apiservers_status() {
    for browser in [false, true] {
        let mut bed = Bed::new(&config());
        let cookie = bed.session_cookie(0, &alice(-1));
        let mut headers = if browser {
            BROWSER.to_vec()
        } else {
            vec![JSON]
        };
        headers.push(("cookie", &cookie));
        let waits = bed.get(DASHBOARD, "/api/v1/pods", &headers);
        assert!(matches!(waits, Decision::Parked), "{waits:?}");
        assert!(bed.gateway.settle(&mut bed.host, None).is_empty(), "sent");
        let call = bed.host.calls.last().unwrap();
        assert!(call.body.contains("grant_type=refresh_token"));
        let token = call.token;
        let (_, decision) = bed
            .gateway
            .on_settled_call_response(&mut bed.host, token, Some(503), b"")
            .unwrap();
        let reply = responded(decision);
        assert_eq!(reply.status, 403, "{reply:?}");
        assert_eq!(
            body(&reply)["kind"],
            "Status",
            "browser {browser}: {}",
            reply.body
        );
        assert_eq!(body(&reply)["code"], 403, "{}", reply.body);
    }
}
