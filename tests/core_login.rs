//! Native tests of the login flow: real settings, ID tokens minted in the test, pinned
//! clock and randomness. No Envoy, no IdP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{json, Value};
use support::mint::{self, claims_with, shared_keys};
use support::random::Counter;
use url::Url;
use wasm_iap::core::bearer::authenticator::Authenticator;
use wasm_iap::core::bearer::error::AuthError;
use wasm_iap::core::config::login::{LoginService, Unauthenticated};
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::login::flow::{self, Endpoints, Forwarding, Request, Step};
use wasm_iap::core::login::oidc::{pkce_challenge, PendingLogin, TokenError, Tokens};
use wasm_iap::core::login::refreshed::{self, Refreshed};
use wasm_iap::core::login::request_kind::RequestHints;
use wasm_iap::core::login::session::{self, Session};
use wasm_iap::core::login::sign_in;
use wasm_iap::core::policy::gate::{Gate, Target};
use wasm_iap::core::random::{NoRandomness, Random};
use wasm_iap::core::reply::Reply;
use wasm_iap::core::secret::Secret;

const ISSUER: &str = "https://dex.example.com";
const SECRET: &str = "a-cookie-secret-of-at-least-32-bytes!";

fn settings(login: Value) -> Settings {
    Settings::parse(&config_with(login).to_string()).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// A plugin configuration with one login service, `login` merged into it.
fn config_with(login: Value) -> Value {
    let mut entry = json!({
        "hosts": ["prometheus.example.com"],
        "issuer": ISSUER,
        "client_id": "prometheus",
        "client_secret": "s3cret",
        "cookie_secrets": [SECRET],
        "cluster": "dex",
        "authorization_endpoint": "https://dex.example.com/auth",
        "token_endpoint": "https://dex.example.com/token",
        "end_session_endpoint": "https://dex.example.com/logout",
    });
    for (k, v) in login.as_object().cloned().unwrap_or_default() {
        entry[k] = v;
    }
    json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["prometheus"], "jwks": shared_keys().jwks() }],
        "login": [entry],
    })
}

fn endpoints() -> Endpoints {
    Endpoints {
        authorization: Url::parse("https://dex.example.com/auth").unwrap(),
        token: Url::parse("https://dex.example.com/token").unwrap(),
        end_session: Some(Url::parse("https://dex.example.com/logout").unwrap()),
    }
}

fn request<'a>(
    path: &'a str,
    cookie: Option<&'a str>,
    accept: &'a str,
    mode: Option<&'a str>,
) -> Request<'a> {
    Request {
        scheme: "https",
        authority: "prometheus.example.com",
        path,
        cookie_header: cookie,
        has_authorization: false,
        hints: RequestHints {
            method: "GET",
            accept: Some(accept),
            sec_fetch_mode: mode,
            x_requested_with: None,
        },
        unauthenticated: Unauthenticated::Auto,
        may_wait: true,
    }
}

const HTML: &str = "text/html,application/xhtml+xml";

fn respond(step: Step) -> wasm_iap::core::reply::Reply {
    match step {
        Step::Respond(reply) | Step::StartLogin(reply) | Step::SignOut { reply, .. } => reply,
        // As inline mode writes it for a program.
        Step::Refuse(refused) => wasm_iap::core::mode::pages::render(refused, false),
        other => panic!("expected a local answer, got {other:?}"),
    }
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[test]
fn browser_without_session_goes_to_the_idp_with_pkce_state_and_nonce() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let now = mint::now_secs();
    let reply = respond(flow::decide(
        service,
        &request("/graph?g0.expr=up", None, HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ));
    assert_eq!(reply.status, 302);
    let location = reply.header("location").unwrap();
    assert!(location.starts_with("https://dex.example.com/auth?"));
    let q = query(location);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "prometheus");
    assert_eq!(
        q["redirect_uri"],
        "https://prometheus.example.com/oauth2/callback"
    );
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43 && q["state"] != q["nonce"]);

    // The login cookie holds state, nonce, verifier and the deep link, sealed; the default
    // name is `__Host-` (Secure, no Domain), which browsers accept only with `Path=/`.
    let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    assert!(
        login_cookie.starts_with("__Host-wasm_iap_login_")
            && login_cookie.contains("Path=/;")
            && login_cookie.contains("HttpOnly")
            && login_cookie.contains("Secure")
    );
    let sealed = support::cookie_value(login_cookie);
    let plain = service
        .idps
        .first()
        .sealer
        .open("login", sealed)
        .expect("sealed for this service");
    let pending: PendingLogin = serde_json::from_slice(&plain).unwrap();
    assert_eq!(pending.state, q["state"]);
    assert_eq!(pending.nonce, q["nonce"]);
    assert_eq!(
        pkce_challenge(pending.verifier.expose()),
        q["code_challenge"]
    );
    assert_eq!(pending.return_to, "/graph?g0.expr=up");
    assert!(
        !login_cookie.contains(&pending.state),
        "the state is not readable in the cookie"
    );
}

#[test]
fn browser_waits_for_discovery_once_then_fails_closed() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let now = mint::now_secs();
    let mut first = request("/graph", None, HTML, Some("navigate"));
    assert!(matches!(
        flow::decide(service, &first, None, now, &mut Counter(0)),
        Step::AwaitEndpoints
    ));
    first.may_wait = false;
    let reply = respond(flow::decide(service, &first, None, now, &mut Counter(0)));
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (503, Some("1"))
    );
    let api = respond(flow::decide(
        service,
        &request("/api", None, "application/json", None),
        None,
        now,
        &mut Counter(0),
    ));
    assert_eq!(
        api.status, 401,
        "API clients never wait for login endpoints"
    );
}

#[test]
fn api_clients_without_session_get_401_and_routes_can_override() {
    let settings = settings(
        json!({ "routes": [{ "path_prefix": "/ui/", "unauthenticated": "login" }, { "path_prefix": "/", "methods": ["GET"], "unauthenticated": "deny" }] }),
    );
    let service = &settings.login[0];
    let now = mint::now_secs();
    // The gate finds the route's choice; the flow carries it out.
    let routed = |path: &'static str, accept: &'static str, mode: Option<&'static str>| {
        let target = Target {
            authority: "prometheus.example.com",
            path_and_query: path,
            method: "GET",
            browser: mode.is_some(),
        };
        let gate = Gate::find(&settings, &target).map_err(|r| r.status());
        let mut request = request(path, None, accept, mode);
        request.unauthenticated =
            gate.map_or(Unauthenticated::Auto, |g| g.unauthenticated(&settings));
        request
    };
    let api = respond(flow::decide(
        service,
        &routed("/ui/x", "application/json", None),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ));
    assert_eq!(api.status, 302, "the route says login");
    let denied = respond(flow::decide(
        service,
        &routed("/graph", HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ));
    assert_eq!(
        denied.status, 401,
        "the route says deny, even for a browser"
    );
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"wasm-iap\"")
    );
}

/// Starts a login as a browser would; returns its `state` and the `name=value` of its login cookie.
fn start_login(
    service: &wasm_iap::core::config::login::LoginService,
    now: u64,
) -> (String, String) {
    let start = respond(flow::decide(
        service,
        &request("/", None, HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(7),
    ));
    let state = query(start.header("location").unwrap())["state"].clone();
    let login_cookie = start.set_cookies().find(|c| c.contains("_login_")).unwrap();
    let cookie = support::sent_back(login_cookie).to_string();
    (state, cookie)
}

#[test]
fn callback_refuses_what_it_cannot_trust() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let now = mint::now_secs();
    let (state, cookie) = start_login(service, now);

    let ok_path = format!("/oauth2/callback?code=abc&state={state}");
    match flow::decide(
        service,
        &request(&ok_path, Some(&cookie), HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ) {
        Step::Exchange { pending, request } => {
            assert_eq!(pending.state, state);
            assert_eq!(request.url.as_str(), "https://dex.example.com/token");
            let body: HashMap<String, String> =
                url::form_urlencoded::parse(request.body.expose().as_bytes())
                    .into_owned()
                    .collect();
            assert_eq!(body["grant_type"], "authorization_code");
            assert_eq!(body["code"], "abc");
            assert_eq!(body["code_verifier"], pending.verifier.expose());
            assert_eq!(
                body["redirect_uri"],
                "https://prometheus.example.com/oauth2/callback"
            );
            assert!(request
                .headers
                .iter()
                .any(|(n, v)| *n == "authorization" && v.starts_with("Basic ")));
            assert!(
                format!("{request:?}").contains("redacted")
                    && !format!("{request:?}").contains("abc"),
                "secrets never print"
            );
        }
        other => panic!("expected a code exchange, got {other:?}"),
    }

    let other_state = "X".repeat(43);
    let cases = [
        (
            format!("/oauth2/callback?error=access_denied&state={state}"),
            Some(cookie.clone()),
            403,
        ),
        (
            format!("/oauth2/callback?state={state}"),
            Some(cookie.clone()),
            400,
        ),
        (
            format!("/oauth2/callback?code=abc&state={state}"),
            None,
            400,
        ),
        (
            format!("/oauth2/callback?code=abc&state={other_state}"),
            Some(cookie.replace(&state[..16], &other_state[..16])),
            400,
        ),
        (
            format!("/oauth2/callback?code=abc&state={state}"),
            Some(format!("{}x", cookie)),
            400,
        ),
    ];
    for (path, cookie, status) in cases {
        let reply = respond(flow::decide(
            service,
            &request(&path, cookie.as_deref(), HTML, Some("navigate")),
            Some(&endpoints()),
            now,
            &mut Counter(0),
        ));
        assert_eq!(
            reply.status, status,
            "{path} with {cookie:?}: {}",
            reply.body
        );
        assert!(
            reply.header("location").is_none(),
            "never a redirect from a failed callback"
        );
    }
}

fn authenticator(settings: Settings) -> Authenticator {
    Authenticator::new(Rc::new(settings))
}

fn id_token(changes: Value) -> String {
    let base = claims_with(
        ISSUER,
        "prometheus",
        json!({ "nonce": "n-1", "groups": ["sre", "dev"] }),
    );
    let mut claims = base;
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(&k);
        } else {
            claims[k] = v;
        }
    }
    shared_keys().signer("RS256").sign(&claims)
}

#[test]
fn id_token_rules_aud_azp_and_nonce() {
    let auth = authenticator(settings(json!({})));
    let now_ms = mint::now_secs() * 1000;
    let verify = |token: &str, nonce: Option<&str>| {
        auth.verify_id_token(ProviderId(0), token, "prometheus", nonce, now_ms)
    };
    let ok = verify(&id_token(json!({})), Some("n-1")).expect("valid ID token");
    assert_eq!(ok.identity.user, "alice-id");
    assert_eq!(ok.identity.groups, vec!["sre", "dev"]);
    let cases = [
        (
            "nonce from another login",
            id_token(json!({})),
            Some("n-2"),
            AuthError::WrongNonce,
        ),
        (
            "no nonce at all",
            id_token(json!({ "nonce": null })),
            Some("n-1"),
            AuthError::WrongNonce,
        ),
        (
            "issued to another client",
            id_token(json!({ "aud": "grafana" })),
            Some("n-1"),
            AuthError::WrongAudience,
        ),
        (
            "azp names another client",
            id_token(json!({ "azp": "grafana" })),
            Some("n-1"),
            AuthError::WrongAuthorizedParty,
        ),
        (
            "several audiences without azp",
            id_token(json!({ "aud": ["prometheus", "grafana"] })),
            Some("n-1"),
            AuthError::WrongAuthorizedParty,
        ),
        (
            "expired",
            id_token(json!({ "exp": mint::now_secs() - 3600 })),
            Some("n-1"),
            AuthError::Expired,
        ),
        (
            "no iat (OIDC Core 3.1.3.7)",
            id_token(json!({ "iat": null })),
            Some("n-1"),
            AuthError::MissingClaim {
                claim: "iat".into(),
            },
        ),
        (
            "tampered",
            mint::tamper_signature(&id_token(json!({}))),
            Some("n-1"),
            AuthError::BadSignature,
        ),
    ];
    for (name, token, nonce, expected) in cases {
        assert_eq!(verify(&token, nonce).err(), Some(expected), "{name}");
    }
    assert!(verify(
        &id_token(json!({ "aud": ["prometheus", "grafana"], "azp": "prometheus" })),
        Some("n-1")
    )
    .is_ok());
}

#[test]
fn finished_login_sets_the_session_and_returns_to_the_deep_link() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let auth = authenticator(self::settings(json!({})));
    let now = mint::now_secs();
    let pending = PendingLogin {
        state: "s".repeat(43),
        nonce: "n-1".into(),
        verifier: Secret::new("v"),
        return_to: "/graph?x=1".into(),
        expires_at: now + 600,
        idp: Default::default(),
    };
    let verify = |token: &str, nonce: Option<&str>| {
        auth.verify_id_token(ProviderId(0), token, "prometheus", nonce, now * 1000)
    };
    let tokens = Tokens {
        id_token: Some(Secret::new(id_token(json!({ "sid": "idp-1" })))),
        refresh_token: Some(Secret::new("rt-1")),
        expires_in: Some(300),
        ..Tokens::default()
    };
    let reply = sign_in::finish_login(
        service,
        &pending,
        Ok(tokens),
        &verify,
        &[],
        now,
        &mut Counter(3),
    );
    assert_eq!(
        (reply.status, reply.header("location")),
        (302, Some("/graph?x=1"))
    );
    let jar: Vec<(String, String)> = reply
        .set_cookies()
        .filter(|c| !c.contains("Max-Age=0"))
        .filter_map(|c| {
            support::sent_back(c)
                .split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    let pairs: Vec<(&str, &str)> = jar.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let session = session::read(&pairs, "__Host-wasm_iap", &service.idps.first().sealer, now)
        .expect("session set");
    assert_eq!(session.user, "alice-id");
    assert_eq!(session.refresh_token, Some(Secret::new("rt-1")));
    // What a back-channel logout names the session by, and when it began.
    assert_eq!(session.idp_sid.as_deref(), Some("idp-1"));
    assert_eq!(
        session.sub, None,
        "the user claim is the sub: not kept twice"
    );
    assert_eq!(session.signed_in_at, now);
    assert!(
        reply
            .set_cookies()
            .any(|c| c.contains("_login_") && c.contains("Max-Age=0")),
        "login cookie cleared"
    );

    let failures = [
        (
            Err(TokenError::Refused("HTTP 400: invalid_grant".into())),
            401,
        ),
        (Err(TokenError::Unavailable("HTTP 503".into())), 502),
        (Err(TokenError::Garbage), 502),
        (
            Ok(Tokens {
                id_token: None,
                refresh_token: None,
                expires_in: None,
                ..Tokens::default()
            }),
            502,
        ),
        (
            Ok(Tokens {
                id_token: Some(Secret::new(id_token(json!({ "nonce": "replayed" })))),
                refresh_token: None,
                expires_in: None,
                ..Tokens::default()
            }),
            401,
        ),
    ];
    for (tokens, status) in failures {
        let reply = sign_in::finish_login(
            service,
            &pending,
            tokens,
            &verify,
            &[],
            now,
            &mut Counter(3),
        );
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(
            !reply
                .set_cookies()
                .any(|c| c.starts_with("__Host-wasm_iap=")),
            "no session on failure"
        );
    }
}

fn session_for(now: u64) -> Session {
    Session {
        sid: "sid".into(),
        user: "alice-id".into(),
        email: None,
        groups: vec![],
        expires_at: now + 3600,
        refresh_at: now - 1,
        refresh_token: Some(Secret::new("rt-1")),
        id_token: None,
        idp_sid: Some("idp-1".into()),
        signed_in_at: now - 600,
        ..Session::default()
    }
}

#[test]
fn expired_tokens_ask_for_a_refresh_and_its_outcomes_are_classified() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let auth = authenticator(self::settings(json!({})));
    let now = mint::now_secs();
    let old = session_for(now);
    let written = session::write(
        &old,
        &[],
        "__Host-wasm_iap",
        &service.cookie,
        &service.idps.first().sealer,
        now,
        &mut Counter(1),
    )
    .unwrap();
    let cookie = support::sent_back(&written[0]).to_string();
    match flow::decide(
        service,
        &request("/x", Some(&cookie), "application/json", None),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ) {
        Step::Refresh { request, .. } => {
            assert!(request.body.expose().contains("grant_type=refresh_token"))
        }
        other => panic!("expected a refresh, got {other:?}"),
    }
    let verify = |token: &str, nonce: Option<&str>| {
        auth.verify_id_token(ProviderId(0), token, "prometheus", nonce, now * 1000)
    };
    let renewed = refreshed::finish_refresh(
        &old,
        Ok(Tokens {
            id_token: Some(Secret::new(id_token(json!({ "nonce": null })))),
            refresh_token: Some(Secret::new("rt-2")),
            expires_in: Some(300),
            ..Tokens::default()
        }),
        &verify,
        now,
    );
    let Refreshed::Renewed(new) = renewed else {
        panic!("{renewed:?}")
    };
    assert_eq!(
        (new.sid.as_str(), new.refresh_token.clone()),
        ("sid", Some(Secret::new("rt-2")))
    );
    assert!(new.refresh_at > now);
    assert_eq!(
        (new.idp_sid.as_deref(), new.signed_in_at),
        (Some("idp-1"), now - 600),
        "a refresh keeps what revocations name the session by"
    );
    assert!(matches!(
        refreshed::finish_refresh(
            &old,
            Err(TokenError::Unavailable("down".into())),
            &verify,
            now
        ),
        Refreshed::KeepOld
    ));
    assert!(matches!(
        refreshed::finish_refresh(
            &old,
            Err(TokenError::Refused("invalid_grant".into())),
            &verify,
            now
        ),
        Refreshed::Refused(_)
    ));
    let other_user = Tokens {
        id_token: Some(Secret::new(id_token(
            json!({ "sub": "mallory", "nonce": null }),
        ))),
        refresh_token: None,
        expires_in: None,
        ..Tokens::default()
    };
    assert!(matches!(
        refreshed::finish_refresh(&old, Ok(other_user), &verify, now),
        Refreshed::Ended(_)
    ));

    let no_refresh = self::settings(json!({ "refresh": false }));
    let step = flow::decide(
        &no_refresh.login[0],
        &request("/x", Some(&cookie), "application/json", None),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    );
    assert!(
        matches!(step, Step::Forward(_)),
        "without refresh the session lasts its lifetime"
    );
}

#[test]
fn forwarded_request_loses_our_cookies_and_keeps_the_apps() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let now = mint::now_secs();
    let mut fresh = session_for(now);
    fresh.refresh_at = now + 300;
    let written = session::write(
        &fresh,
        &[],
        "__Host-wasm_iap",
        &service.cookie,
        &service.idps.first().sealer,
        now,
        &mut Counter(1),
    )
    .unwrap();
    let ours = support::sent_back(&written[0]);
    let header = format!("grafana_session=g; {ours}; __Host-wasm_iap_login_abc=x; theme=dark");
    match flow::decide(
        service,
        &request("/d/home", Some(&header), HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ) {
        Step::Forward(Forwarding {
            identity,
            cookie_header,
            set_cookies,
            ..
        }) => {
            assert_eq!(identity.user, "alice-id");
            assert_eq!(
                cookie_header.as_deref(),
                Some("grafana_session=g; theme=dark")
            );
            assert!(set_cookies.is_empty());
        }
        other => panic!("expected forward, got {other:?}"),
    }
}

#[test]
fn sign_out_clears_our_cookies_and_validates_rd() {
    let settings = settings(json!({ "allowed_redirect_hosts": ["grafana.example.com"] }));
    let service = &settings.login[0];
    let header =
        "__Host-wasm_iap=a; __Host-wasm_iap_1=b; __Host-wasm_iap_login_AbCdEfGh-_012345=c; \
                  __Host-wasm_iap_login_<script>=e; other=d";
    for (path, location) in [
        ("/oauth2/sign_out?rd=%2Fbye", "/bye"),
        (
            "/oauth2/sign_out?rd=https%3A%2F%2Fgrafana.example.com%2Fd",
            "https://grafana.example.com/d",
        ),
        ("/oauth2/sign_out?rd=%2F%2Fevil.com", "/"),
        ("/oauth2/sign_out", "/"),
    ] {
        let reply = respond(flow::decide(
            service,
            &request(path, Some(header), HTML, Some("navigate")),
            Some(&endpoints()),
            mint::now_secs(),
            &mut Counter(0),
        ));
        assert_eq!(reply.header("location"), Some(location), "{path}");
        let cleared: Vec<&str> = reply.set_cookies().collect();
        let session_names = std::iter::once("__Host-wasm_iap".to_string())
            .chain((0..8).map(|i| format!("__Host-wasm_iap_{i}")));
        for name in session_names {
            assert!(
                cleared.iter().any(|c| c.starts_with(&format!("{name}=;"))),
                "{name} cleared even when not carried: {cleared:?}"
            );
        }
        assert_eq!(cleared.len(), 10, "{cleared:?}");
        assert!(cleared.iter().all(|c| c.contains("Max-Age=0")));
        assert!(cleared
            .iter()
            .any(|c| c.starts_with("__Host-wasm_iap_login_AbCdEfGh-_012345=")
                && c.contains("Path=/;")));
        assert!(
            !cleared.iter().any(|c| c.contains("<script>")),
            "names we never make are never written back"
        );
        assert!(!cleared.iter().any(|c| c.starts_with("other=")));
    }
    let ending = self::settings(json!({ "end_idp_session": true }));
    let reply = respond(flow::decide(
        &ending.login[0],
        &request("/oauth2/sign_out", None, HTML, Some("navigate")),
        Some(&endpoints()),
        mint::now_secs(),
        &mut Counter(0),
    ));
    let q = query(reply.header("location").unwrap());
    assert_eq!(
        q["post_logout_redirect_uri"],
        "https://prometheus.example.com/"
    );
    assert_eq!(q["client_id"], "prometheus");
}

#[test]
fn login_config_problems_are_all_named() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["a"], "jwks": shared_keys().jwks() }],
        "login": [{
            "hosts": [],
            "issuer": "https://other.example.com",
            "client_secret": { "env": "NOT_SET" },
            "cookie_secrets": ["too short"],
            "cookie_samesite": "sometimes",
            "scopes": ["email"],
            "callback_path": "oauth2/callback",
            "client_auth": "private_key_jwt",
            "routes": [{ "path_prefix": "/api", "unauthenticated": "maybe" }],
            "colour": "blue"
        }]
    });
    let problems = Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default();
    for expected in [
        "login[0].hosts: must list the hosts",
        "login[0].issuer: \"https://other.example.com\" is not the issuer of any provider",
        "login[0].client_id: is required",
        "login[0].client_secret: environment variable NOT_SET is not set",
        "login[0].cookie_samesite: \"sometimes\" is not one of Strict, Lax, None",
        "login[0].scopes: must include openid",
        "login[0].callback_path: must start with /",
        "login[0].client_auth: \"private_key_jwt\" is not",
        "login[0].routes[0].unauthenticated: \"maybe\" is not one of auto, login, deny",
        "login[0].colour: unknown field",
        "login[0].cookie_secrets: secret 0 is shorter than 32 bytes",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {problems:#?}"
        );
    }
}

/// A login service with no cookie secret would be dropped, leaving its host to bearer rules
/// alone (any valid token in, no sign-in): it is a configuration error instead.
#[test]
fn an_empty_cookie_secret_list_is_a_problem_never_a_dropped_service() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["a"], "jwks": shared_keys().jwks() }],
        "login": [{
            "hosts": ["app.example.com"],
            "issuer": ISSUER,
            "client_id": "app",
            "client_secret": "app-secret",
            "cookie_secrets": [],
        }]
    });
    let problems = Settings::parse(&config.to_string()).expect_err("a configuration error");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("login[0].cookie_secrets: must list at least one secret")),
        "{problems:#?}"
    );
}

#[test]
fn secrets_can_come_from_the_vm_environment() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": ["a"], "jwks": shared_keys().jwks() }],
        "login": [{
            "hosts": ["*"], "issuer": ISSUER, "client_id": "prometheus", "cluster": "dex",
            "authorization_endpoint": "https://dex.example.com/auth", "token_endpoint": "https://dex.example.com/token",
            "client_secret": { "env": "PROMETHEUS_CLIENT_SECRET" },
            "cookie_secrets": [{ "env": "PROMETHEUS_COOKIE_SECRET" }]
        }]
    });
    let env = |name: &str| match name {
        "PROMETHEUS_CLIENT_SECRET" => Some("from-a-kubernetes-secret".to_string()),
        "PROMETHEUS_COOKIE_SECRET" => Some("c".repeat(32)),
        _ => None,
    };
    let settings =
        Settings::parse_with_env(&config.to_string(), &env).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        settings.login[0].idps.first().client_secret.expose(),
        "from-a-kubernetes-secret"
    );
    assert!(
        !format!("{:?}", settings.login[0]).contains("from-a-kubernetes-secret"),
        "never printed"
    );
    assert!(settings.login[0].serves("anything.example.com:8443"));
}

#[test]
fn client_secret_post_sends_the_credentials_in_the_body_not_a_header() {
    let settings = settings(
        json!({ "client_auth": "client_secret_post", "client_secret": "s3cret/with+chars" }),
    );
    let service = &settings.login[0];
    let now = mint::now_secs();
    let (state, cookie) = start_login(service, now);
    let path = format!("/oauth2/callback?code=abc&state={state}");
    let Step::Exchange { request, .. } = flow::decide(
        service,
        &request(&path, Some(&cookie), HTML, Some("navigate")),
        Some(&endpoints()),
        now,
        &mut Counter(0),
    ) else {
        panic!("expected a code exchange");
    };
    let body: HashMap<String, String> =
        url::form_urlencoded::parse(request.body.expose().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(body["client_id"], "prometheus");
    assert_eq!(body["client_secret"], "s3cret/with+chars");
    assert!(!request.headers.iter().any(|(n, _)| *n == "authorization"));
}

/// A browser's request to `path` on the protected host, answered locally.
fn answer_to(service: &LoginService, path: &str, cookie: Option<&str>) -> Reply {
    respond(flow::decide(
        service,
        &request(path, cookie, HTML, Some("navigate")),
        Some(&endpoints()),
        mint::now_secs(),
        &mut Counter(9),
    ))
}

fn assert_no_control_characters(reply: &Reply, context: &str) {
    for (name, value) in &reply.headers {
        assert!(
            !name.chars().chain(value.chars()).any(char::is_control),
            "{context}: header {name}: {value:?}"
        );
    }
}

#[test]
fn callback_state_with_crlf_cannot_split_the_response() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let attacks = [
        "/oauth2/callback?code=x&state=%0D%0ASet-Cookie:a=b",
        "/oauth2/callback?error=x&state=%0D%0A%0D%0A%3Cscript%3Ex",
        "/oauth2/callback?error=x%0D%0Ay&error_description=%0D%0Ainjected:1&state=abc",
        "/oauth2/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%00",
        "/oauth2/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3B",
    ];
    for path in attacks {
        let reply = answer_to(service, path, None);
        assert!(
            (400..500).contains(&reply.status),
            "{path}: {}",
            reply.status
        );
        assert_no_control_characters(&reply, path);
        assert!(
            reply
                .set_cookies()
                .all(|c| c.starts_with("__Host-wasm_iap_login_")),
            "{path}: only our own cookie names: {:?}",
            reply.headers
        );
        assert!(!reply.body.contains("<script>"), "{path}");
    }
}

#[test]
fn deep_link_too_long_for_a_cookie_still_logs_in_within_4kb() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let long_query = format!("/graph?g0.expr={}", "x".repeat(6000));
    let long_path = format!("/{}", "p".repeat(6000));
    for (path, kept) in [(long_query.as_str(), "/graph"), (long_path.as_str(), "/")] {
        let reply = answer_to(service, path, None);
        assert_eq!(reply.status, 302);
        let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
        assert!(login_cookie.len() < 4000, "{} bytes", login_cookie.len());
        let pending = open_login_cookie(service, login_cookie);
        assert_eq!(pending.return_to, kept);
    }
}

fn open_login_cookie(service: &LoginService, set_cookie: &str) -> PendingLogin {
    let plain = service
        .idps
        .first()
        .sealer
        .open("login", support::cookie_value(set_cookie))
        .expect("our login cookie opens");
    serde_json::from_slice(&plain).unwrap()
}

#[test]
fn strict_samesite_never_hides_the_login_cookie_from_the_idp_callback() {
    let settings = settings(json!({ "cookie_samesite": "Strict" }));
    let service = &settings.login[0];
    let reply = answer_to(service, "/", None);
    let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    assert!(login_cookie.contains("SameSite=Lax"), "{login_cookie}");
}

#[test]
fn host_prefixed_cookie_names_are_usable_or_refused() {
    let settings = settings(json!({ "cookie_name": "__Host-iap" }));
    let reply = answer_to(&settings.login[0], "/", None);
    let login_cookie = reply.set_cookies().find(|c| c.contains("_login_")).unwrap();
    assert!(
        login_cookie.contains("Path=/;")
            && login_cookie.contains("Secure")
            && !login_cookie.contains("Domain"),
        "browsers keep __Host- cookies only so: {login_cookie}"
    );
    for (overrides, problem) in [
        (
            json!({ "cookie_name": "__Host-iap", "cookie_domain": ".example.com" }),
            "__Host-",
        ),
        (
            json!({ "cookie_name": "__Host-iap", "cookie_path": "/app" }),
            "__Host-",
        ),
        (
            json!({ "cookie_name": "__Host-iap", "cookie_secure": false }),
            "__Host-",
        ),
        (
            json!({ "cookie_name": "__Secure-iap", "cookie_secure": false }),
            "__Secure-",
        ),
    ] {
        let problems = login_problems(overrides.clone());
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("login[0].cookie_name") && p.contains(problem)),
            "{overrides}: {problems:#?}"
        );
    }
}

fn login_problems(login: Value) -> Vec<String> {
    Settings::parse(&config_with(login).to_string())
        .err()
        .unwrap_or_default()
}

struct NoEntropy;

impl Random for NoEntropy {
    fn fill(&mut self, _buf: &mut [u8]) -> Result<(), NoRandomness> {
        Err(NoRandomness)
    }
}

#[test]
fn failed_randomness_never_starts_a_login_or_a_session() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    let reply = respond(flow::decide(
        service,
        &request("/", None, HTML, Some("navigate")),
        Some(&endpoints()),
        mint::now_secs(),
        &mut NoEntropy,
    ));
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.set_cookies().count(),
        0,
        "nothing sealed: {:?}",
        reply.headers
    );
    assert!(service
        .idps
        .first()
        .sealer
        .seal("session", b"x", &mut NoEntropy)
        .is_none());
}

#[test]
fn refused_refresh_sends_the_browser_only_to_a_path_on_this_host() {
    let settings = settings(json!({}));
    let service = &settings.login[0];
    for (path, location) in [
        ("//evil.example/landing", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/graph?x=1", "/graph?x=1"),
    ] {
        let reply =
            refreshed::session_ended(service, Some("__Host-wasm_iap=old"), path, true).unwrap();
        assert_eq!(reply.header("location"), Some(location), "{path}");
        assert!(reply
            .set_cookies()
            .any(|c| c.starts_with("__Host-wasm_iap=;")));
    }
    let api = refreshed::session_ended(service, None, "//evil.example", false).unwrap_err();
    assert_eq!(api.refusal.status(), 401);
}

#[test]
fn a_printed_forwarding_never_shows_cookies() {
    let forwarding = Forwarding {
        identity: Session {
            user: "alice".into(),
            ..Session::default()
        }
        .identity("https://dex.example.com")
        .into(),
        cookie_header: Some("grafana_session=SECRETGRAFANA".into()),
        set_cookies: vec!["__Host-wasm_iap=SEALEDSESSION; Path=/".into()],
        access_token: Some(Secret::new("SECRETACCESS")),
        session_sid: Secret::new("SECRETSID"),
        id_token: Some(Secret::new("SECRETID")),
    };
    let printed = format!("{forwarding:?}");
    assert!(
        !printed.contains("SECRETGRAFANA")
            && !printed.contains("SEALEDSESSION")
            && !printed.contains("SECRETACCESS")
            && !printed.contains("SECRETID")
            && !printed.contains("SECRETSID"),
        "{printed}"
    );
}

#[test]
fn a_session_with_hundreds_of_groups_keeps_the_ones_rules_name_and_still_fits() {
    let settings = settings(json!({ "allowed_groups": ["myorg:sre"] }));
    let service = &settings.login[0];
    let now = mint::now_secs();
    let mut groups: Vec<String> = (0..3000)
        .map(|i| format!("myorg:a-rather-long-team-name-number-{i}"))
        .collect();
    groups.push("myorg:sre".into());
    let mut session = Session {
        sid: "sid".into(),
        user: "alice".into(),
        groups,
        expires_at: now + 3600,
        refresh_at: now + 300,
        ..Session::default()
    };
    let cookies = sign_in::store_session(service, &mut session, &[], now, &mut Counter(0))
        .expect("the trimmed session fits");
    assert_eq!(session.groups, vec!["myorg:sre".to_string()]);
    let sent: Vec<(String, String)> = cookies
        .iter()
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = sent.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let read = session::read(
        &pairs,
        &service.cookie_name,
        &service.idps.first().sealer,
        now,
    )
    .expect("the browser's cookies hold the session");
    assert_eq!(
        read.groups,
        vec!["myorg:sre".to_string()],
        "and rules still see the group"
    );
}

#[test]
fn the_refresh_race_grace_is_a_minute_by_default_and_at_most_five() {
    assert!(login_problems(json!({ "refresh_race_grace": "5m" })).is_empty());
    assert!(login_problems(json!({ "refresh_race_grace": "0s" })).is_empty());
    let problems = login_problems(json!({ "refresh_race_grace": "6m" }));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("login[0].refresh_race_grace") && p.contains("at most 5m")),
        "{problems:#?}"
    );
    let problems = login_problems(json!({ "refresh_race_grace": "soon" }));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("login[0].refresh_race_grace")),
        "{problems:#?}"
    );
}
