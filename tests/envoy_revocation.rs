//! Revocation in real Envoy (two workers) with the real IdP: a cookie copied before
//! sign-out is refused afterwards on every request; an IdP session ended at the IdP
//! (RP-initiated logout there) ends ours through OIDC Back-Channel Logout; a replayed or
//! forged logout token gets `400` and revokes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::browser::{absolute, Browser};
use support::envoy_idp_bed::{LoginBed, COOKIE, SECRET};
use support::http;
use support::mint::{self, shared_keys};
use support::raw::RawResponse;
use support::servers::{free_port, Served};

const LOGOUT: &str = "/oauth2/backchannel_logout";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
/// Longer than a few ticks (100 ms): every worker has taken the revocation in by then.
const TICKS: Duration = Duration::from_millis(500);

/// The bed, with the IdP's `demo` client sending its back-channel logout tokens to
/// `backchannel(port)` (`port`: Envoy's).
fn bed_with_backchannel(backchannel: impl FnOnce(u16) -> String) -> LoginBed {
    let port = free_port();
    let uri = backchannel(port);
    LoginBed::start_plugin(port, &[("BACKCHANNEL_LOGOUT_URI", &uri)], &[], |issuer| {
        json!({
            "providers": [{ "issuer": issuer, "audiences": ["demo-upstream"], "cluster": "idp" }],
            "login": [{
                "hosts": ["127.0.0.1"],
                "issuer": issuer,
                "client_id": "demo",
                "client_secret": "demo-secret",
                "cookie_secrets": [SECRET],
                "cookie_secure": false,
                "scopes": ["openid", "email", "profile", "groups"],
            }],
        })
    })
}

/// The status of `n` API requests with the session cookie `value`, sent in parallel, each
/// on its own connection (so both workers get some).
fn statuses(bed: &LoginBed, value: &str, n: usize) -> Vec<u16> {
    let url = bed.url("/api/v1/query");
    let cookie = format!("{COOKIE}={value}");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..n / 8)
                        .map(|_| {
                            let headers =
                                [("cookie", cookie.as_str()), ("accept", "application/json")];
                            http::get(&url, &headers).status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Connections each of Envoy's two workers took so far.
fn connections_per_worker(bed: &LoginBed) -> [u64; 2] {
    let stats = bed.envoy.admin("/stats?filter=downstream_cx_total");
    let mut per_worker = [0; 2];
    for line in stats.body.lines().filter(|l| l.starts_with("listener.")) {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        for (i, worker) in ["worker_0.", "worker_1."].iter().enumerate() {
            if name.contains(worker) {
                per_worker[i] += value.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    per_worker
}

/// A counter once it reaches `at_least` (counters are reported on the tick), or its value
/// after 2 s.
fn counter(bed: &LoginBed, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let value = bed.envoy.prometheus_metric(name).unwrap_or(0);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends the browser's session at the IdP: its end-session page, confirmed ("Yes, sign me
/// out"). The IdP posts its back-channel logout tokens before it answers.
fn end_idp_session(browser: &mut Browser, bed: &LoginBed) {
    let (url, page) = browser.get(&format!("{}/session/end", bed.idp.issuer));
    let between = |from: &str, to: &str| -> String {
        let start = page.body.find(from).map(|i| i + from.len()).expect(from);
        let end = page.body[start..].find(to).expect(to) + start;
        page.body[start..end].to_string()
    };
    let action = between("id=\"op.logoutForm\" method=\"post\" action=\"", "\"");
    let xsrf = between("name=\"xsrf\" value=\"", "\"");
    let form = format!("xsrf={xsrf}&logout=yes");
    let (_, done) = browser.navigate("POST", &absolute(&url, &action), Some(&form));
    assert!(done.status < 400, "the IdP signed out: {}", done.body);
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn post_logout(bed: &LoginBed, form: &str) -> http::Response {
    http::request("POST", &bed.url(LOGOUT), &[FORM], Some(form))
}

fn assert_refused(response: &http::Response, why: &str) {
    assert_eq!(response.status, 400, "{why}: {response:?}");
    assert_eq!(response.header("cache-control"), Some("no-store"), "{why}");
    assert_eq!(response.json()["error"], "invalid_request", "{why}");
}

#[test]
fn a_cookie_copied_before_sign_out_is_refused_on_every_worker_afterwards() {
    let bed = LoginBed::start(json!({}), &[]);
    let (mut browser, _) = bed.logged_in("ivy@example.com", "/");
    let copied = browser.cookie(COOKIE).unwrap().value.clone();
    let before = statuses(&bed, &copied, 80);
    assert!(before.iter().all(|s| *s == 200), "{before:?}");

    let out = browser.request("GET", &bed.url("/oauth2/sign_out"), None, &[]);
    assert_eq!(out.status, 302);
    assert!(browser.cookie(COOKIE).is_none());
    std::thread::sleep(TICKS);
    let after = statuses(&bed, &copied, 240);
    assert!(
        after.iter().all(|s| *s == 401),
        "the copy opens nothing, on any worker: {after:?}"
    );
    let [first, second] = connections_per_worker(&bed);
    assert!(
        first > 20 && second > 20,
        "both workers answered: {first}, {second}"
    );
    assert_eq!(counter(&bed, "wasm_iap_revocations", 1), 1);
    assert_eq!(counter(&bed, "wasm_iap_sessions_revoked", 240), 240);

    let (again, _) = bed.logged_in("ivy@example.com", "/");
    let fresh = again.cookie(COOKIE).unwrap().value.clone();
    assert!(
        statuses(&bed, &fresh, 16).iter().all(|s| *s == 200),
        "signing in again opens a new session"
    );
}

#[test]
fn ending_the_session_at_the_idp_ends_ours_through_back_channel_logout() {
    let bed = bed_with_backchannel(|port| format!("http://127.0.0.1:{port}{LOGOUT}"));
    let (mut browser, _) = bed.logged_in("jo@example.com", "/");
    let copied = browser.cookie(COOKIE).unwrap().value.clone();
    assert!(statuses(&bed, &copied, 16).iter().all(|s| *s == 200));

    end_idp_session(&mut browser, &bed);
    assert_eq!(
        counter(&bed, "wasm_iap_revocations", 1),
        1,
        "the IdP's token was taken in"
    );
    assert!(bed
        .envoy
        .log()
        .contains("back-channel logout for demo: the IdP session revoked"));
    std::thread::sleep(TICKS);
    let after = statuses(&bed, &copied, 160);
    assert!(after.iter().all(|s| *s == 401), "{after:?}");
    let visit = browser.request("GET", &bed.url("/"), None, &[]);
    assert_eq!(visit.status, 302);
    assert!(
        visit
            .header("location")
            .unwrap_or_default()
            .starts_with(&bed.idp.issuer),
        "the browser is asked to sign in again"
    );
}

#[test]
fn a_forged_logout_token_revokes_nothing_and_a_replayed_one_gets_400() {
    // The IdP's logout token is caught here first, so the test can send it (and forgeries
    // made from it) itself.
    let caught: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = Arc::clone(&caught);
    let catcher = Served::start(0, move |request| {
        keep.lock().unwrap().push(request.body.clone());
        (200, vec![], String::new())
    });
    let catcher_port = catcher.port;
    let bed = bed_with_backchannel(|_| format!("http://127.0.0.1:{catcher_port}/logout"));
    let (mut browser, _) = bed.logged_in("kim@example.com", "/");
    let copied = browser.cookie(COOKIE).unwrap().value.clone();
    end_idp_session(&mut browser, &bed);
    let form = caught
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the IdP sent a logout token");
    let token = url::form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("logout_token");
    let real = claims_of(&token);
    assert!(
        real["sid"].is_string() && real["events"].is_object(),
        "{real}"
    );

    let changed = |changes: Value| {
        let mut claims = real.clone();
        claims["jti"] = json!(format!("forged-{}", mint::now_secs()));
        for (k, v) in changes.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(&k);
            } else {
                claims[k] = v;
            }
        }
        claims
    };
    let ours = shared_keys().signer("RS256");
    let forgeries = [
        ("another key", ours.sign_as_logout(&changed(json!({})))),
        (
            "another key, no events",
            ours.sign_as_logout(&changed(json!({ "events": null }))),
        ),
        (
            "another key, a nonce",
            ours.sign_as_logout(&changed(json!({ "nonce": "n" }))),
        ),
        (
            "the IdP's signature on other claims",
            mint::tamper_payload(&token, &changed(json!({}))),
        ),
        (
            "the IdP's signature, no events",
            mint::tamper_payload(&token, &changed(json!({ "events": null }))),
        ),
        (
            "the IdP's signature, a nonce",
            mint::tamper_payload(&token, &changed(json!({ "nonce": "n" }))),
        ),
        ("the IdP's token, tampered", mint::tamper_signature(&token)),
    ];
    for (why, forged) in &forgeries {
        assert_refused(&post_logout(&bed, &format!("logout_token={forged}")), why);
    }
    std::thread::sleep(TICKS);
    assert!(
        statuses(&bed, &copied, 40).iter().all(|s| *s == 200),
        "no forgery revoked the session"
    );
    assert_eq!(
        bed.envoy
            .prometheus_metric("wasm_iap_revocations")
            .unwrap_or(0),
        0
    );

    let taken = post_logout(&bed, &form);
    assert_eq!(taken.status, 200, "{taken:?}");
    assert_eq!(taken.header("cache-control"), Some("no-store"));
    std::thread::sleep(TICKS);
    assert!(statuses(&bed, &copied, 80).iter().all(|s| *s == 401));
    let replays: Vec<http::Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| post_logout(&bed, &form)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for replay in &replays {
        assert_refused(replay, "a replay, on any worker");
    }
    assert_eq!(counter(&bed, "wasm_iap_revocations", 1), 1);
    drop(catcher);
}

/// A POST to the logout path with the `framing` header (`Content-Length` or chunked), then
/// `pieces`, each written after `pause` (so the body reaches the filter in pieces; with no
/// pause, all in one write with the headers); the answer.
fn post_in_pieces(port: u16, framing: &str, pieces: &[Vec<u8>], pause: Duration) -> RawResponse {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {LOGOUT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    if pause.is_zero() {
        let whole = [head.into_bytes(), pieces.concat()].concat();
        stream.write_all(&whole).unwrap();
    } else {
        stream.write_all(head.as_bytes()).unwrap();
    }
    for piece in pieces.iter().filter(|_| !pause.is_zero()) {
        std::thread::sleep(pause);
        // Envoy may have answered already (413): later writes may fail.
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    support::raw::parse(&raw).unwrap_or_else(|| panic!("no HTTP answer: {raw:?}"))
}

/// `parts` as HTTP/1.1 chunks, and the last chunk.
fn chunked(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = parts
        .iter()
        .map(|part| {
            let mut piece = format!("{:x}\r\n", part.len()).into_bytes();
            piece.extend_from_slice(part);
            piece.extend_from_slice(b"\r\n");
            piece
        })
        .collect();
    pieces.push(b"0\r\n\r\n".to_vec());
    pieces
}

#[test]
fn the_body_is_read_in_pieces_bounded_and_never_answered_by_the_upstream() {
    let bed = LoginBed::start(json!({}), &[]);
    let port: u16 = bed.url("").rsplit(':').next().unwrap().parse().unwrap();
    let pause = Duration::from_millis(50);
    let form: [&[u8]; 3] = [b"logout_tok", b"en=not.a.", b"jwt"];
    let pieces: Vec<Vec<u8>> = form.iter().map(|p| p.to_vec()).collect();
    let answer = post_in_pieces(port, "Content-Length: 22", &pieces, pause);
    assert_eq!(answer.status, 400, "{}", answer.summary());
    assert!(
        answer
            .body_text()
            .contains("logout token rejected: malformed"),
        "the whole form was read: {}",
        answer.summary()
    );
    // The echoing upstream answers a chunked request at once, without reading its body:
    // the client gets the filter's refusal, never the upstream's answer.
    let answer = post_in_pieces(port, "Transfer-Encoding: chunked", &chunked(&form), pause);
    assert_eq!(answer.status, 400, "{}", answer.summary());
    assert_eq!(
        answer.json()["error"],
        "invalid_request",
        "{}",
        answer.summary()
    );
    // What the upstream got of it (the headers go on before the body is read): no credential.
    let framing =
        "Transfer-Encoding: chunked\r\nAuthorization: Bearer stolen\r\nCookie: _wasm_iap=x";
    post_in_pieces(port, framing, &chunked(&form), pause);
    let seen = bed.upstream.seen();
    let names = bed.upstream.header_names.lock().unwrap().clone();
    for (request, names) in seen.iter().zip(&names) {
        if request.contains(LOGOUT) {
            assert!(
                !names.iter().any(|n| n == "authorization" || n == "cookie"),
                "{request}: {names:?}"
            );
        }
    }
    assert!(
        seen.iter().any(|r| r.contains(LOGOUT)),
        "the upstream saw the headers: {seen:?}"
    );
    let big = vec![b'a'; 10 * 1024];
    let grown = chunked(&[b"logout_token=", &big, &big]);
    let answer = post_in_pieces(port, "Transfer-Encoding: chunked", &grown, Duration::ZERO);
    assert_eq!(
        answer.status,
        413,
        "a body over 16 KB: {}",
        answer.summary()
    );
    let announced = http::request(
        "POST",
        &bed.url(LOGOUT),
        &[FORM],
        Some(&"a".repeat(17 * 1024)),
    );
    assert_eq!(announced.status, 413);
    let get = http::get(&bed.url(LOGOUT), &[]);
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    let api = statuses(&bed, "garbage", 8);
    assert!(
        api.iter().all(|s| *s == 401),
        "the VM still decides: {api:?}"
    );
}
