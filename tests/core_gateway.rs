//! The gateway's decisions, natively, with workers that share one in-memory host: requests
//! that wait for keys or endpoints and are decided again, a callback after a restart, a
//! rotated key during sign-in, and a refresh refused while other requests wait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::host::FakeHost;
use support::mint::{self, other_keys, shared_keys, KeyRing};
use support::native_bed::{forwarded, header, responded};
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::gateway::{Decision, Gateway};
use wasm_iap::core::host::Metric;
use wasm_iap::core::keys::fetcher::KeyTaker;
use wasm_iap::core::keys::record::{Discovery, KeysRecord};
use wasm_iap::core::login::oidc::PendingLogin;
use wasm_iap::core::request_headers::RequestHeaders;

const ISSUER: &str = "https://dex.example.com";
const HOST: &str = "grafana.example.com";
const P0: ProviderId = ProviderId(0);

fn settings() -> Rc<Settings> {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["grafana-api"], "cluster": "dex",
                        "jwks_min_refetch_interval": "10s" }],
        "login": [{
            "hosts": [HOST], "issuer": ISSUER, "client_id": "grafana", "client_secret": "s3cret",
            "cookie_secrets": ["a-cookie-secret-of-at-least-32-bytes!"],
        }],
        "keys_wait_timeout": "5s",
    });
    Rc::new(Settings::parse(&config.to_string()).unwrap())
}

/// What a fetch from the IdP publishes: its keys and, from discovery, its endpoints.
fn record(keys: &KeyRing, attempted_at_ms: u64) -> KeysRecord {
    KeysRecord {
        jwks: Some(keys.jwks().to_string()),
        discovery: Some(Discovery {
            jwks_uri: format!("{ISSUER}/keys"),
            authorization_endpoint: Some(format!("{ISSUER}/auth")),
            token_endpoint: Some(format!("{ISSUER}/token")),
            end_session_endpoint: None,
        }),
        attempted_at_ms,
        ..KeysRecord::default()
    }
}

fn headers(path: &str, extra: &[(&str, &str)]) -> RequestHeaders {
    let mut pairs: Vec<(&str, &[u8])> = vec![
        (":authority", HOST.as_bytes()),
        (":path", path.as_bytes()),
        (":method", b"GET"),
        (":scheme", b"https"),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes())));
    RequestHeaders::from_pairs(pairs)
}

const BROWSER: [(&str, &str); 2] = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];

fn browser_with(cookie: &str) -> Vec<(&str, &str)> {
    let mut h = BROWSER.to_vec();
    h.push(("cookie", cookie));
    h
}

/// `name=value` of the cookies a reply sets (deletions left out).
fn jar(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .map(|c| support::sent_back(c).to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Starts a login on `gateway`: the state, the nonce and the login cookie to send back.
fn start_login(gateway: &mut Gateway, host: &mut FakeHost, path: &str) -> (String, String, String) {
    let reply = responded(gateway.decide(host, 1, &headers(path, &BROWSER)).decision);
    assert_eq!(reply.status, 302, "{reply:?}");
    let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    let sealed = support::cookie_value(login_cookie);
    let plain = gateway.settings().login[0]
        .idps
        .first()
        .sealer
        .open("login", sealed)
        .unwrap();
    let pending: PendingLogin = serde_json::from_slice(&plain).unwrap();
    (
        pending.state,
        pending.nonce,
        support::sent_back(login_cookie).to_string(),
    )
}

fn token_response(keys: &KeyRing, nonce: &str, expires_in: u64) -> Vec<u8> {
    let claims = mint::claims_with(
        ISSUER,
        "grafana",
        json!({ "nonce": nonce, "sub": "alice-id", "email_verified": true }),
    );
    let id_token = keys.signer("RS256").sign(&claims);
    json!({ "id_token": id_token, "refresh_token": "rt-1", "expires_in": expires_in })
        .to_string()
        .into_bytes()
}

#[test]
fn bearer_requests_before_any_keys_wait_on_every_worker_and_pass_once_keys_arrive() {
    let now = mint::now_secs() * 1000;
    let mut a_host = FakeHost::new(now);
    let mut b_host = a_host.sibling(2);
    let (mut a, mut b) = (Gateway::new(settings()), Gateway::new(settings()));
    let token = shared_keys()
        .signer("ES256")
        .sign(&mint::claims(ISSUER, "grafana-api"));
    let bearer = [("authorization", format!("Bearer {token}"))];
    let bearer: Vec<(&str, &str)> = bearer.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let api = headers("/api/dashboards", &bearer);
    assert!(matches!(
        a.decide(&mut a_host, 7, &api).decision,
        Decision::Parked
    ));
    assert!(matches!(
        b.decide(&mut b_host, 8, &api).decision,
        Decision::Parked
    ));
    assert!(a.fetch_wanted(P0), "the wait asks for a fetch");
    // One worker fetched and published; each worker takes the record in and settles.
    for (gateway, host, context) in [(&mut a, &mut a_host, 7), (&mut b, &mut b_host, 8)] {
        gateway
            .authn
            .install_record(P0, &record(shared_keys(), now))
            .unwrap();
        let mut decided = gateway.settle(host, Some(P0));
        assert_eq!(decided.len(), 1);
        let (id, decision) = decided.remove(0);
        assert_eq!(id, context);
        assert_eq!(
            header(&forwarded(decision), "x-auth-request-user"),
            Some("alice-id")
        );
        assert_eq!(gateway.parked(), 0);
    }
    // Keys that never come: the wait runs out with 503.
    let mut c = Gateway::new(settings());
    assert!(matches!(
        c.decide(&mut a_host, 9, &api).decision,
        Decision::Parked
    ));
    a_host.advance(4_999);
    assert!(c.settle(&mut a_host, None).is_empty(), "still waiting");
    a_host.advance(1);
    let (_, decision) = c.settle(&mut a_host, None).remove(0);
    assert_eq!(responded(decision).status, 503);
}

#[test]
fn a_browser_and_a_callback_arriving_before_discovery_wait_for_the_endpoints() {
    let now = mint::now_secs() * 1000;
    let mut host = FakeHost::new(now);
    let mut gateway = Gateway::new(settings());
    let deep_link = headers("/d/abc?orgId=1", &BROWSER);
    let parked = gateway.decide(&mut host, 3, &deep_link);
    assert!(matches!(parked.decision, Decision::Parked));
    gateway
        .authn
        .install_record(P0, &record(shared_keys(), now))
        .unwrap();
    let (id, decision) = gateway.settle(&mut host, Some(P0)).remove(0);
    assert_eq!(id, 3);
    let reply = responded(decision);
    assert!(
        reply
            .header("location")
            .unwrap()
            .starts_with(&format!("{ISSUER}/auth?")),
        "{reply:?}"
    );

    // The user logs in at the IdP while Envoy restarts: the new VM has no endpoints yet.
    let (state, nonce, login_cookie) = start_login(&mut gateway, &mut host, "/d/abc");
    let mut restarted = Gateway::new(settings());
    let callback = headers(
        &format!("/oauth2/callback?code=c0de&state={state}"),
        &browser_with(&login_cookie),
    );
    assert!(matches!(
        restarted.decide(&mut host, 4, &callback).decision,
        Decision::Parked
    ));
    restarted
        .authn
        .install_record(P0, &record(shared_keys(), now))
        .unwrap();
    let (id, decision) = restarted.settle(&mut host, Some(P0)).remove(0);
    assert_eq!(id, 4);
    assert!(
        matches!(decision, Decision::Parked),
        "the code exchange is under way"
    );
    let call = host.calls.last().cloned().unwrap();
    assert_eq!(call.url, format!("{ISSUER}/token"));
    assert!(call.body.contains("code=c0de"), "{}", call.body);
    // The token endpoint answers the root; the gateway knows whose call it was.
    let (id, decision) = restarted
        .on_settled_call_response(
            &mut host,
            call.token,
            Some(200),
            &token_response(shared_keys(), &nonce, 300),
        )
        .unwrap();
    assert_eq!(id, 4);
    let reply = responded(decision);
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, Some("/d/abc"))
    );
    assert!(
        reply
            .set_cookies()
            .any(|c| c.starts_with("__Host-wasm_iap=")),
        "signed in"
    );
}

#[test]
fn an_id_token_signed_with_a_key_rotated_in_waits_for_the_keys_then_signs_in() {
    let now = mint::now_secs() * 1000;
    let mut host = FakeHost::new(now);
    let mut gateway = Gateway::new(settings());
    // The worker has the old keys, fetched a moment ago (inside the refetch rate limit).
    gateway
        .authn
        .install_record(P0, &record(other_keys(), now))
        .unwrap();
    let (state, nonce, login_cookie) = start_login(&mut gateway, &mut host, "/");
    let callback = headers(
        &format!("/oauth2/callback?code=c0de&state={state}"),
        &browser_with(&login_cookie),
    );
    let Decision::Calling(pending) = gateway.decide(&mut host, 5, &callback).decision else {
        panic!("the code is exchanged")
    };
    let token = host.calls.last().unwrap().token;
    let answer = token_response(shared_keys(), &nonce, 300);
    let decision = gateway.on_token_response(&mut host, 5, *pending, token, Some(200), &answer);
    assert!(
        matches!(decision, Decision::Parked),
        "waits for the rotated key"
    );
    assert!(
        !gateway.fetch_wanted(P0),
        "not before the rate limit allows"
    );
    // The record changes without a fetch since the wait began: the wait goes on.
    gateway
        .authn
        .install_record(P0, &record(other_keys(), now - 1))
        .unwrap();
    assert!(
        gateway.settle(&mut host, Some(P0)).is_empty(),
        "still waiting"
    );
    host.advance(10_000);
    assert!(gateway.settle(&mut host, None).is_empty());
    assert!(gateway.fetch_wanted(P0), "asked as soon as it may");
    gateway.clear_fetch_wanted(P0);
    gateway
        .authn
        .install_record(P0, &record(shared_keys(), now + 10_000))
        .unwrap();
    let (id, decision) = gateway.settle(&mut host, Some(P0)).remove(0);
    assert_eq!(id, 5);
    let reply = responded(decision);
    assert_eq!(reply.status, 302, "{reply:?}");
    assert!(reply
        .set_cookies()
        .any(|c| c.starts_with("__Host-wasm_iap=")));
}

/// A worker pair with keys, and a browser session whose tokens expire in 60 s.
fn signed_in() -> (FakeHost, FakeHost, Gateway, Gateway, String) {
    let now = mint::now_secs() * 1000;
    let mut a_host = FakeHost::new(now);
    let b_host = a_host.sibling(3);
    let (mut a, mut b) = (Gateway::new(settings()), Gateway::new(settings()));
    a.prepare(&mut a_host);
    for gateway in [&mut a, &mut b] {
        gateway
            .authn
            .install_record(P0, &record(shared_keys(), now))
            .unwrap();
    }
    let (state, nonce, login_cookie) = start_login(&mut a, &mut a_host, "/");
    let callback = headers(
        &format!("/oauth2/callback?code=c0de&state={state}"),
        &browser_with(&login_cookie),
    );
    let Decision::Calling(pending) = a.decide(&mut a_host, 6, &callback).decision else {
        panic!("the code is exchanged")
    };
    let token = a_host.calls.last().unwrap().token;
    let mut claims: Value = mint::claims_with(ISSUER, "grafana", json!({ "nonce": nonce }));
    // From the host's clock, not the wall clock: a slow machine must not move the expiry
    // past the minute the tests advance.
    claims["exp"] = json!(now / 1000 + 60);
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let answer = json!({ "id_token": id_token, "refresh_token": "rt-1" }).to_string();
    let reply = responded(a.on_token_response(
        &mut a_host,
        6,
        *pending,
        token,
        Some(200),
        answer.as_bytes(),
    ));
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(a_host.count_of(Metric::SignedIn), 1);
    let cookies: Vec<String> = reply.set_cookies().map(str::to_string).collect();
    (a_host, b_host, a, b, jar(&cookies))
}

/// A request whose session expired: it waits while the root sends the refresh on its next
/// tick (so a client that goes away cannot lose the answer). The call's token.
fn refresh_sent(
    gateway: &mut Gateway,
    host: &mut FakeHost,
    context: u32,
    request: &RequestHeaders,
) -> u32 {
    let decision = gateway.decide(host, context, request).decision;
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    assert!(
        gateway.settle(host, None).is_empty(),
        "sent, not decided yet"
    );
    let call = host.calls.last().unwrap();
    assert!(
        call.body.contains("grant_type=refresh_token"),
        "{}",
        call.body
    );
    call.token
}

/// The token endpoint's answer to a call the root sent, for request `context`.
fn answered(
    gateway: &mut Gateway,
    host: &mut FakeHost,
    token: u32,
    status: u32,
    body: &[u8],
    context: u32,
) -> Decision {
    let (id, decision) = gateway
        .on_settled_call_response(host, token, Some(status), body)
        .unwrap();
    assert_eq!(id, context);
    decision
}

#[test]
fn a_refresh_refused_while_other_requests_wait_ends_the_session_on_every_worker() {
    let (mut a_host, mut b_host, mut a, mut b, session) = signed_in();
    // The tokens expired two minutes ago: past the race grace (60 s by default).
    a_host.advance(181_000);
    let page = headers("/d/abc", &browser_with(&session));
    let token = refresh_sent(&mut a, &mut a_host, 10, &page);
    // Meanwhile, another worker goes on with the still-valid session.
    let forward = forwarded(b.decide(&mut b_host, 11, &page).decision);
    assert_eq!(
        header(&forward, "x-auth-request-email"),
        Some("alice@example.com")
    );
    assert!(forward
        .remove_headers
        .contains(&"authorization".to_string()));
    // The IdP refuses the refresh token: the session is over, for everyone carrying it.
    let refused = br#"{"error":"invalid_grant"}"#;
    let reply = responded(answered(&mut a, &mut a_host, token, 400, refused, 10));
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, Some("/d/abc"))
    );
    assert!(
        reply
            .set_cookies()
            .any(|c| c.starts_with("__Host-wasm_iap=;")),
        "session cleared"
    );
    let later = responded(b.decide(&mut b_host, 12, &page).decision);
    assert_eq!(
        later.status, 302,
        "the other worker learns it from shared data"
    );
    let api = headers(
        "/api/search",
        &[("cookie", session.as_str()), ("accept", "application/json")],
    );
    assert_eq!(
        responded(b.decide(&mut b_host, 13, &api).decision).status,
        401
    );
    assert_eq!(b_host.calls.len(), 0, "no second refresh with a dead token");
}

#[test]
fn a_refresh_refused_right_after_expiry_keeps_the_old_session_without_a_cookie_until_the_grace_ends(
) {
    let (mut a_host, mut b_host, mut a, mut b, session) = signed_in();
    a_host.advance(61_000);
    let page = headers("/d/abc", &browser_with(&session));
    let token = refresh_sent(&mut a, &mut a_host, 50, &page);
    // Another replica spent the rotating refresh token a moment ago.
    let refused = br#"{"error":"invalid_grant"}"#;
    let forward = forwarded(answered(&mut a, &mut a_host, token, 400, refused, 50));
    assert_eq!(
        header(&forward, "x-auth-request-email"),
        Some("alice@example.com"),
        "the request goes on as the user"
    );
    assert!(
        forward.response_cookies.is_empty(),
        "no cookie written: the winner's renewed cookie must not be overwritten"
    );
    assert_eq!(a_host.count_of(Metric::RefreshRefusalsTolerated), 1);
    assert!(a_host.logged("another replica may have renewed it"));
    // This Envoy's other workers keep the old session too, without asking the IdP again.
    let other = forwarded(b.decide(&mut b_host, 51, &page).decision);
    assert!(other.response_cookies.is_empty());
    assert!(
        b_host.calls.is_empty(),
        "no second refresh within the grace"
    );
    // Past the grace (60 s after the tokens expired), the next refused refresh ends it.
    a_host.advance(60_000);
    let token = refresh_sent(&mut a, &mut a_host, 52, &page);
    let reply = responded(answered(&mut a, &mut a_host, token, 400, refused, 52));
    assert_eq!(reply.status, 302, "{reply:?}");
    assert!(reply
        .set_cookies()
        .any(|c| c.starts_with("__Host-wasm_iap=;")));
    assert_eq!(a_host.count_of(Metric::RefreshRefusalsTolerated), 1);
}

#[test]
fn a_refresh_is_made_once_and_its_result_adopted_by_the_other_workers() {
    let (mut a_host, mut b_host, mut a, mut b, session) = signed_in();
    a_host.advance(61_000);
    let api = headers(
        "/api/search",
        &[("cookie", session.as_str()), ("accept", "application/json")],
    );
    let token = refresh_sent(&mut a, &mut a_host, 20, &api);
    let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
    claims["exp"] = json!(mint::now_secs() + 3600);
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let renewed = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
    let renewed_cookies = forwarded(answered(
        &mut a,
        &mut a_host,
        token,
        200,
        renewed.as_bytes(),
        20,
    ))
    .response_cookies;
    assert!(
        !renewed_cookies.is_empty(),
        "the browser gets the renewed session"
    );
    let adopted = forwarded(b.decide(&mut b_host, 21, &api).decision);
    assert!(
        !adopted.response_cookies.is_empty(),
        "adopted, not refreshed again"
    );
    assert_eq!(b_host.calls.len(), 0);
    let renewed_jar = jar(&renewed_cookies);
    let fresh = headers(
        "/api/search",
        &[
            ("cookie", renewed_jar.as_str()),
            ("accept", "application/json"),
        ],
    );
    let forward = forwarded(b.decide(&mut b_host, 22, &fresh).decision);
    assert!(
        forward.response_cookies.is_empty(),
        "the renewed session needs no refresh"
    );
}

#[test]
fn a_refresh_whose_id_token_waits_for_keys_is_never_made_twice() {
    let (mut a_host, mut b_host, mut a, mut b, session) = signed_in();
    a_host.advance(61_000);
    let api = headers(
        "/api/search",
        &[("cookie", session.as_str()), ("accept", "application/json")],
    );
    let token = refresh_sent(&mut a, &mut a_host, 30, &api);
    let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
    claims["exp"] = json!(mint::now_secs() + 3600);
    // Signed with a key the workers do not have yet (a rotation at the IdP).
    let id_token = other_keys().signer("RS256").sign(&claims);
    let renewed = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
    let decision = a
        .on_settled_call_response(&mut a_host, token, Some(200), renewed.as_bytes())
        .unwrap()
        .1;
    assert!(matches!(decision, Decision::Parked));
    // Past the lease's first deadline (2 x 5 s + 1 s), another worker still leaves it alone.
    a_host.advance(12_000);
    let forward = forwarded(b.decide(&mut b_host, 31, &api).decision);
    assert!(forward.response_cookies.is_empty(), "kept the old session");
    assert!(
        b_host.calls.is_empty(),
        "no second refresh with the same token"
    );
}

#[test]
fn a_refresh_whose_client_went_away_still_renews_the_session_for_its_other_requests() {
    let (mut a_host, mut b_host, mut a, mut b, session) = signed_in();
    a_host.advance(61_000);
    let api = headers(
        "/api/search",
        &[("cookie", session.as_str()), ("accept", "application/json")],
    );
    let token = refresh_sent(&mut a, &mut a_host, 40, &api);
    a.forget(40); // the tab was closed while the IdP answered
    let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
    claims["exp"] = json!(mint::now_secs() + 3600);
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let renewed = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
    answered(&mut a, &mut a_host, token, 200, renewed.as_bytes(), 40);
    let adopted = forwarded(b.decide(&mut b_host, 41, &api).decision);
    assert!(!adopted.response_cookies.is_empty(), "the renewed session");
    assert!(
        b_host.calls.is_empty(),
        "the old refresh token is never sent again"
    );
}

/// A worker before any keys arrived, and a valid bearer request for it.
fn before_any_keys() -> (u64, FakeHost, Gateway, RequestHeaders) {
    let now = mint::now_secs() * 1000;
    let token = shared_keys()
        .signer("ES256")
        .sign(&mint::claims(ISSUER, "grafana-api"));
    let authorization = format!("Bearer {token}");
    let api = headers("/api/dashboards", &[("authorization", &authorization)]);
    (now, FakeHost::new(now), Gateway::new(settings()), api)
}

/// Requests whose clients went away while they waited free their place at once: the bound
/// counts requests under way, not ones that ever parked.
#[test]
fn parked_requests_whose_clients_left_no_longer_count_toward_the_bound() {
    let (now, mut host, mut gateway, api) = before_any_keys();
    let limit = wasm_iap::core::gateway::MAX_PARKED;
    for context in 0..limit {
        let context = context as u32 + 10;
        let decision = gateway.decide(&mut host, context, &api).decision;
        assert!(matches!(decision, Decision::Parked), "{context}");
        gateway.forget(context);
    }
    assert_eq!(gateway.parked(), 0);
    let decision = gateway.decide(&mut host, 1, &api).decision;
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    assert_eq!(gateway.parked(), 1);
    gateway
        .authn
        .install_record(P0, &record(shared_keys(), now))
        .unwrap();
    let decided = gateway.settle(&mut host, Some(P0));
    assert_eq!(
        decided.len(),
        1,
        "only the request still under way is decided"
    );
    assert_eq!(decided[0].0, 1);
}

#[test]
fn requests_waiting_for_keys_are_bounded_per_vm_and_the_rest_get_503_at_once() {
    let (now, mut host, mut gateway, api) = before_any_keys();
    let limit = wasm_iap::core::gateway::MAX_PARKED;
    for context in 0..limit {
        let decision = gateway
            .decide(&mut host, context as u32 + 10, &api)
            .decision;
        assert!(matches!(decision, Decision::Parked), "{context}");
    }
    let decision = gateway.decide(&mut host, 1, &api).decision;
    assert_eq!(responded(decision).status, 503);
    // A browser waiting for the IdP's endpoints too.
    let decision = gateway
        .decide(&mut host, 2, &headers("/d/abc", &BROWSER))
        .decision;
    assert_eq!(responded(decision).status, 503);
    assert_eq!(gateway.parked(), limit);
    // Once the keys arrive, every waiting request is decided.
    gateway
        .authn
        .install_record(P0, &record(shared_keys(), now))
        .unwrap();
    assert_eq!(gateway.settle(&mut host, Some(P0)).len(), limit);
    assert_eq!(gateway.parked(), 0);
}
