#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authorization through real Envoy with the real OpenID provider (npm oidc-provider) and an
//! echoing upstream: who may pass (groups, email domains, scopes), public paths and the path
//! tricks that try to reach a protected path through them, and the counters Envoy exports.
//! Every process a test starts is stopped when its bed is dropped.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::browser::Browser;
use support::envoy::Envoy;
use support::envoy_faulty_idp_bed::{eventually, GatewayBed, AUDIENCE, CLIENT_ID, LOGIN_HOST};
use support::envoy_idp_bed::LoginBed;
use support::fault_idp::FaultIdp;
use support::http::{self, Response};
use support::mint::{claims_with, shared_keys};
use support::raw::{RawRequest, RawResponse};
use support::servers::free_port;

const JSON: (&str, &str) = ("accept", "application/json");

fn echoed(response: &Response, header: &str) -> Value {
    response.json()["headers"][header].clone()
}

/// The `Cookie` header that carries the session named `name` (all its chunks) in `browser`.
fn session_header(browser: &Browser, name: &str) -> String {
    let cookies: Vec<String> = browser
        .jar
        .iter()
        .filter(|c| {
            c.name == name
                || c.name
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    assert!(
        !cookies.is_empty(),
        "no {name} session in {:?}",
        browser.cookie_names()
    );
    cookies.join("; ")
}

/// Logs `user` in through `url` (a page of a login host): the first answer must send the
/// browser to the IdP, whose forms are then filled in. Returns where the browser landed.
fn log_in(bed: &LoginBed, browser: &mut Browser, url: &str, user: &str) -> (String, Response) {
    let first = browser.request("GET", url, None, &[]);
    let location = first.header("location").unwrap_or_default().to_string();
    assert!(
        first.status == 302 && location.starts_with(&bed.idp.issuer),
        "{url} sends the browser to the IdP first: {} {location} {}",
        first.status,
        first.body
    );
    let at_idp = browser.get(&location);
    browser.log_in_at_idp(at_idp, user)
}

/// A counter of the filter at Envoy's `/stats/prometheus`, where Envoy lists the stats of
/// its custom namespace `wasmcustom` (`wasmcustom.wasm_iap_<name>` at `/stats`) as
/// `wasm_iap_<name>`: without the namespace and without the `envoy_` prefix (Envoy 1.40; the
/// `envoy_wasmcustom_wasm_iap_<name>` the README once named is not there).
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .prometheus_metric(&format!("wasm_iap_{name}"))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// 1. KKP: Prometheus and Alertmanager behind one IAP, each its own login service.

const PROM_COOKIE: &str = "_prom_iap";
const AM_COOKIE: &str = "_am_iap";

struct Kkp {
    bed: LoginBed,
    port: u16,
}

impl Kkp {
    fn start() -> Kkp {
        let port = free_port();
        let client = |name: &str| {
            json!({
                "client_id": name,
                "client_secret": format!("{name}-secret"),
                "redirect_uris": [format!("http://{name}.localhost:{port}/oauth2/callback")],
            })
        };
        let clients = json!([client("prometheus"), client("alertmanager")]).to_string();
        let users = json!({
            "alice@mydomain.com": { "groups": ["myorg:sre"] },
            "bob@mydomain.com": { "groups": ["myorg:dev"] },
        })
        .to_string();
        let bed = LoginBed::start_plugin(
            port,
            &[("EXTRA_CLIENTS", &clients), ("IDP_USERS", &users)],
            &[],
            |issuer| {
                let service = |name: &str, cookie: &str| {
                    json!({
                        "hosts": [format!("{name}.localhost")],
                        "issuer": issuer,
                        "client_id": name,
                        "client_secret": format!("{name}-secret"),
                        "cookie_name": cookie,
                        "cookie_secrets": [format!("{name}-cookie-secret-0123456789abcdef")],
                        "cookie_secure": false,
                        "scopes": ["openid", "email", "profile", "groups"],
                        "allowed_groups": ["myorg:sre"],
                    })
                };
                json!({
                    "providers": [{ "issuer": issuer, "audiences": ["demo-upstream"], "cluster": "idp" }],
                    "login": [service("prometheus", PROM_COOKIE), service("alertmanager", AM_COOKIE)],
                })
            },
        );
        Kkp { bed, port }
    }

    fn prometheus(&self, path: &str) -> String {
        format!("http://prometheus.localhost:{}{path}", self.port)
    }

    fn alertmanager(&self, path: &str) -> String {
        format!("http://alertmanager.localhost:{}{path}", self.port)
    }
}

#[test]
fn kkp_sre_member_reaches_prometheus_and_alertmanager_each_after_its_own_login() {
    let kkp = Kkp::start();
    let bed = &kkp.bed;
    let mut browser = Browser::default();

    // Prometheus: the deep link survives the login, the upstream sees who Alice is.
    let deep_link = kkp.prometheus("/graph?g0.expr=up&g0.tab=1");
    let (landed, page) = log_in(bed, &mut browser, &deep_link, "alice@mydomain.com");
    assert_eq!(
        (landed.as_str(), page.status),
        (deep_link.as_str(), 200),
        "{:#?}\n{}",
        browser.history,
        page.body
    );
    assert_eq!(page.json()["path"], "/graph?g0.expr=up&g0.tab=1");
    assert_eq!(
        echoed(&page, "host"),
        json!([format!("prometheus.localhost:{}", kkp.port)])
    );
    assert_eq!(
        echoed(&page, "x-auth-request-email"),
        json!(["alice@mydomain.com"])
    );
    assert_eq!(echoed(&page, "x-auth-request-groups"), json!(["myorg:sre"]));
    let prom_session = session_header(&browser, PROM_COOKIE);

    // The Prometheus session also serves its API (Grafana-style JSON calls).
    let api = http::get(
        &kkp.prometheus("/api/v1/query?query=up"),
        &[("cookie", &prom_session), JSON],
    );
    assert_eq!(api.status, 200, "{api:?}");
    assert_eq!(
        echoed(&api, "x-auth-request-email"),
        json!(["alice@mydomain.com"])
    );

    // The Prometheus session is no session at Alertmanager, whatever the cookie is called:
    // a navigation goes to the IdP, an API call gets 401; neither reaches the upstream.
    let hits = bed.upstream.hits();
    let prom_value = browser
        .cookie(PROM_COOKIE)
        .expect("prometheus session")
        .value
        .clone();
    for cookie in [prom_session.clone(), format!("{AM_COOKIE}={prom_value}")] {
        let navigation = http::get(
            &kkp.alertmanager("/#/alerts"),
            &[
                ("cookie", &cookie),
                ("accept", "text/html,application/xhtml+xml"),
                ("sec-fetch-mode", "navigate"),
            ],
        );
        assert_eq!(navigation.status, 302, "{cookie}: {navigation:?}");
        assert!(
            navigation
                .header("location")
                .is_some_and(|l| l.starts_with(&bed.idp.issuer)),
            "{navigation:?}"
        );
        let api = http::get(
            &kkp.alertmanager("/api/v2/alerts"),
            &[("cookie", &cookie), JSON],
        );
        assert_eq!(api.status, 401, "{cookie}: {api:?}");
    }
    assert_eq!(
        bed.upstream.hits(),
        hits,
        "Alertmanager's upstream saw nothing"
    );

    // Alertmanager needs its own login (the IdP remembers Alice, and asks for consent for
    // this client), after which both work side by side.
    let (landed, page) = log_in(
        bed,
        &mut browser,
        &kkp.alertmanager("/api/v2/status"),
        "alice@mydomain.com",
    );
    assert_eq!(
        (landed.as_str(), page.status),
        (kkp.alertmanager("/api/v2/status").as_str(), 200),
        "{:#?}\n{}",
        browser.history,
        page.body
    );
    assert_eq!(
        echoed(&page, "host"),
        json!([format!("alertmanager.localhost:{}", kkp.port)])
    );
    assert_eq!(
        echoed(&page, "x-auth-request-email"),
        json!(["alice@mydomain.com"])
    );
    let am_session = session_header(&browser, AM_COOKIE);
    assert_ne!(
        browser.cookie(AM_COOKIE).expect("am").value,
        prom_value,
        "a session of its own"
    );
    for (url, cookie) in [
        (kkp.prometheus("/api/v1/targets"), &prom_session),
        (kkp.alertmanager("/api/v2/silences"), &am_session),
    ] {
        let response = http::get(&url, &[("cookie", cookie), JSON]);
        assert_eq!(response.status, 200, "{url}: {response:?}");
    }
    // And the Alertmanager session is no session at Prometheus.
    let am_value = browser.cookie(AM_COOKIE).expect("am").value.clone();
    let crossed = http::get(
        &kkp.prometheus("/api/v1/targets"),
        &[("cookie", &format!("{PROM_COOKIE}={am_value}")), JSON],
    );
    assert_eq!(crossed.status, 401, "{crossed:?}");
}

#[test]
fn kkp_developer_outside_the_group_gets_a_403_page_in_the_browser_and_json_for_api_calls() {
    let kkp = Kkp::start();
    let bed = &kkp.bed;
    let hits = bed.upstream.hits();
    let mut browser = Browser::default();

    let deep_link = kkp.prometheus("/graph");
    let (landed, page) = log_in(bed, &mut browser, &deep_link, "bob@mydomain.com");
    assert_eq!(landed, deep_link, "{:#?}", browser.history);
    assert_eq!(page.status, 403, "{page:?}");
    assert_eq!(page.header("location"), None, "never a redirect");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{page:?}"
    );
    assert!(page.body.contains("Access denied"), "{}", page.body);
    assert!(page.body.contains("bob@mydomain.com"), "{}", page.body);
    assert!(
        page.body.contains("<a href=\"/oauth2/sign_out\">Sign out</a>")
            && page.body.contains(
                "<a href=\"/oauth2/start?prompt=select_account&amp;rd=%2Fgraph\">Switch account</a>"
            ),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("myorg"),
        "groups and policy are not shown: {}",
        page.body
    );

    // The same session from a script: JSON, not a page.
    let session = session_header(&browser, PROM_COOKIE);
    let api = http::get(
        &kkp.prometheus("/api/v1/query?query=up"),
        &[("cookie", &session), JSON],
    );
    assert_eq!(api.status, 403, "{api:?}");
    assert!(
        api.header("content-type")
            .is_some_and(|t| t.contains("application/json")),
        "{api:?}"
    );
    assert_eq!(api.json()["error"], "forbidden", "{}", api.body);
    assert_eq!(api.header("www-authenticate"), None, "not a scope problem");

    // Nor may Bob into Alertmanager.
    let (_, page) = log_in(
        bed,
        &mut browser,
        &kkp.alertmanager("/"),
        "bob@mydomain.com",
    );
    assert_eq!(page.status, 403, "{:#?}\n{}", browser.history, page.body);
    assert!(page.body.contains("bob@mydomain.com"), "{}", page.body);
    assert_eq!(bed.upstream.hits(), hits, "the upstreams never saw Bob");

    // Refusals are logged with a reference to the user, never his name.
    let log = bed.envoy.log();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("403 for user")).collect();
    assert!(
        refusals.len() >= 3 && refusals.iter().all(|l| !l.contains("bob")),
        "{refusals:#?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains(&format!("prometheus.localhost:{}/graph", kkp.port))),
        "{refusals:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. oauth2-proxy's `--email-domain=mydomain.com`.

#[test]
fn email_domain_admits_verified_addresses_of_that_domain_only() {
    let users = json!({
        "alice@mydomain.com": { "groups": ["myorg:sre", "everyone"] },
        "carol@mydomain.com": { "email_verified": false },
    })
    .to_string();
    let bed = LoginBed::start(
        json!({ "email_domains": ["mydomain.com"] }),
        &[("IDP_USERS", &users)],
    );

    let (_, page) = bed.logged_in("alice@mydomain.com", "/dashboard");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["path"], "/dashboard");
    assert_eq!(
        echoed(&page, "x-auth-request-email"),
        json!(["alice@mydomain.com"])
    );
    assert_eq!(
        echoed(&page, "x-auth-request-groups"),
        json!(["myorg:sre,everyone"])
    );

    let hits = bed.upstream.hits();
    for (user, why) in [
        ("bob@other.com", "another domain"),
        (
            "dave@eu.mydomain.com",
            "a subdomain (only `.mydomain.com` covers those)",
        ),
        ("carol@mydomain.com", "an address the IdP has not verified"),
    ] {
        let (_, page) = bed.logged_in(user, "/dashboard");
        assert_eq!(page.status, 403, "{user}, {why}: {}", page.body);
        assert!(page.body.contains("Access denied"), "{}", page.body);
    }
    assert_eq!(
        bed.upstream.hits(),
        hits,
        "none of them reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Kyma: an API whose reads need scope `read` and writes scope `write`.

fn kyma_bed() -> (LoginBed, u16) {
    let port = free_port();
    let bed = LoginBed::start_plugin(port, &[], &[], |issuer| {
        json!({
            "providers": [{ "issuer": issuer, "audiences": ["demo-upstream"], "cluster": "idp", "user_claim": "sub" }],
            "services": [{
                "hosts": ["api.localhost"],
                "routes": [
                    { "path_prefix": "/api/", "methods": ["GET"], "allow": [{ "scopes": ["read"] }] },
                    { "path_prefix": "/api/", "methods": ["POST"], "allow": [{ "scopes": ["write"] }] },
                ],
            }],
        })
    });
    (bed, port)
}

#[test]
fn kyma_scopes_decide_reads_and_writes_of_client_credentials_tokens() {
    let (bed, port) = kyma_bed();
    let url = format!("http://api.localhost:{port}/api/x");
    let reader = bed
        .idp
        .client_credentials_token_for("reader-cli", "reader-cli-secret", "read");
    let writer = bed
        .idp
        .client_credentials_token_for("demo-cli", "demo-cli-secret", "read write");
    let bearer = |token: &str| format!("Bearer {token}");

    // Reader reads; the upstream learns the caller is the client (sub).
    let read = http::get(&url, &[("authorization", &bearer(&reader))]);
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json()["method"], "GET");
    assert_eq!(echoed(&read, "x-auth-request-user"), json!(["reader-cli"]));

    // Reader may not write: 403 naming the scope it lacks.
    let hits = bed.upstream.hits();
    let write = http::request(
        "POST",
        &url,
        &[
            ("authorization", &bearer(&reader)),
            ("content-type", "application/json"),
        ],
        Some("{\"name\":\"x\"}"),
    );
    assert_eq!(write.status, 403, "{write:?}");
    assert_eq!(
        write.header("www-authenticate"),
        Some(r#"Bearer realm="wasm-iap", error="insufficient_scope", scope="write""#),
        "{write:?}"
    );
    assert_eq!(
        write.json()["error"],
        "insufficient_scope",
        "{}",
        write.body
    );
    assert_eq!(
        bed.upstream.hits(),
        hits,
        "the write never reached the upstream"
    );

    // A token without `read` may not even read.
    let api_only = bed
        .idp
        .client_credentials_token_for("reader-cli", "reader-cli-secret", "api");
    let read = http::get(&url, &[("authorization", &bearer(&api_only))]);
    assert_eq!(read.status, 403, "{read:?}");
    assert_eq!(
        read.header("www-authenticate"),
        Some(r#"Bearer realm="wasm-iap", error="insufficient_scope", scope="read""#)
    );

    // demo-cli with `read write` writes.
    let write = http::request(
        "POST",
        &url,
        &[
            ("authorization", &bearer(&writer)),
            ("content-type", "application/json"),
        ],
        Some("{\"name\":\"x\"}"),
    );
    assert_eq!(write.status, 200, "{write:?}");
    assert_eq!(write.json()["method"], "POST");
    assert_eq!(echoed(&write, "x-auth-request-user"), json!(["demo-cli"]));
    assert_eq!(bed.upstream.hits(), hits + 1);

    // No token at all: 401. A lower-case `post` is no way around the POST rule: Envoy 1.40
    // refuses it (400); were it let through, the rule covers every spelling (403).
    let anonymous = http::get(&url, &[]);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let sneaky = support::raw::send(
        port,
        &RawRequest::new("post", "/api/x")
            .host(format!("api.localhost:{port}"))
            .bearer(&reader),
    )
    .expect("an answer");
    assert!(matches!(sneaky.status, 400 | 403), "{}", sneaky.summary());
    assert_eq!(bed.upstream.hits(), hits + 1, "{:?}", bed.upstream.seen());
}

#[test]
fn kyma_a_trailing_dot_on_the_host_does_not_escape_the_scope_rules() {
    let (bed, port) = kyma_bed();
    let reader = bed
        .idp
        .client_credentials_token_for("reader-cli", "reader-cli-secret", "read");
    // `api.localhost.` is the same name as `api.localhost` (an absolute domain name), and
    // Envoy routes it to the same upstream whenever a virtual host takes `*` (as here, and
    // as in a sidecar); `strip_trailing_host_dot` is off by default.
    for host in [
        format!("api.localhost:{port}"),
        format!("api.localhost.:{port}"),
        "api.localhost.".to_string(),
        "API.LOCALHOST.".to_string(),
    ] {
        let write = support::raw::send(
            port,
            &RawRequest::new("POST", "/api/x")
                .host(&host)
                .bearer(&reader)
                .header("Content-Type", "application/json"),
        )
        .expect("an answer");
        assert_eq!(
            write.status,
            403,
            "a reader may not write through Host {host:?}: {}",
            write.summary()
        );
    }
    // A Host no service could list is refused, not treated as a host under no service.
    for host in [
        "[api.localhost]".to_string(),
        format!("api.localhost:{port}:{port}"),
    ] {
        let write = support::raw::send(
            port,
            &RawRequest::new("POST", "/api/x")
                .host(&host)
                .bearer(&reader),
        )
        .expect("an answer");
        assert!(
            matches!(write.status, 400 | 403),
            "Host {host:?}: {}",
            write.summary()
        );
    }
    assert_eq!(bed.upstream.hits(), 0, "{:?}", bed.upstream.seen());
}

// ---------------------------------------------------------------------------------------
// 4. Public paths, and the tricks that try to reach a protected path through them.

fn public_routes() -> Value {
    json!({ "routes": [
        { "path": "/healthz", "public": true },
        { "path_prefix": "/static/", "public": true },
        { "methods": ["OPTIONS"], "public": true },
    ]})
}

/// Paths that name a public path but resolve to `/admin` (or cannot be matched safely).
const TRICKS: [&str; 8] = [
    "/static/../admin",
    "/static/%2e%2e/admin",
    "/static%2F..%2Fadmin",
    "//admin",
    "/STATIC/../admin",
    "/admin?/static/",
    "/static/..;/admin",
    "/healthz/../admin",
];

fn send(bed: &GatewayBed, request: &RawRequest) -> RawResponse {
    bed.send(request)
        .unwrap_or_else(|e| panic!("{request:?}: {e}\n{}", bed.filter_log()))
}

/// The public paths reach the upstream without a credential.
fn assert_public_paths_open(bed: &GatewayBed) {
    for path in ["/healthz", "/static/app.js"] {
        let response = send(
            bed,
            &RawRequest::get(path)
                .host(LOGIN_HOST)
                .header("Cookie", "_wasm_iap=forged; theme=dark"),
        );
        assert_eq!(response.status, 200, "{path}: {}", response.summary());
        let echo = response.json();
        assert_eq!(echo["path"], path);
        assert_eq!(
            echo["headers"]["cookie"],
            json!(["theme=dark"]),
            "our cookie is not the upstream's business"
        );
        assert!(
            echo["headers"]
                .as_object()
                .is_some_and(|h| !h.keys().any(|k| k.starts_with("x-auth-request"))),
            "{echo}"
        );
    }
    // Identity headers a client sends are removed on public routes too.
    let spoofed = send(
        bed,
        &RawRequest::get("/healthz")
            .host(LOGIN_HOST)
            .header("X-Auth-Request-User", "admin")
            .header("X-Auth-Request-Groups", "myorg:sre")
            .header("X-Forwarded-Email", "admin@mydomain.com"),
    );
    assert_eq!(spoofed.status, 200, "{}", spoofed.summary());
    let headers = &spoofed.json()["headers"];
    for name in [
        "x-auth-request-user",
        "x-auth-request-groups",
        "x-forwarded-email",
    ] {
        assert_eq!(
            headers[name],
            Value::Null,
            "{name} reached the upstream: {headers}"
        );
    }
    let preflight = send(
        bed,
        &RawRequest::new("OPTIONS", "/api/items")
            .host(LOGIN_HOST)
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "DELETE")
            .header("Access-Control-Request-Headers", "authorization"),
    );
    assert_eq!(preflight.status, 200, "{}", preflight.summary());
    assert_eq!(preflight.json()["method"], "OPTIONS");
    assert_eq!(
        preflight.json()["headers"]["origin"],
        json!(["https://app.example.com"])
    );
    // Protected paths are protected: an API client gets 401, a browser the IdP.
    for path in ["/admin", "/static", "/healthz/", "/"] {
        let response = send(bed, &RawRequest::get(path).host(LOGIN_HOST));
        assert_eq!(response.status, 401, "{path}: {}", response.summary());
    }
    let navigation = send(
        bed,
        &RawRequest::get("/admin").host(LOGIN_HOST).navigation(),
    );
    assert_eq!(navigation.status, 302, "{}", navigation.summary());
}

/// Sends every trick without a credential; none may reach the upstream. Returns the status
/// of each, and (sent again with a valid token) the path the upstream then received, which
/// shows what Envoy itself did to it.
fn probe_tricks(bed: &GatewayBed) -> Vec<(&'static str, u16, String)> {
    let mut results = Vec::new();
    for trick in TRICKS {
        let hits = bed.upstream.hits();
        let mut plain_status = 0;
        for navigation in [false, true] {
            let mut request = RawRequest::get(trick).host(LOGIN_HOST);
            if navigation {
                request = request.navigation();
            }
            let response = send(bed, &request);
            assert!(
                matches!(response.status, 302 | 400 | 401 | 404),
                "{trick}: {}",
                response.summary()
            );
            if response.status == 302 {
                assert!(navigation, "only a browser is sent to log in: {trick}");
                assert!(
                    response
                        .header("location")
                        .is_some_and(|l| l.starts_with(&bed.issuer())),
                    "{trick}: {}",
                    response.summary()
                );
            }
            if !navigation {
                plain_status = response.status;
            }
        }
        assert_eq!(
            bed.upstream.hits(),
            hits,
            "{trick} reached the upstream without a credential: {:?}",
            bed.upstream.seen()
        );
        let authenticated = send(
            bed,
            &RawRequest::get(trick)
                .host(LOGIN_HOST)
                .bearer(&bed.token(&format!("probe-{trick}"))),
        );
        let received = if authenticated.status == 200 {
            authenticated.json()["path"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            format!("({})", authenticated.status)
        };
        results.push((trick, plain_status, received));
    }
    results
}

#[test]
fn public_paths_need_no_credential_and_path_tricks_do_not_lead_out_of_them() {
    let bed = GatewayBed::start(json!({}), public_routes(), json!({}));
    bed.wait_for_keys();
    assert_public_paths_open(&bed);
    let results = probe_tricks(&bed);
    eprintln!("without Envoy's normalisation: {results:#?}");
    for (trick, status, received) in &results {
        if trick.contains("%2F")
            || trick
                .split(['/', ';', '?'])
                .any(|seg| matches!(seg, "." | ".." | "%2e%2e" | "%2E%2E"))
        {
            // An encoded slash or a dot segment means different paths to different
            // upstreams: refused, with or without a credential.
            assert_eq!(*status, 400, "{trick} is refused");
            assert_eq!(received, "(400)", "{trick}");
        } else {
            assert_eq!(*status, 401, "{trick} is /admin, which needs a credential");
            // The filter never rewrites the path: the upstream gets it as sent.
            assert_eq!(received, trick, "forwarded as sent");
        }
    }
}

#[test]
fn public_paths_with_envoy_normalising_paths_and_merging_slashes() {
    let bed = GatewayBed::try_start_with_hcm(
        FaultIdp::start(CLIENT_ID),
        json!({}),
        public_routes(),
        json!({}),
        json!({ "normalize_path": true, "merge_slashes": true }),
    )
    .unwrap_or_else(|log| panic!("Envoy refused the configuration:\n{log}"));
    bed.wait_for_keys();
    assert_public_paths_open(&bed);
    let results = probe_tricks(&bed);
    eprintln!("with normalize_path and merge_slashes: {results:#?}");
    // What Envoy 1.40 itself did before the filter saw the path (shown by the path the
    // upstream received with a valid token): it resolved `..` (also `%2e%2e`, and `..;`,
    // which its normaliser takes for `..` as well) and merged `//`, so for six of the eight
    // the filter saw plain `/admin`. It left `/static%2F..%2Fadmin` alone (escaped slashes
    // are kept unchanged by default; the filter refuses them with 400) and `/admin?/static/`
    // (a query is not the path; the filter ignores it too). Either way nothing reached the
    // upstream without a credential.
    let expected = [
        ("/static/../admin", 401, "/admin"),
        ("/static/%2e%2e/admin", 401, "/admin"),
        ("/static%2F..%2Fadmin", 400, "(400)"),
        ("//admin", 401, "/admin"),
        ("/STATIC/../admin", 401, "/admin"),
        ("/admin?/static/", 401, "/admin?/static/"),
        ("/static/..;/admin", 401, "/admin"),
        ("/healthz/../admin", 401, "/admin"),
    ];
    for ((trick, status, received), (t, s, r)) in results.iter().zip(expected) {
        assert_eq!((*trick, *status, received.as_str()), (t, s, r));
    }
}

// ---------------------------------------------------------------------------------------
// 5. The counters Envoy exports for Prometheus.

#[test]
fn prometheus_stats_count_sign_ins_allowed_forbidden_and_missing_credentials() {
    let users = json!({
        "alice@mydomain.com": { "groups": ["myorg:sre"] },
        "bob@mydomain.com": { "groups": ["myorg:dev"] },
    })
    .to_string();
    let bed = LoginBed::start(
        json!({ "allowed_groups": ["myorg:sre"] }),
        &[("IDP_USERS", &users)],
    );
    let envoy = &bed.envoy;
    // Each counter, and by how much the requests below move it (the last one: at least).
    let expected = [
        ("requests_allowed", 1),
        ("requests_denied_forbidden", 2),
        ("requests_denied_no_credential", 2),
        ("requests_refused", 4),
        ("logins_started", 2),
        ("sign_ins", 2),
        ("token_cache_misses", 1),
    ];
    let before: Vec<u64> = expected.iter().map(|(n, _)| counter(envoy, n)).collect();

    // Two sign-ins (Envoy runs two workers: the counters of both are summed), of which one
    // lands on the upstream and one on the 403 page.
    let (_, page) = bed.logged_in("alice@mydomain.com", "/");
    assert_eq!(page.status, 200, "{}", page.body);
    let (_, page) = bed.logged_in("bob@mydomain.com", "/");
    assert_eq!(page.status, 403, "{}", page.body);
    for _ in 0..2 {
        let api = http::get(&bed.url("/api/v1/query"), &[JSON]);
        assert_eq!(api.status, 401, "{api:?}");
    }
    // A valid bearer token on the login host whose client is in no group: 403.
    let token = bed.idp.client_credentials_token();
    let bearer = http::bearer(&bed.url("/api/v1/query"), &token);
    assert_eq!(bearer.status, 403, "{bearer:?}");

    // The token cache's counters reach Envoy on the root's next tick (about a second).
    let mut moved = Vec::new();
    let all_moved = eventually(Duration::from_secs(5), || {
        moved = expected
            .iter()
            .zip(&before)
            .map(|((n, _), b)| (*n, counter(envoy, n) - b))
            .collect();
        moved
            .iter()
            .zip(expected)
            .all(|((_, got), (_, want))| *got >= want)
    });
    assert!(all_moved, "{moved:?}");
    let last = expected.len() - 1;
    assert_eq!(
        moved[..last],
        expected[..last],
        "each request counted once, as what it was"
    );
    let stats = http::get(
        &format!("http://127.0.0.1:{}/stats/prometheus", envoy.admin_port),
        &[],
    );
    assert!(
        stats.body.contains("# TYPE wasm_iap_sign_ins counter"),
        "a counter to Prometheus"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Issue 16: spellings an upstream serves as a restricted path (Rails `(.:format)`, Spring
// MVC before 5.3, IIS), and spellings of a public path that are not public as sent; with
// Envoy's defaults and with the hardened settings of docs/authorization.md.

/// docs/authorization.md's recommended path settings for the HTTP connection manager.
fn hardened_hcm() -> Value {
    json!({
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
    })
}

fn spelling_routes(extra: Value) -> Value {
    let mut login = json!({ "routes": [
        { "path": "/healthz", "public": true },
        { "path_prefix": "/public/", "public": true },
        { "path_prefix": "/admin", "allow": [{ "groups": ["admins"] }] },
        { "path": "/api/users", "methods": ["DELETE"], "allow": [{ "groups": ["admins"] }] },
    ]});
    support::envoy_faulty_idp_bed::merge(&mut login, &extra);
    login
}

fn spelling_bed(hcm: Value, login: Value) -> GatewayBed {
    let bed = GatewayBed::try_start_with_hcm(
        FaultIdp::start(CLIENT_ID),
        json!({}),
        login,
        json!({}),
        hcm,
    )
    .unwrap_or_else(|log| panic!("Envoy refused the configuration:\n{log}"));
    bed.wait_for_keys();
    bed
}

/// A bearer token of the bed's IdP for a member of `groups`.
fn member_of(bed: &GatewayBed, groups: &[&str], jti: &str) -> String {
    shared_keys().signer("ES256").sign(&claims_with(
        &bed.issuer(),
        AUDIENCE,
        json!({ "groups": groups, "jti": jti }),
    ))
}

const RESTRICTED_SPELLINGS: [(&str, &str); 16] = [
    ("GET", "/admin.json"),
    ("GET", "/admin."),
    ("GET", "/ADMIN.xml"),
    ("GET", "/admin./users"),
    ("GET", "/admin%2e/users"),
    ("GET", "/admin%20/users"),
    ("GET", "/admin.json/users"),
    ("GET", "/admin;.json"),
    ("GET", "/admin..json"),
    ("GET", "/admin%20.json"),
    ("GET", "/admin%20%20"),
    ("GET", "/Admin.JSON."),
    ("GET", "/admin;x=1/users"),
    ("DELETE", "/api/users.json"),
    ("DELETE", "/API/users."),
    ("DELETE", "/api/users%20"),
];

/// Every spelling: no credential never reaches the upstream, a non-admin's token gets 403
/// (or 400), an admin's passes. Returns, per spelling, the path the upstream got for the admin.
fn probe_restricted_spellings(bed: &GatewayBed) -> Vec<(&'static str, String)> {
    let mut received = Vec::new();
    for (i, (method, path)) in RESTRICTED_SPELLINGS.into_iter().enumerate() {
        let hits = bed.upstream.hits();
        let request = RawRequest::new(method, path)
            .host(LOGIN_HOST)
            .header("Accept", "application/json");
        let anonymous = send(bed, &request);
        assert!(
            matches!(anonymous.status, 400 | 401),
            "{method} {path} without a credential: {}",
            anonymous.summary()
        );
        let dev = member_of(bed, &["devs"], &format!("dev-{i}"));
        let refused = send(bed, &request.clone().bearer(&dev));
        assert!(
            matches!(refused.status, 400 | 403),
            "{method} {path} with a non-admin's token: {}",
            refused.summary()
        );
        assert_eq!(
            bed.upstream.hits(),
            hits,
            "{method} {path} reached the upstream: {:?}",
            bed.upstream.seen()
        );
        let admin = member_of(bed, &["admins"], &format!("admin-{i}"));
        let passed = send(bed, &request.bearer(&admin));
        let got = match passed.status {
            200 => passed.json()["path"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            status => format!("({status})"),
        };
        assert!(
            passed.status == 200 || refused.status == 400,
            "{method} {path}: an admin passes where the path can be matched: {}",
            passed.summary()
        );
        received.push((path, got));
    }
    received
}

#[test]
fn format_suffixes_and_trailing_dots_do_not_step_around_an_admin_restriction() {
    let bed = spelling_bed(json!({}), spelling_routes(json!({})));
    let received = probe_restricted_spellings(&bed);
    for (path, got) in received {
        assert_eq!(got, path, "the admin's request goes upstream as sent");
    }
}

#[test]
fn format_suffixes_and_trailing_dots_with_envoy_normalising_paths() {
    let bed = spelling_bed(hardened_hcm(), spelling_routes(json!({})));
    let received = probe_restricted_spellings(&bed);
    eprintln!("with the hardened settings, the upstream got: {received:#?}");
    // Envoy 1.40's normalize_path decodes `%2e` and leaves every other spelling alone: the
    // upstream still gets `/admin.json` and kin, which Rails or Spring serve as `/admin`.
    for (path, got) in received {
        let envoy_made = if path == "/admin%2e/users" {
            "/admin./users"
        } else {
            path
        };
        assert_eq!(got, envoy_made, "{path}");
    }
}

/// Spellings whose normalised path is public but whose path as sent is not under a public
/// route; an upstream that does not drop `;` parameters or decode `%63` serves them as
/// something else.
const PUBLIC_LOOKALIKES: [&str; 6] = [
    "/public;x/admin/users",
    "/public;/admin",
    "/publi%63/admin/users",
    "/healthz;.json",
    "/healt%68z",
    "/%68ealthz?probe=1",
];

/// Whether the upstream got a path that is public as it got it.
fn public_as_received(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    path == "/healthz" || path.starts_with("/public/")
}

/// No lookalike reaches the upstream without a credential, unless Envoy itself turned it
/// into a public path before the filter saw it (then that is what the upstream gets); with
/// a token each passes. Returns the path the upstream got for each.
fn probe_public_lookalikes(bed: &GatewayBed) -> Vec<(&'static str, String)> {
    let mut received = Vec::new();
    for (i, path) in PUBLIC_LOOKALIKES.into_iter().enumerate() {
        let hits = bed.upstream.hits();
        let request = RawRequest::get(path)
            .host(LOGIN_HOST)
            .header("Accept", "application/json");
        let anonymous = send(bed, &request);
        match anonymous.status {
            401 => assert_eq!(
                bed.upstream.hits(),
                hits,
                "{path}: {:?}",
                bed.upstream.seen()
            ),
            200 => {
                let got = anonymous.json()["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    public_as_received(&got),
                    "{path} opened without a credential and the upstream got {got}"
                );
            }
            _ => panic!("{path} without a credential: {}", anonymous.summary()),
        }
        let token = member_of(bed, &["devs"], &format!("lookalike-{i}"));
        let passed = send(bed, &request.bearer(&token));
        assert_eq!(passed.status, 200, "{path}: {}", passed.summary());
        let got = passed.json()["path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        received.push((path, format!("{} {got}", anonymous.status)));
    }
    received
}

#[test]
fn a_public_route_does_not_open_for_a_path_that_is_public_only_once_normalised() {
    let bed = spelling_bed(json!({}), spelling_routes(json!({})));
    assert_public_paths_still_open(&bed);
    for (path, got) in probe_public_lookalikes(&bed) {
        assert_eq!(
            got,
            format!("401 {path}"),
            "refused, and as sent with a token"
        );
    }
}

#[test]
fn a_public_route_does_not_open_for_a_lookalike_with_envoy_normalising_paths() {
    let bed = spelling_bed(hardened_hcm(), spelling_routes(json!({})));
    assert_public_paths_still_open(&bed);
    let received = probe_public_lookalikes(&bed);
    eprintln!("with the hardened settings, the upstream got: {received:#?}");
    // Envoy 1.40's normalize_path decodes `%63` and `%68` itself, so the filter and the
    // upstream both see the public path; `;` parameters it keeps, and the filter refuses them.
    let expected = [
        ("/public;x/admin/users", "401 /public;x/admin/users"),
        ("/public;/admin", "401 /public;/admin"),
        ("/publi%63/admin/users", "200 /public/admin/users"),
        ("/healthz;.json", "401 /healthz;.json"),
        ("/healt%68z", "200 /healthz"),
        ("/%68ealthz?probe=1", "200 /healthz?probe=1"),
    ];
    for ((path, got), (p, g)) in received.iter().zip(expected) {
        assert_eq!((*path, got.as_str()), (p, g));
    }
}

fn assert_public_paths_still_open(bed: &GatewayBed) {
    for path in [
        "/healthz",
        "/healthz?probe=1",
        "/public/app.js",
        "/public//css/app.css",
    ] {
        let response = send(bed, &RawRequest::get(path).host(LOGIN_HOST));
        assert_eq!(response.status, 200, "{path}: {}", response.summary());
    }
}

#[test]
fn forward_normalized_path_sends_the_upstream_the_path_the_rules_judged() {
    for hcm in [json!({}), hardened_hcm()] {
        let bed = spelling_bed(
            hcm.clone(),
            spelling_routes(json!({ "forward_normalized_path": true })),
        );
        for (sent, judged) in [
            ("/public//css/app.css?v=1", "/public/css/app.css?v=1"),
            ("/healthz?probe=1", "/healthz?probe=1"),
        ] {
            let response = send(&bed, &RawRequest::get(sent).host(LOGIN_HOST));
            assert_eq!(response.status, 200, "{sent}: {}", response.summary());
            assert_eq!(response.json()["path"], judged, "{sent} ({hcm})");
        }
        let token = member_of(&bed, &["devs"], "judged");
        for (sent, judged) in [
            ("/public;x/admin/users", "/public/admin/users"),
            ("/app;jsessionid=1/%61%62c?q=a%20b", "/app/abc?q=a%20b"),
            ("/healt%68z", "/healthz"),
        ] {
            let response = send(&bed, &RawRequest::get(sent).host(LOGIN_HOST).bearer(&token));
            assert_eq!(response.status, 200, "{sent}: {}", response.summary());
            assert_eq!(response.json()["path"], judged, "{sent} ({hcm})");
        }
    }
}
