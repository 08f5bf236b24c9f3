#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signed identity assertions, natively: the claims a session's and a token's upstream
//! get, signed once per caller per half lifetime, the JWKS on every host without
//! credentials, rotation, the header stripped from clients, check answers, and every
//! configuration problem at once.

mod support;

use std::collections::HashSet;

use jwt_simple::prelude::*;
use serde_json::{json, Value};
use support::mint;
use support::native_bed::*;
use wasm_iap::core::assertion::claims::derived_sid;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::login::session::Session;

const APP: &str = "app.example.com";
const API: &str = "api.example.com";
const JWKS_PATH: &str = "/.well-known/wasm-iap/jwks.json";
const HEADER_NAME: &str = "x-wasm-iap-jwt-assertion";

struct Keys {
    es256: String,
    eddsa: String,
}

fn keys() -> Keys {
    Keys {
        es256: ES256KeyPair::generate().to_pem().unwrap(),
        eddsa: Ed25519KeyPair::generate().to_pem(),
    }
}

fn block(keys: &[(&str, &str, &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, alg, pem)| json!({"kid": kid, "algorithm": alg, "private_key": pem}))
        .collect();
    json!({ "keys": keys })
}

/// A login service on APP and an API service on API, both asking for assertions.
fn config(assertion: Value, app: Value, api: Value) -> Value {
    json!({
        "providers": [provider()],
        "identity_assertion": assertion,
        "login": [login_service(APP, "app", "app_session", json!({ "identity_assertion": app }))],
        "services": [{ "hosts": [API], "identity_assertion": api }],
    })
}

fn session(sid: &str, user: &str, groups: &[&str]) -> Session {
    let now = mint::now_secs();
    Session {
        sid: sid.into(),
        user: user.into(),
        email: Some(format!("{user}@example.com")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires_at: now + 3600,
        refresh_at: now + 3000,
        ..Session::default()
    }
}

/// The JWKS the gateway serves, fetched as anyone would: no credentials.
fn jwks(bed: &mut Bed, host: &str) -> Value {
    let reply = responded(bed.get(host, JWKS_PATH, &[]));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_str(&reply.body).unwrap()
}

/// Verifies `token` against the JWK of its `kid` in `jwks`, as an upstream would; the claims.
fn verify(token: &str, jwks: &Value, audience: &str) -> (String, JWTClaims<Value>) {
    let kid = Token::decode_metadata(token)
        .unwrap()
        .key_id()
        .unwrap()
        .to_string();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not published in {jwks}"));
    assert_eq!(jwk["use"], "sig");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from(["wasm-iap".to_string()])),
        allowed_audiences: Some(HashSet::from([audience.to_string()])),
        ..Default::default()
    };
    let claims = match jwk["alg"].as_str().unwrap() {
        "ES256" => {
            assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
            let mut point = vec![4u8];
            point.extend(b64(&jwk["x"]));
            point.extend(b64(&jwk["y"]));
            ES256PublicKey::from_bytes(&point)
                .unwrap()
                .verify_token::<Value>(token, Some(options))
        }
        "EdDSA" => {
            assert_eq!(
                (&jwk["kty"], &jwk["crv"]),
                (&json!("OKP"), &json!("Ed25519"))
            );
            Ed25519PublicKey::from_bytes(&b64(&jwk["x"]))
                .unwrap()
                .verify_token::<Value>(token, Some(options))
        }
        other => panic!("unexpected alg {other}"),
    };
    (kid, claims.unwrap_or_else(|e| panic!("{e}")))
}

fn assertion_of(decision: Decision, name: &str) -> String {
    let forward = forwarded(decision);
    header(&forward, name)
        .unwrap_or_else(|| panic!("no {name} in {forward:?}"))
        .to_string()
}

#[test]
fn a_token_callers_upstream_gets_an_assertion_it_can_verify_with_the_jwks() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    ));
    let token = token(json!({ "groups": ["devs", "ops"] }));
    let decision = bed.get(
        "API.example.com:8443",
        "/v1/things",
        &with_bearer(&bearer(&token)),
    );
    let assertion = assertion_of(decision, "x-wasm-iap-jwt-assertion");
    let jwks = jwks(&mut bed, API);
    let (kid, claims) = verify(&assertion, &jwks, API);
    assert_eq!(kid, "k1");
    assert_eq!(claims.subject.as_deref(), Some("alice-id"));
    assert_eq!(claims.custom["email"], "alice@example.com");
    assert_eq!(claims.custom["groups"], json!(["devs", "ops"]));
    assert!(claims.custom.get("sid").is_none(), "a token has no session");
    let iat = claims.issued_at.unwrap().as_secs();
    assert_eq!(claims.expires_at.unwrap().as_secs(), iat + 300);
    assert!(iat.abs_diff(mint::now_secs()) <= 2);
}

#[test]
fn a_sessions_upstream_gets_its_derived_sid_under_the_configured_header_and_audience() {
    let k = keys();
    let app =
        json!({"header": "X-Pomerium-Jwt-Assertion", "audience": "grafana", "lifetime": "2m"});
    let mut bed = Bed::new(&config(
        block(&[("ed", "EdDSA", &k.eddsa)]),
        app,
        json!(false),
    ));
    let cookie = bed.session_cookie(0, &session("raw-session-id-1", "alice", &["devs"]));
    let decision = bed.get(APP, "/", &[("cookie", cookie.as_str())]);
    let assertion = assertion_of(decision, "x-pomerium-jwt-assertion");
    let (kid, claims) = verify(&assertion, &jwks(&mut bed, APP), "grafana");
    assert_eq!(kid, "ed");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    let sid = claims.custom["sid"].as_str().unwrap();
    assert_eq!(sid, derived_sid("raw-session-id-1"));
    // As documented: base64url(SHA-256("wasm-iap assertion sid\0" + sid)), 22 characters.
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"wasm-iap assertion sid\0raw-session-id-1");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    assert_eq!(sid, &text[..22]);
    assert_eq!(sid.len(), 22);
    assert!(!assertion.contains("raw-session-id-1") && !sid.contains("raw"));
    let iat = claims.issued_at.unwrap().as_secs();
    assert_eq!(claims.expires_at.unwrap().as_secs(), iat + 120);
    // The API service did not ask: its upstream gets none.
    let decision = bed.get(API, "/", &with_bearer(&bearer(&token(json!({})))));
    let forward = forwarded(decision);
    assert!(header(&forward, "x-pomerium-jwt-assertion").is_none());
    assert!(header(&forward, "x-wasm-iap-jwt-assertion").is_none());
}

#[test]
fn an_assertion_is_signed_once_per_caller_and_reused_until_half_its_lifetime_is_gone() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!({"lifetime": "60s"}),
    ));
    let alice = bearer(&token(json!({})));
    let first = assertion_of(
        bed.get(API, "/a", &with_bearer(&alice)),
        "x-wasm-iap-jwt-assertion",
    );
    for _ in 0..50 {
        let again = assertion_of(
            bed.get(API, "/b", &with_bearer(&alice)),
            "x-wasm-iap-jwt-assertion",
        );
        assert_eq!(again, first);
    }
    assert_eq!(
        bed.gateway.assertion_counts().0,
        1,
        "signed once for 51 requests"
    );
    // Another token of the same caller with other groups: what it says differs.
    let other_groups = bearer(&token(json!({ "groups": ["admins"] })));
    let admins = assertion_of(
        bed.get(API, "/", &with_bearer(&other_groups)),
        "x-wasm-iap-jwt-assertion",
    );
    assert_ne!(admins, first);
    // Another session of the same user: its own sid, its own assertion.
    let one = bed.session_cookie(0, &session("sid-one", "alice", &[]));
    let two = bed.session_cookie(0, &session("sid-two", "alice", &[]));
    let a1 = assertion_of(
        bed.get(APP, "/", &[("cookie", one.as_str())]),
        "x-wasm-iap-jwt-assertion",
    );
    let a2 = assertion_of(
        bed.get(APP, "/", &[("cookie", two.as_str())]),
        "x-wasm-iap-jwt-assertion",
    );
    assert_ne!(a1, a2);
    assert_eq!(bed.gateway.assertion_counts(), (4, 4));
    // Still more than half of 60 s left after 29 s: reused; after 31 s: signed again.
    bed.host.advance(29_000);
    let kept = assertion_of(
        bed.get(API, "/", &with_bearer(&alice)),
        "x-wasm-iap-jwt-assertion",
    );
    assert_eq!(kept, first);
    bed.host.advance(2_000);
    let renewed = assertion_of(
        bed.get(API, "/", &with_bearer(&alice)),
        "x-wasm-iap-jwt-assertion",
    );
    assert_ne!(renewed, first);
    let keys = jwks(&mut bed, API);
    let (_, claims) = verify(&renewed, &keys, API);
    let (_, first_claims) = verify(&first, &keys, API);
    // The host clock, not the wall clock: a second may tick between the two.
    let first_iat = first_claims.issued_at.unwrap().as_secs();
    assert_eq!(claims.issued_at.unwrap().as_secs(), first_iat + 31);
    // The tick drops what would not be reused any more.
    bed.tick();
    assert_eq!(bed.gateway.assertion_counts(), (5, 3), "the first one went");
    bed.host.advance(200_000);
    bed.tick();
    assert_eq!(bed.gateway.assertion_counts(), (5, 0));
}

#[test]
fn rotation_publishes_both_keys_and_the_first_signs() {
    let k = keys();
    let old = ("2026-12", "ES256", k.es256.as_str());
    let new = ("2027-01", "EdDSA", k.eddsa.as_str());
    let alice = bearer(&token(json!({})));
    // Step 1: the new key published second; the old one still signs.
    let mut before = Bed::new(&config(block(&[old, new]), json!(true), json!(true)));
    let signed_old = assertion_of(
        before.get(API, "/", &with_bearer(&alice)),
        "x-wasm-iap-jwt-assertion",
    );
    let published = jwks(&mut before, APP);
    assert_eq!(published["keys"][0]["kid"], "2026-12");
    assert_eq!(published["keys"][1]["kid"], "2027-01");
    assert_eq!(verify(&signed_old, &published, API).0, "2026-12");
    // Step 2: swapped; the new key signs, and a token of the old one still verifies.
    let mut after = Bed::new(&config(block(&[new, old]), json!(true), json!(true)));
    let signed_new = assertion_of(
        after.get(API, "/", &with_bearer(&alice)),
        "x-wasm-iap-jwt-assertion",
    );
    let published = jwks(&mut after, API);
    assert_eq!(verify(&signed_new, &published, API).0, "2027-01");
    assert_eq!(verify(&signed_old, &published, API).0, "2026-12");
    // Step 3: the old key dropped: its tokens no longer find a key.
    let mut done = Bed::new(&config(block(&[new]), json!(true), json!(true)));
    let published = jwks(&mut done, API);
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    assert!(
        published["keys"][0].get("d").is_none(),
        "never a private part"
    );
}

#[test]
fn the_jwks_is_served_on_every_host_without_credentials_but_only_for_get_and_head() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256), ("k2", "EdDSA", &k.eddsa)]),
        json!(true),
        json!(true),
    ));
    for host in [APP, API] {
        let published = jwks(&mut bed, host);
        let kids: Vec<&str> = published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["k1", "k2"]);
        for key in published["keys"].as_array().unwrap() {
            assert!(key.get("d").is_none(), "{key}");
        }
    }
    // A browser is not sent to log in for it.
    let reply = responded(bed.get(APP, &format!("{JWKS_PATH}?x=1"), &BROWSER));
    assert_eq!(reply.status, 200);
    let reply = responded(bed.send("HEAD", API, JWKS_PATH, &[]).decision);
    assert_eq!(reply.status, 200);
    let reply = responded(bed.send("POST", API, JWKS_PATH, &[JSON]).decision);
    assert_eq!(reply.status, 401, "{reply:?}");
}

#[test]
fn a_client_sent_assertion_header_is_stripped_in_every_spelling_configured_or_not() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!({"header": "x-goog-iap-jwt-assertion"}),
        json!({"header": "X-Pomerium-Jwt-Assertion"}),
    ));
    let alice = bearer(&token(json!({})));
    for spoofed in [
        "X-Wasm-Iap-Jwt-Assertion",
        "x_wasm_iap_jwt_assertion",
        "x-pomerium-jwt-assertion",
        "X_POMERIUM_JWT_ASSERTION",
        "x-goog-iap-jwt-assertion",
    ] {
        let mut headers = with_bearer(&alice);
        headers.push((spoofed, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."));
        let sent = bed.send("GET", API, "/", &headers);
        assert!(
            sent.strip.iter().any(|s| s == spoofed),
            "{spoofed}: {:?}",
            sent.strip
        );
    }
    // With no assertion configured at all, ours is stripped still.
    let mut plain = Bed::new(&json!({ "providers": [provider()] }));
    let sent = plain.send("GET", API, "/", &[("x-wasm-iap-jwt-assertion", "forged")]);
    assert_eq!(sent.strip, ["x-wasm-iap-jwt-assertion"]);
}

#[test]
fn a_check_answers_with_the_assertion_so_envoy_and_nginx_hand_it_upstream() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    ));
    let alice = bearer(&token(json!({})));
    let mut headers = with_bearer(&alice);
    headers.push(("x-wasm-iap-jwt-assertion", "forged"));
    // ext_authz: answered (Envoy sets it over the client's), never listed for removal.
    let reply = responded(bed.get(API, "/oauth2/auth/v1/things", &headers));
    assert_eq!(reply.status, 200, "{reply:?}");
    let assertion = reply.header("x-wasm-iap-jwt-assertion").unwrap();
    assert_ne!(assertion, "forged");
    verify(assertion, &jwks(&mut bed, API), API);
    let removed = reply
        .header("x-envoy-auth-headers-to-remove")
        .unwrap_or_default();
    assert!(!removed.contains("x-wasm-iap-jwt-assertion"), "{removed}");
    // auth_request: 202 with it, for NGINX's auth_request_set.
    let reply = responded(bed.get(API, "/oauth2/auth", &with_bearer(&alice)));
    assert_eq!(reply.status, 202, "{reply:?}");
    verify(
        reply.header("x-wasm-iap-jwt-assertion").unwrap(),
        &jwks(&mut bed, API),
        API,
    );
    // User info is for the caller: no assertion there, none signed for it.
    let mut fresh = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    ));
    let reply = responded(fresh.get(API, "/oauth2/userinfo", &with_bearer(&alice)));
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-wasm-iap-jwt-assertion").is_none());
    assert_eq!(fresh.gateway.assertion_counts().0, 0);
}

#[test]
fn a_refused_caller_gets_no_assertion_signed() {
    let k = keys();
    let mut bed = Bed::new(&config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    ));
    let cfg = config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    );
    let mut cfg = cfg;
    cfg["services"][0]["allowed_groups"] = json!(["admins"]);
    let mut guarded = Bed::new(&cfg);
    let reply = responded(guarded.get(API, "/", &with_bearer(&bearer(&token(json!({}))))));
    assert_eq!(reply.status, 403);
    assert_eq!(guarded.gateway.assertion_counts().0, 0);
    let reply = responded(bed.get(API, "/", &with_bearer("Bearer nope")));
    assert_eq!(reply.status, 401);
    assert_eq!(bed.gateway.assertion_counts().0, 0);
}

#[test]
fn keys_come_from_the_vm_environment_and_never_print() {
    let k = keys();
    let env_keys = k.es256.clone();
    let cfg = config(
        json!({"issuer": "https://gateway.example.com", "jwks_path": "/keys.json",
               "keys": [{"kid": "k1", "algorithm": "ES256", "private_key": {"env": "ASSERTION_KEY"}}]}),
        json!(true),
        json!(true),
    );
    let settings = Settings::parse_with_env(&cfg.to_string(), &|name| {
        (name == "ASSERTION_KEY").then(|| env_keys.clone())
    })
    .unwrap();
    let printed = format!("{settings:?}");
    let body = k.es256.lines().nth(1).unwrap();
    assert!(!printed.contains(body), "the private key was printed");
    assert!(printed.contains("[redacted]"));
    let mut bed = Bed::with_settings(std::rc::Rc::new(settings));
    let reply = responded(bed.get(API, "/keys.json", &[]));
    assert_eq!(reply.status, 200);
    let assertion = assertion_of(
        bed.get(API, "/", &with_bearer(&bearer(&token(json!({}))))),
        "x-wasm-iap-jwt-assertion",
    );
    let claims = Token::decode_metadata(&assertion).unwrap();
    assert_eq!(claims.algorithm(), "ES256");
    let payload: Value = mint::claims_of(&assertion);
    assert_eq!(payload["iss"], "https://gateway.example.com");
}

#[test]
fn every_configuration_problem_is_reported_at_once() {
    let k = keys();
    let problems = |cfg: Value| Settings::parse(&cfg.to_string()).err().unwrap_or_default();
    let expect = |problems: &[String], fragment: &str| {
        assert!(
            problems.iter().any(|p| p.starts_with(fragment)),
            "missing {fragment:?} in {problems:#?}"
        );
    };
    // A service asking without the top-level block.
    let mut cfg = config(json!(null), json!(true), json!({"lifetime": "10s"}));
    cfg.as_object_mut().unwrap().remove("identity_assertion");
    let found = problems(cfg);
    expect(
        &found,
        "login[0].identity_assertion: needs the top-level identity_assertion block",
    );
    expect(
        &found,
        "services[0].identity_assertion: needs the top-level",
    );
    expect(
        &found,
        "services[0].identity_assertion.lifetime: must be between 30s and 1h",
    );
    // Everything wrong in the block and the services at once.
    let bad = json!({
        "issuer": "",
        "jwks_path": "keys",
        "keys": [
            {"kid": "a", "algorithm": "RS256", "private_key": k.es256},
            {"kid": "a", "algorithm": "EdDSA", "private_key": k.es256},
        ],
        "colour": 1,
    });
    let found = problems(config(
        bad,
        json!({"header": "Authorization", "lifetime": "2h", "audience": ""}),
        json!("yes"),
    ));
    for fragment in [
        "identity_assertion.issuer: must be printable text",
        "identity_assertion.jwks_path: \"keys\" is not a path",
        "identity_assertion.keys[0].algorithm: must be \"ES256\" or \"EdDSA\"",
        "identity_assertion.keys[1].kid: \"a\" appears twice",
        "identity_assertion.keys[1].private_key: is not a PEM PKCS#8 Ed25519 private key",
        "identity_assertion.colour: unknown field",
        "login[0].identity_assertion.header: \"authorization\" is not a header name",
        "login[0].identity_assertion.lifetime: must be between 30s and 1h",
        "login[0].identity_assertion.audience: must be printable text",
        "services[0].identity_assertion: must be true, or",
    ] {
        expect(&found, fragment);
    }
    // Three keys, none, a missing key, a key from an unset variable, a PEM that is no key.
    let three = block(&[
        ("a", "ES256", &k.es256),
        ("b", "ES256", &k.es256),
        ("c", "ES256", &k.es256),
    ]);
    expect(
        &problems(config(three, json!(true), json!(true))),
        "identity_assertion.keys: must list one or two keys",
    );
    let unset =
        json!({"keys": [{"kid": "a", "algorithm": "ES256", "private_key": {"env": "NOPE"}}]});
    expect(
        &problems(config(unset, json!(true), json!(true))),
        "identity_assertion.keys[0].private_key: environment variable NOPE is not set",
    );
    let missing = json!({"keys": [{"kid": "a", "algorithm": "ES256"}]});
    expect(
        &problems(config(missing, json!(true), json!(true))),
        "identity_assertion.keys[0].private_key: is required",
    );
    let garbage = json!({"keys": [{"kid": "a", "algorithm": "ES256", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}]});
    let found = problems(config(garbage, json!(true), json!(true)));
    expect(
        &found,
        "identity_assertion.keys[0].private_key: is not a PEM PKCS#8 P-256 private key",
    );
    assert!(
        !found.iter().any(|p| p.contains("AAAA")),
        "the key's text is never echoed"
    );
    // An assertion in front of the apiserver, and a header that is an identity header.
    let mut cfg = config(
        block(&[("a", "ES256", &k.es256)]),
        json!({"header": "x-auth-request-user"}),
        json!(true),
    );
    cfg["services"][0]["impersonate"] = json!({"user_prefix": "oidc:", "group_prefix": "oidc:"});
    let found = problems(cfg);
    expect(
        &found,
        "services[0].identity_assertion: is not sent in Kubernetes API mode",
    );
    expect(
        &found,
        "login[0].identity_assertion.header: \"x-auth-request-user\" is an identity header already",
    );
}

#[test]
fn a_session_on_a_star_host_is_signed_once_for_many_requests() {
    let k = keys();
    let mut cfg = config(
        block(&[("k1", "ES256", &k.es256)]),
        json!(true),
        json!(true),
    );
    cfg["login"][0]["hosts"] = json!(["*"]);
    cfg.as_object_mut().unwrap().remove("services");
    let mut bed = Bed::new(&cfg);
    let cookie = bed.session_cookie(0, &session("bench-session", "alice", &[]));
    let first = assertion_of(
        bed.get(
            "127.0.0.1:10000",
            "/api/v1/query",
            &[("cookie", cookie.as_str())],
        ),
        HEADER_NAME,
    );
    for _ in 0..20 {
        let again = assertion_of(
            bed.get(
                "127.0.0.1:10000",
                "/api/v1/query",
                &[("cookie", cookie.as_str())],
            ),
            HEADER_NAME,
        );
        assert_eq!(again, first);
    }
    assert_eq!(bed.gateway.assertion_counts().0, 1);
}
