//! A session cookie is opened once per VM and then recognised by its exact text: what a
//! user notices is that this changes nothing. Expiry still applies, a cookie differing in
//! one byte is not the remembered session, each service recognises only its own, and a
//! chunked session with hundreds of groups is forwarded whole every time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::mint;
use support::native_bed::{forwarded, header, login_service, provider, responded, Bed, BROWSER};
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::login::session::Session;

const GRAFANA: &str = "grafana.example.com";
const PROMETHEUS: &str = "prometheus.example.com";

fn bed() -> Bed {
    Bed::new(&json!({
        "providers": [provider()],
        "login": [
            login_service(GRAFANA, "grafana", "_iap", json!({})),
            login_service(PROMETHEUS, "prometheus", "_iap", json!({})),
        ],
    }))
}

fn session(user: &str, groups: usize, lasts_secs: u64) -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{user}"),
        user: user.into(),
        email: Some(format!("{user}@example.com")),
        groups: (0..groups).map(|i| format!("myorg:team-{i:04}")).collect(),
        expires_at: now + lasts_secs,
        refresh_at: now + lasts_secs,
        ..Session::default()
    }
}

fn with_cookie(cookie: &str) -> Vec<(&str, &str)> {
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", cookie));
    headers
}

fn user_sent_upstream(decision: Decision) -> Option<String> {
    match decision {
        Decision::Forward(forward) => header(&forward, "x-auth-request-user").map(str::to_string),
        _ => None,
    }
}

#[test]
fn a_session_seen_again_still_ends_when_it_expires() {
    let mut bed = bed();
    let cookie = bed.session_cookie(0, &session("alice", 0, 60));
    for _ in 0..3 {
        let user = user_sent_upstream(bed.get(GRAFANA, "/d/home", &with_cookie(&cookie)));
        assert_eq!(user.as_deref(), Some("alice"));
    }
    bed.host.advance(61_000);
    let reply = responded(bed.get(GRAFANA, "/d/home", &with_cookie(&cookie)));
    assert_eq!(reply.status, 302, "an expired session signs in again");
}

#[test]
fn a_cookie_one_byte_away_from_a_remembered_session_is_no_session() {
    let mut bed = bed();
    let cookie = bed.session_cookie(0, &session("alice", 0, 3600));
    assert!(user_sent_upstream(bed.get(GRAFANA, "/", &with_cookie(&cookie))).is_some());
    let (name, value) = cookie.split_once('=').unwrap();
    let flip = |at: usize| {
        let mut bytes = value.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        format!("{name}={}", String::from_utf8(bytes).unwrap())
    };
    for at in [0, value.len() / 2, value.len() - 30, value.len() - 1] {
        let tampered = flip(at);
        let decision = bed.get(GRAFANA, "/", &with_cookie(&tampered));
        assert_eq!(user_sent_upstream(decision), None, "byte {at} changed");
    }
    let shorter = format!("{name}={}", &value[1..]);
    assert_eq!(
        user_sent_upstream(bed.get(GRAFANA, "/", &with_cookie(&shorter))),
        None
    );
}

#[test]
fn a_session_remembered_by_one_service_does_not_open_another() {
    let mut bed = bed();
    let grafana_cookie = bed.session_cookie(0, &session("alice", 0, 3600));
    assert!(user_sent_upstream(bed.get(GRAFANA, "/", &with_cookie(&grafana_cookie))).is_some());
    let at_prometheus = bed.get(PROMETHEUS, "/graph", &with_cookie(&grafana_cookie));
    assert_eq!(responded(at_prometheus).status, 302);
}

#[test]
fn a_chunked_session_is_forwarded_with_every_group_each_time() {
    let mut bed = bed();
    let cookie = bed.session_cookie(0, &session("alice", 400, 3600));
    assert!(cookie.contains("_iap_2="), "the session takes three chunks");
    for _ in 0..2 {
        let forward = forwarded(bed.get(GRAFANA, "/", &with_cookie(&cookie)));
        let groups = header(&forward, "x-auth-request-groups").unwrap();
        assert_eq!(groups.split(',').count(), 400);
        assert!(groups.ends_with("myorg:team-0399"));
    }
}
