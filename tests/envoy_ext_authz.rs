//! Envoy's own `ext_authz` filter asking the filter instead of an oauth2-proxy: a front Envoy
//! (`ext_authz` with an `http_service` whose `path_prefix` is `/oauth2/auth`, then the router to
//! the echoing upstream) and a central Envoy running the filter, which answers the checks
//! itself (`200` with `x-auth-request-*` headers, `401` with a challenge, `403` by the rules of
//! the original path) and never sends them to its own upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy::{bootstrap, cluster, ext_authz_filter, wasm_filter, Envoy};
use support::envoy_faulty_idp_bed::eventually;
use support::http::{self, Response};
use support::mint::{self, claims, claims_with, shared_keys};
use support::native_bed::Bed as NativeBed;
use support::servers::{KeyServer, Upstream};
use wasm_iap::core::login::session::Session;

const AUDIENCE: &str = "prometheus";
/// The protected app's name: `.localhost` names reach loopback with their own `Host` header,
/// so the central filter finds the service by the host the client asked for.
const API_HOST: &str = "api.localhost";
/// A browser app signed in with a session cookie of the central filter's login service.
const APP_HOST: &str = "grafana.localhost";
const COOKIE: &str = "_grafana_iap";

/// The central filter: one provider whose keys are fetched from the key server, one service
/// whose `/admin/` is for admins only (any valid caller elsewhere), and a login service whose
/// session cookies are checked as tokens are.
fn central_config(issuer: &str) -> Value {
    json!({
        "providers": [{
            "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp", "timeout": "2s"
        }],
        "keys_wait_timeout": "2s",
        "login": [{
            "hosts": [APP_HOST],
            "issuer": issuer,
            "client_id": "grafana",
            "client_secret": "grafana-secret",
            "cookie_name": COOKIE,
            "cookie_secrets": ["grafana-cookie-secret-0123456789abcdef"],
            "cookie_secure": false,
            "cluster": "idp",
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
        }],
        "services": [{
            "hosts": [API_HOST],
            "routes": [
                { "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }] },
                { "path_prefix": "/users", "methods": ["DELETE"], "allow": [{ "groups": ["admins"] }] },
            ],
        }],
        "strip_request_headers": ["x-tenant"],
    })
}

/// docs/forward-auth.md's `allowed_headers` patterns: every header of a stripped family, in every
/// spelling (Envoy hands them over lower case), goes to the check, so its answer can name it
/// for Envoy to remove. Several small ones: Envoy refuses an RE2 program over 100.
const STRIPPED_FAMILIES: [&str; 10] = [
    "x[-_]auth[-_]request[-_].+",
    "(impersonate|x[-_]pomerium|x[-_]remote|x[-_]webauth)[-_].+",
    "x[-_]forwarded[-_](user|email|groups|preferred[-_]username|access[-_]token)",
    "gap[-_]auth|remote[-_]user|x[-_]user|x[-_]email",
    "x[-_](http[-_]method|http[-_]method[-_]override|method[-_]override)",
    "x[-_](original|rewrite)[-_]url|x[-_]ms[-_]client[-_]principal.*",
    "(x[-_]authentik|x[-_]amzn[-_]oidc|x[-_]vouch)[-_].+",
    "x[-_]goog[-_](authenticated[-_]user[-_].+|iap[-_]jwt[-_]assertion)",
    "cf[-_]access[-_](jwt[-_]assertion|authenticated[-_]user[-_]email)",
    // The test's own `strip_request_headers`.
    "x[-_]tenant",
];

fn allowed_headers() -> Value {
    let mut patterns = vec![
        json!({ "exact": "authorization", "ignore_case": true }),
        json!({ "exact": "cookie", "ignore_case": true }),
    ];
    patterns.extend(
        STRIPPED_FAMILIES
            .iter()
            .map(|regex| json!({ "safe_regex": { "regex": regex } })),
    );
    Value::Array(patterns)
}

/// The check as oauth2-proxy is asked: the caller's credentials, the identity back as
/// `x-auth-request-*` for the upstream and the challenge for the client.
fn ext_authz(central_port: u16) -> Value {
    let to_upstream = json!([{ "prefix": "x-auth-request-", "ignore_case": true }]);
    let to_client = json!([
        { "exact": "www-authenticate", "ignore_case": true },
        { "exact": "content-type", "ignore_case": true }
    ]);
    ext_authz_filter(central_port, allowed_headers(), to_upstream, to_client)
}

/// The key server, the app behind the front Envoy, the central Envoy with the filter (and an
/// upstream of its own that checks must never reach), and the front Envoy.
struct Bed {
    idp: KeyServer,
    app: Upstream,
    central_upstream: Upstream,
    central: Envoy,
    front: Envoy,
}

impl Bed {
    fn start() -> Bed {
        let idp = KeyServer::start(0, shared_keys().jwks());
        let central_upstream = Upstream::start();
        let central = Envoy::start(&bootstrap(
            vec![wasm_filter(&central_config(&idp.issuer()))],
            central_upstream.port(),
            idp.port,
        ));
        let app = Upstream::start();
        // The same listener and router as every other test's Envoy, ext_authz instead of the
        // filter, and a cluster for the central Envoy.
        let mut front = bootstrap(vec![ext_authz(central.port)], app.port(), idp.port);
        front["static_resources"]["clusters"]
            .as_array_mut()
            .expect("clusters")
            .push(cluster("wasm-iap", central.port));
        let front = Envoy::start(&front);
        Bed {
            idp,
            app,
            central_upstream,
            central,
            front,
        }
    }

    fn url(&self, path: &str) -> String {
        self.url_on(API_HOST, path)
    }

    fn url_on(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.front.port)
    }

    /// The `Cookie` header of a session the central filter's login service sealed: the
    /// same configuration in a native gateway seals it with the same secret.
    fn session_cookie(&self, user: &str, groups: &[&str]) -> String {
        let now = mint::now_secs();
        let session = Session {
            sid: format!("sid-{user}"),
            user: user.into(),
            email: Some(format!("{user}@example.com")),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            preferred_username: Some(user.into()),
            expires_at: now + 3600,
            refresh_at: now + 600,
            ..Session::default()
        };
        NativeBed::new(&central_config(&self.idp.issuer())).session_cookie(0, &session)
    }

    /// A counter of the central filter (reported on each worker's tick).
    fn central_counter(&self, name: &str) -> u64 {
        self.central
            .prometheus_metric(&format!("wasm_iap_requests_{name}"))
            .unwrap_or(0)
    }

    /// Waits until the central filter has counted `expected` decisions called `name`.
    fn assert_central_counted(&self, name: &str, expected: u64) {
        let counted = eventually(Duration::from_secs(5), || {
            self.central_counter(name) == expected
        });
        assert!(
            counted,
            "the central filter counted {} {name}, not {expected}",
            self.central_counter(name)
        );
    }

    fn token(&self, changes: Value) -> String {
        let claims = claims_with(&self.idp.issuer(), AUDIENCE, changes);
        shared_keys().signer("RS256").sign(&claims)
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http::get(&self.url(path), headers)
    }

    /// Waits until the central Envoy has its keys: a valid token passes on `/metrics`.
    fn wait_for_keys(&self) {
        let authorization = format!("Bearer {}", self.token(json!({})));
        let mut last = None;
        let passed = eventually(Duration::from_secs(10), || {
            let response = self.get("/metrics", &[("authorization", &authorization)]);
            let ok = response.status == 200;
            last = Some(response);
            ok
        });
        assert!(passed, "never passed: {last:?}");
    }

    /// Nothing of the checks reached the central Envoy's upstream.
    fn assert_checks_answered_centrally(&self) {
        assert_eq!(
            self.central_upstream.seen(),
            Vec::<String>::new(),
            "the central filter must answer the checks itself"
        );
    }
}

fn one(value: &str) -> Option<Vec<String>> {
    Some(vec![value.to_string()])
}

#[test]
fn a_valid_token_reaches_the_app_with_the_identity_the_check_answered_and_no_spoofed_one() {
    let bed = Bed::start();
    bed.wait_for_keys();
    let token = bed.token(json!({
        "groups": ["devs", "ops"], "preferred_username": "alice"
    }));
    let authorization = format!("Bearer {token}");
    let response = bed.get(
        "/api/v1/query?query=up",
        &[
            ("authorization", &authorization),
            ("x-auth-request-user", "mallory"),
        ],
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["path"], "/api/v1/query?query=up");
    assert_eq!(
        response.echoed_header("x-auth-request-user"),
        one("alice-id"),
        "the token's sub, not the client's header: {}",
        response.body
    );
    assert_eq!(
        response.echoed_header("x-auth-request-email"),
        one("alice@example.com")
    );
    assert_eq!(
        response.echoed_header("x-auth-request-groups"),
        one("devs,ops")
    );
    assert_eq!(
        response.echoed_header("x-auth-request-preferred-username"),
        one("alice")
    );
    assert!(
        !response.body.contains("mallory"),
        "the client's x-auth-request-user reached the app: {}",
        response.body
    );
    assert_eq!(
        response.echoed_header("authorization"),
        Some(vec![authorization.clone()]),
        "the app still gets the caller's token"
    );
    assert!(bed
        .app
        .seen()
        .contains(&"GET /api/v1/query?query=up".to_string()));
    bed.assert_checks_answered_centrally();
}

#[test]
fn without_a_valid_credential_the_client_gets_401_with_a_challenge_and_the_app_sees_nothing() {
    let bed = Bed::start();
    let expired = shared_keys().signer("RS256").sign(&claims_with(
        &bed.idp.issuer(),
        AUDIENCE,
        json!({ "exp": mint::now_secs() - 3600 }),
    ));
    let wrong_audience = shared_keys()
        .signer("RS256")
        .sign(&claims(&bed.idp.issuer(), "alertmanager"));
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no credential", vec![]),
        (
            "no credential, spoofed identity",
            vec![("x-auth-request-user", "admin".to_string())],
        ),
        (
            "expired token",
            vec![("authorization", format!("Bearer {expired}"))],
        ),
        (
            "token for another audience",
            vec![("authorization", format!("Bearer {wrong_audience}"))],
        ),
        (
            "not a bearer token",
            vec![("authorization", "Basic YWxpY2U6c2VjcmV0".to_string())],
        ),
    ];
    for (case, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = bed.get("/metrics", &headers);
        assert_eq!(response.status, 401, "{case}: {response:?}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"wasm-iap\""),
            "{case}: {response:?}"
        );
    }
    assert_eq!(bed.app.hits(), 0, "{:?}", bed.app.seen());
    bed.assert_checks_answered_centrally();
    // The central filter, not the front Envoy, refused them.
    let refused = || {
        bed.central_counter("denied_no_credential") + bed.central_counter("denied_invalid_token")
    };
    assert!(
        eventually(Duration::from_secs(5), || refused() == 5),
        "the central filter counted {} refusals, not 5",
        refused()
    );
    assert_eq!(
        bed.front.prometheus_metric("envoy_http_ext_authz_denied"),
        Some(5)
    );
}

#[test]
fn the_rules_of_the_original_path_refuse_admin_to_a_non_admin_and_let_an_admin_pass() {
    let bed = Bed::start();
    bed.wait_for_keys();
    let devs = format!("Bearer {}", bed.token(json!({ "groups": ["devs"] })));
    let admins = format!("Bearer {}", bed.token(json!({ "groups": ["admins"] })));
    let before = bed.app.seen().len();

    let refused = bed.get("/admin/x", &[("authorization", &devs)]);
    assert_eq!(refused.status, 403, "{refused:?}");
    let spoofed = bed.get(
        "/admin/x",
        &[
            ("authorization", &devs),
            ("x-auth-request-groups", "admins"),
        ],
    );
    assert_eq!(spoofed.status, 403, "{spoofed:?}");
    assert_eq!(
        bed.app.seen().len(),
        before,
        "a refused request reached the app: {:?}",
        bed.app.seen()
    );

    let metrics = bed.get("/metrics", &[("authorization", &devs)]);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(metrics.json()["path"], "/metrics");
    assert_eq!(metrics.echoed_header("x-auth-request-groups"), one("devs"));

    let admin = bed.get("/admin/x", &[("authorization", &admins)]);
    assert_eq!(admin.status, 200, "{admin:?}");
    assert_eq!(admin.json()["path"], "/admin/x");
    assert_eq!(admin.echoed_header("x-auth-request-user"), one("alice-id"));
    assert_eq!(admin.echoed_header("x-auth-request-groups"), one("admins"));
    assert_eq!(
        bed.app.seen()[before..],
        ["GET /metrics".to_string(), "GET /admin/x".to_string()]
    );
    bed.assert_checks_answered_centrally();
    bed.assert_central_counted("denied_forbidden", 2);
}

#[test]
fn a_session_cookie_is_checked_too_and_its_identity_reaches_the_app() {
    let bed = Bed::start();
    let cookie = bed.session_cookie("carol", &["viewers"]);
    let browser = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
    let mut signed_in = browser.to_vec();
    signed_in.push(("cookie", cookie.as_str()));
    signed_in.push(("x-auth-request-user", "mallory"));
    let response = http::get(&bed.url_on(APP_HOST, "/d/abc?orgId=1"), &signed_in);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["path"], "/d/abc?orgId=1");
    assert_eq!(response.echoed_header("x-auth-request-user"), one("carol"));
    assert_eq!(
        response.echoed_header("x-auth-request-email"),
        one("carol@example.com")
    );
    assert_eq!(
        response.echoed_header("x-auth-request-groups"),
        one("viewers")
    );

    // Not signed in, a browser too gets the 401 of a check: never a redirect to log in.
    let hits = bed.app.hits();
    let response = http::get(&bed.url_on(APP_HOST, "/d/abc"), &browser);
    assert_eq!(response.status, 401, "{response:?}");
    assert!(response.header("location").is_none(), "{response:?}");
    assert!(
        response.header("www-authenticate").is_some(),
        "{response:?}"
    );
    let forged = format!("{COOKIE}=not-a-sealed-session");
    let response = http::get(
        &bed.url_on(APP_HOST, "/d/abc"),
        &[("cookie", forged.as_str())],
    );
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(bed.app.hits(), hits, "{:?}", bed.app.seen());
    bed.assert_checks_answered_centrally();
}

#[test]
fn identity_headers_the_token_does_not_have_are_removed_not_left_as_the_client_sent_them() {
    let bed = Bed::start();
    bed.wait_for_keys();
    // No groups and no preferred_username in this token.
    let token = bed.token(json!({ "groups": null, "preferred_username": null }));
    let authorization = format!("Bearer {token}");
    let response = bed.get(
        "/metrics",
        &[
            ("authorization", &authorization),
            ("x-auth-request-groups", "admins"),
            ("x-auth-request-preferred-username", "root"),
            ("x-auth-request-access-token", "forged"),
        ],
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.echoed_header("x-auth-request-user"),
        one("alice-id")
    );
    for spoofed in [
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
    ] {
        assert_eq!(
            response.echoed_header(spoofed),
            None,
            "{spoofed} reached the app as the client sent it: {}",
            response.body
        );
    }
    // Refusals reach the client as the JSON they are.
    let refused = bed.get("/metrics", &[]);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("content-type"), Some("application/json"));
}

/// Headers a client may not send, one of each family in several spellings.
const SPOOFED: [&str; 19] = [
    "X-Auth-Request-User",
    "x_auth_request_groups",
    "X_Auth-Request_Email",
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
    "X-Original-URL",
    "x_rewrite_url",
    "X-authentik-groups",
    "x_goog_authenticated_user_email",
    "X_Tenant",
];

/// What the app received, by header name as it arrived (any case, `-` or `_`).
fn app_received(response: &support::raw::RawResponse, name: &str) -> Vec<String> {
    let folded = |n: &str| n.to_ascii_lowercase().replace('_', "-");
    let echoed = response.json();
    let Some(headers) = echoed["headers"].as_object() else {
        panic!("no echo: {}", response.summary());
    };
    headers
        .iter()
        .filter(|(n, _)| folded(n) == folded(name))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect()
}

#[test]
fn no_spoofed_identity_header_or_method_override_reaches_the_app_in_any_spelling() {
    use support::raw::{send, RawRequest};
    let bed = Bed::start();
    bed.wait_for_keys();
    let devs = bed.token(json!({ "groups": ["devs"] }));
    let host = format!("{API_HOST}:{}", bed.front.port);
    for spoofed in SPOOFED {
        for path in ["/metrics", "/users/7"] {
            let request = RawRequest::new("POST", path)
                .host(&host)
                .bearer(&devs)
                .header(spoofed, "DELETE");
            let answer = send(bed.front.port, &request).unwrap();
            assert_eq!(answer.status, 200, "{spoofed} {path}: {}", answer.summary());
            // The check's own identity headers arrive; the client's value never does.
            let arrived: Vec<String> = app_received(&answer, spoofed)
                .into_iter()
                .filter(|h| h.contains("DELETE"))
                .collect();
            assert!(
                arrived.is_empty(),
                "{spoofed} on {path} reached the app as the client sent it: {arrived:?}"
            );
        }
    }
    // The rule on DELETE holds: an override never reaches an app that would honour it, and
    // the real DELETE is refused.
    let delete = RawRequest::new("DELETE", "/users/7")
        .host(&host)
        .bearer(&devs);
    assert_eq!(send(bed.front.port, &delete).unwrap().status, 403);
    bed.assert_checks_answered_centrally();
}

#[test]
fn a_session_request_never_hands_the_app_the_clients_unchecked_authorization() {
    let bed = Bed::start();
    let cookie = bed.session_cookie("carol", &["viewers"]);
    let headers = [
        ("cookie", cookie.as_str()),
        ("authorization", "Bearer not-checked-by-anyone"),
    ];
    let response = http::get(&bed.url_on(APP_HOST, "/d/abc"), &headers);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.echoed_header("x-auth-request-user"), one("carol"));
    assert_eq!(
        response.echoed_header("authorization"),
        None,
        "{}",
        response.body
    );
}

#[test]
fn a_check_for_a_host_no_service_lists_is_refused_whatever_the_host_spelling() {
    use support::raw::{send, RawRequest};
    let bed = Bed::start();
    bed.wait_for_keys();
    let admins = bed.token(json!({ "groups": ["admins"] }));
    let port = bed.front.port;
    let hits = bed.app.hits();
    let requests = [
        (
            "Host: 127.0.0.1",
            RawRequest::get("/admin/x").host(format!("127.0.0.1:{port}")),
        ),
        (
            "absolute form",
            RawRequest::get("http://other.localhost/admin/x").host(format!("{API_HOST}:{port}")),
        ),
        (
            "userinfo",
            RawRequest::get(format!("http://{API_HOST}@other.localhost/admin/x"))
                .host(format!("{API_HOST}:{port}")),
        ),
    ];
    for (case, request) in requests {
        let answer = send(port, &request.bearer(&admins)).unwrap();
        assert!(
            [400, 403].contains(&answer.status),
            "{case}: {}",
            answer.summary()
        );
    }
    assert_eq!(bed.app.hits(), hits, "{:?}", bed.app.seen());
}
