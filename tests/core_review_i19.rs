//! Issue 19 under attack, natively: several IdPs per login service (the callback of a
//! login started with one IdP carrying another's response), signed identity assertions,
//! sign-in hints and the idle timeout, each driven through the gateway as a browser or an
//! attacker would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::native_bed::*;
use support::native_two_idps::*;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::Metric;
use wasm_iap::core::reply::Reply;

/// A login started with `provider`: its login cookie as the browser sends it back, and its
/// state.
fn started(bed: &mut Bed, provider: &str) -> (String, String) {
    let path = format!("/oauth2/start?provider={provider}&rd=%2Fdash");
    let start: Reply = responded(bed.get(APP, &path, &BROWSER));
    let login_cookie = start.set_cookies().find(|c| c.contains("_login_")).unwrap();
    let state = param(start.header("location").unwrap(), "state").unwrap();
    (support::sent_back(login_cookie).to_string(), state)
}

fn callback(bed: &mut Bed, cookie: &str, query: &str) -> Decision {
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", cookie));
    bed.get(APP, &format!("/oauth2/callback?{query}"), &headers)
}

/// Mix-up (RFC 9207): a login started with `home` (say, an IdP anyone can run) whose
/// authorization request was bounced to `corp`, which answers the shared callback with its
/// own code and `iss`. The code is `corp`'s: sent to `home`'s token endpoint, with the PKCE
/// verifier beside it, `home` could redeem it as the victim. It must go nowhere.
#[test]
fn a_callback_whose_iss_names_another_idp_never_sends_its_code_anywhere() {
    let mut bed = Bed::new(&config(json!({})));
    let (cookie, state) = started(&mut bed, "home");
    let calls = bed.host.calls.len();
    let iss: String = url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect();
    let decision = callback(
        &mut bed,
        &cookie,
        &format!("code=c0de&state={state}&iss={iss}"),
    );
    assert_eq!(
        bed.host.calls.len(),
        calls,
        "no token call for a response of another issuer: {:?}",
        bed.host.calls.last()
    );
    let reply = responded(decision);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.set_cookies().any(|c| c.contains("_login_")),
        "the login is over: its cookie is cleared"
    );
    // Its own IdP's `iss`, or none (an IdP without RFC 9207), still exchanges the code.
    for query in [
        format!(
            "code=c0de&state={state}&iss={}",
            url::form_urlencoded::byte_serialize(HOME_ISSUER.as_bytes()).collect::<String>()
        ),
        format!("code=c0de&state={state}"),
    ] {
        let (cookie, state_now) = started(&mut bed, "home");
        let query = query.replace(&state, &state_now);
        let decision = callback(&mut bed, &cookie, &query);
        assert!(matches!(decision, Decision::Calling(_)), "{decision:?}");
        assert_eq!(bed.host.calls.last().unwrap().cluster, "home");
    }
}

/// A browser with no session at a protected path of a service with several IdPs is shown
/// the chooser (`200`, the page is the way to sign in). It was not let in: the access log and
/// the metrics must not say `allow` (an audit of who opened what would list an anonymous
/// client); it is sent to sign in, as a redirect to the one IdP would be.
#[test]
fn the_chooser_is_recorded_and_counted_as_sent_to_sign_in_never_as_allowed() {
    let mut bed = Bed::new(&config(json!({})));
    for path in ["/dash", "/oauth2/start?rd=%2Fdash"] {
        let chooser = responded(bed.get(APP, path, &BROWSER));
        assert_eq!(chooser.status, 200, "{chooser:?}");
        assert!(chooser.body.contains("/oauth2/start?provider=home"));
        assert_eq!(
            chooser.access_log.as_deref(),
            Some("decision=redirect reason=redirected service=\"app.example.com\""),
            "{path}"
        );
    }
    bed.tick();
    assert_eq!(bed.host.count_of(Metric::Allowed), 0);
    assert_eq!(bed.host.count_of(Metric::Redirected), 2);
}

/// The JWKS is answered before anything else, on any host and without credentials. At the
/// path of one of our own endpoints it would answer that endpoint with a `200`: an NGINX
/// `auth_request` check at `/oauth2/auth` (or an Envoy `ext_authz` check under it) would
/// pass every request, and a sign-in endpoint would stop working. Such a path is refused.
#[test]
fn a_jwks_path_that_would_shadow_one_of_our_endpoints_is_a_configuration_error() {
    use jwt_simple::prelude::ES256KeyPair;
    let pem = ES256KeyPair::generate().to_pem().unwrap();
    let config = |jwks_path: &str| {
        json!({
            "providers": [provider()],
            "identity_assertion": {
                "jwks_path": jwks_path,
                "keys": [{ "kid": "k1", "algorithm": "ES256", "private_key": pem }],
            },
            "login": [login_service(APP, "app", "_app", json!({ "identity_assertion": true }))],
        })
    };
    // The bypass, shown once: a check of a protected request at the JWKS' path passes.
    let shadowing = config("/oauth2/auth");
    if let Ok(settings) = wasm_iap::core::config::Settings::parse(&shadowing.to_string()) {
        let mut bed = Bed::with_settings(std::rc::Rc::new(settings));
        let check = bed.get(
            APP,
            "/oauth2/auth",
            &[("x-original-url", "https://app.example.com/admin")],
        );
        panic!("accepted, and a check without credentials is answered: {check:?}");
    }
    for path in [
        "/oauth2/auth",
        "/oauth2/auth/keys.json",
        "/oauth2/userinfo",
        "/ping",
        "/ready",
        "/oauth2/callback",
        "/oauth2/start",
        "/oauth2/sign_out",
        "/oauth2/backchannel_logout",
    ] {
        let problems = wasm_iap::core::config::Settings::parse(&config(path).to_string())
            .expect_err("a configuration error");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("identity_assertion.jwks_path")),
            "{path}: {problems:?}"
        );
    }
    assert!(wasm_iap::core::config::Settings::parse(
        &config("/.well-known/wasm-iap/jwks.json").to_string()
    )
    .is_ok());
}

/// The JWKS is answered only at its exact path (any query): a variant of it is a path of
/// the app like any other, judged by the rules, so it never goes upstream without a caller.
#[test]
fn only_the_exact_jwks_path_is_public_and_its_variants_are_judged_by_the_rules() {
    use jwt_simple::prelude::ES256KeyPair;
    let pem = ES256KeyPair::generate().to_pem().unwrap();
    let config = json!({
        "providers": [provider()],
        "identity_assertion": {
            "keys": [{ "kid": "k1", "algorithm": "ES256", "private_key": pem }],
        },
        "login": [login_service(APP, "app", "_app", json!({ "identity_assertion": true }))],
    });
    let mut bed = Bed::new(&config);
    let jwks = responded(bed.get(APP, "/.well-known/wasm-iap/jwks.json?x=1", &[JSON]));
    assert_eq!(jwks.status, 200);
    assert!(jwks.body.contains("\"kid\":\"k1\""));
    for variant in [
        "/.well-known/wasm-iap/jwks.json/",
        "/.well-known/wasm-iap/jwks.json/../admin",
        "//.well-known/wasm-iap/jwks.json",
        "/.well-known/wasm-iap/%2e%2e/jwks.json",
        "/.well-known/wasm-iap/jwks%2Ejson",
        "/.WELL-KNOWN/wasm-iap/jwks.json",
        "/.well-known/wasm-iap/jwks.json;x",
    ] {
        match bed.get(APP, variant, &[JSON]) {
            Decision::Respond(reply) => {
                assert!(reply.status >= 400, "{variant}: {reply:?}");
                assert!(!reply.body.contains("\"keys\""), "{variant}: {reply:?}");
            }
            other => panic!("{variant} went on without a caller: {other:?}"),
        }
    }
}

/// The chooser is a `200` page; to a forward-auth check a `2xx` means "let it through". A
/// browser without a session, checked by Envoy's `ext_authz` or NGINX's `auth_request` on a
/// service of several IdPs, gets the check's `401`, never the chooser.
#[test]
fn a_forward_auth_check_of_a_browser_without_a_session_is_never_answered_with_the_chooser() {
    let mut bed = Bed::new(&config(json!({})));
    let mut checks = vec![bed.get(APP, "/oauth2/auth/dash?tab=1", &BROWSER)];
    let mut nginx = BROWSER.to_vec();
    nginx.push(("x-original-url", "https://app.example.com/dash"));
    checks.push(bed.get(APP, "/oauth2/auth", &nginx));
    for check in checks {
        let reply = responded(check);
        assert_eq!(reply.status, 401, "{reply:?}");
        assert!(!reply.body.contains("/oauth2/start?provider="), "{reply:?}");
    }
}
