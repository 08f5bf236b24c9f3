//! Refresh coordination across workers, natively: several workers share one in-memory
//! shared-data store (with Envoy's compare-and-swap), race for refreshes, let leases run
//! out, and see a refresh refused while other requests wait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;
use support::random::Counter;
use support::shared::{OnStore, Worker};
use wasm_iap::core::config::login::LoginService;
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::refresh::{self, Claim, Lease};
use wasm_iap::core::login::refresh_slots::{RESULT_KEPT_MS, SLOTS};
use wasm_iap::core::login::session::Session;
use wasm_iap::core::shared_data::SharedData;

const NOW_MS: u64 = 1_800_000_000_000;

/// A login service (token endpoint timeout 5 s: a lease lasts 11 s), for the whole test.
fn service() -> &'static LoginService {
    let config = json!({
        "providers": [{ "issuer": "https://dex.example.com", "audiences": ["grafana"],
                        "jwks": support::mint::shared_keys().jwks_of(&["ES256"]) }],
        "login": [{
            "hosts": ["grafana.example.com"], "issuer": "https://dex.example.com",
            "client_id": "grafana", "client_secret": "s3cret",
            "cookie_secrets": ["a-cookie-secret-of-at-least-32-bytes!"], "cluster": "dex",
            "authorization_endpoint": "https://dex.example.com/auth",
            "token_endpoint": "https://dex.example.com/token", "timeout": "5s",
        }],
    });
    let settings: &'static Settings =
        Box::leak(Box::new(Settings::parse(&config.to_string()).unwrap()));
    &settings.login[0]
}

fn session(sid: &str, refresh_at: u64) -> Session {
    Session {
        sid: sid.into(),
        user: "alice".into(),
        email: None,
        groups: vec![],
        expires_at: refresh_at + 3600,
        refresh_at,
        refresh_token: None,
        id_token: None,
        ..Session::default()
    }
}

/// A fresh store with the service's slots written, as every VM does at start.
fn workers() -> (Worker, Worker, Worker) {
    let a = Worker::default();
    refresh::init_slots(&mut a.clone(), &service().idps.first().client_id);
    (a.clone(), a.sibling(), a.sibling())
}

/// What a request whose session expired does, on `worker`: like the gateway, it claims and,
/// when a slot is free, takes it.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Refresh(Lease),
    Adopt(Box<Session>),
    Ended,
    KeepOld,
}

fn claim(worker: &mut dyn SharedData, s: &Session, now: u64) -> Got {
    match refresh::claim(worker, service(), s, now) {
        Claim::Free(candidate) => {
            match refresh::take(worker, candidate, service(), now, format!("m{now}")) {
                Some(lease) => Got::Refresh(lease),
                None => Got::KeepOld,
            }
        }
        Claim::Adopt(session) => Got::Adopt(session),
        Claim::Ended => Got::Ended,
        Claim::KeepOld => Got::KeepOld,
    }
}

#[test]
fn two_workers_racing_for_one_expired_session_refresh_it_once() {
    let (mut a, _, _) = workers();
    let old = session("sid-race", 1_799_999_000);
    let b_claim = Rc::new(RefCell::new(None));
    let (b_old, b_out) = (old.clone(), Rc::clone(&b_claim));
    // B reads and writes between A's read of the slots and A's write of its lease.
    a.interleave(move |store| {
        *b_out.borrow_mut() = Some(claim(&mut OnStore(store), &b_old, NOW_MS));
    });
    let a_claim = claim(&mut a, &old, NOW_MS);
    let b_claim = b_claim.borrow_mut().take().unwrap();
    let refreshing = [&a_claim, &b_claim]
        .iter()
        .filter(|c| matches!(c, Got::Refresh(_)))
        .count();
    assert_eq!(
        refreshing, 1,
        "exactly one refresh: {a_claim:?} / {b_claim:?}"
    );
    assert!(
        matches!(a_claim, Got::KeepOld),
        "the loser keeps the old session"
    );
}

#[test]
fn requests_during_a_refresh_keep_the_old_session_and_a_lease_that_runs_out_is_taken_over() {
    let (mut a, mut b, _) = workers();
    let old = session("sid-lease", 1_799_999_000);
    let Got::Refresh(_) = claim(&mut a, &old, NOW_MS) else {
        panic!("the first request refreshes")
    };
    assert_eq!(claim(&mut b, &old, NOW_MS + 1_000), Got::KeepOld);
    // A's worker died with the lease (2 x 5 s timeout + 1 s): after it, B refreshes.
    assert_eq!(claim(&mut b, &old, NOW_MS + 10_999), Got::KeepOld);
    assert!(matches!(
        claim(&mut b, &old, NOW_MS + 11_000),
        Got::Refresh(_)
    ));
}

#[test]
fn a_refused_refresh_ends_the_session_for_every_request_still_carrying_it() {
    let (mut a, mut b, mut c) = workers();
    let old = session("sid-ended", 1_799_999_000);
    let Got::Refresh(lease) = claim(&mut a, &old, NOW_MS) else {
        panic!("A refreshes")
    };
    assert_eq!(
        claim(&mut b, &old, NOW_MS + 10),
        Got::KeepOld,
        "B waits on A"
    );
    refresh::publish_ended(&mut a, &lease, NOW_MS + 20);
    assert_eq!(claim(&mut b, &old, NOW_MS + 30), Got::Ended);
    assert_eq!(claim(&mut c, &old, NOW_MS + 40), Got::Ended);
    assert_eq!(
        refresh::renewed_elsewhere(&b, &lease, service(), NOW_MS + 40),
        None
    );
}

#[test]
fn a_renewed_session_is_adopted_by_requests_with_the_old_cookie_until_forgotten() {
    let (mut a, mut b, _) = workers();
    let old = session("sid-renewed", 1_799_999_000);
    let Got::Refresh(lease) = claim(&mut a, &old, NOW_MS) else {
        panic!("A refreshes")
    };
    let renewed = session("sid-renewed", 1_800_000_300);
    let sealed = refresh::seal(service(), &renewed, &mut Counter(3));
    assert!(refresh::publish_renewed(
        &mut a,
        &lease,
        sealed.as_deref(),
        NOW_MS + 50
    ));
    assert_eq!(
        claim(&mut b, &old, NOW_MS + 60),
        Got::Adopt(Box::new(renewed.clone()))
    );
    assert_eq!(
        refresh::renewed_elsewhere(&b, &lease, service(), NOW_MS + 60),
        Some(renewed)
    );
    // After the grace period, the result is gone: a late old cookie refreshes again.
    refresh::forget(&mut a, &lease);
    assert!(matches!(
        claim(&mut b, &old, NOW_MS + 60 + RESULT_KEPT_MS),
        Got::Refresh(_)
    ));
}

#[test]
fn a_crowded_ring_delays_a_refresh_but_never_overwrites_another_session() {
    let (mut a, _, _) = workers();
    let target = session("sid-target", 1_799_999_000);
    // Fill the target's probe slots with live leases of other sessions.
    let mut refreshes = 0;
    for i in 0..200_000u64 {
        if refreshes == 4 {
            break;
        }
        let other = session(&format!("sid-{i}"), 1_799_999_000);
        let target_keys = wasm_iap::core::login::refresh_slots::Generation::new(
            "grafana",
            &target.sid,
            target.refresh_at,
        )
        .slot_keys("grafana");
        let other_keys = wasm_iap::core::login::refresh_slots::Generation::new(
            "grafana",
            &other.sid,
            other.refresh_at,
        )
        .slot_keys("grafana");
        if other_keys[0] != target_keys[refreshes] {
            continue;
        }
        assert!(matches!(claim(&mut a, &other, NOW_MS), Got::Refresh(_)));
        refreshes += 1;
    }
    assert_eq!(refreshes, 4, "found sessions for every probe slot");
    assert_eq!(claim(&mut a, &target, NOW_MS), Got::KeepOld);
}

#[test]
fn refreshes_over_months_never_grow_shared_data_past_the_ring_and_restarts_keep_leases() {
    let (mut a, _, _) = workers();
    let written = a.keys();
    assert_eq!(written as u64, SLOTS, "every slot written at start");
    let mut live = None;
    for i in 0..5_000u64 {
        let old = session(&format!("sid-{}", i % 300), 1_799_000_000 + i);
        let now = NOW_MS + i * 60_000;
        if let Got::Refresh(lease) = claim(&mut a, &old, now) {
            let renewed = session(&old.sid, old.refresh_at + 300);
            let sealed = refresh::seal(service(), &renewed, &mut Counter(1));
            refresh::publish_renewed(&mut a, &lease, sealed.as_deref(), now);
            live = Some((lease, old, now));
        }
    }
    assert_eq!(a.keys(), written, "no key beyond the ring");
    // A VM that starts again writes only absent slots: the live result is still there.
    refresh::init_slots(&mut a, "grafana");
    let (lease, old, now) = live.unwrap();
    assert!(refresh::renewed_elsewhere(&a, &lease, service(), now).is_some());
    assert!(matches!(claim(&mut a, &old, now), Got::Adopt(_)));
}

#[test]
fn a_refresh_waiting_for_keys_keeps_its_lease_and_a_late_worker_never_overwrites_the_slot() {
    let (mut a, mut b, _) = workers();
    let old = session("sid-extend", 1_799_999_000);
    let Got::Refresh(lease) = claim(&mut a, &old, NOW_MS) else {
        panic!("A refreshes")
    };
    // A's refreshed ID token waits for keys: it keeps the lease past its first deadline.
    assert!(refresh::extend(&mut a, &lease, NOW_MS + 30_000));
    assert_eq!(
        claim(&mut b, &old, NOW_MS + 20_000),
        Got::KeepOld,
        "no second refresh"
    );
    // Without an extension the lease runs out and B takes over; A, late, writes nothing.
    let Got::Refresh(b_lease) = claim(&mut b, &old, NOW_MS + 30_000) else {
        panic!("B takes over once A's lease ran out")
    };
    assert!(
        !refresh::extend(&mut a, &lease, NOW_MS + 60_000),
        "A's lease is gone"
    );
    refresh::publish_ended(&mut a, &lease, NOW_MS + 30_001);
    refresh::release(&mut a, &lease);
    assert_eq!(
        claim(&mut a, &old, NOW_MS + 30_002),
        Got::KeepOld,
        "B's lease still stands"
    );
    let renewed = session("sid-extend", 1_800_000_600);
    let sealed = refresh::seal(service(), &renewed, &mut Counter(9));
    assert!(refresh::publish_renewed(
        &mut b,
        &b_lease,
        sealed.as_deref(),
        NOW_MS + 30_003
    ));
    assert_eq!(
        claim(&mut a, &old, NOW_MS + 30_004),
        Got::Adopt(Box::new(renewed))
    );
}
