#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The order `Gateway::decide` takes, one table row (or more) per numbered step of the list
//! at the top of `src/core/gateway/mod.rs`: each row is a request and the decision it gets.
//! Rows marked "before" pit two steps against each other, so a reordering shows up as a
//! failed row; and the list, the code's step comments and this table must name the same
//! steps, so neither can drift from the others silently.

mod support;

use serde_json::{json, Value};
use support::native_bed::*;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::login::session::Session;

const API: &str = "api.example.com";
const DASH: &str = "dash.example.com";
const KUBE: &str = "kube.example.com";

fn config() -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(DASH, "dash", "_dash", json!({
            "routes": [{ "path": "/public", "public": true }],
        }))],
        "services": [
            {
                "hosts": [API],
                "routes": [
                    { "path": "/open", "public": true },
                    { "path": "/admin", "allow": [{ "groups": ["admins"] }] },
                ],
            },
            {
                "hosts": [KUBE],
                "impersonate": { "user_prefix": "oidc:", "group_prefix": "oidc:" },
                "routes": [{ "path": "/healthz", "public": true }],
            },
        ],
    })
}

/// The same, with an issuer whose keys are not known yet (fetched through `dex`).
fn config_without_keys() -> Value {
    let mut config = config();
    config["providers"] = json!([{ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "dex" }]);
    config
}

/// What a row expects.
#[derive(Debug)]
enum Expect {
    /// Forwarded, with this header set to this value (`None`: only forwarded).
    Forward(Option<(&'static str, &'static str)>),
    /// Forwarded, and this client header stripped.
    ForwardStripping(&'static str),
    /// Answered here with this status.
    Status(u32),
    /// Answered with the apiserver's `Status` of this code.
    KubeStatus(u32),
    Parked,
}

struct Row {
    step: u32,
    what: &'static str,
    without_keys: bool,
    method: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn row(step: u32, what: &'static str, authority: &'static str, path: &'static str) -> Row {
    Row {
        step,
        what,
        without_keys: false,
        method: "GET",
        authority,
        path,
        headers: Vec::new(),
        expect: Expect::Status(0),
    }
}

impl Row {
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Row {
        self.headers.push((name, value.into()));
        self
    }

    fn expect(mut self, expect: Expect) -> Row {
        self.expect = expect;
        self
    }
}

fn valid() -> String {
    bearer(&token(json!({ "groups": ["devs"] })))
}

fn session_cookie(bed: &mut Bed) -> String {
    let now = support::mint::now_secs();
    let session = Session {
        sid: "sid-order".into(),
        user: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    };
    bed.session_cookie(0, &session)
}

fn rows(session: &str) -> Vec<Row> {
    use Expect::*;
    let json_accept = ("accept", "application/json".to_string());
    let html = ("accept", "text/html".to_string());
    let navigate = ("sec-fetch-mode", "navigate".to_string());
    vec![
        row(1, "client identity headers are stripped", API, "/")
            .with("authorization", valid())
            .with("x-auth-request-user", "mallory")
            .expect(ForwardStripping("x-auth-request-user")),
        row(
            2,
            "an h2 host naming another host: 400, before a public route (6)",
            API,
            "/open",
        )
        .with("host", "other.example.com")
        .expect(Status(400)),
        row(2, "... and before our own endpoints (3)", API, "/ping")
            .with("host", "other.example.com")
            .expect(Status(400)),
        row(
            3,
            "ping is answered before any rule (4), on any host",
            "unlisted.example.com",
            "/ping",
        )
        .expect(Status(200)),
        row(3, "ready once the keys are loaded", API, "/ready").expect(Status(200)),
        row(
            3,
            "an auth_request check carrying an identity header: 400",
            API,
            "/oauth2/auth",
        )
        .with("authorization", valid())
        .with("x-auth-request-email", "boss@example.com")
        .expect(Status(400)),
        row(
            4,
            "a host no service lists: 403, even with a valid token (8)",
            "unlisted.example.com",
            "/",
        )
        .with("authorization", valid())
        .expect(Status(403)),
        row(
            4,
            "a path no rule can judge safely: 400",
            API,
            "/admin%2Fusers",
        )
        .with("authorization", valid())
        .expect(Status(400)),
        row(
            5,
            "a client impersonating: 403 Status, before a public route (6)",
            KUBE,
            "/healthz",
        )
        .with("impersonate-user", "admin")
        .expect(KubeStatus(403)),
        row(6, "a public route needs no credential", API, "/open").expect(Forward(None)),
        row(6, "... before a login host's sign-in (7)", DASH, "/public")
            .with("accept", "text/html")
            .expect(Forward(None)),
        row(
            6,
            "... and Kubernetes mode makes it the anonymous user",
            KUBE,
            "/healthz",
        )
        .expect(Forward(Some(("impersonate-user", "system:anonymous")))),
        row(7, "a browser without a session goes to log in", DASH, "/")
            .with(html.0, html.1.clone())
            .with(navigate.0, navigate.1.clone())
            .expect(Status(302)),
        row(7, "a program without a session gets 401", DASH, "/api")
            .with(json_accept.0, json_accept.1.clone())
            .expect(Status(401)),
        row(
            7,
            "a callback with a state nobody issued: 400",
            DASH,
            "/oauth2/callback?code=c&state=made-up",
        )
        .with(html.0, html.1.clone())
        .expect(Status(400)),
        row(
            7,
            "a session goes upstream, before a garbage bearer token (8)",
            DASH,
            "/api",
        )
        .with("cookie", session)
        .with("authorization", "Bearer garbage")
        .expect(Forward(Some(("x-auth-request-email", "alice@example.com")))),
        row(8, "a bad bearer token: 401", API, "/")
            .with("authorization", "Bearer garbage")
            .expect(Status(401)),
        row(8, "... before the rules (9): 401, not 403", API, "/admin")
            .with("authorization", "Bearer garbage")
            .expect(Status(401)),
        Row {
            without_keys: true,
            ..row(
                8,
                "a token whose issuer's keys are not known yet waits",
                API,
                "/",
            )
            .with("authorization", valid())
            .expect(Parked)
        },
        row(9, "a caller outside the route's groups: 403", API, "/admin")
            .with("authorization", valid())
            .expect(Status(403)),
        row(
            9,
            "a check's own narrowing: 403",
            API,
            "/oauth2/auth?allowed_groups=admins",
        )
        .with("authorization", valid())
        .expect(Status(403)),
        row(10, "upstream: identity headers", API, "/")
            .with("authorization", valid())
            .expect(Forward(Some(("x-auth-request-user", "alice-id")))),
        row(10, "an ext_authz check: 200", API, "/oauth2/auth/")
            .with("authorization", valid())
            .expect(Status(200)),
        row(
            10,
            "an auth_request check: 202 (every restriction holds: not /admin's)",
            API,
            "/oauth2/auth",
        )
        .with(
            "authorization",
            bearer(&token(json!({ "groups": ["admins"] }))),
        )
        .expect(Status(202)),
        row(10, "user info: 200", API, "/oauth2/userinfo")
            .with("authorization", valid())
            .expect(Status(200)),
        row(
            10,
            "Kubernetes: the caller impersonated",
            KUBE,
            "/api/v1/pods",
        )
        .with("authorization", valid())
        .expect(Forward(Some(("impersonate-user", "oidc:alice-id")))),
    ]
}

fn check(row: &Row, sent: Sent) {
    let label = format!("step {}: {}", row.step, row.what);
    match (&row.expect, sent.decision) {
        (Expect::Forward(header_value), Decision::Forward(forward)) => {
            if let Some((name, value)) = header_value {
                assert_eq!(header(&forward, name), Some(*value), "{label}: {forward:?}");
            }
        }
        (Expect::ForwardStripping(name), Decision::Forward(_)) => {
            assert!(
                sent.strip.iter().any(|s| s == name),
                "{label}: {:?}",
                sent.strip
            );
        }
        (Expect::Status(status), Decision::Respond(reply)) => {
            assert_eq!(reply.status, *status, "{label}: {reply:?}");
        }
        (Expect::KubeStatus(code), Decision::Respond(reply)) => {
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(
                (&body["kind"], &body["code"]),
                (&json!("Status"), &json!(code)),
                "{label}"
            );
        }
        (Expect::Parked, Decision::Parked) => {}
        (expect, decision) => panic!("{label}: expected {expect:?}, got {decision:?}"),
    }
}

#[test]
fn every_numbered_step_decides_in_the_order_the_list_gives() {
    let mut bed = Bed::new(&config());
    let mut waiting = Bed::new(&config_without_keys());
    let session = session_cookie(&mut bed);
    for row in rows(&session) {
        let bed = if row.without_keys {
            &mut waiting
        } else {
            &mut bed
        };
        let extra: Vec<(&str, &str)> = row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let sent = bed.send(row.method, row.authority, row.path, &extra);
        check(&row, sent);
    }
}

/// The step numbers the list at the top of the gateway names, and those its code's step
/// comments name, in order (`// 8-10.` names 8, 9 and 10).
fn numbered(source: &str) -> (Vec<u32>, Vec<u32>) {
    let listed = source
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| l.split_once(". ").and_then(|(n, _)| n.parse().ok()))
        .collect();
    let mut in_code = Vec::new();
    for comment in source.lines().filter_map(|l| l.trim().strip_prefix("// ")) {
        let Some((numbers, _)) = comment.split_once(". ") else {
            continue;
        };
        let range: Vec<u32> = numbers.split('-').filter_map(|n| n.parse().ok()).collect();
        match range[..] {
            [one] => in_code.push(one),
            [from, to] => in_code.extend(from..=to),
            _ => {}
        }
    }
    (listed, in_code)
}

#[test]
fn the_list_the_code_and_this_table_name_the_same_steps() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/core/gateway/mod.rs");
    let source = std::fs::read_to_string(path).unwrap();
    let (listed, in_code) = numbered(&source);
    let steps: Vec<u32> = (1..=10).collect();
    assert_eq!(
        listed, steps,
        "the numbered list at the top of gateway/mod.rs"
    );
    assert_eq!(
        in_code, steps,
        "the step comments in decide and steps, in order"
    );
    let session = String::new();
    let mut tabled: Vec<u32> = rows(&session).iter().map(|r| r.step).collect();
    tabled.dedup();
    assert_eq!(tabled, steps, "every step has a row, in order");
}
