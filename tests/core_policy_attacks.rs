//! Attacks an adversarial review of the authorization found, each failing against the code
//! it reviewed, kept as the proof that they stay closed: `..;` and dot segments, namespaced
//! and nested claims, hosts that never match, trimmed sessions, commas in group names, a
//! doubled trailing dot, Pomerium's headers, case and trailing slashes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::host::FakeHost;
use support::mint;
use support::native_bed::*;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::request_headers::RequestHeaders;

const API: &str = "api.example.com";

/// A bearer header for a token with `changes`.
fn bearer_with(changes: Value) -> String {
    bearer(&token(changes))
}

fn status(decision: &Decision) -> Option<u32> {
    match decision {
        Decision::Respond(reply) => Some(reply.status),
        _ => None,
    }
}

/// The upstream must see the path the rules were matched against: either the request is
/// refused, or it goes on with `:path` rewritten to the normalised path. Forwarding the raw
/// path lets an upstream that resolves it differently serve something no rule was asked about.
fn assert_upstream_sees_what_was_matched(what: &str, decision: Decision, matched_as: &str) {
    match decision {
        Decision::Respond(reply) => assert!(
            matches!(reply.status, 400 | 401 | 403),
            "{what}: {} {}",
            reply.status,
            reply.body
        ),
        Decision::Forward(forward) => assert_eq!(
            header(&forward, ":path"),
            Some(matched_as),
            "{what}: forwarded with its raw :path although the rules matched it as \
             {matched_as}: {forward:?}"
        ),
        other => panic!("{what}: {other:?}"),
    }
}

/// A bearer-only service with a public prefix and an admin area.
fn admin_and_public() -> Bed {
    Bed::new(&json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "routes": [
                { "path_prefix": "/public/", "public": true },
                { "path_prefix": "/admin", "allow": [{ "groups": ["admins"] }] },
                { "path": "/api/delete", "allow": [{ "groups": ["admins"] }] },
            ],
        }],
    }))
}

// ---------------------------------------------------------------------------------------
// F1 (high). `..;` is taken for `..`, the raw path goes upstream. Envoy with the recommended
// normalize_path + merge_slashes turns `/admin/%2e%2e;/public/x` into `/admin/..;/public/x`
// (checked against Envoy 1.40), which is what the filter then sees. Go's ServeMux, nginx,
// Node/Express, Flask, WHATWG-URL routers treat `..;` as an ordinary segment: the request is
// served under /admin/, without any credential.

#[test]
fn f1_dot_dot_semicolon_reaches_the_admin_area_through_a_public_prefix() {
    let mut bed = admin_and_public();
    for path in ["/admin/..;/public/x", "/admin/..;x=1/public/x"] {
        let decision = bed.get(API, path, &[JSON]);
        assert_upstream_sees_what_was_matched(path, decision, "/public/x");
    }
}

#[test]
fn f1_dot_dot_semicolon_lets_a_non_admin_into_the_admin_area() {
    let mut bed = admin_and_public();
    let dev = bearer_with(json!({ "groups": ["devs"] }));
    // Matched as /x (no route: any valid token); a non-Java upstream serves /admin/..;/x.
    let decision = bed.get(API, "/admin/..;/x", &[("authorization", &dev), JSON]);
    assert_upstream_sees_what_was_matched("/admin/..;/x", decision, "/x");
}

// ---------------------------------------------------------------------------------------
// F2 (high where Envoy does not normalise, which is Envoy's default). Dot segments are
// resolved for matching but forwarded raw. Express/Flask do not resolve `..`; WHATWG-URL
// routers resolve `/admin//../public/x` to `/admin/public/x` (we: `/public/x`).

#[test]
fn f2_raw_dot_segments_are_forwarded_as_sent_from_a_public_prefix() {
    let mut bed = admin_and_public();
    for path in [
        "/admin/../public/x",
        "/admin/%2e%2e/public/x",
        "/admin/./../public/x",
        "/admin//../public/x",
    ] {
        let decision = bed.get(API, path, &[JSON]);
        assert_upstream_sees_what_was_matched(path, decision, "/public/x");
    }
}

// ---------------------------------------------------------------------------------------
// F3 (medium). Deny rules silently never hold for claim names that contain dots (Auth0 requires
// namespaced claims such as `https://corp.example/blocked`; every dot is taken as nesting),
// and for a dotted `groups_claim` (Keycloak `realm_access.roles`: read top-level only).
// Allow rules fail closed; deny rules fail OPEN, and the config is accepted without a word.

#[test]
fn f3_a_deny_rule_on_a_namespaced_claim_never_holds() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "routes": [{
                "allow": [{ "authenticated": true }],
                "deny": [{ "claims": { "https://corp.example/blocked": "yes" } }],
            }],
        }],
    }));
    let blocked = bearer_with(json!({ "https://corp.example/blocked": "yes" }));
    let decision = bed.get(API, "/anything", &[("authorization", &blocked), JSON]);
    assert_eq!(
        status(&decision),
        Some(403),
        "a blocked caller passed: {decision:?}"
    );
}

#[test]
fn f3_a_deny_rule_on_groups_never_holds_with_a_nested_groups_claim() {
    let mut provider = provider();
    provider["groups_claim"] = json!("realm_access.roles");
    let mut bed = Bed::new(&json!({
        "providers": [provider],
        "services": [{
            "hosts": [API],
            "routes": [{
                "allow": [{ "authenticated": true }],
                "deny": [{ "groups": ["suspended"] }],
            }],
        }],
    }));
    let suspended = bearer_with(json!({ "realm_access": { "roles": ["suspended"] } }));
    let decision = bed.get(API, "/anything", &[("authorization", &suspended), JSON]);
    assert_eq!(
        status(&decision),
        Some(403),
        "a suspended caller passed: {decision:?}"
    );
}

// ---------------------------------------------------------------------------------------
// F4 (medium). A `hosts` entry that can never match (a port, which docs/configuration.md says is
// "ignored"; `*.example.com`; a trailing dot) is accepted, and the service's rules then
// never apply: its requests fall to "a host under no service", which admits any valid token.

#[test]
fn f4_a_host_entry_that_can_never_match_silently_opens_the_service() {
    for listed in ["api.example.com:8443", "*.example.com", "api.example.com."] {
        let config = json!({
            "providers": [provider()],
            "services": [{ "hosts": [listed], "allowed_groups": ["admins"] }],
        });
        let Ok(settings) = Settings::parse(&config.to_string()) else {
            continue; // refused at configure time: secure
        };
        let mut host = FakeHost::new(mint::now_secs() * 1000);
        let mut gateway = Gateway::new(Rc::new(settings));
        gateway.prepare(&mut host);
        let dev = bearer_with(json!({ "groups": ["devs"] }));
        let headers = RequestHeaders::from_pairs(vec![
            (":authority", &b"api.example.com:8443"[..]),
            (":path", b"/secret"),
            (":method", b"GET"),
            (":scheme", b"https"),
            ("authorization", dev.as_bytes()),
        ]);
        let decision = gateway.decide(&mut host, 2, &headers).decision;
        assert_eq!(
            status(&decision),
            Some(403),
            "hosts [{listed:?}] was accepted but a non-admin passed: {decision:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// F5 (medium). A session too large for its cookie is trimmed to the groups named by the
// rules of the service that stored it; a second login service sharing client_id, cookie name
// and secrets (one IdP client, cookie_domain .example.com) opens that session and judges it
// with rules naming other groups: its deny on `contractors` never sees the group.

//
// Issue 16 made that configuration an error: two login services whose session cookies share a
// name and reach the same hosts are ambiguous (and sessions are sealed for one service only).

#[test]
fn f5_two_login_services_sharing_a_cookie_on_a_parent_domain_are_refused() {
    let shared = |host: &str, rules: Value| {
        let mut s = login_service(host, "portal", "_iap", rules);
        s["cookie_domain"] = json!(".example.com");
        s
    };
    let config = json!({
        "providers": [provider()],
        "login": [
            shared("a.example.com", json!({ "allowed_groups": ["sre"] })),
            shared("b.example.com", json!({ "routes": [{
                "allow": [{ "authenticated": true }],
                "deny": [{ "groups": ["contractors"] }],
            }] })),
        ],
    });
    let problems = Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("login[1].cookie_name:")
                && p.contains("is also the session cookie of login[0]")),
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// F6 (medium-low). Groups are joined with `,` for the upstream, but a group name may itself
// contain a comma (Okta, Azure AD display names, LDAP DNs): the upstream that splits the
// header (as oauth2-proxy's upstreams do) sees a group the caller is not in.

#[test]
fn f6_a_comma_in_a_group_name_forges_membership_upstream() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API] }],
    }));
    let token = bearer_with(json!({ "groups": ["devs,admins"] }));
    let forward = match bed.get(API, "/", &[("authorization", &token), JSON]) {
        Decision::Forward(f) => f,
        other => panic!("{other:?}"),
    };
    let groups = header(&forward, "x-auth-request-groups").unwrap_or_default();
    assert!(
        !groups.split(',').any(|g| g.trim() == "admins"),
        "the upstream reads membership of `admins` from {groups:?}"
    );
}

// ---------------------------------------------------------------------------------------
// F7 (low-medium, needs a catch-all Envoy virtual host, as the local testbed has). The last
// commit closed `api.example.com.`; `api.example.com..` still reads as a name under no
// service, so any valid token passes with none of the service's rules.

#[test]
fn f7_a_doubled_trailing_dot_escapes_the_service() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API], "allowed_groups": ["admins"] }],
    }));
    let dev = bearer_with(json!({ "groups": ["devs"] }));
    for authority in ["api.example.com..", "api.example.com..:443"] {
        let decision = bed.get(authority, "/secret", &[("authorization", &dev), JSON]);
        assert!(
            matches!(status(&decision), Some(400 | 403)),
            "Host {authority}: a non-admin passed: {decision:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// F8 (low-medium). The strip list says it covers the header families upstreams built for
// Pomerium trust, but Pomerium's `X-Pomerium-Claim-*` (unsigned, set with jwt_claims_headers)
// and `X-Pomerium-Jwt-Assertion` pass from the client to the upstream.

#[test]
fn f8_pomerium_identity_headers_are_not_stripped() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API], "routes": [{ "path": "/healthz", "public": true }] }],
    }));
    let sent = bed.send(
        "GET",
        API,
        "/healthz",
        &[
            ("X-Pomerium-Claim-Email", "admin@corp.example"),
            ("X-Pomerium-Claim-Groups", "admins"),
            ("X-Pomerium-Jwt-Assertion", "eyJ..."),
        ],
    );
    assert!(matches!(sent.decision, Decision::Forward(_)));
    assert_eq!(
        sent.strip.len(),
        3,
        "forged Pomerium identity reaches the upstream: stripped only {:?}",
        sent.strip
    );
}

// ---------------------------------------------------------------------------------------
// F9 (medium-low, upstream-dependent). Restrictive routes match case-sensitively and exact
// paths without a trailing slash, while Express (default), ASP.NET, IIS and Spring serve
// `/ADMIN` as `/admin` and Express/Spring <6 serve `/api/delete/` as `/api/delete`. A
// restrictive match should be at least as wide as the upstream's.

#[test]
fn f9_case_or_a_trailing_slash_steps_around_a_restrictive_route() {
    let mut bed = admin_and_public();
    let dev = bearer_with(json!({ "groups": ["devs"] }));
    for path in ["/ADMIN/users", "/Admin", "/api/delete/", "/API/delete"] {
        let decision = bed.get(API, path, &[("authorization", &dev), JSON]);
        assert_eq!(
            status(&decision),
            Some(403),
            "{path}: a non-admin passed: {decision:?}"
        );
    }
}
