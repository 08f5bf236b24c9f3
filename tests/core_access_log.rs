//! The record of each decision that Envoy's access log prints (`core::access_log`): one
//! `key=value` line per decided request, naming the decision, the counter it was counted in,
//! the service and the user; a user name cannot forge a field or a line; `access_log: false`
//! leaves none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::host::FakeHost;
use support::mint;
use support::native_bed::{
    bearer, forwarded, login_service, provider, responded, token, Bed, AUDIENCE, BROWSER, ISSUER,
    JSON,
};
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::keys::record::KeysRecord;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::request_headers::RequestHeaders;

const APP: &str = "app.example.com";
const API: &str = "api.example.com";

fn config(extra: Value) -> Value {
    let mut config = json!({
        "providers": [provider()],
        "login": [login_service(APP, "app", "_iap", json!({}))],
        "services": [{
            "hosts": [API, "api2.example.com"],
            "routes": [
                { "path_prefix": "/public/", "public": true },
                { "path_prefix": "/admin/", "allow": [{ "groups": ["admins"] }] },
            ],
        }],
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    config
}

/// The record a decision left, whatever it was.
fn record(decision: Decision) -> Option<String> {
    match decision {
        Decision::Forward(forward) => forward.access_log,
        Decision::Respond(reply) => reply.access_log,
        other => panic!("expected a final decision, got {other:?}"),
    }
}

/// Reads a record back as its `key=value` fields, unescaping quoted values; `None` when it
/// is not such a line (a value that ended its field early would make it so).
fn fields(line: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        if !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                loop {
                    match chars.next()? {
                        (i, '"') => break (value, &quoted[i + 1..]),
                        (_, '\\') => match chars.next()?.1 {
                            '"' => value.push('"'),
                            '\\' => value.push('\\'),
                            other => {
                                value.push('\\');
                                value.push(other);
                            }
                        },
                        (_, c) => value.push(c),
                    }
                }
            }
            None => match after.split_once(' ') {
                Some((value, _)) => (value.to_string(), &after[value.len()..]),
                None => (after.to_string(), ""),
            },
        };
        out.push((key.to_string(), value));
        rest = match after.strip_prefix(' ') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return None,
        };
    }
    Some(out)
}

#[test]
fn an_allowed_token_names_the_decision_the_service_and_the_user() {
    let mut bed = Bed::new(&config(json!({})));
    let decision = bed.get(
        API,
        "/reports",
        &[("authorization", &bearer(&token(json!({}))))],
    );
    assert_eq!(
        forwarded(decision).access_log.as_deref(),
        Some("decision=allow reason=allowed service=\"api.example.com\" user=\"alice-id\"")
    );
    // The service is named by its first host, on any of its hosts.
    let decision = bed.get(
        "api2.example.com",
        "/reports",
        &[("authorization", &bearer(&token(json!({}))))],
    );
    assert!(record(decision)
        .unwrap()
        .contains("service=\"api.example.com\""));
}

/// A request (host, path, headers) and the status and record it gets.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, String)>,
    u32,
    &'static str,
);

#[test]
fn refusals_name_the_counters_reason() {
    let mut bed = Bed::new(&config(json!({})));
    let cases: Vec<Case> = vec![
        (
            API,
            "/admin/users",
            vec![("authorization", bearer(&token(json!({}))))],
            403,
            "decision=deny reason=forbidden service=\"api.example.com\" user=\"alice-id\"",
        ),
        (
            API,
            "/reports",
            vec![("accept", "application/json".into())],
            401,
            "decision=challenge reason=no_credential service=\"api.example.com\"",
        ),
        (
            API,
            "/reports",
            vec![("authorization", "Bearer not.a.token".into())],
            401,
            "decision=challenge reason=invalid_token service=\"api.example.com\"",
        ),
        (
            API,
            "/a%2Fb",
            vec![("authorization", bearer(&token(json!({}))))],
            400,
            "decision=deny reason=bad_request",
        ),
        (
            "unlisted.example.com",
            "/",
            vec![("authorization", bearer(&token(json!({}))))],
            403,
            "decision=deny reason=forbidden",
        ),
    ];
    for (host, path, headers, status, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = responded(bed.get(host, path, &headers));
        assert_eq!(reply.status, status, "{host}{path}: {reply:?}");
        assert_eq!(reply.access_log.as_deref(), Some(expected), "{host}{path}");
        // The same counter, by its full name, for `%RESPONSE_CODE_DETAILS%`.
        let reason = expected
            .split(' ')
            .nth(1)
            .unwrap()
            .trim_start_matches("reason=");
        let details = format!("wasm_iap_requests_denied_{reason}");
        assert_eq!(reply.details(), details, "{host}{path}");
    }
}

#[test]
fn a_browser_sent_to_sign_in_is_a_redirect_and_a_session_names_its_user() {
    let mut bed = Bed::new(&config(json!({})));
    let reply = responded(bed.get(APP, "/dashboards", &BROWSER));
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.access_log.as_deref(),
        Some("decision=redirect reason=redirected service=\"app.example.com\"")
    );
    let now = mint::now_secs();
    let session = Session {
        sid: "sid-bob".into(),
        user: "bob".into(),
        email: Some("bob@example.com".into()),
        expires_at: now + 3600,
        refresh_at: now + 3600,
        ..Session::default()
    };
    let cookie = bed.session_cookie(0, &session);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    assert_eq!(
        record(bed.get(APP, "/dashboards", &headers)).as_deref(),
        Some("decision=allow reason=allowed service=\"app.example.com\" user=\"bob\"")
    );
    // An API client without a session on the login host: 401, no user.
    assert_eq!(
        record(bed.get(APP, "/api/x", &[JSON])).as_deref(),
        Some("decision=challenge reason=no_credential service=\"app.example.com\"")
    );
}

#[test]
fn a_public_route_is_allowed_without_a_user() {
    let mut bed = Bed::new(&config(json!({})));
    assert_eq!(
        record(bed.get(API, "/public/logo.png", &[])).as_deref(),
        Some("decision=allow reason=allowed service=\"api.example.com\"")
    );
}

#[test]
fn a_hostile_user_name_stays_one_field_of_one_printable_line() {
    let mut bed = Bed::new(&config(json!({})));
    let hostile = "mallory\" decision=allow user=\"root\\\u{2028}\u{e9}";
    let decision = bed.get(
        API,
        "/admin/users",
        &[("authorization", &bearer(&token(json!({ "sub": hostile }))))],
    );
    let line = record(decision).expect("a record");
    assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line}");
    let fields = fields(&line).unwrap_or_else(|| panic!("not key=value fields: {line}"));
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["decision", "reason", "service", "user"], "{line}");
    assert_eq!(fields[0].1, "deny", "{line}");
    // Quotes and backslashes come back as sent; what is not printable ASCII stays escaped.
    assert_eq!(
        fields[3].1, "mallory\" decision=allow user=\"root\\\\u{2028}\\u{e9}",
        "{line}"
    );
}

#[test]
fn with_access_log_off_no_decision_leaves_a_record() {
    let mut bed = Bed::new(&config(json!({ "access_log": false })));
    let allowed = bed.get(
        API,
        "/reports",
        &[("authorization", &bearer(&token(json!({}))))],
    );
    assert_eq!(forwarded(allowed).access_log, None);
    let refused = responded(bed.get(API, "/reports", &[JSON]));
    assert_eq!((refused.status, refused.access_log), (401, None));
}

#[test]
fn access_log_must_be_a_boolean() {
    let problems = wasm_iap::core::config::Settings::parse(
        &config(json!({ "access_log": "yes" })).to_string(),
    )
    .unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("access_log")),
        "{problems:?}"
    );
}

/// A request that waited for the issuer's keys leaves its record when it is decided, with
/// its service and user; while it waits it leaves none (it is not decided yet).
#[test]
fn a_request_that_waited_for_keys_leaves_its_record_when_decided() {
    let now = mint::now_secs() * 1000;
    let mut host = FakeHost::new(now);
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "idp" }],
        "services": [{ "hosts": [API] }],
    });
    let mut gateway = Gateway::new(Rc::new(Settings::parse(&config.to_string()).unwrap()));
    let authorization = bearer(&token(json!({})));
    let headers = RequestHeaders::from_pairs(vec![
        (":authority", API.as_bytes()),
        (":path", b"/reports".as_slice()),
        (":method", b"GET".as_slice()),
        (":scheme", b"https".as_slice()),
        ("authorization", authorization.as_bytes()),
    ]);
    let parked = gateway.decide(&mut host, 7, &headers).decision;
    assert!(matches!(parked, Decision::Parked), "{parked:?}");
    let keys = KeysRecord {
        jwks: Some(mint::shared_keys().jwks().to_string()),
        attempted_at_ms: now,
        ..KeysRecord::default()
    };
    gateway.authn.install_record(ProviderId(0), &keys).unwrap();
    let (context, decision) = gateway.settle(&mut host, Some(ProviderId(0))).remove(0);
    assert_eq!(context, 7);
    assert_eq!(
        record(decision).as_deref(),
        Some("decision=allow reason=allowed service=\"api.example.com\" user=\"alice-id\"")
    );
}
