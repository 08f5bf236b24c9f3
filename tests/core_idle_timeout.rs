//! `idle_timeout` natively: a session unused that long ends (sent to sign in, its cookie
//! cleared, logged and counted), activity keeps it, and activity is written at a coarse
//! grain: at sign-in, at a refresh, else at most every tenth of the timeout. Cookie sessions
//! on the in-memory host with a clock the test moves; cluster-store sessions with a real
//! etcd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::etcd::EtcdCluster;
use support::mint::{self, shared_keys};
use support::native_bed::{
    forwarded, login_service, provider, responded, Bed, BROWSER, ISSUER, JSON,
};
use support::random::Counter;
use wasm_iap::core::cluster::namespace::{hash_id, Namespace};
use wasm_iap::core::cluster::stored_session;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::Metric;
use wasm_iap::core::login::session::{self, Session};
use wasm_iap::core::secret::Secret;

const HOST: &str = "grafana.example.com";
const COOKIE: &str = "_grafana";
/// `idle_timeout` "10m": activity is written at most once a minute.
const IDLE: u64 = 600;

fn config(extra: Value) -> Value {
    let mut login = json!({ "idle_timeout": "10m" });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        login[k] = v;
    }
    json!({
        "providers": [provider()],
        "login": [login_service(HOST, "grafana", COOKIE, login)],
    })
}

fn now(bed: &Bed) -> u64 {
    use wasm_iap::core::host::Host;
    bed.host.now_ms() / 1000
}

/// alice's session, active at `active_at`, tokens good for an hour, no refresh token.
fn alice(bed: &Bed, active_at: u64) -> Session {
    let now = now(bed);
    Session {
        sid: "sid-alice-0001".into(),
        user: "alice-id".into(),
        email: Some("alice@example.com".into()),
        expires_at: now + 8 * 3600,
        refresh_at: now + 3600,
        signed_in_at: now - 60,
        active_at,
        ..Session::default()
    }
}

/// A browser's request with `cookie`: forwarded, and the session cookie the response sets.
fn visit(bed: &mut Bed, cookie: &str) -> Option<String> {
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", cookie));
    let forward = forwarded(bed.get(HOST, "/d/home", &headers));
    let ours: Vec<&String> = forward
        .response_cookies
        .iter()
        .filter(|c| c.starts_with(&format!("{COOKIE}=")))
        .collect();
    assert!(ours.len() <= 1, "{ours:?}");
    ours.first().map(|c| support::sent_back(c).to_string())
}

/// The session a cookie (`name=value`) holds.
fn opened(bed: &Bed, cookie: &str) -> Session {
    let service = &bed.gateway.settings().login[0];
    let (name, value) = cookie.split_once('=').unwrap();
    session::read(
        &[(name, value)],
        name,
        &service.idps.first().sealer,
        now(bed),
    )
    .expect("a session")
}

#[test]
fn activity_is_written_once_a_tenth_of_the_timeout_and_keeps_the_session() {
    let mut bed = Bed::new(&config(json!({})));
    let start = now(&bed);
    let base = alice(&bed, start);
    let first = bed.session_cookie(0, &base);
    for after in [10, 49] {
        bed.host.advance(after * 1000 - (now(&bed) - start) * 1000);
        assert_eq!(visit(&mut bed, &first), None, "at +{after} s: no cookie");
    }
    bed.host.advance(11_000);
    let second = visit(&mut bed, &first).expect("at +60 s, activity is written");
    assert_eq!(opened(&bed, &second).active_at, start + 60);
    assert_eq!(
        opened(&bed, &second),
        Session {
            active_at: start + 60,
            ..base
        },
        "nothing else changes"
    );
    // The browser holds the new cookie: used until 10 minutes after +60 s.
    bed.host.advance((IDLE - 1) * 1000);
    assert!(visit(&mut bed, &second).is_some(), "at +659 s, active");
    assert_eq!(bed.host.count_of(Metric::SessionsIdle), 0);
}

#[test]
fn a_session_unused_for_the_idle_timeout_is_sent_to_sign_in_with_its_cookie_cleared() {
    let mut bed = Bed::new(&config(json!({})));
    let start = now(&bed);
    let cookie = bed.session_cookie(0, &alice(&bed, start));
    bed.host.advance((IDLE - 1) * 1000);
    assert!(
        visit(&mut bed, &cookie).is_some(),
        "one second before: active"
    );
    bed.host.advance(1000);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let reply = responded(bed.get(HOST, "/d/home?tab=1", &headers));
    assert_eq!(reply.status, 302);
    assert!(
        reply
            .header("location")
            .unwrap()
            .starts_with(&format!("{ISSUER}/auth?")),
        "{reply:?}"
    );
    assert!(
        reply
            .set_cookies()
            .any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0")),
        "the session cookie is cleared: {reply:?}"
    );
    assert_eq!(bed.host.count_of(Metric::SessionsIdle), 1);
    assert!(
        bed.host
            .logged("session sid-alic… of grafana ended: unused for 600 s (idle_timeout 600 s)"),
        "{:?}",
        bed.info_lines()
    );
    assert!(
        !bed.info_lines().iter().any(|l| l.contains("alice")),
        "no user in the log"
    );
    // A program gets 401, the cookie cleared the same way.
    let reply = responded(bed.get(HOST, "/api/search", &[("cookie", &cookie), JSON]));
    assert_eq!(reply.status, 401);
    assert!(reply
        .set_cookies()
        .any(|c| c.starts_with(&format!("{COOKIE}=;"))));
    assert_eq!(bed.host.count_of(Metric::SessionsIdle), 2);
}

#[test]
fn a_session_sealed_before_the_idle_timeout_counts_as_active_now() {
    let mut bed = Bed::new(&config(json!({})));
    let cookie = bed.session_cookie(0, &alice(&bed, 0));
    bed.host.advance(3_000_000);
    let written = visit(&mut bed, &cookie).expect("its activity is written at once");
    assert_eq!(opened(&bed, &written).active_at, now(&bed));
}

#[test]
fn without_an_idle_timeout_nothing_is_written_and_nothing_ends() {
    let mut bed = Bed::new(&config(json!({ "idle_timeout": null })));
    let cookie = bed.session_cookie(0, &alice(&bed, 0));
    bed.host.advance(3_000_000);
    assert_eq!(visit(&mut bed, &cookie), None);
}

/// Answers the refresh the last request asked for with a new ID token for alice.
fn answer_refresh(bed: &mut Bed) -> Decision {
    assert!(bed.gateway.settle(&mut bed.host, None).is_empty(), "sent");
    let call = bed.host.calls.last().unwrap();
    assert!(call.body.contains("grant_type=refresh_token"));
    let token = call.token;
    let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
    claims["exp"] = json!(now(bed) + 3600);
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let body = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
    let (_, decision) = bed
        .gateway
        .on_settled_call_response(&mut bed.host, token, Some(200), body.as_bytes())
        .expect("the refresh's request");
    decision
}

#[test]
fn a_refresh_is_activity_and_an_idle_session_is_never_refreshed() {
    let mut bed = Bed::new(&config(json!({})));
    let start = now(&bed);
    let mut expiring = alice(&bed, start - 120);
    expiring.refresh_at = start - 1;
    expiring.refresh_token = Some(Secret::new("rt-1"));
    let cookie = bed.session_cookie(0, &expiring);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let parked = bed.get(HOST, "/d/home", &headers);
    assert!(matches!(parked, Decision::Parked), "{parked:?}");
    let forward = forwarded(answer_refresh(&mut bed));
    let renewed = forward
        .response_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{COOKIE}=")))
        .expect("the renewed session");
    assert_eq!(
        opened(&bed, support::sent_back(renewed)).active_at,
        start,
        "the refresh recorded activity"
    );

    let calls = bed.host.calls.len();
    let mut idle = expiring.clone();
    idle.active_at = start - IDLE;
    let cookie = bed.session_cookie(0, &idle);
    let reply = responded(bed.get(HOST, "/api", &[("cookie", &cookie), JSON]));
    assert_eq!(reply.status, 401);
    assert_eq!(bed.host.calls.len(), calls, "no refresh of an idle session");
}

#[test]
fn activity_is_not_written_right_before_a_refresh() {
    let mut bed = Bed::new(&config(json!({})));
    let start = now(&bed);
    let mut session = alice(&bed, start - 120);
    session.refresh_token = Some(Secret::new("rt-1"));
    session.refresh_at = start + 20;
    let cookie = bed.session_cookie(0, &session);
    assert_eq!(
        visit(&mut bed, &cookie),
        None,
        "the refresh writes it in 20 s: a cookie now could put back the refresh token it spends"
    );
    session.refresh_at = start + 40;
    let cookie = bed.session_cookie(0, &session);
    assert!(visit(&mut bed, &cookie).is_some());
}

fn problems_of(idle_timeout: &str, lifetime: Option<&str>) -> Vec<String> {
    let mut extra = json!({ "idle_timeout": idle_timeout });
    if let Some(lifetime) = lifetime {
        extra["session_lifetime"] = json!(lifetime);
    }
    Settings::parse(&config(extra).to_string())
        .err()
        .unwrap_or_default()
}

#[test]
fn the_idle_timeout_is_bounded_at_configuration() {
    let at_least = vec!["login[0].idle_timeout: must be at least 1m".to_string()];
    assert_eq!(problems_of("59s", None), at_least);
    assert_eq!(
        problems_of("2h", Some("1h")),
        ["login[0].idle_timeout: must be at most session_lifetime: a session never lives longer"]
    );
    assert_eq!(
        problems_of("ten", None),
        ["login[0].idle_timeout: \"ten\" does not start with a whole number"]
    );
    assert!(problems_of("1m", None).is_empty());
    assert!(problems_of("1h", Some("1h")).is_empty());
}

/// etcd's answer to a store call, as Envoy would hand it over.
fn send_to_etcd(call: &support::host::Call, port: u16) -> (u32, String) {
    let path = call.url.splitn(4, '/').nth(3).unwrap_or_default();
    let answer = support::http::request_within(
        "POST",
        &format!("http://127.0.0.1:{port}/{path}"),
        &[("content-type", "application/json")],
        Some(&call.body),
        std::time::Duration::from_secs(2),
    );
    (answer.status as u32, answer.body)
}

/// Sends the store calls made from the root since `seen` to etcd, answers to the gateway.
fn pump(bed: &mut Bed, seen: &mut usize, port: u16) {
    while *seen < bed.host.calls.len() {
        let call = bed.host.calls[*seen].clone();
        *seen += 1;
        if call.cluster == "etcd" {
            let (status, body) = send_to_etcd(&call, port);
            bed.gateway.on_settled_call_response(
                &mut bed.host,
                call.token,
                Some(status),
                body.as_bytes(),
            );
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// etcd's value under `key`, straight from etcd.
fn etcd_value(port: u16, key: &str) -> Option<Vec<u8>> {
    let answer = support::http::request_within(
        "POST",
        &format!("http://127.0.0.1:{port}/v3/kv/range"),
        &[("content-type", "application/json")],
        Some(&json!({ "key": b64(key.as_bytes()) }).to_string()),
        std::time::Duration::from_secs(2),
    );
    let value = answer.json()["kvs"][0]["value"].as_str()?.to_string();
    base64::engine::general_purpose::STANDARD.decode(value).ok()
}

#[test]
fn a_cluster_store_session_keeps_its_activity_in_the_store_and_ends_idle_there() {
    let etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let prefix = format!("/idle-{}", std::process::id());
    let mut config = config(json!({ "session_store": "cluster" }));
    config["cluster_store"] =
        json!({ "etcd": { "cluster": "etcd", "prefix": prefix, "timeout": "2s" } });
    let mut bed = Bed::new(&config);
    let mut seen = 0;
    // The store's leases granted first (a member just started may be slow).
    for _ in 0..10 {
        bed.gateway.tick(&mut bed.host);
        pump(&mut bed, &mut seen, port);
        let ready = bed.get(HOST, "/ready", &[]);
        if matches!(&ready, Decision::Respond(r) if r.body.trim() == "OK") {
            break;
        }
        bed.host.advance(1_100);
    }
    let start = now(&bed);
    let mut random = Counter(7);
    let handle = stored_session::new_handle(&mut random).unwrap();
    let key = stored_session::key(&Namespace::new(&prefix), &handle);
    let (sealed, cookie) = {
        let service = &bed.gateway.settings().login[0];
        let mut stored = alice(&bed, start);
        stored.sid = hash_id(handle.as_bytes());
        let sealed =
            stored_session::seal_session(&service.idps.first().sealer, &key, &stored, &mut random)
                .unwrap();
        let handle_cookie =
            stored_session::seal_handle(&service.idps.first().sealer, &handle, &mut random);
        (sealed, format!("{COOKIE}={}", handle_cookie.unwrap()))
    };
    let put = json!({ "key": b64(key.as_bytes()), "value": b64(&sealed) }).to_string();
    let answer = support::http::request_within(
        "POST",
        &format!("http://127.0.0.1:{port}/v3/kv/put"),
        &[("content-type", "application/json")],
        Some(&put),
        std::time::Duration::from_secs(2),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let request = |bed: &mut Bed, seen: &mut usize| -> Decision {
        let mut headers = BROWSER.to_vec();
        headers.push(("cookie", &cookie));
        match bed.get(HOST, "/d/home", &headers) {
            // Read from the store in the request's own context, then decided again.
            Decision::Calling(pending) => {
                let call = bed.host.calls.last().unwrap().clone();
                *seen = bed.host.calls.len();
                let (status, body) = send_to_etcd(&call, port);
                let context = bed.last_context();
                bed.gateway.on_token_response(
                    &mut bed.host,
                    context,
                    *pending,
                    call.token,
                    Some(status),
                    body.as_bytes(),
                )
            }
            other => other,
        }
    };
    let read_back = |bed: &Bed| {
        let value = etcd_value(port, &key).expect("stored");
        let sealer = &bed.gateway.settings().login[0].idps.first().sealer;
        stored_session::open_session(sealer, &key, &value).expect("opens")
    };

    // Read from the store; nothing is due: no write, no cookie.
    let forward = forwarded(request(&mut bed, &mut seen));
    assert!(forward.response_cookies.is_empty());
    bed.gateway.tick(&mut bed.host);
    pump(&mut bed, &mut seen, port);
    assert_eq!(read_back(&bed).active_at, start);

    // A minute later activity is due: written to the store (from the root), not the cookie.
    bed.host.advance(61_000);
    let forward = forwarded(request(&mut bed, &mut seen));
    assert!(
        forward.response_cookies.is_empty(),
        "the cookie holds only the handle"
    );
    bed.gateway.tick(&mut bed.host);
    pump(&mut bed, &mut seen, port);
    assert_eq!(read_back(&bed).active_at, start + 61);

    // Ten minutes after that, read again from the store: idle, sent to sign in.
    bed.host.advance(IDLE * 1000);
    let reply = responded(request(&mut bed, &mut seen));
    assert_eq!(reply.status, 302, "{reply:?}");
    assert!(reply.header("location").unwrap().starts_with(ISSUER));
    assert!(reply
        .set_cookies()
        .any(|c| c.starts_with(&format!("{COOKIE}=;"))));
    assert_eq!(bed.host.count_of(Metric::SessionsIdle), 1);
}

#[test]
fn a_refusal_tolerated_within_refresh_race_grace_writes_no_activity() {
    let mut bed = Bed::new(&config(json!({})));
    let start = now(&bed);
    let mut expiring = alice(&bed, start - 120);
    expiring.refresh_at = start - 1;
    expiring.refresh_token = Some(Secret::new("rt-spent-elsewhere"));
    let cookie = bed.session_cookie(0, &expiring);
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", &cookie));
    let parked = bed.get(HOST, "/d/home", &headers);
    assert!(matches!(parked, Decision::Parked), "{parked:?}");
    assert!(bed.gateway.settle(&mut bed.host, None).is_empty(), "sent");
    let token = bed.host.calls.last().unwrap().token;
    let refused = json!({ "error": "invalid_grant" }).to_string();
    let (_, decision) = bed
        .gateway
        .on_settled_call_response(&mut bed.host, token, Some(400), refused.as_bytes())
        .expect("the refresh's request");
    let forward = forwarded(decision);
    assert!(
        forward.response_cookies.is_empty(),
        "the winner's renewed cookie is on its way: nothing may overwrite it, activity neither"
    );
    assert_eq!(bed.host.count_of(Metric::RefreshRefusalsTolerated), 1);
}
