#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authorization, natively (no Envoy): the policy configuration and its problems, public
//! routes and the path tricks that try to leave them, the setups users come from (KKP's
//! Prometheus and Alertmanager, oauth2-proxy's email domains, Kyma's scopes), what the
//! upstream learns of the caller, and the counters and log lines an operator reads.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::mint::{self, claims_with, shared_keys};
use support::native_bed::*;
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::{Host, Metric};
use wasm_iap::core::keys::record::KeysRecord;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;
use wasm_iap::core::secret::Secret;

// ---------------------------------------------------------------------------------------
// Helpers

fn problems_of(config: &Value) -> Vec<String> {
    match Settings::parse(&config.to_string()) {
        Ok(_) => panic!("the configuration was accepted: {config:#}"),
        Err(problems) => problems,
    }
}

fn body_json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

fn session_of(user: &str, email: &str, groups: &[&str]) -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{user}"),
        user: user.into(),
        email: Some(email.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    }
}

// ---------------------------------------------------------------------------------------
// 1. Configuration

#[test]
fn every_policy_mistake_is_reported_at_once_with_its_path() {
    let config = json!({
        "providers": [provider()],
        "login": [login_service("prometheus.example.com", "prometheus", "_prom_iap", json!({}))],
        "services": [
            {
                "hosts": [],
                "email_domains": ["mydomain.com", "a@b"],
                "routes": [
                    { "path": "/a", "path_prefix": "/b" },
                    { "path_regex": "/api/(unclosed" },
                    { "path_prefix": "/a/../b" },
                    { "path_prefix": "/static/", "public": true, "allow": [{ "authenticated": true }] },
                    { "path": "/empty", "allow": [{}] },
                    { "path": "/typo", "allow": [{ "group": ["admins"] }] },
                    { "path": "/x", "allow": [{ "email_domains": ["a@b"] }] },
                ],
            },
            { "hosts": ["PROMETHEUS.example.com"] },
        ],
    });
    let problems = problems_of(&config);
    for expected in [
        "services[0].hosts: must list at least one host",
        "services[0].email_domains[1]: \"a@b\" is not a domain",
        "services[0].routes[0].path: give at most one of path, path_prefix and path_regex",
        "services[0].routes[1].path_regex: is not a valid regular expression",
        "services[0].routes[2].path_prefix: \"/a/../b\": the path holds a . or .. segment",
        "services[0].routes[3]: a public route needs no credential",
        "services[0].routes[4].allow[0]: a rule needs at least one criterion",
        "services[0].routes[5].allow[0].group: unknown field",
        "services[0].routes[6].allow[0].email_domains[0]: \"a@b\" is not a domain",
        "services[1].hosts: \"prometheus.example.com\" is served by an earlier service too",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
    assert!(
        !problems.iter().any(|p| p.contains("mydomain.com")),
        "a good domain is no problem: {problems:#?}"
    );
}

#[test]
fn a_literal_path_must_already_be_normalised_or_it_could_never_match() {
    for (route, expected) in [
        (
            json!({ "path": "/a//b" }),
            "services[0].routes[0].path: \"/a//b\" is matched against normalised paths: write \"/a/b\"",
        ),
        (
            json!({ "path_prefix": "/%61pi/" }),
            "services[0].routes[0].path_prefix: \"/%61pi/\" is matched against normalised paths: write \"/api/\"",
        ),
        (
            json!({ "path_prefix": "api" }),
            "services[0].routes[0].path_prefix: \"api\": the request target is not a path",
        ),
        (
            json!({ "path": "/a%2Fb" }),
            "services[0].routes[0].path: \"/a%2Fb\": the path encodes a slash",
        ),
        (
            json!({ "path": "/x", "unauthenticated": "maybe" }),
            "services[0].routes[0].unauthenticated: \"maybe\" is not one of auto, login, deny",
        ),
        (
            json!({ "path": "/x", "allow": [{ "claims": { "tenant": 7 } }] }),
            "services[0].routes[0].allow[0].claims.tenant: must be a string or a list of strings",
        ),
        (
            json!({ "path": "/x", "allow": { "groups": ["a"] } }),
            "services[0].routes[0].allow: must be a list of rules",
        ),
    ] {
        let config = json!({
            "providers": [provider()],
            "services": [{ "hosts": ["app.example.com"], "routes": [route] }],
        });
        let problems = problems_of(&config);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
}

#[test]
fn the_documented_policy_configurations_are_accepted() {
    let config = json!({
        "providers": [{
            "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": shared_keys().jwks(),
            "groups_claim": "roles", "user_claim": "sub",
        }],
        "identity_headers": { "user": "x-user", "email": "x-email" },
        "pass_user_headers": true,
        "claim_headers": { "x-tenant": "tenant.id" },
        "login": [
            login_service("prometheus.example.com", "prometheus", "_prom_iap", json!({
                "allowed_groups": ["myorg:sre"],
                "allowed_emails": ["boss@other.com"],
                "email_domains": ["mydomain.com", ".corp.example", "*"],
                "pass_access_token": true,
                "set_authorization_header": true,
                "routes": [
                    { "path": "/-/healthy", "public": true },
                    { "path_prefix": "/api/", "unauthenticated": "deny" },
                    { "path_regex": "/graph/[a-z]+", "methods": ["get", "HEAD"], "hosts": ["*"],
                      "unauthenticated": "login" },
                ],
            })),
        ],
        "services": [{
            "hosts": ["api.example.com", "api2.example.com"],
            "routes": [
                { "path_prefix": "/api/", "methods": ["GET"], "allow": [{ "scopes": ["read"] }] },
                { "path_prefix": "/admin/", "hosts": ["api.example.com"],
                  "allow": [{ "groups": ["admins"], "issuers": [ISSUER] },
                            { "claims": { "realm_access.roles": ["admin"], "tenant": "acme" } }],
                  "deny": [{ "emails": ["mallory@example.com"] }, { "email_domains": [".evil.com"] }] },
                { "allow": [{ "authenticated": true }] },
            ],
        }],
    });
    let settings = parse(&config);
    assert_eq!(settings.login.len(), 1);
    assert_eq!(settings.services.len(), 1);
    assert_eq!(settings.services[0].policy.routes.len(), 3);
    assert_eq!(settings.login[0].policy.routes.len(), 3);
    assert!(settings.login[0].pass_access_token && settings.login[0].set_authorization_header);
    for claim in ["realm_access", "tenant"] {
        assert!(
            settings.kept_claims.iter().any(|k| k == claim),
            "{claim} is kept for rules and headers: {:?}",
            settings.kept_claims
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Public routes, and the tricks that try to leave them

const APP: &str = "app.example.com";
const WEB: &str = "web.example.com";

fn public_routes() -> Value {
    json!({
        "routes": [
            { "path_prefix": "/public/", "public": true },
            { "path": "/healthz", "public": true },
            { "methods": ["OPTIONS"], "public": true },
        ],
        "allowed_groups": ["myorg:sre"],
    })
}

/// The same rules on a bearer-only host (`APP`) and on a login host (`WEB`).
fn public_bed() -> Bed {
    let mut service = public_routes();
    service["hosts"] = json!([APP]);
    Bed::new(&json!({
        "providers": [provider()],
        "services": [service],
        "login": [login_service(WEB, "web", "_wasm_iap", public_routes())],
    }))
}

/// Paths that name a public path but are not under one, and what a caller without a
/// credential gets: 401, or 400 when the path cannot be matched safely.
const BYPASS_ATTEMPTS: [(&str, &str, u32); 18] = [
    ("dot-dot out of the public prefix", "/public/../admin", 400),
    ("percent-encoded dot-dot", "/public/%2e%2e/admin", 400),
    (
        "upper-case percent-encoded dot-dot",
        "/public/%2E%2E/admin",
        400,
    ),
    ("half-encoded dot-dot", "/public/.%2e/admin", 400),
    ("encoded slashes", "/public%2F..%2Fadmin", 400),
    ("encoded backslash", "/public/..%5Cadmin", 400),
    ("raw backslash", "/public/..\\admin", 400),
    ("encoded NUL", "/public/%00/../admin", 400),
    ("fragment", "/public/#/../admin", 400),
    ("double slash", "//admin", 401),
    ("upper-case prefix", "/PUBLIC/admin", 401),
    ("public prefix in the query", "/admin?/public/", 401),
    ("Tomcat path parameter dot-dot", "/public/..;/admin", 400),
    (
        "dot-dot after a path parameter",
        "/admin/%2e%2e;/public/x",
        400,
    ),
    (
        "dot-dot out of a public exact path",
        "/healthz/../admin",
        400,
    ),
    ("below a public exact path", "/healthz/x", 401),
    ("public prefix without its trailing slash", "/public", 401),
    ("lookalike of the prefix", "/publicity/x", 401),
];

#[test]
fn public_paths_open_without_a_credential() {
    let mut bed = public_bed();
    for host in [APP, WEB] {
        for path in [
            "/public/app.js",
            "/public/",
            "/public//css/app.js",
            "/healthz",
            "/healthz?probe=1",
        ] {
            let forward = forwarded(bed.get(host, path, &[JSON]));
            assert!(
                !forward
                    .set_headers
                    .iter()
                    .any(|(n, _)| n.starts_with("x-auth-request")),
                "{host}{path}: no identity on a public path: {forward:?}"
            );
        }
    }
    assert_eq!(
        bed.host.count_of(Metric::Allowed),
        0,
        "allowed requests are added up and reported on the tick"
    );
    bed.gateway.tick(&mut bed.host);
    assert_eq!(bed.host.count_of(Metric::Allowed), 10);
}

#[test]
fn path_tricks_do_not_lead_out_of_a_public_path() {
    let mut bed = public_bed();
    for host in [APP, WEB] {
        for (attack, path, status) in BYPASS_ATTEMPTS {
            let reply = responded(bed.get(host, path, &[JSON]));
            assert_eq!(
                reply.status, status,
                "{attack} ({host}{path}): {} {}",
                reply.status, reply.body
            );
            let error = &body_json(&reply)["error"];
            if status == 400 {
                assert_eq!(error, "invalid_request", "{attack}");
            } else {
                assert_eq!(
                    reply.header("www-authenticate"),
                    Some(r#"Bearer realm="wasm-iap""#),
                    "{attack}: asked for a credential"
                );
            }
        }
    }
    // The tricks are judged as the path they lead to: a developer's token reaches the rules
    // of /admin (403), a member of the group passes.
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    for (attack, path, _) in BYPASS_ATTEMPTS.into_iter().filter(|(_, _, s)| *s == 401) {
        let reply = responded(bed.get(APP, path, &with_bearer(&dev)));
        assert_eq!(
            reply.status, 403,
            "{attack} ({path}) with a developer's token"
        );
        forwarded(bed.get(APP, path, &with_bearer(&sre)));
    }
}

#[test]
fn a_refused_path_gets_a_page_in_the_browser() {
    let mut bed = public_bed();
    let reply = responded(bed.get(WEB, "/public%2F..%2Fadmin", &BROWSER));
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{reply:?}"
    );
    assert_eq!(reply.header("location"), None, "not sent to log in");
    // A dot segment gets the same page: browsers never send one, and upstreams disagree on
    // what it means.
    let reply = responded(bed.get(WEB, "/public/../admin", &BROWSER));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("location"), None, "not sent to log in");
}

#[test]
fn a_cors_preflight_passes_without_a_credential_but_the_call_itself_does_not() {
    let mut bed = public_bed();
    let preflight = [
        ("origin", "https://spa.example.com"),
        ("access-control-request-method", "DELETE"),
    ];
    for host in [APP, WEB] {
        forwarded(bed.send("OPTIONS", host, "/api", &preflight).decision);
        let reply = responded(bed.get(host, "/api", &[JSON]));
        assert_eq!(reply.status, 401, "{host}");
        let reply = responded(bed.send("DELETE", host, "/api", &[JSON]).decision);
        assert_eq!(reply.status, 401, "{host}");
    }
}

#[test]
fn a_public_path_on_a_login_host_never_shows_the_upstream_our_session() {
    let mut bed = public_bed();
    let forward = forwarded(bed.get(
        WEB,
        "/public/app.js",
        &[("cookie", "_wasm_iap=sealed-session; theme=dark")],
    ));
    assert_eq!(header(&forward, "cookie"), Some("theme=dark"));
    let forward = forwarded(bed.get(WEB, "/public/app.js", &[("cookie", "_wasm_iap=sealed")]));
    assert!(
        forward.remove_headers.contains(&"cookie".to_string()),
        "{forward:?}"
    );
}

#[test]
fn forged_identity_headers_are_stripped_on_public_paths_too() {
    let mut bed = public_bed();
    let sent = bed.send(
        "GET",
        APP,
        "/healthz",
        &[
            ("X-Auth-Request-User", "admin"),
            ("x-auth-request-groups", "myorg:sre"),
            ("X-Forwarded-Email", "admin@mydomain.com"),
        ],
    );
    forwarded(sent.decision);
    assert_eq!(
        sent.strip,
        [
            "X-Auth-Request-User",
            "x-auth-request-groups",
            "X-Forwarded-Email"
        ]
    );
}

#[test]
fn the_sign_in_endpoints_of_a_login_host_are_never_public() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "login": [login_service(WEB, "web", "_wasm_iap", json!({
            "routes": [{ "path_prefix": "/", "public": true }],
        }))],
    }));
    forwarded(bed.get(WEB, "/anything", &BROWSER));
    // A callback with a made-up state is ours to refuse, not the upstream's to see.
    let reply = responded(bed.get(WEB, "/oauth2/callback?code=c&state=s", &BROWSER));
    assert!(reply.status >= 400, "{reply:?}");
    let reply = responded(bed.get(WEB, "/oauth2/sign_out", &BROWSER));
    assert_eq!(reply.status, 302, "signed out by us: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// 3. KKP: Prometheus and Alertmanager, each its own login service

const PROMETHEUS: &str = "prometheus.example.com";
const ALERTMANAGER: &str = "alertmanager.example.com";

fn kkp() -> Bed {
    let sre_only = json!({ "allowed_groups": ["myorg:sre"] });
    Bed::new(&json!({
        "providers": [provider()],
        "login": [
            login_service(PROMETHEUS, "prometheus", "_prom_iap", sre_only.clone()),
            login_service(ALERTMANAGER, "alertmanager", "_am_iap", sre_only),
        ],
    }))
}

#[test]
fn kkp_an_sre_token_opens_prometheus_and_alertmanager() {
    let mut bed = kkp();
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    for host in [PROMETHEUS, ALERTMANAGER] {
        let forward = forwarded(bed.get(host, "/api/v1/query?query=up", &with_bearer(&sre)));
        assert_eq!(header(&forward, "x-auth-request-groups"), Some("myorg:sre"));
        assert_eq!(header(&forward, "x-auth-request-user"), Some("alice-id"));
    }
}

#[test]
fn kkp_a_developer_token_gets_403_json_without_a_scope_challenge() {
    let mut bed = kkp();
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    for host in [PROMETHEUS, ALERTMANAGER] {
        let reply = responded(bed.get(host, "/api/v1/query", &with_bearer(&dev)));
        assert_eq!(reply.status, 403, "{host}: {}", reply.body);
        assert_eq!(body_json(&reply)["error"], "forbidden");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.header("www-authenticate"),
            None,
            "no insufficient_scope: scopes would not help"
        );
        assert_eq!(reply.header("location"), None);
    }
    // Without any group at all: the same.
    let nobody = bearer(&token(json!({})));
    let reply = responded(bed.get(PROMETHEUS, "/", &with_bearer(&nobody)));
    assert_eq!(reply.status, 403);
}

#[test]
fn kkp_a_signed_in_developer_sees_an_access_denied_page_naming_the_account() {
    let mut bed = kkp();
    let cookie = bed.session_cookie(0, &session_of("bob-id", "bob@mydomain.com", &["myorg:dev"]));
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let reply = responded(bed.get(PROMETHEUS, "/graph", &headers));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("location"),
        None,
        "never a redirect loop via the IdP"
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{reply:?}"
    );
    assert!(reply.body.contains("Access denied"), "{}", reply.body);
    assert!(reply.body.contains("bob@mydomain.com"), "{}", reply.body);
    assert!(
        reply.body.contains("href=\"/oauth2/sign_out\""),
        "a way to switch accounts: {}",
        reply.body
    );
    assert!(
        !reply.body.contains("myorg:sre") && !reply.body.contains("myorg:dev"),
        "the policy is not shown: {}",
        reply.body
    );
    // The same developer's XHR gets JSON.
    let reply = responded(bed.get(PROMETHEUS, "/api/v1/query", &[("cookie", &cookie), JSON]));
    assert_eq!(reply.status, 403);
    assert_eq!(body_json(&reply)["error"], "forbidden");
    // And an SRE's session passes, with the identity.
    let cookie = bed.session_cookie(
        0,
        &session_of("alice-id", "alice@mydomain.com", &["myorg:sre"]),
    );
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let forward = forwarded(bed.get(PROMETHEUS, "/graph", &headers));
    assert_eq!(
        header(&forward, "x-auth-request-email"),
        Some("alice@mydomain.com")
    );
}

#[test]
fn kkp_a_prometheus_session_does_not_open_alertmanager() {
    let mut bed = kkp();
    let cookie = bed.session_cookie(
        0,
        &session_of("alice-id", "alice@mydomain.com", &["myorg:sre"]),
    );
    let sealed = cookie
        .strip_prefix("_prom_iap=")
        .expect("one cookie")
        .to_string();
    // Control: it opens Prometheus.
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    forwarded(bed.get(PROMETHEUS, "/graph", &headers));
    // Sent to Alertmanager as is, or renamed to Alertmanager's cookie: no session there.
    let renamed = format!("_am_iap={sealed}");
    for sent in [cookie.as_str(), renamed.as_str()] {
        let mut headers = BROWSER.to_vec();
        headers.push(("cookie", sent));
        let reply = responded(bed.get(ALERTMANAGER, "/alerts", &headers));
        assert_eq!(reply.status, 302, "{sent}: {reply:?}");
        let location = reply.header("location").unwrap_or_default();
        assert!(
            location.starts_with(&format!("{ISSUER}/auth?"))
                && location.contains("client_id=alertmanager"),
            "sent to sign in to Alertmanager: {location}"
        );
        let reply = responded(bed.get(ALERTMANAGER, "/api/v2/alerts", &[("cookie", sent), JSON]));
        assert_eq!(reply.status, 401, "an API call: {reply:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. oauth2-proxy: email domains

fn email_domain_bed() -> Bed {
    Bed::new(&json!({
        "providers": [provider()],
        "services": [
            { "hosts": ["app.mydomain.com"], "email_domains": ["mydomain.com"] },
            { "hosts": ["sub.mydomain.com"], "email_domains": [".mydomain.com"] },
            { "hosts": ["team.mydomain.com"], "email_domains": ["mydomain.com"],
              "allowed_emails": ["partner@other.com"], "allowed_groups": ["myorg:sre"] },
        ],
    }))
}

fn status_for(bed: &mut Bed, host: &str, claims: Value) -> u32 {
    let authorization = bearer(&token(claims));
    match bed.get(host, "/", &with_bearer(&authorization)) {
        Decision::Forward(_) => 200,
        Decision::Respond(reply) => reply.status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn oauth2_proxy_email_domain_admits_verified_addresses_of_that_domain_only() {
    let mut bed = email_domain_bed();
    for (who, email, verified, expected) in [
        ("a user of the domain", "alice@mydomain.com", true, 200),
        (
            "the domain in another case",
            "Alice@MyDomain.COM",
            true,
            200,
        ),
        ("another domain", "bob@other.com", false, 403),
        ("another domain, verified", "bob@other.com", true, 403),
        (
            "a quoted local part hiding an @",
            "\"x@y\"@mydomain.com",
            true,
            403,
        ),
        ("two @", "x@y@mydomain.com", true, 403),
        ("a quoted local part", "\"alice\"@mydomain.com", true, 403),
        ("no local part", "@mydomain.com", true, 403),
        (
            "a domain that ends like it",
            "eve@evilmydomain.com",
            true,
            403,
        ),
        (
            "a domain that starts like it",
            "eve@mydomain.com.evil",
            true,
            403,
        ),
        ("a subdomain", "eve@team.mydomain.com", true, 403),
        ("an unverified address", "alice@mydomain.com", false, 403),
    ] {
        let claims = json!({ "email": email, "email_verified": verified });
        assert_eq!(
            status_for(&mut bed, "app.mydomain.com", claims),
            expected,
            "{who}: {email} (verified {verified})"
        );
    }
    let claims = json!({ "email": "alice@mydomain.com", "email_verified": null });
    assert_eq!(
        status_for(&mut bed, "app.mydomain.com", claims),
        403,
        "email_verified missing counts as unverified"
    );
}

#[test]
fn oauth2_proxy_a_leading_dot_admits_subdomains_only() {
    let mut bed = email_domain_bed();
    for (email, expected) in [
        ("eve@team.mydomain.com", 200),
        ("eve@a.b.mydomain.com", 200),
        ("eve@mydomain.com", 403),
        ("eve@xmydomain.com", 403),
        ("x@y@team.mydomain.com", 403),
        ("\"x@y\"@team.mydomain.com", 403),
        ("\"eve\"@team.mydomain.com", 403),
    ] {
        let claims = json!({ "email": email, "email_verified": true });
        assert_eq!(
            status_for(&mut bed, "sub.mydomain.com", claims),
            expected,
            "{email}"
        );
    }
}

#[test]
fn oauth2_proxy_emails_or_domain_and_then_the_group() {
    let mut bed = email_domain_bed();
    let host = "team.mydomain.com";
    for (email, groups, expected) in [
        ("alice@mydomain.com", json!(["myorg:sre"]), 200),
        ("partner@other.com", json!(["myorg:sre"]), 200),
        ("alice@mydomain.com", json!(["myorg:dev"]), 403),
        ("partner@other.com", json!([]), 403),
        ("stranger@other.com", json!(["myorg:sre"]), 403),
    ] {
        let claims = json!({ "email": email, "email_verified": true, "groups": groups });
        assert_eq!(
            status_for(&mut bed, host, claims),
            expected,
            "{email} {groups}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Kyma: scopes per method, groups, deny rules, nested claims

const API: &str = "api.example.com";

fn kyma() -> Bed {
    Bed::new(&json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "routes": [
                { "path_prefix": "/api/", "methods": ["GET"], "allow": [{ "scopes": ["read"] }] },
                { "path_prefix": "/api/", "methods": ["POST"], "allow": [{ "scopes": ["write"] }] },
                { "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }],
                  "deny": [{ "claims": { "tenant": "blocked" } }] },
                { "path_prefix": "/audit/", "allow": [{ "claims": { "realm_access.roles": ["auditor"] } }] },
            ],
        }],
    }))
}

#[test]
fn kyma_a_reader_reads_but_may_not_write() {
    let mut bed = kyma();
    let reader = bearer(&token(json!({ "sub": "reader-cli", "scope": "api read" })));
    let forward = forwarded(bed.get(API, "/api/x", &with_bearer(&reader)));
    assert_eq!(header(&forward, "x-auth-request-user"), Some("reader-cli"));
    forwarded(
        bed.send("HEAD", API, "/api/x", &with_bearer(&reader))
            .decision,
    );
    for method in ["POST", "post"] {
        let reply = responded(
            bed.send(method, API, "/api/x", &with_bearer(&reader))
                .decision,
        );
        assert_eq!(reply.status, 403, "{method}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="wasm-iap", error="insufficient_scope", scope="write""#),
            "{method}"
        );
        assert_eq!(body_json(&reply)["error"], "insufficient_scope");
    }
    // A token without `read` may not even read, and is told what it lacks.
    let api_only = bearer(&token(json!({ "scope": "api" })));
    let reply = responded(bed.get(API, "/api/x", &with_bearer(&api_only)));
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="wasm-iap", error="insufficient_scope", scope="read""#)
    );
}

#[test]
fn kyma_scopes_are_read_from_scp_lists_too() {
    let mut bed = kyma();
    let writer = bearer(&token(json!({ "scp": ["read", "write"] })));
    forwarded(
        bed.send("POST", API, "/api/x", &with_bearer(&writer))
            .decision,
    );
    forwarded(bed.get(API, "/api/x", &with_bearer(&writer)));
    let reader = bearer(&token(json!({ "scp": ["read"] })));
    let reply = responded(
        bed.send("POST", API, "/api/x", &with_bearer(&reader))
            .decision,
    );
    assert_eq!(reply.status, 403);
    // `scope: "read write"` as one string is two scopes, not a scope named "read write".
    let spaced = bearer(&token(json!({ "scope": "read  write" })));
    forwarded(
        bed.send("POST", API, "/api/x", &with_bearer(&spaced))
            .decision,
    );
}

#[test]
fn kyma_a_method_override_header_cannot_turn_a_read_into_a_write() {
    let mut bed = kyma();
    let reader = bearer(&token(json!({ "scope": "read" })));
    let mut headers = with_bearer(&reader);
    headers.push(("X-HTTP-Method-Override", "DELETE"));
    let sent = bed.send("GET", API, "/api/x", &headers);
    forwarded(sent.decision);
    assert_eq!(sent.strip, ["X-HTTP-Method-Override"]);
}

#[test]
fn kyma_deny_wins_over_allow_for_a_blocked_tenant_admin() {
    let mut bed = kyma();
    let admin = bearer(&token(json!({ "groups": ["admins"], "tenant": "acme" })));
    forwarded(bed.get(API, "/admin/users", &with_bearer(&admin)));
    let blocked = bearer(&token(json!({ "groups": ["admins"], "tenant": "blocked" })));
    let reply = responded(bed.get(API, "/admin/users", &with_bearer(&blocked)));
    assert_eq!(reply.status, 403);
    assert_eq!(body_json(&reply)["error"], "forbidden");
    assert_eq!(reply.header("www-authenticate"), None);
    let not_admin = bearer(&token(
        json!({ "groups": ["users"], "scope": "read write" }),
    ));
    let reply = responded(bed.get(API, "/admin/users", &with_bearer(&not_admin)));
    assert_eq!(reply.status, 403, "scopes do not make an admin");
}

#[test]
fn kyma_a_rule_on_a_nested_claim() {
    let mut bed = kyma();
    let auditor = bearer(&token(
        json!({ "realm_access": { "roles": ["viewer", "auditor"] } }),
    ));
    forwarded(bed.get(API, "/audit/log", &with_bearer(&auditor)));
    for (who, claims) in [
        (
            "another role",
            json!({ "realm_access": { "roles": ["viewer"] } }),
        ),
        (
            "the role as a top-level claim",
            json!({ "roles": ["auditor"] }),
        ),
        ("no such claim", json!({})),
    ] {
        let authorization = bearer(&token(claims));
        let reply = responded(bed.get(API, "/audit/log", &with_bearer(&authorization)));
        assert_eq!(reply.status, 403, "{who}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. Valid, invalid and missing tokens

#[test]
fn a_valid_token_that_names_no_user_is_forbidden_not_unauthenticated() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API] }],
    }));
    let nameless = bearer(&token(json!({ "sub": null })));
    // On a service's host, and on a host under no service.
    for host in [API, "other.example.com"] {
        let reply = responded(bed.get(host, "/", &with_bearer(&nameless)));
        assert_eq!(reply.status, 403, "{host}: {}", reply.body);
        assert_eq!(body_json(&reply)["error"], "forbidden");
    }
    let empty = bearer(&token(json!({ "sub": "" })));
    let reply = responded(bed.get(API, "/", &with_bearer(&empty)));
    assert_eq!(reply.status, 403);
}

#[test]
fn a_forged_signature_is_an_invalid_token_and_no_token_asks_for_one() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API] }],
    }));
    let forged = bearer(&mint::tamper_signature(&token(json!({}))));
    let reply = responded(bed.get(API, "/", &with_bearer(&forged)));
    assert_eq!(reply.status, 401);
    assert_eq!(body_json(&reply)["error"], "invalid_token");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"invalid_token\"")),
        "{reply:?}"
    );
    let reply = responded(bed.get(API, "/", &[JSON]));
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="wasm-iap""#),
        "no error code without a credential (RFC 6750 §3.1)"
    );
    forwarded(bed.get(API, "/", &with_bearer(&bearer(&token(json!({}))))));
}

// ---------------------------------------------------------------------------------------
// 7. What the upstream learns of the caller

fn identity_bed(extra: Value) -> Bed {
    let mut config = json!({
        "providers": [provider()],
        "services": [{ "hosts": [API] }],
        "claim_headers": { "x-tenant": "tenant.id" },
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Bed::new(&config)
}

fn alice() -> String {
    bearer(&token(json!({
        "groups": ["myorg:sre", "myorg:dev"],
        "preferred_username": "alice",
        "tenant": { "id": "acme" },
    })))
}

#[test]
fn the_upstream_learns_who_called_from_identity_headers() {
    let mut bed = identity_bed(json!({}));
    let alice = alice();
    let forward = forwarded(bed.get(API, "/", &with_bearer(&alice)));
    for (name, value) in [
        ("x-auth-request-user", "alice-id"),
        ("x-auth-request-email", "alice@example.com"),
        ("x-auth-request-groups", "myorg:sre,myorg:dev"),
        ("x-auth-request-preferred-username", "alice"),
        ("x-tenant", "acme"),
    ] {
        assert_eq!(header(&forward, name), Some(value), "{name}: {forward:?}");
    }
    assert_eq!(
        header(&forward, "x-forwarded-user"),
        None,
        "only when asked for"
    );
    // An unverified address is not passed on as the caller's.
    let unverified = bearer(&token(json!({ "email_verified": false })));
    let forward = forwarded(bed.get(API, "/", &with_bearer(&unverified)));
    assert_eq!(header(&forward, "x-auth-request-email"), None);
    assert_eq!(header(&forward, "x-auth-request-user"), Some("alice-id"));
}

#[test]
fn pass_user_headers_also_sets_x_forwarded_user_and_email() {
    let mut bed = identity_bed(json!({ "pass_user_headers": true }));
    let alice = alice();
    let forward = forwarded(bed.get(API, "/", &with_bearer(&alice)));
    assert_eq!(header(&forward, "x-forwarded-user"), Some("alice-id"));
    assert_eq!(
        header(&forward, "x-forwarded-email"),
        Some("alice@example.com")
    );
}

#[test]
fn grafanas_auth_proxy_headers_named_as_ours_carry_our_identity_and_never_the_clients() {
    let mut bed = identity_bed(json!({
        "identity_headers": { "user": "X-WEBAUTH-USER", "email": "X-WEBAUTH-EMAIL" },
    }));
    let alice = alice();
    let mut headers = with_bearer(&alice);
    headers.extend([("x_webauth_user", "admin"), ("X-WEBAUTH-ROLE", "Admin")]);
    let sent = bed.send("GET", API, "/", &headers);
    assert!(
        sent.strip.contains(&"x_webauth_user".to_string()),
        "{:?}",
        sent.strip
    );
    assert!(
        sent.strip.contains(&"X-WEBAUTH-ROLE".to_string()),
        "{:?}",
        sent.strip
    );
    let forward = forwarded(sent.decision);
    let user = forward
        .set_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-webauth-user"))
        .map(|(_, v)| v.as_str());
    assert_eq!(user, Some("alice-id"), "{forward:?}");
}

#[test]
fn a_client_cannot_send_its_own_identity_headers_in_any_spelling() {
    for extra in [json!({}), json!({ "pass_user_headers": true })] {
        let mut bed = identity_bed(extra);
        let alice = alice();
        let mut headers = with_bearer(&alice);
        headers.extend([
            ("X-Auth-Request-Groups", "admins"),
            ("X_Tenant", "other-tenant"),
            ("X-Forwarded-User", "root"),
            ("x_auth_request_email", "root@example.com"),
            ("x-custom", "kept"),
        ]);
        let sent = bed.send("GET", API, "/", &headers);
        assert_eq!(
            sent.strip,
            [
                "X-Auth-Request-Groups",
                "X_Tenant",
                "X-Forwarded-User",
                "x_auth_request_email"
            ]
        );
        let forward = forwarded(sent.decision);
        assert_eq!(header(&forward, "x-tenant"), Some("acme"));
        // Refused requests strip them too (the decision is carried out either way).
        let sent = bed.send("GET", API, "/", &[("X-Forwarded-User", "root"), JSON]);
        assert_eq!(responded(sent.decision).status, 401);
        assert_eq!(sent.strip, ["X-Forwarded-User"]);
    }
}

#[test]
fn a_login_service_passes_the_id_token_and_access_token_when_configured() {
    let passing = json!({ "set_authorization_header": true, "pass_access_token": true });
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "login": [
            login_service("grafana.example.com", "grafana", "_wasm_iap", passing),
            login_service("plain.example.com", "plain", "_wasm_iap", json!({})),
        ],
    }));
    let mut session = session_of("alice-id", "alice@example.com", &["myorg:sre"]);
    session.id_token = Some(Secret::new("eyJhbGciOi.id-token.sig"));
    session.access_token = Some(Secret::new("access-token-123"));
    for (index, host, passes) in [
        (0, "grafana.example.com", true),
        (1, "plain.example.com", false),
    ] {
        let cookie = bed.session_cookie(index, &session);
        let mut headers = BROWSER.to_vec();
        headers.push(("cookie", &cookie));
        headers.push(("authorization", "Bearer client-sent"));
        let forward = forwarded(bed.get(host, "/d/home", &headers));
        if passes {
            assert_eq!(
                header(&forward, "authorization"),
                Some("Bearer eyJhbGciOi.id-token.sig"),
                "{forward:?}"
            );
            assert_eq!(
                header(&forward, "x-auth-request-access-token"),
                Some("access-token-123")
            );
            assert!(!forward
                .remove_headers
                .contains(&"authorization".to_string()));
        } else {
            assert_eq!(header(&forward, "authorization"), None);
            assert_eq!(header(&forward, "x-auth-request-access-token"), None);
            assert!(
                forward
                    .remove_headers
                    .contains(&"authorization".to_string()),
                "the client's own Authorization never rides along a session: {forward:?}"
            );
        }
        assert_eq!(header(&forward, "x-auth-request-user"), Some("alice-id"));
    }
}

// ---------------------------------------------------------------------------------------
// 8. Counters

#[test]
fn counters_tell_allowed_forbidden_missing_invalid_and_bad_requests_apart() {
    let mut bed = public_bed();
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    let forged = bearer(&mint::tamper_signature(&sre));
    forwarded(bed.get(APP, "/admin", &with_bearer(&sre)));
    forwarded(bed.get(APP, "/public/app.js", &[JSON]));
    assert_eq!(
        responded(bed.get(APP, "/admin", &with_bearer(&dev))).status,
        403
    );
    assert_eq!(responded(bed.get(APP, "/admin", &[JSON])).status, 401);
    assert_eq!(
        responded(bed.get(APP, "/admin", &with_bearer(&forged))).status,
        401
    );
    assert_eq!(
        responded(bed.get(APP, "/public%2Fadmin", &[JSON])).status,
        400
    );
    assert_eq!(responded(bed.get(WEB, "/admin", &BROWSER)).status, 302);
    bed.gateway.tick(&mut bed.host);
    let counts: Vec<(Metric, usize)> = [
        Metric::Allowed,
        Metric::DeniedForbidden,
        Metric::DeniedNoCredential,
        Metric::DeniedInvalidToken,
        Metric::DeniedBadRequest,
        Metric::Refused,
        Metric::Redirected,
        Metric::LoginsStarted,
    ]
    .into_iter()
    .map(|m| (m, bed.host.count_of(m)))
    .collect();
    assert_eq!(
        counts,
        [
            (Metric::Allowed, 2),
            (Metric::DeniedForbidden, 1),
            (Metric::DeniedNoCredential, 1),
            (Metric::DeniedInvalidToken, 1),
            (Metric::DeniedBadRequest, 1),
            (Metric::Refused, 4),
            (Metric::Redirected, 1),
            (Metric::LoginsStarted, 1),
        ]
    );
}

#[test]
fn token_cache_hits_and_misses_are_reported_on_the_tick() {
    let mut bed = public_bed();
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    forwarded(bed.get(APP, "/admin", &with_bearer(&sre)));
    forwarded(bed.get(APP, "/admin", &with_bearer(&sre)));
    assert_eq!(
        bed.host.count_of(Metric::TokenCacheMisses),
        0,
        "not before the tick"
    );
    bed.gateway.tick(&mut bed.host);
    assert_eq!(bed.host.count_of(Metric::TokenCacheMisses), 1);
    assert_eq!(bed.host.count_of(Metric::TokenCacheHits), 1);
    // A cached token is still judged by the rules of the path it asks for.
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    assert_eq!(
        responded(bed.get(APP, "/admin", &with_bearer(&dev))).status,
        403
    );
    assert_eq!(
        responded(bed.get(APP, "/admin", &with_bearer(&dev))).status,
        403
    );
    bed.gateway.tick(&mut bed.host);
    assert_eq!(bed.host.count_of(Metric::TokenCacheMisses), 2);
    assert_eq!(bed.host.count_of(Metric::TokenCacheHits), 2);
    assert_eq!(bed.host.count_of(Metric::DeniedForbidden), 2);
    bed.gateway.tick(&mut bed.host);
    assert_eq!(
        bed.host.count_of(Metric::TokenCacheHits),
        2,
        "reported once"
    );
}

// ---------------------------------------------------------------------------------------
// 9. The log line of a refusal

fn reference_of(user: &str) -> String {
    Sha256::digest(format!("{ISSUER}\n{user}").as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_403_is_logged_with_a_reference_to_the_user_but_not_their_name_or_token() {
    let mut bed = kyma();
    let raw = token(json!({
        "sub": "bob-id", "email": "bob@mydomain.com", "preferred_username": "bobby",
        "groups": ["users"], "tenant": "acme",
    }));
    let authorization = bearer(&raw);
    let reply = responded(bed.get(
        API,
        "//admin/users?secret=s3cr3t",
        &with_bearer(&authorization),
    ));
    assert_eq!(reply.status, 403);
    let lines = bed.info_lines();
    let line = lines
        .iter()
        .find(|l| l.contains("403 for user"))
        .unwrap_or_else(|| panic!("no 403 line at info: {:#?}", bed.host.log.borrow()));
    assert!(
        line.starts_with(&format!("403 for user {} on ", reference_of("bob-id"))),
        "{line}"
    );
    assert!(line.contains("api.example.com/admin/users"), "{line}");
    for secret in ["bob-id", "bob@", "bobby", "s3cr3t", "acme", raw.as_str()] {
        assert!(!line.contains(secret), "{secret:?} in {line}");
    }
    for (_, any) in bed.host.log.borrow().iter() {
        assert!(!any.contains(&raw), "the token is never logged: {any}");
    }
    // Scopes that were all that was missing are named; the same caller, the same reference.
    let reader = bearer(&token(json!({ "sub": "bob-id", "scope": "read" })));
    responded(
        bed.send("POST", API, "/api/x", &with_bearer(&reader))
            .decision,
    );
    assert!(
        bed.info_lines().iter().any(|l| l
            == &format!(
                "403 for user {} on api.example.com/api/x: missing scopes write",
                reference_of("bob-id")
            )),
        "{:#?}",
        bed.info_lines()
    );
}

#[test]
fn a_403_of_a_browser_session_is_logged_too() {
    let mut bed = kkp();
    let cookie = bed.session_cookie(1, &session_of("bob-id", "bob@mydomain.com", &["myorg:dev"]));
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    assert_eq!(
        responded(bed.get(ALERTMANAGER, "/api/v2/silences", &headers)).status,
        403
    );
    let lines = bed.info_lines();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "403 for user {} on alertmanager.example.com/api/v2/silences",
            reference_of("bob-id")
        ))),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("bob")), "{lines:#?}");
}

// ---------------------------------------------------------------------------------------
// Hosts: every spelling of a service's host is that service's

#[test]
fn a_trailing_dot_or_a_port_on_the_host_does_not_escape_the_rules() {
    let mut bed = kyma();
    let reader = bearer(&token(json!({ "scope": "read" })));
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com:443",
        "api.example.com.",
        "api.example.com.:443",
    ] {
        let decision = bed
            .send("POST", host, "/api/x", &with_bearer(&reader))
            .decision;
        match decision {
            Decision::Respond(reply) => assert_eq!(reply.status, 403, "Host {host}"),
            other => panic!("a reader may not write through Host {host:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The rules apply however the caller got authenticated: after a wait for keys, after a
// refresh of the session.

#[test]
fn a_request_that_waited_for_the_keys_is_still_judged_by_the_rules() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "dex" }],
        "services": [{ "hosts": [API], "allowed_groups": ["myorg:sre"] }],
    });
    let mut bed = Bed::new(&config);
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    for authorization in [&dev, &sre] {
        let decision = bed.get(API, "/metrics", &with_bearer(authorization));
        assert!(matches!(decision, Decision::Parked), "{decision:?}");
    }
    let record = KeysRecord {
        jwks: Some(shared_keys().jwks().to_string()),
        attempted_at_ms: bed.host.now_ms(),
        ..KeysRecord::default()
    };
    bed.gateway
        .authn
        .install_record(ProviderId(0), &record)
        .unwrap();
    let mut decided = bed.gateway.settle(&mut bed.host, Some(ProviderId(0)));
    decided.sort_by_key(|(context, _)| *context);
    let mut decisions = decided.into_iter().map(|(_, d)| d);
    let refused = responded(decisions.next().unwrap());
    assert_eq!(refused.status, 403, "the developer: {}", refused.body);
    assert_eq!(body_json(&refused)["error"], "forbidden");
    forwarded(decisions.next().unwrap());
    assert_eq!(bed.host.count_of(Metric::DeniedForbidden), 1);
    bed.gateway.tick(&mut bed.host);
    assert_eq!(bed.host.count_of(Metric::Allowed), 1);
}

#[test]
fn a_user_removed_from_the_group_loses_access_at_the_next_refresh() {
    let mut bed = kkp();
    let mut session = session_of("alice-id", "alice@mydomain.com", &["myorg:sre"]);
    session.refresh_at = mint::now_secs() - 1;
    session.refresh_token = Some(Secret::new("rt-1"));
    let cookie = bed.session_cookie(0, &session);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let decision = bed.get(PROMETHEUS, "/graph", &headers);
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    assert!(bed.gateway.settle(&mut bed.host, None).is_empty(), "sent");
    let call = bed
        .host
        .calls
        .last()
        .cloned()
        .expect("the refresh was sent");
    assert!(
        call.body.contains("grant_type=refresh_token"),
        "{}",
        call.body
    );
    // Meanwhile the IdP moved her to the developers.
    let claims = claims_with(
        ISSUER,
        "prometheus",
        json!({ "email": "alice@mydomain.com", "groups": ["myorg:dev"] }),
    );
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let answer = json!({ "id_token": id_token, "refresh_token": "rt-2", "expires_in": 300 });
    let (_, decision) = bed
        .gateway
        .on_settled_call_response(
            &mut bed.host,
            call.token,
            Some(200),
            answer.to_string().as_bytes(),
        )
        .expect("the gateway knows the call");
    let reply = responded(decision);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.body.contains("alice@mydomain.com"), "{}", reply.body);
    assert!(
        reply.set_cookies().any(|c| c.starts_with("_prom_iap=")),
        "the renewed session is stored even so: {reply:?}"
    );
    assert_eq!(bed.host.count_of(Metric::Refreshed), 1);
}

#[test]
fn a_claim_that_would_split_a_header_is_not_passed_on() {
    let mut bed = identity_bed(json!({}));
    let authorization = bearer(&token(
        json!({ "tenant": { "id": "acme\r\nx-admin: true" } }),
    ));
    let forward = forwarded(bed.get(API, "/", &with_bearer(&authorization)));
    assert_eq!(header(&forward, "x-tenant"), None, "{forward:?}");
    assert!(forward
        .set_headers
        .iter()
        .all(|(_, v)| !v.contains('\r') && !v.contains('\n')));
    let number = bearer(&token(json!({ "tenant": { "id": 42 } })));
    let forward = forwarded(bed.get(API, "/", &with_bearer(&number)));
    assert_eq!(header(&forward, "x-tenant"), Some("42"));
}

/// What a developer's token gets on `admin.example.com` (rules: group `admins`) when another
/// service lists `*`: `Err` with the problems when the overlap is refused at configure time
/// (like any host served twice), else the decision.
fn developer_on_the_admins_host(config: &Value) -> Result<Decision, Vec<String>> {
    Settings::parse(&config.to_string())?;
    let mut bed = Bed::new(config);
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    Ok(bed.get("admin.example.com", "/", &with_bearer(&dev)))
}

fn admins_only() -> Value {
    json!({ "hosts": ["admin.example.com"], "allowed_groups": ["admins"] })
}

/// Either refused as a host served twice, or the named host keeps its rules; never may the
/// admins' host silently admit anyone with a token.
fn assert_not_shadowed(config: &Value) {
    match developer_on_the_admins_host(config) {
        Err(problems) => assert!(
            problems.iter().any(|p| p.contains("hosts")),
            "{problems:#?}"
        ),
        Ok(Decision::Respond(reply)) => assert_eq!(reply.status, 403, "{reply:?}"),
        Ok(other) => panic!("a developer reaches the admins' host: {other:?}"),
    }
}

#[test]
fn a_catch_all_services_entry_does_not_shadow_the_rules_of_a_named_host() {
    assert_not_shadowed(&json!({
        "providers": [provider()],
        "services": [{ "hosts": ["*"] }, admins_only()],
    }));
}

#[test]
fn a_named_host_listed_before_a_catch_all_keeps_its_rules() {
    assert_not_shadowed(&json!({
        "providers": [provider()],
        "services": [admins_only(), { "hosts": ["*"] }],
    }));
}

#[test]
fn a_catch_all_login_service_does_not_shadow_the_rules_of_a_named_host() {
    assert_not_shadowed(&json!({
        "providers": [provider()],
        "login": [login_service("*", "web", "_wasm_iap", json!({}))],
        "services": [admins_only()],
    }));
}

#[test]
fn a_route_for_a_host_its_service_does_not_serve_is_a_config_error() {
    // A typo (`.con`): the admins-only route would never apply, and /admin/ would fall to the
    // service's rules (any valid token).
    let config = json!({
        "providers": [provider()],
        "services": [{ "hosts": ["api.example.com"], "routes": [
            { "hosts": ["api.example.con"], "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }] },
        ] }],
    });
    let problems = Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("services[0].routes[0].hosts")),
        "{problems:#?}"
    );
}

#[test]
fn a_route_for_one_of_its_service_hosts_applies_there_only() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": ["api.example.com", "admin.example.com"], "routes": [
            { "hosts": ["admin.example.com"], "allow": [{ "groups": ["admins"] }] },
        ] }],
    }));
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    forwarded(bed.get("api.example.com", "/x", &with_bearer(&dev)));
    let reply = responded(bed.get("ADMIN.example.com.:443", "/x", &with_bearer(&dev)));
    assert_eq!(reply.status, 403);
    let admin = bearer(&token(json!({ "groups": ["admins"] })));
    forwarded(bed.get("admin.example.com", "/x", &with_bearer(&admin)));
}

// ---------------------------------------------------------------------------------------
// More of what routes say

#[test]
fn kyma_a_final_route_with_an_empty_allow_list_closes_every_method_no_route_lists() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "routes": [
                { "path_prefix": "/api/", "methods": ["GET"], "allow": [{ "scopes": ["read"] }] },
                { "allow": [] },
            ],
        }],
    }));
    let reader = bearer(&token(json!({ "scope": "read write" })));
    forwarded(bed.get(API, "/api/x", &with_bearer(&reader)));
    for method in ["DELETE", "PUT", "PATCH"] {
        let reply = responded(
            bed.send(method, API, "/api/x", &with_bearer(&reader))
                .decision,
        );
        assert_eq!(reply.status, 403, "{method}");
        assert_eq!(body_json(&reply)["error"], "forbidden", "{method}");
    }
    let reply = responded(bed.get(API, "/other", &with_bearer(&reader)));
    assert_eq!(reply.status, 403);
}

#[test]
fn a_path_regex_must_match_the_whole_normalised_path() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "allowed_groups": ["admins"],
            "routes": [{ "path_regex": "/v[0-9]+/status", "public": true }],
        }],
    }));
    for path in ["/v1/status", "/v42/status?x=1"] {
        forwarded(bed.get(API, path, &[JSON]));
    }
    // A public route opens only for a path that is public as sent, too: `//v1//status` is
    // `/v1/status` only to upstreams that merge slashes.
    for path in [
        "/v1/status/x",
        "/x/v1/status",
        "/v1/status/",
        "/vx/status",
        "//v1//status",
    ] {
        let reply = responded(bed.get(API, path, &[JSON]));
        assert_eq!(reply.status, 401, "{path}");
    }
}

#[test]
fn an_api_route_of_a_login_host_answers_401_to_a_browser_instead_of_a_login_page() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "login": [login_service(WEB, "web", "_wasm_iap", json!({
            "routes": [{ "path_prefix": "/api/", "unauthenticated": "deny" }],
        }))],
    }));
    let reply = responded(bed.get(WEB, "/api/items", &BROWSER));
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.header("location"), None);
    let reply = responded(bed.get(WEB, "/apix", &BROWSER));
    assert_eq!(
        reply.status, 302,
        "a segment boundary: /apix is not under /api/"
    );
}

#[test]
fn the_access_denied_page_names_the_account_by_its_best_known_name() {
    let mut bed = kkp();
    let mut session = session_of("u-7", "x@y", &["myorg:dev"]);
    session.email = None;
    session.preferred_username = Some("bobby".into());
    let cookie = bed.session_cookie(0, &session);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let reply = responded(bed.get(PROMETHEUS, "/", &headers));
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("signed in as bobby"), "{}", reply.body);
    session.preferred_username = None;
    let cookie = bed.session_cookie(0, &session);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let reply = responded(bed.get(PROMETHEUS, "/", &headers));
    assert!(reply.body.contains("signed in as u-7"), "{}", reply.body);
}

#[test]
fn renamed_identity_headers_are_set_and_stripped_under_their_new_names() {
    let mut bed = Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API] }],
        "identity_headers": { "user": "X-Remote-User", "groups": "x-remote-groups" },
    }));
    let authorization = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    let mut headers = with_bearer(&authorization);
    headers.extend([("x_remote_user", "root"), ("X-Remote-Groups", "admins")]);
    let sent = bed.send("GET", API, "/", &headers);
    assert_eq!(sent.strip, ["x_remote_user", "X-Remote-Groups"]);
    let forward = forwarded(sent.decision);
    assert_eq!(header(&forward, "x-remote-user"), Some("alice-id"));
    assert_eq!(header(&forward, "x-remote-groups"), Some("myorg:sre"));
    assert_eq!(header(&forward, "x-auth-request-user"), None);
}

// ---------------------------------------------------------------------------------------
// Issue 16, classes 5-7: spellings an upstream serves as a restricted path, public routes
// opened by a spelling of another path, a literal dotted claim beside the nested one.

/// Spellings of `/admin/users` that Rails `(.:format)`, Spring MVC before 5.3 or IIS
/// (trailing dots and spaces) serve as `/admin/users` or `/admin`.
const ADMIN_SPELLINGS: [&str; 19] = [
    "/admin%3Bjsessionid=x",
    "/admin.json",
    "/admin.",
    "/ADMIN.xml",
    "/admin./users",
    "/admin%2e/users",
    "/admin%2E/users",
    "/admin%20/users",
    "/admin.json/users",
    "/admin..json",
    "/admin%20.json",
    "/admin%20%20",
    "/Admin.JSON.",
    "/admin;x=1.json",
    "/admin;.json",
    "/admin/users.json",
    "/admin.%20.",
    "/aDmIn%2e%2e",
    "/admin.json?x=1",
];

fn admin_area(public_rest: bool) -> Bed {
    let mut routes = vec![
        json!({ "path_prefix": "/admin", "allow": [{ "groups": ["admins"] }] }),
        json!({ "path": "/api/users", "methods": ["DELETE"], "allow": [{ "groups": ["admins"] }] }),
        json!({ "path_regex": "/reports/[0-9]+", "allow": [{ "groups": ["admins"] }] }),
    ];
    if public_rest {
        routes.push(json!({ "path_prefix": "/", "public": true }));
    }
    Bed::new(&json!({
        "providers": [provider()],
        "services": [{ "hosts": [API], "routes": routes }],
    }))
}

#[test]
fn a_format_suffix_or_trailing_dot_does_not_step_around_an_admin_restriction() {
    let dev = bearer(&token(json!({ "groups": ["devs"] })));
    let admin = bearer(&token(json!({ "groups": ["admins"] })));
    for public_rest in [false, true] {
        let mut bed = admin_area(public_rest);
        for path in ADMIN_SPELLINGS {
            let reply = responded(bed.get(API, path, &with_bearer(&dev)));
            assert_eq!(reply.status, 403, "{path} (public rest: {public_rest})");
            forwarded(bed.get(API, path, &with_bearer(&admin)));
            // A public route after the restriction does not open its spellings.
            let reply = responded(bed.get(API, path, &[JSON]));
            assert_eq!(reply.status, 401, "{path} without a credential");
        }
        for path in ["/administrator", "/admin-panel", "/adminx.json"] {
            match public_rest {
                true => forwarded(bed.get(API, path, &[JSON])),
                false => forwarded(bed.get(API, path, &with_bearer(&dev))),
            };
        }
    }
}

#[test]
fn a_format_suffix_does_not_step_around_a_rule_on_a_method_and_exact_path() {
    let mut bed = admin_area(false);
    let dev = bearer(&token(json!({ "groups": ["devs"] })));
    for path in [
        "/api/users",
        "/api/users.json",
        "/API/Users.XML",
        "/api/users.",
        "/api/users%20",
        "/api/users/",
        "/api/users;.json",
    ] {
        for method in ["DELETE", "delete"] {
            let reply = responded(bed.send(method, API, path, &with_bearer(&dev)).decision);
            assert_eq!(reply.status, 403, "{method} {path}");
        }
        forwarded(bed.get(API, path, &with_bearer(&dev)));
    }
}

#[test]
fn a_restricting_path_regex_also_holds_for_the_loose_spellings_of_a_path() {
    let mut bed = admin_area(true);
    let dev = bearer(&token(json!({ "groups": ["devs"] })));
    for path in [
        "/reports/7",
        "/reports/7.json",
        "/REPORTS/7",
        "/reports/7.",
        "/reports/7%20",
    ] {
        let reply = responded(bed.get(API, path, &with_bearer(&dev)));
        assert_eq!(reply.status, 403, "{path}");
        let reply = responded(bed.get(API, path, &[JSON]));
        assert_eq!(reply.status, 401, "{path}");
    }
    forwarded(bed.get(API, "/reports/x", &[JSON]));
}

#[test]
fn encoded_control_characters_in_a_path_are_refused() {
    let mut bed = admin_area(true);
    for path in ["/admin%09", "/admin%0a/users", "/admin%0D", "/admin%7f"] {
        let reply = responded(bed.get(API, path, &[JSON]));
        assert_eq!(reply.status, 400, "{path}");
    }
}

/// Spellings whose normalised path is public but whose raw path, which the upstream gets,
/// is not under the public route.
const PUBLIC_LOOKALIKES: [&str; 8] = [
    "/public;x/admin/users",
    "/public;/admin",
    "/publi%63/admin/users",
    "/%70ublic/admin",
    "/healthz;.json",
    "/healt%68z",
    "/healthz;",
    "/%68ealthz?probe=1",
];

#[test]
fn a_public_route_opens_only_when_the_raw_path_is_under_it() {
    let mut bed = public_bed();
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    let dev = bearer(&token(json!({ "groups": ["myorg:dev"] })));
    for host in [APP, WEB] {
        for path in PUBLIC_LOOKALIKES {
            let reply = responded(bed.get(host, path, &[JSON]));
            assert_eq!(reply.status, 401, "{host}{path}: {}", reply.body);
        }
    }
    for path in PUBLIC_LOOKALIKES {
        let reply = responded(bed.get(APP, path, &with_bearer(&dev)));
        assert_eq!(reply.status, 403, "{path}: the service's rules apply");
        forwarded(bed.get(APP, path, &with_bearer(&sre)));
    }
}

#[test]
fn forward_normalized_path_sends_the_upstream_the_path_that_was_judged() {
    let mut service = public_routes();
    service["hosts"] = json!([APP]);
    service["forward_normalized_path"] = json!(true);
    let mut bed = Bed::new(&json!({ "providers": [provider()], "services": [service] }));
    let sre = bearer(&token(json!({ "groups": ["myorg:sre"] })));
    for (sent, judged) in [
        ("/public//css/app.js?v=1", "/public/css/app.js?v=1"),
        ("/healthz", "/healthz"),
    ] {
        let forward = forwarded(bed.get(APP, sent, &[JSON]));
        assert_eq!(header(&forward, ":path"), Some(judged), "{sent}");
    }
    for (sent, judged) in [
        ("/public;x/admin/users", "/public/admin/users"),
        ("/api;jsessionid=1/%61%64min?q=a%20b", "/api/admin?q=a%20b"),
        ("/caf\u{e9}", "/caf%C3%A9"),
    ] {
        let forward = forwarded(bed.get(APP, sent, &with_bearer(&sre)));
        assert_eq!(header(&forward, ":path"), Some(judged), "{sent}");
    }
    // Without the option the path goes upstream as sent.
    let mut bed = public_bed();
    let forward = forwarded(bed.get(APP, "/public//css/app.js", &[JSON]));
    assert_eq!(header(&forward, ":path"), None);
}

#[test]
fn forward_normalized_path_must_be_a_boolean() {
    let mut service = public_routes();
    service["hosts"] = json!([APP]);
    service["forward_normalized_path"] = json!("yes");
    let problems = problems_of(&json!({ "providers": [provider()], "services": [service] }));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("services[0].forward_normalized_path")
                && p.contains("true or false")),
        "{problems:?}"
    );
}

fn keycloak_roles(extra: Value) -> Bed {
    let mut config = json!({
        "providers": [provider()],
        "services": [{
            "hosts": [API],
            "routes": [
                { "path_prefix": "/admin", "allow": [{ "claims": { "realm_access.roles": "admin" } }] },
                { "allow": [{ "authenticated": true }],
                  "deny": [{ "claims": { "realm_access.roles": "suspended" } }] },
            ],
        }],
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Bed::new(&config)
}

#[test]
fn a_literal_dotted_claim_does_not_shadow_the_nested_claim_a_rule_names() {
    let mut bed = keycloak_roles(json!({}));
    // (claims, status on /admin, status elsewhere)
    let cases = [
        (json!({ "realm_access": { "roles": ["admin"] } }), 200, 200),
        (
            json!({ "realm_access": { "roles": ["suspended"] } }),
            403,
            403,
        ),
        (
            json!({ "realm_access.roles": ["user"], "realm_access": { "roles": ["suspended"] } }),
            403,
            403,
        ),
        (
            json!({ "realm_access.roles": ["admin"], "realm_access": { "roles": ["user"] } }),
            403,
            200,
        ),
        (json!({ "realm_access.roles": ["admin"] }), 200, 200),
        (json!({ "realm_access.roles": ["suspended"] }), 403, 403),
    ];
    for (claims, admin_status, other_status) in cases {
        let authorization = bearer(&token(claims.clone()));
        for (path, expected) in [("/admin/x", admin_status), ("/x", other_status)] {
            let status = match bed.get(API, path, &with_bearer(&authorization)) {
                Decision::Forward(_) => 200,
                Decision::Respond(reply) => reply.status,
                other => panic!("{other:?}"),
            };
            assert_eq!(status, expected, "{path} with {claims}");
        }
    }
}

#[test]
fn claim_headers_and_groups_read_the_nested_claim_when_a_literal_one_is_beside_it() {
    let mut provider = provider();
    provider["groups_claim"] = json!("realm_access.roles");
    let mut bed = Bed::new(&json!({
        "providers": [provider],
        "services": [{ "hosts": [API], "allowed_groups": ["admin"] }],
        "claim_headers": { "x-roles": "realm_access.roles" },
    }));
    let both = bearer(&token(json!({
        "realm_access.roles": ["admin"],
        "realm_access": { "roles": ["user"] },
    })));
    let reply = responded(bed.get(API, "/", &with_bearer(&both)));
    assert_eq!(reply.status, 403, "the literal key does not make an admin");
    let admin = bearer(&token(json!({
        "realm_access.roles": ["user"],
        "realm_access": { "roles": ["admin"] },
    })));
    let forward = forwarded(bed.get(API, "/", &with_bearer(&admin)));
    assert_eq!(header(&forward, "x-roles"), Some("admin"));
    assert_eq!(header(&forward, "x-auth-request-groups"), Some("admin"));
}

// ---------------------------------------------------------------------------------------
// Hosts no service lists (issue 16, class 3)

/// One service with an admin-only area, and the requests that name another host: what
/// Envoy hands the filter for `Host: 127.0.0.1`, an absolute-form request line
/// (`GET http://other.test/admin`), `http://app.example.com@other.test/admin`, and an h2
/// `:authority` beside a `host` header that names another host.
const ELSEWHERE: [(&str, &str, Option<&str>); 7] = [
    ("Host: 127.0.0.1", "127.0.0.1", None),
    ("Host: 127.0.0.1:8080", "127.0.0.1:8080", None),
    ("absolute form", "other.test", None),
    ("absolute form, trailing dot", "other.test.", None),
    ("userinfo", "app.example.com@other.test", None),
    ("h2 host differs", APP, Some("other.test")),
    ("h2 host differs the other way", "other.test", Some(APP)),
];

fn admin_only_app(hosts: Value) -> Value {
    json!({
        "providers": [provider()],
        "services": [{
            "hosts": hosts,
            "routes": [{ "path_prefix": "/admin", "allow": [{ "groups": ["admins"] }] }],
        }],
    })
}

#[test]
fn a_host_no_service_lists_is_refused_not_let_through_to_any_valid_token() {
    let mut bed = Bed::new(&admin_only_app(json!([APP])));
    let devs = bearer(&token(json!({ "groups": ["devs"] })));
    for (case, authority, host_header) in ELSEWHERE {
        let mut headers = with_bearer(&devs);
        if let Some(host) = host_header {
            headers.push(("host", host));
        }
        for path in ["/admin", "/"] {
            let reply = responded(bed.get(authority, path, &headers));
            assert!(
                [400, 403].contains(&reply.status),
                "{case} {path}: {reply:?}"
            );
            // The forward-auth check of the same request answers the same.
            let checked = responded(bed.get(authority, &format!("/oauth2/auth{path}"), &headers));
            assert_eq!(checked.status, reply.status, "{case} {path}: {checked:?}");
        }
    }
    let reply = responded(bed.get("other.test", "/", &with_bearer(&devs)));
    assert_eq!(reply.status, 403);
    assert_eq!(
        body_json(&reply)["error_description"],
        "no service protects this host"
    );
    // The listed host, spelled as a client may, still answers by its rules.
    for authority in [
        APP,
        "APP.example.com",
        "app.example.com.",
        "app.example.com:443",
    ] {
        forwarded(bed.get(authority, "/", &with_bearer(&devs)));
        assert_eq!(
            responded(bed.get(authority, "/admin", &with_bearer(&devs))).status,
            403
        );
    }
    // `/ping` answers on every host.
    assert_eq!(responded(bed.get("127.0.0.1", "/ping", &[])).status, 200);
}

#[test]
fn a_service_that_lists_star_takes_every_other_host_and_no_services_at_all_means_any_valid_token() {
    let devs = bearer(&token(json!({ "groups": ["devs"] })));
    let mut star = Bed::new(&admin_only_app(json!(["*"])));
    for (case, authority, host_header) in ELSEWHERE {
        if host_header.is_some() || authority.contains('@') {
            continue;
        }
        forwarded(star.get(authority, "/", &with_bearer(&devs)));
        let reply = responded(star.get(authority, "/admin", &with_bearer(&devs)));
        assert_eq!(reply.status, 403, "{case}: the catch-all's rules hold");
    }
    // Pure bearer validation: no service, so every host admits a valid token.
    let mut open = Bed::new(&json!({ "providers": [provider()] }));
    forwarded(open.get("127.0.0.1", "/admin", &with_bearer(&devs)));
    forwarded(open.get("other.test", "/admin", &with_bearer(&devs)));
}
