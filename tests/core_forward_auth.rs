#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! oauth2-proxy's endpoints, natively: `/oauth2/auth` for NGINX `auth_request` (202 with the
//! identity as response headers, 401, 403, per-Ingress narrowing) and for Envoy `ext_authz`
//! (200, rules of the original path), `/oauth2/userinfo`, `/oauth2/start?rd=` on a central
//! auth host, and the probes.

mod support;

use serde_json::{json, Value};
use support::mint;
use support::native_bed::*;
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::oidc::PendingLogin;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;

const AUTH_HOST: &str = "auth.mydomain.com";
const GRAFANA: &str = "grafana.mydomain.com";

/// The seed's central auth host: one client, the cookie on the parent domain, the callback
/// on the auth host, the apps' hosts named so the browser can come back to them.
fn central() -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(AUTH_HOST, "oauth2-proxy", "_oauth2_proxy", json!({
            "hosts": [AUTH_HOST, GRAFANA],
            "cookie_domain": ".mydomain.com",
            "redirect_url": format!("https://{AUTH_HOST}/oauth2/callback"),
            "allowed_redirect_hosts": [".mydomain.com"],
            "email_domains": ["example.com", "ops.example.com"],
        }))],
        "services": [{
            "hosts": ["api.mydomain.com"],
            "routes": [
                { "path_prefix": "/public/", "public": true },
                { "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }] },
            ],
        }],
    })
}

fn session_of(user: &str, email: &str, groups: &[&str]) -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{user}"),
        user: user.into(),
        email: Some(email.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        preferred_username: Some(user.into()),
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    }
}

fn check(bed: &mut Bed, host: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    responded(bed.get(host, path, extra))
}

#[test]
fn auth_request_gets_202_with_the_identity_as_response_headers_for_a_session_or_a_token() {
    let mut bed = Bed::new(&central());
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    let with_cookie = [("cookie", cookie.as_str())];
    let reply = check(&mut bed, AUTH_HOST, "/oauth2/auth", &with_cookie);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("x-auth-request-user"), Some("alice"));
    assert_eq!(
        reply.header("x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(reply.header("x-auth-request-groups"), Some("devs"));
    assert_eq!(
        reply.header("x-auth-request-preferred-username"),
        Some("alice")
    );

    // Without the original request (`trust_original_url` off), every restriction of the
    // host's service holds: here `/admin/` for admins.
    let token = bearer(&token(json!({ "groups": ["ops", "admins"] })));
    let reply = check(
        &mut bed,
        "api.mydomain.com",
        "/oauth2/auth",
        &[("authorization", &token)],
    );
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.header("x-auth-request-user"), Some("alice-id"));
    assert_eq!(reply.header("x-auth-request-groups"), Some("ops,admins"));
}

#[test]
fn auth_request_without_a_caller_gets_401_never_a_redirect_and_403_when_refused() {
    let mut bed = Bed::new(&central());
    // A browser's own headers reach the check: still 401, NGINX sends it to sign in.
    let reply = check(&mut bed, AUTH_HOST, "/oauth2/auth", &BROWSER);
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.header("location").is_none());
    assert!(reply.header("www-authenticate").is_some());

    let outsider = bed.session_cookie(0, &session_of("mallory", "mallory@evil.com", &[]));
    let reply = check(
        &mut bed,
        AUTH_HOST,
        "/oauth2/auth",
        &[("cookie", outsider.as_str())],
    );
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.header("x-auth-request-user").is_none());

    let forged = bearer(&tamper(&token(json!({}))));
    let reply = check(
        &mut bed,
        AUTH_HOST,
        "/oauth2/auth",
        &[("authorization", &forged)],
    );
    assert_eq!(reply.status, 401, "{reply:?}");
}

fn tamper(token: &str) -> String {
    mint::tamper_signature(token)
}

#[test]
fn query_parameters_narrow_the_check_per_ingress() {
    let mut bed = Bed::new(&central());
    let alice = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    let bob = bed.session_cookie(0, &session_of("bob", "bob@ops.example.com", &["admins"]));
    let cases = [
        ("allowed_groups=admins,sre", &bob, 202),
        ("allowed_groups=admins,sre", &alice, 403),
        (
            "allowed_groups=admins&allowed_emails=alice@example.com",
            &bob,
            403,
        ),
        ("allowed_emails=ALICE@example.com", &alice, 202),
        ("allowed_emails=alice@example.com", &bob, 403),
        ("allowed_email_domains=example.com", &alice, 202),
        ("allowed_email_domains=example.com", &bob, 403),
        ("allowed_email_domains=*.example.com", &bob, 202),
        ("allowed_email_domains=.example.com", &alice, 403),
        ("allowed_groups=", &alice, 403),
        ("unrelated=1", &alice, 202),
    ];
    // An auth-url with a stray slash is the ext_authz form: it narrows just the same.
    let reply = check(
        &mut bed,
        AUTH_HOST,
        "/oauth2/auth/?allowed_groups=admins",
        &[("cookie", alice.as_str())],
    );
    assert_eq!(reply.status, 403, "{reply:?}");
    for (query, cookie, status) in cases {
        let reply = check(
            &mut bed,
            AUTH_HOST,
            &format!("/oauth2/auth?{query}"),
            &[("cookie", cookie.as_str())],
        );
        assert_eq!(reply.status, status, "{query}: {reply:?}");
    }
}

#[test]
fn ext_authz_checks_answer_200_by_the_rules_of_the_original_path() {
    let mut bed = Bed::new(&central());
    let plain = bearer(&token(json!({ "groups": ["devs"] })));
    let admin = bearer(&token(json!({ "groups": ["admins"] })));
    let host = "api.mydomain.com";
    let reply = check(
        &mut bed,
        host,
        "/oauth2/auth/metrics?x=1",
        &with_bearer(&plain),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-request-user"), Some("alice-id"));
    let reply = check(
        &mut bed,
        host,
        "/oauth2/auth/admin/users",
        &with_bearer(&plain),
    );
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = check(
        &mut bed,
        host,
        "/oauth2/auth/admin/users",
        &with_bearer(&admin),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    // A public route passes without a caller; the path tricks of routes still apply.
    let reply = check(&mut bed, host, "/oauth2/auth/public/logo.png", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.header("x-auth-request-user").is_none());
    let reply = check(&mut bed, host, "/oauth2/auth/public/../admin/users", &[]);
    assert_ne!(reply.status, 200, "{reply:?}");
    let reply = check(&mut bed, host, "/oauth2/auth/metrics", &[]);
    assert_eq!(reply.status, 401, "{reply:?}");
    // A host no service lists is not "any valid token" when the client picks the Host.
    for unlisted in ["grafana.monitoring.svc.cluster.local", "10.1.2.3:3000"] {
        let reply = check(
            &mut bed,
            unlisted,
            "/oauth2/auth/admin/users",
            &with_bearer(&admin),
        );
        assert_eq!(reply.status, 403, "{unlisted}: {reply:?}");
        assert!(reply.header("x-auth-request-user").is_none());
    }
    // What the caller does not have, Envoy removes from the request: nothing spoofed stays.
    let reply = check(&mut bed, host, "/oauth2/auth/metrics", &with_bearer(&plain));
    let removed = reply
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or_default();
    for name in [
        "x-auth-request-access-token",
        "x-forwarded-user",
        "gap-auth",
    ] {
        assert!(removed.split(',').any(|n| n == name), "{name} in {removed}");
    }
    assert!(!removed.contains("x-auth-request-user"), "{removed}");
    // Not a prefix of ours: an app's own path.
    let decision = bed.get(host, "/oauth2/authx", &with_bearer(&plain));
    forwarded(decision);
}

#[test]
fn userinfo_tells_who_is_signed_in_and_401_otherwise() {
    let mut bed = Bed::new(&central());
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    let reply = check(
        &mut bed,
        AUTH_HOST,
        "/oauth2/userinfo",
        &[("cookie", cookie.as_str())],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({ "user": "alice", "email": "alice@example.com", "groups": ["devs"],
                "preferredUsername": "alice" })
    );
    let reply = check(&mut bed, AUTH_HOST, "/oauth2/userinfo", &[JSON]);
    assert_eq!(reply.status, 401, "{reply:?}");
}

#[test]
fn probes_answer_without_a_caller_and_ready_waits_for_keys() {
    let mut bed = Bed::new(&central());
    for host in [AUTH_HOST, "10.0.0.7:4180", "anything.example"] {
        assert_eq!(check(&mut bed, host, "/ping", &[]).status, 200);
        assert_eq!(check(&mut bed, host, "/ready", &[]).status, 200);
    }
    let mut remote = central();
    remote["providers"][0] = json!({ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "dex" });
    let mut waiting = Bed::new(&remote);
    assert_eq!(check(&mut waiting, AUTH_HOST, "/ready", &[]).status, 503);
    assert_eq!(check(&mut waiting, AUTH_HOST, "/ping", &[]).status, 200);
    // Turned off, the path is the app's again.
    let mut off = central();
    off["endpoints"] = json!({ "ping": "", "auth": "/_iap/check" });
    let mut bed = Bed::new(&off);
    let token = bearer(&token(json!({})));
    forwarded(bed.get(AUTH_HOST, "/ping", &with_bearer(&token)));
    forwarded(bed.get(AUTH_HOST, "/oauth2/auth", &with_bearer(&token)));
    assert_eq!(
        check(&mut bed, AUTH_HOST, "/_iap/check", &with_bearer(&token)).status,
        202
    );
}

#[test]
fn endpoint_paths_that_are_not_plain_paths_are_refused_at_configure() {
    let mut config = central();
    config["endpoints"] =
        json!({ "auth": "oauth2/auth", "ready": "/ready?x", "ping": "/p/", "colour": 1 });
    let problems = Settings::parse(&config.to_string()).err().unwrap();
    for expected in [
        "endpoints.auth: \"oauth2/auth\" is not a path",
        "endpoints.ready: \"/ready?x\" is not a path",
        "endpoints.ping: \"/p/\" is not a path",
        "endpoints.colour: unknown field",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} in {problems:#?}"
        );
    }
}

/// The login a `/oauth2/start` began: where it returns to.
fn started(bed: &Bed, reply: &Reply) -> PendingLogin {
    assert_eq!(reply.status, 302, "{reply:?}");
    let cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    let service = &bed.gateway.settings().login[0];
    let plain = service
        .idps
        .first()
        .sealer
        .open("login", support::cookie_value(cookie))
        .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

#[test]
fn start_sends_to_the_idp_and_returns_to_rd_on_an_allowed_host() {
    let mut bed = Bed::new(&central());
    let rd = "https://grafana.mydomain.com/d/abc?orgId=1&from=now-1h";
    let path = format!(
        "/oauth2/start?rd={}",
        url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
    );
    let reply = check(&mut bed, AUTH_HOST, &path, &BROWSER);
    let location = reply.header("location").unwrap_or_default().to_string();
    assert!(
        location.starts_with(&format!("{ISSUER}/auth?")),
        "{location}"
    );
    assert!(
        location.contains("redirect_uri=https%3A%2F%2Fauth.mydomain.com%2Foauth2%2Fcallback"),
        "{location}"
    );
    assert_eq!(started(&bed, &reply).return_to, rd);
    let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    assert!(
        login_cookie.contains("Domain=.mydomain.com")
            || login_cookie.contains("Domain=mydomain.com"),
        "the callback on the auth host must see it: {login_cookie}"
    );

    // Signed in already: /oauth2/start still starts a new login, as oauth2-proxy's does.
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &[]));
    let reply = check(
        &mut bed,
        AUTH_HOST,
        "/oauth2/start?rd=%2Fx",
        &[("cookie", cookie.as_str())],
    );
    assert_eq!(started(&bed, &reply).return_to, "/x");

    for evil in [
        "https://evil.com/",
        "//evil.com",
        "https://mydomain.com.evil.com/",
        "/\\evil.com",
        "javascript:alert(1)",
    ] {
        let path = format!(
            "/oauth2/start?rd={}",
            url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let reply = check(&mut bed, AUTH_HOST, &path, &BROWSER);
        assert_eq!(started(&bed, &reply).return_to, "/", "{evil}");
    }
}

#[test]
fn a_deep_link_on_an_app_host_comes_back_to_that_host_after_a_central_callback() {
    let mut bed = Bed::new(&central());
    let reply = check(&mut bed, GRAFANA, "/d/abc?orgId=1", &BROWSER);
    assert_eq!(
        started(&bed, &reply).return_to,
        "https://grafana.mydomain.com/d/abc?orgId=1"
    );
    let reply = check(&mut bed, GRAFANA, "/oauth2/start?rd=%2Fd%2Fxyz", &BROWSER);
    assert_eq!(
        started(&bed, &reply).return_to,
        "https://grafana.mydomain.com/d/xyz"
    );
    // On the auth host itself a path stays a path.
    let reply = check(&mut bed, AUTH_HOST, "/somewhere", &BROWSER);
    assert_eq!(started(&bed, &reply).return_to, "/somewhere");
}

/// Headers a client may not send, one of each family in several spellings (case, `_`):
/// identity headers of ours and of other proxies, impersonation, kube-apiserver's front
/// proxy, Pomerium, method overrides, and the configured `strip_request_headers`.
const SPOOFED: [&str; 16] = [
    "X-Auth-Request-User",
    "x_auth_request_groups",
    "X_Auth-Request_Email",
    "x-auth-request-access-token",
    "X-Forwarded-User",
    "x_forwarded_groups",
    "GAP-Auth",
    "Impersonate-User",
    "impersonate_group",
    "X-Remote-User",
    "x_remote_extra_scopes",
    "X-Pomerium-Jwt-Assertion",
    "X-HTTP-Method-Override",
    "x_http_method",
    "X-METHOD-OVERRIDE",
    "X_Tenant",
];

/// The central auth host, also stripping a header of the operator's own.
fn central_stripping_tenant(refuse_spoofed_headers: Option<bool>) -> Value {
    let mut config = central();
    config["strip_request_headers"] = json!(["x-tenant"]);
    if let Some(refuse) = refuse_spoofed_headers {
        config["endpoints"] = json!({ "refuse_spoofed_headers": refuse });
    }
    config
}

fn headers_to_remove(reply: &Reply) -> Vec<String> {
    reply
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect()
}

#[test]
fn ext_authz_answer_names_every_spoofed_header_as_received_so_envoy_removes_it() {
    let mut bed = Bed::new(&central_stripping_tenant(None));
    let caller = bearer(&token(json!({ "groups": ["devs"] })));
    let host = "api.mydomain.com";
    for path in ["/oauth2/auth/metrics", "/oauth2/auth/public/logo.png"] {
        for spoofed in SPOOFED {
            let mut headers = with_bearer(&caller);
            headers.push((spoofed, "admins"));
            let reply = check(&mut bed, host, path, &headers);
            assert_eq!(reply.status, 200, "{path} {spoofed}: {reply:?}");
            let removed = headers_to_remove(&reply);
            let answered = reply.header(&spoofed.to_ascii_lowercase()).is_some();
            assert!(
                answered || removed.contains(&spoofed.to_ascii_lowercase()),
                "{path}: {spoofed} would reach the app as the client sent it: {removed:?}"
            );
        }
    }
}

#[test]
fn ext_authz_answer_for_a_session_removes_the_clients_unchecked_authorization() {
    let mut bed = Bed::new(&central());
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    let headers = [
        ("cookie", cookie.as_str()),
        ("authorization", "Bearer forged-by-the-client"),
    ];
    let reply = check(&mut bed, GRAFANA, "/oauth2/auth/d/abc", &headers);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-request-user"), Some("alice"));
    assert!(
        headers_to_remove(&reply).contains(&"authorization".to_string()),
        "{reply:?}"
    );
    // A bearer caller's own, checked token still reaches the app (forward_authorization).
    let caller = bearer(&token(json!({})));
    let reply = check(
        &mut bed,
        GRAFANA,
        "/oauth2/auth/d/abc",
        &with_bearer(&caller),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!headers_to_remove(&reply).contains(&"authorization".to_string()));
}

#[test]
fn auth_request_with_a_method_override_or_spoofed_identity_header_is_refused_400_naming_it() {
    let mut bed = Bed::new(&central_stripping_tenant(None));
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    for spoofed in SPOOFED {
        let headers = [("cookie", cookie.as_str()), (spoofed, "DELETE")];
        let reply = check(&mut bed, AUTH_HOST, "/oauth2/auth", &headers);
        assert_eq!(reply.status, 400, "{spoofed}: {reply:?}");
        assert!(reply.header("x-auth-request-user").is_none());
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        let why = body["error_description"].as_str().unwrap_or_default();
        assert!(why.contains(spoofed), "{spoofed}: {why}");
        assert!(
            bed.info_lines().iter().any(|l| l.contains(spoofed)),
            "the log names {spoofed}"
        );
    }
    // ingress-nginx sets X-Auth-Request-Redirect on the check itself.
    let headers = [
        ("cookie", cookie.as_str()),
        ("x-auth-request-redirect", "/d/abc"),
        ("x-original-method", "GET"),
    ];
    let reply = check(&mut bed, AUTH_HOST, "/oauth2/auth", &headers);
    assert_eq!(reply.status, 202, "{reply:?}");
}

#[test]
fn auth_request_passes_spoofed_headers_only_when_the_operator_opts_out() {
    let mut bed = Bed::new(&central_stripping_tenant(Some(false)));
    let cookie = bed.session_cookie(0, &session_of("alice", "alice@example.com", &["devs"]));
    let headers = [
        ("cookie", cookie.as_str()),
        ("x-http-method-override", "DELETE"),
    ];
    let reply = check(&mut bed, AUTH_HOST, "/oauth2/auth", &headers);
    assert_eq!(reply.status, 202, "{reply:?}");
    let wrong =
        json!({ "providers": [provider()], "endpoints": { "refuse_spoofed_headers": "no" } });
    let problems = Settings::parse(&wrong.to_string()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("endpoints.refuse_spoofed_headers:")),
        "{problems:?}"
    );
}
