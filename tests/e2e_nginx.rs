//! Replacing oauth2-proxy behind NGINX (seed 002): real NGINX with `auth_request`, as
//! ingress-nginx configures it, in front of two apps on two host names, asking Envoy with
//! wasm-iap on a central auth host. A person in headless Chromium signs in at the real IdP
//! and lands on the deep link of the second app; the first app then needs no new sign-in;
//! API clients pass with a bearer token; a location narrowed to a group refuses others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::envoy::{bootstrap_on, wasm_filter, Envoy};
use support::http;
use support::idp::Idp;
use support::nginx::Nginx;
use support::servers::{free_port, Upstream};
use support::webdriver::Chrome;

// Chromium and our test client resolve every `*.localhost` name to 127.0.0.1.
const AUTH_HOST: &str = "auth.iap.localhost";
const GRAFANA_HOST: &str = "grafana.iap.localhost";
const PROMETHEUS_HOST: &str = "prometheus.iap.localhost";

struct Bed {
    idp: Idp,
    grafana: Upstream,
    prometheus: Upstream,
    _envoy: Envoy,
    nginx: Nginx,
}

impl Bed {
    fn start() -> Bed {
        let port = free_port();
        let auth = format!("{AUTH_HOST}:{port}");
        let callback = format!("http://{auth}/oauth2/callback");
        let users = r#"{"sam@example.com": {"groups": ["admins"]}}"#;
        let idp = Idp::start(&[("REDIRECT_URIS", &callback), ("IDP_USERS", users)]);
        let (grafana, prometheus) = (Upstream::start(), Upstream::start());
        let plugin = json!({
            "providers": [{ "issuer": idp.issuer, "audiences": ["demo-upstream", "demo"],
                            "cluster": "idp" }],
            "login": [{
                "hosts": [AUTH_HOST, GRAFANA_HOST, PROMETHEUS_HOST],
                "issuer": idp.issuer,
                "client_id": "demo",
                "client_secret": "demo-secret",
                "cookie_secrets": ["0123456789abcdef0123456789abcdef-nginx"],
                "cookie_secure": false,
                "cookie_domain": ".iap.localhost",
                "redirect_url": callback,
                "allowed_redirect_hosts": [".iap.localhost"],
                "scopes": ["openid", "email", "profile", "groups"],
            }],
        });
        // Envoy's own upstream is never reached: NGINX only sends it /oauth2/ requests.
        let envoy = Envoy::start(&bootstrap_on(
            0,
            vec![wasm_filter(&plugin)],
            free_port(),
            idp.port,
        ));
        let nginx = Nginx::start(
            "forward-auth.conf.tmpl",
            port,
            &[
                ("AUTH_HOST", AUTH_HOST.to_string()),
                ("AUTH_HOST_AND_PORT", auth),
                ("GRAFANA_HOST", GRAFANA_HOST.to_string()),
                ("PROMETHEUS_HOST", PROMETHEUS_HOST.to_string()),
                ("IAP", format!("127.0.0.1:{}", envoy.port)),
                ("GRAFANA", format!("127.0.0.1:{}", grafana.port())),
                ("PROMETHEUS", format!("127.0.0.1:{}", prometheus.port())),
            ],
        );
        Bed {
            idp,
            grafana,
            prometheus,
            _envoy: envoy,
            nginx,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.nginx.port)
    }
}

/// Types the credentials into the IdP's form and accepts the consent page.
fn log_in(chrome: &Chrome, bed: &Bed, user: &str, back_on: &str) {
    chrome.sign_in_at_idp(&bed.idp.issuer, user, back_on);
}

#[test]
fn a_person_signs_in_once_on_the_central_host_and_lands_on_the_second_apps_deep_link() {
    let bed = Bed::start();
    let chrome = Chrome::start();
    let deep_link = bed.url(PROMETHEUS_HOST, "/graph?g0.expr=up&g0.tab=1");
    chrome.go(&deep_link);
    log_in(&chrome, &bed, "alice@example.com", &deep_link);
    chrome.wait_for_url("the deep link of the second app", |u| u == deep_link);
    let page = chrome.text();
    assert!(
        page.contains("\"path\":\"/graph?g0.expr=up&g0.tab=1\""),
        "{page}"
    );
    assert!(
        page.contains("\"x-auth-request-user\":[\"alice@example.com\"]"),
        "{page}"
    );
    assert!(
        page.contains("\"x-auth-request-email\":[\"alice@example.com\"]"),
        "{page}"
    );
    // One cookie for the parent domain serves the first app too: no trip to the IdP.
    let session = chrome
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "_wasm_iap")
        .expect("session cookie");
    assert_eq!(session["domain"], ".iap.localhost", "{session}");
    let hits = bed.grafana.hits();
    let dashboard = bed.url(GRAFANA_HOST, "/d/abc?orgId=1&from=now-1h");
    chrome.go(&dashboard);
    assert_eq!(chrome.url(), dashboard);
    assert!(bed.grafana.hits() > hits);
    assert!(chrome
        .text()
        .contains("\"x-auth-request-user\":[\"alice@example.com\"]"));

    // A location narrowed to `admins` refuses her; NGINX passes the 403 on.
    chrome.go(&bed.url(GRAFANA_HOST, "/admin/users"));
    let status = "return performance.getEntriesByType('navigation')[0].responseStatus";
    assert_eq!(chrome.run(status), json!(403));
    let seen = bed.grafana.seen();
    assert!(
        !seen.iter().any(|p| p.contains(" /admin")),
        "the app never saw the request: {seen:?}"
    );
}

#[test]
fn api_clients_pass_with_a_bearer_token_and_never_with_a_spoofed_identity() {
    let bed = Bed::start();
    let token = bed.idp.client_credentials_token();
    let url = bed.url(GRAFANA_HOST, "/api/dashboards");
    let mut response = http::bearer(&url, &token);
    for _ in 0..50 {
        if response.status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        response = http::bearer(&url, &token);
    }
    assert_eq!(
        response.status,
        200,
        "{response:?}\n{}",
        bed.nginx.error_log()
    );
    assert_eq!(
        response.json()["headers"]["x-auth-request-user"],
        json!(["demo-cli"])
    );
    // A spoofed identity header is refused outright: the check answers 400, which NGINX
    // turns into its 500 (it would hand the header to the app otherwise).
    let hits = bed.grafana.hits();
    let spoofed = http::get(&url, &[("x-auth-request-user", "admin")]);
    assert_eq!(spoofed.status, 500, "{spoofed:?}");
    assert_eq!(bed.grafana.hits(), hits);
    // Without a credential an API client is sent to sign in by NGINX (as with oauth2-proxy).
    let anonymous = http::get(&url, &[]);
    assert_eq!(anonymous.status, 302, "{anonymous:?}");
    let location = anonymous.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!(
            "http://{AUTH_HOST}:{}/oauth2/start?rd=",
            bed.nginx.port
        )),
        "{location}"
    );
    // The admins-only location: a token without the group is refused.
    let admin_only = http::bearer(&bed.url(GRAFANA_HOST, "/admin/users"), &token);
    assert_eq!(admin_only.status, 403, "{admin_only:?}");
    // The second app, same token.
    let response = http::bearer(&bed.url(PROMETHEUS_HOST, "/api/v1/query"), &token);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(bed.prometheus.hits() >= 1);
}
