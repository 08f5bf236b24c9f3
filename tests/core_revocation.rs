//! Revocation inside one Envoy, natively: workers sharing an in-memory host. Sign-out
//! revokes the session it ends; an OIDC back-channel logout token (minted here, checked as
//! the spec says) revokes an IdP session or all of a user's sessions; every worker refuses
//! them after its next tick; a refused token revokes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use support::host::FakeHost;
use support::mint::{self, forge, hs256_with_public_key, other_keys, shared_keys};
use support::native_bed::*;
use wasm_iap::core::gateway::{Decision, RequestBody};
use wasm_iap::core::host::Metric;
use wasm_iap::core::login::backchannel::{BACKCHANNEL_EVENT, MAX_AGE_SECS, MAX_BODY_BYTES};
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::{Reply, Severity};
use wasm_iap::core::revocation::shared::{NotAdded, MAX_ENTRIES};
use wasm_iap::core::revocation::{Entry, RevocationSet, Revocations, RevokedId};

const DASH: &str = "dash.example.com";
const LOGOUT: &str = "/oauth2/backchannel_logout";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn config() -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(DASH, "dash", "_dash", json!({}))],
    })
}

/// Alice's session `sid` in the IdP session `idp_sid`, signed in `ago` seconds ago.
fn session(user: &str, sid: &str, idp_sid: Option<&str>, ago: i64) -> Session {
    let now = mint::now_secs();
    Session {
        sid: sid.into(),
        user: user.into(),
        idp_sid: idp_sid.map(str::to_string),
        signed_in_at: now.saturating_add_signed(-ago),
        expires_at: now + 3600,
        refresh_at: now + 3600,
        ..Session::default()
    }
}

/// Whether a program's request with `cookie` goes upstream.
fn passes(bed: &mut Bed, cookie: &str) -> bool {
    match bed.get(DASH, "/api", &[("cookie", cookie), JSON]) {
        Decision::Forward(_) => true,
        Decision::Respond(reply) if reply.status == 401 => false,
        other => panic!("expected forwarded or 401, got {other:?}"),
    }
}

fn next_jti() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A logout token's claims for `dash`, naming IdP session `idp-1` and `alice-id`; `changes`
/// replaces claims (null removes one).
fn logout_claims(changes: Value) -> Value {
    let now = mint::now_secs();
    let mut claims = json!({
        "iss": ISSUER,
        "aud": "dash",
        "iat": now,
        "exp": now + 120,
        "jti": next_jti(),
        "sid": "idp-1",
        "sub": "alice-id",
        "events": { BACKCHANNEL_EVENT: {} },
    });
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(&k);
        } else {
            claims[k] = v;
        }
    }
    claims
}

fn logout_token(changes: Value) -> String {
    shared_keys()
        .signer("RS256")
        .sign_as_logout(&logout_claims(changes))
}

/// The IdP's POST of `token` to the back-channel logout path.
fn post_logout(bed: &mut Bed, token: &str) -> Reply {
    let body = format!("logout_token={token}");
    let body = RequestBody::Whole(body.as_bytes());
    responded(bed.send_with_body("POST", DASH, LOGOUT, &[FORM], body))
}

fn assert_refused(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 400, "{why}: {reply:?}");
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{why}");
    let body: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(body["error"], "invalid_request", "{why}");
}

#[test]
fn a_cookie_copied_before_sign_out_is_refused_on_every_worker_afterwards() {
    let mut a = Bed::new(&config());
    let mut b = a.sibling(2);
    let cookie = a.session_cookie(0, &session("alice-id", "s-1", None, 60));
    let other = a.session_cookie(0, &session("alice-id", "s-2", None, 60));
    assert!(passes(&mut a, &cookie) && passes(&mut b, &cookie));

    let out = responded(a.get(DASH, "/oauth2/sign_out", &[("cookie", &cookie)]));
    assert_eq!(out.status, 302);
    assert_eq!(a.host.count_of(Metric::Revocations), 1);
    assert!(
        !passes(&mut a, &cookie),
        "at once on the worker that signed out"
    );
    b.tick();
    assert!(
        !passes(&mut b, &cookie),
        "after its tick on every other worker"
    );
    let browser = responded(b.get(DASH, "/", &[("cookie", &cookie), BROWSER[0], BROWSER[1]]));
    assert_eq!(browser.status, 302, "a browser is asked to sign in again");
    assert!(
        browser
            .set_cookies()
            .any(|c| c.starts_with("_dash=") && c.contains("Max-Age=0")),
        "and its revoked cookie is cleared: {browser:?}"
    );
    assert!(
        passes(&mut a, &other) && passes(&mut b, &other),
        "other sessions go on"
    );
    b.tick();
    assert_eq!(
        b.host.count_of(Metric::SessionsRevoked),
        2,
        "counted on the tick"
    );
    let mut c = a.sibling(3);
    assert!(
        !passes(&mut c, &cookie),
        "a worker started later reads the set at start"
    );
}

#[test]
fn a_logout_token_with_a_sid_ends_that_idp_session_on_every_worker() {
    let mut a = Bed::new(&config());
    let mut b = a.sibling(2);
    let in_idp_1 = a.session_cookie(0, &session("alice-id", "s-1", Some("idp-1"), 60));
    let in_idp_2 = a.session_cookie(0, &session("alice-id", "s-2", Some("idp-2"), 60));
    let token = logout_token(json!({}));
    let reply = post_logout(&mut a, &token);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(a.host.count_of(Metric::Revocations), 1);
    assert!(a
        .host
        .logged("back-channel logout for dash: the IdP session revoked"));
    b.tick();
    for bed in [&mut a, &mut b] {
        assert!(
            !passes(bed, &in_idp_1),
            "the IdP session's cookie is refused"
        );
        assert!(
            passes(bed, &in_idp_2),
            "another IdP session of the user goes on"
        );
    }
}

#[test]
fn a_logout_token_with_only_a_sub_ends_every_session_the_user_signed_in_before() {
    let mut a = Bed::new(&config());
    let mut b = a.sibling(2);
    let before = a.session_cookie(0, &session("alice-id", "s-1", Some("idp-1"), 60));
    let later = a.session_cookie(0, &session("alice-id", "s-2", None, -5));
    let bob = a.session_cookie(0, &session("bob-id", "s-3", None, 60));
    let reply = post_logout(&mut a, &logout_token(json!({ "sid": null })));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(a.host.logged("every session of the user revoked"));
    b.tick();
    for bed in [&mut a, &mut b] {
        assert!(!passes(bed, &before));
        assert!(passes(bed, &later), "signed in after the logout");
        assert!(passes(bed, &bob), "another user");
    }
}

#[test]
fn a_user_named_by_another_claim_is_still_found_by_sub() {
    let mut a = Bed::new(&config());
    let mut by_email = session("alice@example.com", "s-1", None, 60);
    by_email.sub = Some("alice-id".into());
    let cookie = a.session_cookie(0, &by_email);
    let reply = post_logout(&mut a, &logout_token(json!({ "sid": null })));
    assert_eq!(reply.status, 200);
    assert!(!passes(&mut a, &cookie));
}

#[test]
fn a_replayed_logout_token_gets_400_on_any_worker_even_before_its_tick() {
    let mut a = Bed::new(&config());
    let mut b = a.sibling(2);
    let token = logout_token(json!({}));
    assert_eq!(post_logout(&mut a, &token).status, 200);
    assert_refused(&post_logout(&mut a, &token), "again on the same worker");
    assert_refused(&post_logout(&mut b, &token), "on another before its tick");
    b.tick();
    assert_refused(&post_logout(&mut b, &token), "after it");
    assert_eq!(a.host.count_of(Metric::Revocations), 1);
    assert_eq!(b.host.count_of(Metric::Revocations), 0);
    let lines = b.host.log.borrow();
    assert!(
        lines
            .iter()
            .any(|(s, l)| *s == Severity::Debug && l.contains("seen before")),
        "a replay is logged at debug: anyone holding a token can send it again"
    );
}

#[test]
fn a_logout_token_arriving_on_two_workers_at_once_is_taken_in_once() {
    let mut a = Bed::new(&config());
    let mut b = a.sibling(2);
    let token = logout_token(json!({}));
    let body = format!("logout_token={token}");
    let decision = b.send("POST", DASH, LOGOUT, &[FORM]).decision;
    assert!(matches!(decision, Decision::ReadBody(n) if n == MAX_BODY_BYTES));
    let b_context = b.last_context();
    // A takes the whole token in while B's body is still on its way.
    assert_eq!(post_logout(&mut a, &token).status, 200);
    let reply =
        b.gateway
            .on_request_body(&mut b.host, b_context, RequestBody::Whole(body.as_bytes()));
    assert_refused(&responded(reply), "the second worker");
    assert_eq!(b.host.count_of(Metric::Revocations), 0);
}

#[test]
fn every_rule_of_the_logout_token_refuses_and_a_refused_token_revokes_nothing() {
    let now = mint::now_secs();
    let rs256 = shared_keys().signer("RS256");
    let sign = |changes: Value| rs256.sign_as_logout(&logout_claims(changes));
    let other_key = other_keys().signer("RS256");
    let id_token = mint::claims_with(
        ISSUER,
        "dash",
        json!({ "sub": "alice-id", "sid": "idp-1", "nonce": "n", "jti": "j" }),
    );
    let none = json!({ "alg": "none", "typ": "logout+jwt" });
    // (what is wrong, the token, what the answer says)
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed with another key",
            other_key.sign_as_logout(&logout_claims(json!({}))),
            "unknown signing key",
        ),
        (
            "tampered signature",
            mint::tamper_signature(&sign(json!({}))),
            "invalid signature",
        ),
        (
            "tampered payload",
            mint::tamper_payload(&sign(json!({})), &logout_claims(json!({ "sid": "idp-2" }))),
            "invalid signature",
        ),
        (
            "alg none",
            forge(&none, &logout_claims(json!({})), b"sig"),
            "none",
        ),
        (
            "HS256 keyed with the public key",
            hs256_with_public_key(shared_keys(), &logout_claims(json!({}))),
            "HS256 not accepted",
        ),
        (
            "another issuer",
            sign(json!({ "iss": "https://evil.example" })),
            "untrusted issuer",
        ),
        (
            "another audience",
            sign(json!({ "aud": "grafana" })),
            "wrong audience",
        ),
        (
            "no audience",
            sign(json!({ "aud": null })),
            "missing claim aud",
        ),
        ("no iat", sign(json!({ "iat": null })), "missing claim iat"),
        (
            "iat in the future",
            sign(json!({ "iat": now + 3600 })),
            "issued in the future",
        ),
        (
            "expired",
            sign(json!({ "iat": now - 300, "exp": now - 180 })),
            "expired",
        ),
        (
            "issued too long ago",
            sign(json!({ "iat": now - MAX_AGE_SECS - 120, "exp": null })),
            "too long ago",
        ),
        ("no jti", sign(json!({ "jti": null })), "without jti"),
        ("no events", sign(json!({ "events": null })), "event"),
        (
            "events without the logout event",
            sign(json!({ "events": { "x": {} } })),
            "event",
        ),
        (
            "the logout event not an object",
            sign(json!({ "events": { BACKCHANNEL_EVENT: true } })),
            "event",
        ),
        ("a nonce", sign(json!({ "nonce": "n-1" })), "nonce"),
        (
            "neither sid nor sub",
            sign(json!({ "sid": null, "sub": null })),
            "neither sid nor sub",
        ),
        ("an ID token", rs256.sign(&id_token), "event"),
        ("not a JWT", "not-a-token".into(), "malformed"),
    ];
    let mut a = Bed::new(&config());
    let cookie = a.session_cookie(0, &session("alice-id", "s-1", Some("idp-1"), 60));
    for (why, token, says) in &cases {
        let reply = post_logout(&mut a, token);
        assert_refused(&reply, why);
        assert!(reply.body.contains(says), "{why}: {}", reply.body);
    }
    a.tick();
    assert!(passes(&mut a, &cookie), "nothing was revoked");
    assert_eq!(a.host.count_of(Metric::Revocations), 0);
    assert!(a.gateway.revocations.set().is_empty());
    // What anyone can forge is logged at debug only.
    let loud: Vec<String> = a
        .host
        .log
        .borrow()
        .iter()
        .filter(|(s, _)| *s > Severity::Debug)
        .map(|(_, l)| l.clone())
        .collect();
    assert!(
        loud.iter().all(|l| !l.contains("signature")),
        "forgeries stay at debug: {loud:#?}"
    );
    assert!(
        loud.iter().any(|l| l.contains("nonce")),
        "a validly signed token breaking the rules is the IdP's doing: {loud:#?}"
    );
}

#[test]
fn a_logout_token_typed_plainly_as_a_jwt_is_accepted_too() {
    let mut a = Bed::new(&config());
    let cookie = a.session_cookie(0, &session("alice-id", "s-1", Some("idp-1"), 60));
    let plain = shared_keys()
        .signer("ES256")
        .sign(&logout_claims(json!({})));
    assert_eq!(post_logout(&mut a, &plain).status, 200);
    assert!(!passes(&mut a, &cookie));
}

#[test]
fn only_a_form_post_of_reasonable_size_is_read() {
    let mut a = Bed::new(&config());
    let get = responded(a.get(DASH, LOGOUT, &[]));
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    let json = responded(a.send_with_body(
        "POST",
        DASH,
        LOGOUT,
        &[("content-type", "application/json")],
        RequestBody::Whole(b"{}"),
    ));
    assert_refused(&json, "not a form");
    let length = (MAX_BODY_BYTES + 1).to_string();
    let announced = a.send("POST", DASH, LOGOUT, &[FORM, ("content-length", &length)]);
    assert_eq!(
        responded(announced.decision).status,
        413,
        "a Content-Length over the bound"
    );
    let grew = RequestBody::TooLarge;
    let streamed = responded(a.send_with_body("POST", DASH, LOGOUT, &[FORM], grew));
    assert_eq!(streamed.status, 413, "a body that grew over the bound");
    let cut = RequestBody::Overtaken;
    let overtaken = responded(a.send_with_body("POST", DASH, LOGOUT, &[FORM], cut));
    assert_refused(
        &overtaken,
        "the upstream answered before the body was whole",
    );
    let empty = RequestBody::Whole(b"");
    let empty = responded(a.send_with_body("POST", DASH, LOGOUT, &[FORM], empty));
    assert_refused(&empty, "no logout_token");
    let query = format!("{LOGOUT}?x=1");
    let with_query = RequestBody::TooLarge;
    let with_query = responded(a.send_with_body("GET", DASH, &query, &[], with_query));
    assert_eq!(
        with_query.status, 405,
        "the path is ours whatever its query"
    );
}

fn entry(id: RevokedId) -> Entry {
    Entry {
        id,
        revoked_at: 1_800_000_000,
        until: 1_800_003_600,
    }
}

/// The shared set's key (`revocation::shared::SET_KEY`), written by "another worker".
const SET_KEY: &str = "wasm-iap/revoked/set";

fn set_of(entries: &[Entry]) -> Vec<u8> {
    let mut set = RevocationSet::new();
    for e in entries {
        set.insert(*e);
    }
    set.encode()
}

#[test]
fn a_write_that_meets_another_between_its_read_and_its_write_merges_with_it() {
    let mut a_host = FakeHost::new(1_800_000_000_000);
    Revocations::prepare(&mut a_host);
    let mut b_host = a_host.sibling(2);
    let (mut a, mut b) = (Revocations::new(), Revocations::new());
    let (one, two) = (
        entry(RevokedId::session("one")),
        entry(RevokedId::session("two")),
    );
    let theirs = set_of(&[one]);
    b_host.interleave(move |store| {
        store.set(SET_KEY, &theirs, None);
    });
    assert_eq!(b.add(&mut b_host, &[two]), Ok(vec![two]));
    assert!(b.set().contains(&one.id), "B's retry read A's entry");
    assert!(a.take_in(&mut a_host), "A learns both on its tick");
    assert!(a.set().contains(&one.id) && a.set().contains(&two.id));
    assert!(
        !a.take_in(&mut a_host),
        "and reads nothing more until the next write"
    );
    assert_eq!(
        a.add(&mut a_host, &[one]),
        Ok(vec![]),
        "nothing new to publish"
    );
}

#[test]
fn a_logout_token_taken_in_by_another_worker_between_read_and_write_is_a_replay() {
    let mut a_host = FakeHost::new(1_800_000_000_000);
    Revocations::prepare(&mut a_host);
    let mut b_host = a_host.sibling(2);
    let mut b = Revocations::new();
    let jti = entry(RevokedId::logout_jti(ISSUER, "j-1"));
    let by_user = entry(RevokedId::user(ISSUER, "alice-id"));
    let theirs = set_of(&[jti, by_user]);
    b_host.interleave(move |store| {
        store.set(SET_KEY, &theirs, None);
    });
    assert_eq!(
        b.add_once(&mut b_host, jti, &[by_user]),
        Err(NotAdded::Replayed)
    );
    let mut c = Revocations::new();
    let other = entry(RevokedId::logout_jti(ISSUER, "j-2"));
    assert_eq!(c.add_once(&mut a_host, other, &[]), Ok(vec![other]));
}

#[test]
fn past_its_bound_the_shared_set_drops_what_it_would_forget_soonest_and_says_so() {
    let mut host = FakeHost::new(1_800_000_000_000);
    Revocations::prepare(&mut host);
    let mut revocations = Revocations::new();
    let entries: Vec<Entry> = (0..=MAX_ENTRIES as u64)
        .map(|i| Entry {
            id: RevokedId::session(&i.to_string()),
            revoked_at: 1_800_000_000,
            until: 1_800_000_100 + i,
        })
        .collect();
    let added = revocations.add(&mut host, &entries).unwrap();
    assert_eq!(added.len(), MAX_ENTRIES + 1);
    assert_eq!(revocations.set().len(), MAX_ENTRIES);
    assert!(
        !revocations.set().contains(&entries[0].id),
        "the soonest forgotten"
    );
    assert!(revocations.set().contains(&entries[MAX_ENTRIES].id));
    assert!(
        host.log
            .borrow()
            .iter()
            .any(|(s, l)| *s == Severity::Warn && l.contains("revocation set is full")),
        "{:?}",
        host.log.borrow()
    );
    host.advance(20_000_000);
    let later = Entry {
        id: RevokedId::session("later"),
        revoked_at: 1_800_020_000,
        until: 1_800_030_000,
    };
    revocations.add(&mut host, &[later]).unwrap();
    assert_eq!(
        revocations.set().len(),
        1,
        "expired entries are pruned on write"
    );
}

/// A logout token is signed with the IdP's keys and addressed to the client: as a bearer
/// token where the provider's audiences include the client id, it must not pass.
#[test]
fn a_logout_token_is_never_a_bearer_token() {
    let mut bed = Bed::new(&json!({ "providers": [provider()] }));
    let event = json!({ BACKCHANNEL_EVENT: {} });
    let claims = mint::claims_with(ISSUER, AUDIENCE, json!({ "events": event, "sid": "s1" }));
    let control = bearer(
        &shared_keys()
            .signer("ES256")
            .sign(&mint::claims(ISSUER, AUDIENCE)),
    );
    forwarded(bed.get("api.example.com", "/", &with_bearer(&control)));
    let typed = shared_keys()
        .signer("ES256")
        .sign_as_logout(&mint::claims(ISSUER, AUDIENCE));
    let with_events = shared_keys().signer("ES256").sign(&claims);
    for token in [typed, with_events] {
        let reply = responded(bed.get("api.example.com", "/", &with_bearer(&bearer(&token))));
        assert_eq!(reply.status, 401, "{reply:?}");
    }
}
