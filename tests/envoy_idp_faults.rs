//! Faults of the IdP, through real Envoy: discovery, JWKS and the token endpoint answer late
//! (after the callout timeout), reset or close the connection, answer 5xx/4xx, binary
//! garbage, 10 MB, JSON nested 10,000 deep, fields of the wrong types, bytes that are not
//! HTTP, or a header that is not UTF-8. Whatever the IdP does, the VM lives, bearer requests
//! fail closed (503 + Retry-After) until keys were ever fetched, cached keys keep working when
//! a refresh fails, and a failed code exchange ends in a "Sign-in failed" page, never a session.
//!
//! One Envoy (one worker) per test; a fault that kills the VM is reported and Envoy restarted,
//! so every fault is judged on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::envoy_faulty_idp_bed::{
    eventually, session_cookies, GatewayBed, API_HOST, AUDIENCE, CLIENT_ID, LOGIN_HOST,
};
use support::fault_idp::{Fault, FaultIdp};
use support::mint::{claims_with, now_secs, other_keys};
use support::raw::{RawRequest, RawResponse};

/// Callouts time out after 1 s (the fault IdP's late answers come after 2 s); requests wait
/// at most 500 ms for keys; every unknown `kid` may trigger a refetch at once.
fn provider() -> serde_json::Value {
    json!({ "timeout": "1s", "jwks_refresh_interval": "1s", "jwks_min_refetch_interval": "0s" })
}

fn login() -> serde_json::Value {
    json!({ "timeout": "1s" })
}

fn top() -> serde_json::Value {
    json!({ "keys_wait_timeout": "500ms" })
}

/// Every request here is answered within the key wait (500 ms) plus a callout timeout (1 s);
/// a request still unanswered after this has been left hanging.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

fn short(response: &RawResponse) -> String {
    let body: String = response.body_text().chars().take(160).collect();
    format!("{} {body:?}", response.status)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Discovery,
    Jwks,
}

impl Endpoint {
    fn hits(self, idp: &FaultIdp) -> usize {
        match self {
            Endpoint::Discovery => idp.discovery_hits(),
            Endpoint::Jwks => idp.jwks_hits(),
        }
    }
}

/// After a fault: the VM must not have crashed, and `alive` must hold (else Envoy restarts,
/// with `prepare` run before it so the new VM can come up as the test needs).
fn check_vm(
    bed: &mut GatewayBed,
    crashes_before: usize,
    alive: impl Fn(&GatewayBed) -> Result<(), String>,
    prepare_restart: impl Fn(&GatewayBed),
    problems: &mut Vec<String>,
) {
    let crashes = bed.crash_lines();
    if crashes.len() > crashes_before {
        problems.push(format!("VM crashed: {}", crashes[crashes_before]));
    }
    if let Err(dead) = alive(bed) {
        problems.push(format!("VM dead afterwards: {dead}"));
        prepare_restart(bed);
        bed.restart_envoy();
    }
}

fn finish(report: Vec<String>, failures: Vec<String>, bed: &GatewayBed) {
    if failures.is_empty() {
        println!("{}", report.join("\n")); // with --nocapture: what each fault got
    }
    assert!(
        failures.is_empty(),
        "{} of {} faults failed (Envoy restarted {} times):\n{}\n\nall faults:\n{}",
        failures.len(),
        report.len(),
        bed.restarts,
        failures.join("\n"),
        report.join("\n"),
    );
}

/// A 503 that is the filter failing closed: `Retry-After`, and for bearer requests the JSON
/// error `temporarily_unavailable` (a dead VM's 503 has neither).
fn fail_closed_problem(
    what: &str,
    response: &Result<RawResponse, String>,
    json_error: bool,
) -> Option<String> {
    let response = match response {
        Ok(r) => r,
        Err(e) => return Some(format!("{what}: no answer: {e}")),
    };
    let retry_after = response.header("retry-after").is_some();
    let error_ok = !json_error || response.json()["error"] == "temporarily_unavailable";
    (response.status != 503 || !retry_after || !error_ok).then(|| {
        format!(
            "{what}: expected 503 with Retry-After{}, got {} (retry-after: {:?})",
            if json_error {
                " and temporarily_unavailable"
            } else {
                ""
            },
            short(response),
            response.header("retry-after")
        )
    })
}

/// A live filter answers a request without credentials itself, with 401.
fn filter_answers_401(bed: &GatewayBed) -> Result<(), String> {
    let request = RawRequest::get("/no-token").host(API_HOST);
    let mut last = String::new();
    let ok = eventually(Duration::from_millis(500), || match bed.send(&request) {
        Ok(r) if r.status == 401 => true,
        Ok(r) => {
            last = short(&r);
            false
        }
        Err(e) => {
            last = e;
            false
        }
    });
    if ok {
        Ok(())
    } else {
        Err(format!("a request without a token got {last}"))
    }
}

#[test]
fn while_no_keys_were_ever_fetched_every_idp_fault_fails_closed_with_503_and_retry_after() {
    let idp = FaultIdp::start(CLIENT_ID);
    let faults = Fault::all_faults();
    idp.set_discovery(faults[0].1.clone());
    let mut bed = GatewayBed::try_start_with(idp, provider(), login(), top())
        .unwrap_or_else(|log| panic!("Envoy refused the configuration:\n{log}"));
    bed.answer_within = ANSWER_WITHIN;
    let token = bed.token("no-keys");
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for endpoint in [Endpoint::Discovery, Endpoint::Jwks] {
        for (name, fault) in &faults {
            let label = format!("{endpoint:?} {name}");
            let (discovery, jwks) = match endpoint {
                Endpoint::Discovery => (fault.clone(), Fault::Correct),
                _ => (Fault::Correct, fault.clone()),
            };
            bed.idp.set_discovery(discovery);
            bed.idp.set_jwks(jwks);
            let crashes_before = bed.crash_lines().len();
            let hits_before = endpoint.hits(&bed.idp);
            let mut problems = Vec::new();
            let mut seen = Vec::new();
            // Rounds of a bearer request and a browser navigation, until the fault was served.
            let exercised = eventually(Duration::from_secs(8), || {
                let (bearer, browser) = std::thread::scope(|scope| {
                    let bearer = scope
                        .spawn(|| bed.send(&RawRequest::get("/api").host(API_HOST).bearer(&token)));
                    let browser = scope.spawn(|| {
                        bed.send(&RawRequest::get("/graph").host(LOGIN_HOST).navigation())
                    });
                    (bearer.join().unwrap(), browser.join().unwrap())
                });
                seen.push(format!(
                    "{}/{}",
                    bearer.as_ref().map_or(0, |r| r.status),
                    browser.as_ref().map_or(0, |r| r.status)
                ));
                problems.extend(fail_closed_problem("bearer request", &bearer, true));
                problems.extend(fail_closed_problem("browser navigation", &browser, false));
                !problems.is_empty() || endpoint.hits(&bed.idp) > hits_before
            });
            if !exercised {
                problems.push("the fault was never served: no fetch reached the IdP".into());
            }
            check_vm(
                &mut bed,
                crashes_before,
                filter_answers_401,
                |_| {},
                &mut problems,
            );
            let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
            report.push(format!("{verdict:4} {:>12}  {label}", seen.join(",")));
            if !problems.is_empty() {
                problems.dedup();
                failures.push(format!("{label}:\n    {}", problems.join("\n    ")));
            }
        }
    }
    bed.idp.set_discovery(Fault::Correct);
    bed.idp.set_jwks(Fault::Correct);
    let recovered = eventually(Duration::from_secs(10), || {
        bed.check_alive("recovered").is_ok()
    });
    if !recovered {
        failures.push(format!(
            "after the IdP recovered, a valid token still fails: {:?}",
            bed.check_alive("recovered")
        ));
    }
    finish(report, failures, &bed);
}

#[test]
fn cached_keys_keep_working_when_a_refresh_meets_any_idp_fault() {
    let mut bed = GatewayBed::start(provider(), login(), top());
    bed.answer_within = ANSWER_WITHIN;
    bed.wait_for_keys();
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    let faults = Fault::all_faults();
    let mut n = 0;
    for endpoint in [Endpoint::Jwks, Endpoint::Discovery] {
        for (name, fault) in &faults {
            let label = format!("{endpoint:?} {name}");
            // A discovery fault is only met when a fetch starts with discovery, which it does
            // after any failure: the JWKS fails too, so no fetch in this phase can succeed.
            let (discovery, jwks) = match endpoint {
                Endpoint::Discovery => (fault.clone(), Fault::Status(503)),
                _ => (Fault::Correct, fault.clone()),
            };
            bed.idp.set_discovery(discovery);
            bed.idp.set_jwks(jwks);
            let crashes_before = bed.crash_lines().len();
            let hits_before = endpoint.hits(&bed.idp);
            let mut problems = Vec::new();
            let mut seen = Vec::new();
            let exercised = eventually(Duration::from_secs(8), || {
                n += 1;
                // An unknown kid forces a refetch now; it must end in 401, never a 5xx.
                let stranger = other_keys().signer("ES256").sign(&claims_with(
                    &bed.issuer(),
                    AUDIENCE,
                    json!({ "jti": format!("stranger-{n}") }),
                ));
                let refetch = bed.send(&RawRequest::get("/api").host(API_HOST).bearer(&stranger));
                // A token never seen before is verified with the cached keys.
                let fresh = bed.send(
                    &RawRequest::get("/api")
                        .host(API_HOST)
                        .bearer(&bed.token(&format!("fresh-{n}-{}", now_secs()))),
                );
                let (refetch_status, fresh_status) = (
                    refetch.as_ref().map_or(0, |r| r.status),
                    fresh.as_ref().map_or(0, |r| r.status),
                );
                seen.push(format!("{refetch_status}/{fresh_status}"));
                if refetch_status != 401 {
                    problems.push(format!(
                        "unknown kid during the fault: expected 401, got {}",
                        refetch.as_ref().map_or_else(|e| e.clone(), short)
                    ));
                }
                let identity = fresh
                    .as_ref()
                    .map(|r| r.json()["headers"]["x-auth-request-user"] == json!(["alice-id"]))
                    .unwrap_or(false);
                if fresh_status != 200 || !identity {
                    problems.push(format!(
                        "valid token during the fault: expected 200 with the identity, got {}",
                        fresh.as_ref().map_or_else(|e| e.clone(), short)
                    ));
                }
                !problems.is_empty() || endpoint.hits(&bed.idp) > hits_before
            });
            if !exercised {
                problems.push("the fault was never served: no refetch reached the IdP".into());
            }
            let prepare = |bed: &GatewayBed| {
                bed.idp.set_discovery(Fault::Correct);
                bed.idp.set_jwks(Fault::Correct);
            };
            let before = bed.restarts;
            check_vm(
                &mut bed,
                crashes_before,
                |bed| bed.check_alive("after fault"),
                prepare,
                &mut problems,
            );
            if bed.restarts > before {
                bed.wait_for_keys();
            }
            let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
            report.push(format!("{verdict:4} {:>16}  {label}", seen.join(",")));
            if !problems.is_empty() {
                problems.dedup();
                failures.push(format!("{label}:\n    {}", problems.join("\n    ")));
            }
        }
    }
    assert!(
        bed.log_count(&["keeping the last good keys"]) > 0 || !failures.is_empty(),
        "failed refreshes are logged as keeping the last good keys:\n{}",
        bed.filter_log()
    );
    finish(report, failures, &bed);
}

#[test]
fn token_endpoint_faults_during_login_end_in_a_sign_in_failed_page_without_a_session() {
    let mut bed = GatewayBed::start(provider(), login(), top());
    bed.answer_within = ANSWER_WITHIN;
    bed.wait_for_keys();
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    let mut faults = vec![("correct answer (control)", Fault::Correct)];
    faults.extend(Fault::all_faults());
    faults.push(("HTTP 400 invalid_grant", Fault::Status(400)));
    for (name, fault) in faults {
        let label = format!("token endpoint {name}");
        bed.idp.set_token(fault.clone());
        let crashes_before = bed.crash_lines().len();
        let hits_before = bed.idp.token_hits();
        let mut problems = Vec::new();
        let outcome = bed.start_login("/graph?g0.expr=up").and_then(|started| {
            let back = bed.finish_login(&started)?;
            Ok(back)
        });
        let seen = match &outcome {
            Err(e) => {
                problems.push(e.clone());
                "-".to_string()
            }
            Ok(back) => {
                let sessions = session_cookies(back);
                if fault == Fault::Correct {
                    if back.status != 302 || sessions.is_empty() {
                        problems.push(format!(
                            "a correct token answer must log in: {}",
                            back.summary()
                        ));
                    }
                } else {
                    if !matches!(back.status, 401 | 502) {
                        problems.push(format!("expected 401 or 502, got {}", short(back)));
                    }
                    let html = back
                        .header("content-type")
                        .is_some_and(|t| t.starts_with("text/html"));
                    if !html || !back.body_text().contains("Sign-in failed") {
                        problems.push(format!(
                            "expected an HTML page saying \"Sign-in failed\": {}",
                            back.summary()
                        ));
                    }
                    if !sessions.is_empty() {
                        problems.push(format!("a session cookie was set: {sessions:?}"));
                    }
                }
                back.status.to_string()
            }
        };
        if bed.idp.token_hits() <= hits_before {
            problems.push("the token endpoint was never called".into());
        }
        let before = bed.restarts;
        check_vm(
            &mut bed,
            crashes_before,
            |bed| bed.check_alive("after token fault"),
            |_| {},
            &mut problems,
        );
        if bed.restarts > before {
            bed.wait_for_keys();
        }
        let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
        report.push(format!("{verdict:4} {seen:>4}  {label}"));
        if !problems.is_empty() {
            failures.push(format!("{label}:\n    {}", problems.join("\n    ")));
        }
    }
    finish(report, failures, &bed);
}

#[test]
fn an_idp_whose_answers_carry_a_header_that_is_not_utf8_kills_no_vm_and_still_works() {
    let idp = FaultIdp::start(CLIENT_ID);
    idp.set_discovery(Fault::NonUtf8Header);
    idp.set_jwks(Fault::NonUtf8Header);
    idp.set_token(Fault::NonUtf8Header);
    let mut bed = GatewayBed::try_start_with(idp, provider(), login(), top())
        .unwrap_or_else(|log| panic!("Envoy refused the configuration:\n{log}"));
    bed.answer_within = ANSWER_WITHIN;
    let keys = eventually(Duration::from_secs(5), || {
        bed.check_alive("odd header").is_ok() || !bed.crash_lines().is_empty()
    });
    assert!(
        bed.crash_lines().is_empty(),
        "discovery/JWKS answers with `Cache-Control: max-age=60, \\xff\\xfe\\xc3\\x28` crashed the VM:\n{}",
        bed.crash_lines().join("\n")
    );
    assert!(
        keys,
        "keys from answers with a non-UTF-8 Cache-Control never became usable: {:?}",
        bed.check_alive("odd header")
    );
    let login = bed.login("/graph");
    assert!(
        bed.crash_lines().is_empty(),
        "a token endpoint answer with a non-UTF-8 Cache-Control crashed the VM:\n{}",
        bed.crash_lines().join("\n")
    );
    let (session, back) = login.unwrap_or_else(|e| panic!("login: {e}"));
    assert_eq!(
        back.header("location").as_deref(),
        Some("/graph"),
        "{}",
        back.summary()
    );
    let page = bed
        .send(
            &RawRequest::get("/graph")
                .host(LOGIN_HOST)
                .navigation()
                .header("Cookie", &session),
        )
        .expect("answer");
    assert_eq!(page.status, 200, "{}", page.summary());
    bed.check_alive("end").expect("VM alive");
}
