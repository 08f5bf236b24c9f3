//! NGINX `auth_request` (as ingress-nginx configures it) asking Envoy with wasm-iap, without
//! a browser: NGINX hands the app every header the client sent, so a check of a request
//! carrying a method override or a header of a stripped identity family is refused (the
//! filter's `400`, which NGINX turns into its `500`), and NGINX drops `_` spellings itself
//! (`underscores_in_headers off`): nothing a client spoofs reaches the app.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::envoy::{bootstrap_on, wasm_filter, Envoy};
use support::envoy_faulty_idp_bed::eventually;
use support::mint::{claims_with, shared_keys};
use support::nginx::Nginx;
use support::raw::{send, RawRequest, RawResponse};
use support::servers::{free_port, KeyServer, Upstream};

const AUTH_HOST: &str = "auth.iap.localhost";
const GRAFANA_HOST: &str = "grafana.iap.localhost";
const PROMETHEUS_HOST: &str = "prometheus.iap.localhost";
const AUDIENCE: &str = "demo";

/// One of each family, as NGINX forwards them (`-` spellings) and as it drops them (`_`).
const SPOOFED: [&str; 14] = [
    "X-Auth-Request-Groups",
    "X-Auth-Request-Preferred-Username",
    "X-Forwarded-User",
    "X-Forwarded-Groups",
    "GAP-Auth",
    "Impersonate-User",
    "X-Remote-Group",
    "X-Pomerium-Claim-Groups",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "x-method-override",
    "X-Tenant",
    "x_auth_request_groups",
    "X_HTTP_Method_Override",
];

struct Bed {
    idp: KeyServer,
    grafana: Upstream,
    _prometheus: Upstream,
    _envoy: Envoy,
    nginx: Nginx,
}

impl Bed {
    fn start() -> Bed {
        let port = free_port();
        let idp = KeyServer::start(0, shared_keys().jwks());
        let issuer = idp.issuer();
        let (grafana, prometheus) = (Upstream::start(), Upstream::start());
        let plugin = json!({
            "providers": [{ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp" }],
            "login": [{
                "hosts": [AUTH_HOST, GRAFANA_HOST, PROMETHEUS_HOST],
                "issuer": issuer,
                "client_id": "demo",
                "client_secret": "demo-secret",
                "cookie_secrets": ["0123456789abcdef0123456789abcdef-nginx"],
                "cookie_secure": false,
                "cookie_domain": ".iap.localhost",
                "redirect_url": format!("http://{AUTH_HOST}:{port}/oauth2/callback"),
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "routes": [
                    { "path_prefix": "/api/admin", "allow": [{ "groups": ["admins"] }] },
                    { "path_prefix": "/api/dashboards", "methods": ["DELETE"], "allow": [{ "groups": ["admins"] }] },
                ],
            }],
            "strip_request_headers": ["x-tenant"],
            // NGINX sets X-Original-URL and -Method in every auth location (as ingress-nginx).
            "endpoints": { "trust_original_url": true },
        });
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
                ("AUTH_HOST_AND_PORT", format!("{AUTH_HOST}:{port}")),
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
            _prometheus: prometheus,
            _envoy: envoy,
            nginx,
        }
    }

    fn get(&self, token: &str, extra: &[(&str, &str)]) -> RawResponse {
        self.send("POST", "/api/dashboards", token, extra)
    }

    fn send(&self, method: &str, path: &str, token: &str, extra: &[(&str, &str)]) -> RawResponse {
        let mut request = RawRequest::new(method, path)
            .host(format!("{GRAFANA_HOST}:{}", self.nginx.port))
            .bearer(token);
        for (name, value) in extra {
            request = request.header(name, value);
        }
        send(self.nginx.port, &request).unwrap()
    }
}

#[test]
fn a_spoofed_identity_header_or_method_override_never_reaches_the_app_behind_auth_request() {
    let bed = Bed::start();
    let token =
        shared_keys()
            .signer("RS256")
            .sign(&claims_with(&bed.idp.issuer(), AUDIENCE, json!({})));
    let passed = eventually(std::time::Duration::from_secs(10), || {
        bed.get(&token, &[]).status == 200
    });
    assert!(passed, "{}", bed.get(&token, &[]).summary());
    for spoofed in SPOOFED {
        let hits = bed.grafana.hits();
        let answer = bed.get(&token, &[(spoofed, "DELETE")]);
        let body = answer.body_text();
        if spoofed.contains('_') {
            // NGINX drops it before anyone sees it.
            assert_eq!(answer.status, 200, "{spoofed}: {}", answer.summary());
            assert!(
                !body.contains("DELETE"),
                "{spoofed} reached the app: {body}"
            );
        } else {
            assert_eq!(answer.status, 500, "{spoofed}: {}", answer.summary());
            assert_eq!(bed.grafana.hits(), hits, "{spoofed} reached the app");
        }
    }
}

#[test]
fn path_and_method_rules_hold_behind_auth_request_in_every_spelling() {
    let bed = Bed::start();
    let sign = |groups: &[&str]| {
        shared_keys().signer("RS256").sign(&claims_with(
            &bed.idp.issuer(),
            AUDIENCE,
            json!({ "groups": groups }),
        ))
    };
    let (staff, admin) = (sign(&["staff"]), sign(&["admins"]));
    let passed = eventually(std::time::Duration::from_secs(10), || {
        bed.get(&staff, &[]).status == 200
    });
    assert!(passed, "{}", bed.get(&staff, &[]).summary());
    for (method, path) in [
        ("GET", "/api/admin/users"),
        ("GET", "/api/ADMIN.json"),
        ("GET", "/api/admin%20/users"),
        ("DELETE", "/api/dashboards"),
        ("DELETE", "/api/dashboards.json"),
    ] {
        let hits = bed.grafana.hits();
        // A client's own X-Original-URL: NGINX sets its own over it.
        let refused = bed.send(
            method,
            path,
            &staff,
            &[("X-Original-URL", "http://x/public")],
        );
        assert_eq!(
            refused.status,
            403,
            "staff {method} {path}: {}",
            refused.summary()
        );
        assert_eq!(
            bed.grafana.hits(),
            hits,
            "staff {method} {path} reached the app"
        );
        let allowed = bed.send(method, path, &admin, &[]);
        assert_eq!(
            allowed.status,
            200,
            "admin {method} {path}: {}",
            allowed.summary()
        );
    }
}
