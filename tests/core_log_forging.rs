//! Log forging, natively: every value a client (or an IdP, or a configuration) chose reaches
//! a log line escaped, so none can end the line and start a forged one (`\r\n[critical]
//! ...`), move a terminal's cursor (`\x1b[2J`) or hide behind a line separator (U+2028).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::mint::{self, forge, shared_keys};
use support::native_bed::*;
use wasm_iap::core::config::Settings;

const API: &str = "api.example.com";
const DASHBOARD: &str = "dashboard.example.com";
/// What an attacker puts in every value: a forged line, a terminal escape, Unicode line
/// breaks, a look-alike, and a backslash.
const HOSTILE: &str = "x\r\n[critical] admin signed in\x1b[2J\u{2028}\u{85}\u{202e}é\\";

fn config() -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(DASHBOARD, "dashboard", "_dash", json!({}))],
        "services": [{
            "hosts": [API],
            "routes": [{ "path_prefix": "/admin", "allow": [{ "groups": ["admins"] }] }],
        }],
    })
}

/// Every line the host was given: printable ASCII only, so one line stays one line.
fn assert_every_line_is_one_printable_line(bed: &Bed) {
    for (_, line) in bed.host.log.borrow().iter() {
        assert!(
            line.chars().all(|c| (' '..='~').contains(&c)),
            "a log line carries raw attacker text: {line:?}"
        );
    }
}

fn logged(bed: &Bed, text: &str) -> bool {
    bed.host.logged(text)
}

fn valid_claims() -> Value {
    mint::claims_with(ISSUER, AUDIENCE, json!({}))
}

#[test]
fn a_token_alg_or_kid_with_crlf_cannot_forge_a_log_line() {
    let mut bed = Bed::new(&config());
    let kid = shared_keys().signer("ES256").kid.clone();
    let tokens = [
        forge(
            &json!({ "alg": HOSTILE, "kid": kid }),
            &valid_claims(),
            b"sig",
        ),
        forge(
            &json!({ "alg": "ES256", "kid": HOSTILE }),
            &valid_claims(),
            &[7; 64],
        ),
        forge(
            &json!({ "alg": "RS256", "kid": kid }),
            &valid_claims(),
            &[7; 64],
        ),
    ];
    for token in &tokens {
        let reply = responded(bed.get(API, "/", &with_bearer(&bearer(token))));
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    assert!(
        logged(&bed, "algorithm x\\r\\n[critical]"),
        "{:#?}",
        bed.host.log
    );
    assert!(
        logged(&bed, "unknown signing key x\\r\\n"),
        "{:#?}",
        bed.host.log
    );
    assert_every_line_is_one_printable_line(&bed);
}

#[test]
fn a_host_or_path_with_crlf_in_a_403_line_stays_one_printable_line() {
    let mut bed = Bed::new(&config());
    let token = bearer(&token(json!({ "groups": ["devs"] })));
    for path in [
        "/admin/x\u{2028}é\u{202e}".to_string(),
        "/admin/%0d%0a[critical]%1b[2J".to_string(),
        format!("/admin/{}", mint::b64("ignored")),
    ] {
        bed.get(API, &path, &with_bearer(&token));
    }
    for host in [
        "api.example.com\r\n[critical] x",
        "api.example.com\u{2028}",
        HOSTILE,
    ] {
        bed.get(host, "/admin/x", &with_bearer(&token));
    }
    // Paths reach the line normalised (percent-encoded) and hosts escaped: a guard for
    // every later way a client's host or path may reach it (a catch-all service).
    assert!(logged(&bed, "403 for user"), "{:#?}", bed.host.log);
    assert_every_line_is_one_printable_line(&bed);
}

#[test]
fn an_idp_error_on_the_callback_cannot_forge_a_log_line() {
    let mut bed = Bed::new(&config());
    let escaped: String = HOSTILE.bytes().map(|b| format!("%{b:02X}")).collect();
    let callback =
        format!("/oauth2/callback?error={escaped}&error_description={escaped}&state=abc");
    bed.get(DASHBOARD, &callback, &BROWSER);
    assert!(
        logged(&bed, "the IdP refused the sign-in: x\\r\\n[critical]"),
        "{:#?}",
        bed.host.log
    );
    assert_every_line_is_one_printable_line(&bed);
}

#[test]
fn configuration_problems_echo_values_on_one_printable_line_each() {
    let mut config = config();
    config[HOSTILE] = json!(true);
    config["services"][0]["hosts"] = json!([HOSTILE]);
    config["login"][0]["cookie_name"] = json!(HOSTILE);
    let Err(problems) = Settings::parse(&config.to_string()) else {
        panic!("a hostile configuration was accepted");
    };
    assert!(problems.len() >= 2, "{problems:#?}");
    for problem in &problems {
        assert!(
            problem.chars().all(|c| (' '..='~').contains(&c)),
            "{problem:?}"
        );
    }
    assert!(
        problems.iter().any(|p| p.contains("x\\r\\n[critical]")),
        "{problems:#?}"
    );
}

#[test]
fn what_an_idp_answers_a_key_fetch_with_cannot_forge_a_log_line() {
    use std::rc::Rc;
    use support::host::FakeHost;
    use wasm_iap::core::gateway::Gateway;
    use wasm_iap::core::keys::fetch::CalloutResponse;
    use wasm_iap::core::keys::fetcher::KeyFetcher;

    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "dex" }],
    });
    let settings = Rc::new(Settings::parse(&config.to_string()).unwrap());
    let mut host = FakeHost::new(mint::now_secs() * 1000);
    let mut gateway = Gateway::new(Rc::clone(&settings));
    let mut keys = KeyFetcher::new(settings);
    keys.tick(&mut host, &mut gateway);
    let discovery = json!({ "issuer": HOSTILE, "jwks_uri": format!("{ISSUER}/keys") });
    let body = discovery.to_string();
    let response = CalloutResponse {
        status: Some(200),
        cache_control: None,
        body: body.as_bytes(),
    };
    let token = host.calls[0].token;
    keys.on_response(&mut host, &mut gateway, token, &response)
        .expect("a fetch of ours");
    assert!(host.logged("names issuer \"x\\r\\n"), "{:#?}", host.log);
    for (_, line) in host.log.borrow().iter() {
        assert!(line.chars().all(|c| (' '..='~').contains(&c)), "{line:?}");
    }
}
