//! Native tests of the bearer-token decision with tokens minted from keys made in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::mint::{self, claims, claims_with, forge, other_keys, shared_keys};
use wasm_iap::core::bearer::authenticator::{Authenticator, KidRefetch, Verdict, WaitReason};
use wasm_iap::core::bearer::error::AuthError;
use wasm_iap::core::config::{ProviderId, Settings};
use wasm_iap::core::keys::record::KeysRecord;

const ISSUER: &str = "https://dex.example.com";
const AUDIENCE: &str = "prometheus";

fn now_ms() -> u64 {
    mint::now_secs() * 1000
}

fn inline_authenticator(jwks: Value) -> Authenticator {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE, "grafana"], "jwks": jwks }],
        "max_token_size": 4096,
    });
    let settings = Settings::parse(&config.to_string()).expect("valid config");
    Authenticator::new(Rc::new(settings))
}

fn decide(auth: &mut Authenticator, token: &str) -> Verdict {
    auth.authenticate(
        Some(&format!("Bearer {token}")),
        now_ms(),
        KidRefetch::Allowed,
    )
}

fn denied_because(verdict: Verdict) -> Option<AuthError> {
    match verdict {
        Verdict::Deny(e) => Some(e),
        _ => None,
    }
}

#[test]
fn valid_token_of_every_algorithm_passes_with_its_identity() {
    let keys = shared_keys();
    let mut auth = inline_authenticator(keys.jwks());
    for alg in mint::ALGORITHMS {
        let token = keys.signer(alg).sign(&claims(ISSUER, AUDIENCE));
        match decide(&mut auth, &token) {
            Verdict::Allow(identity) => {
                assert_eq!(identity.user, "alice-id", "{alg}");
                assert_eq!(
                    identity.email.as_deref(),
                    Some("alice@example.com"),
                    "{alg}"
                );
            }
            other => panic!("{alg}: expected allow, got {other:?}"),
        }
    }
}

#[test]
fn every_rejection_reason_is_named() {
    let keys = shared_keys();
    let rs = keys.signer("RS256");
    let good = rs.sign(&claims(ISSUER, AUDIENCE));
    let now = mint::now_secs();
    let header = |alg: &str| json!({"alg": alg, "kid": rs.kid});
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "expired",
            rs.sign(&claims_with(ISSUER, AUDIENCE, json!({"exp": now - 3600}))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            rs.sign(&claims_with(ISSUER, AUDIENCE, json!({"nbf": now + 3600}))),
            AuthError::NotYetValid,
        ),
        (
            "issued in the future",
            rs.sign(&claims_with(ISSUER, AUDIENCE, json!({"iat": now + 3600}))),
            AuthError::IssuedInFuture,
        ),
        (
            "wrong issuer",
            rs.sign(&claims(ISSUER.replace("dex", "evil").as_str(), AUDIENCE)),
            AuthError::UntrustedIssuer,
        ),
        (
            "wrong audience",
            rs.sign(&claims(ISSUER, "alertmanager")),
            AuthError::WrongAudience,
        ),
        (
            "no expiry",
            rs.sign(&claims_with(ISSUER, AUDIENCE, json!({"exp": null}))),
            AuthError::MissingClaim {
                claim: "exp".into(),
            },
        ),
        (
            "no subject (valid but nameless: 403, as kube-oidc-proxy)",
            rs.sign(&claims_with(ISSUER, AUDIENCE, json!({"sub": null}))),
            AuthError::UserClaimMissing {
                claim: "sub".into(),
            },
        ),
        (
            "tampered payload",
            mint::tamper_payload(
                &good,
                &claims_with(ISSUER, AUDIENCE, json!({"sub": "admin"})),
            ),
            AuthError::BadSignature,
        ),
        (
            "tampered signature",
            mint::tamper_signature(&good),
            AuthError::BadSignature,
        ),
        (
            "alg none",
            forge(&json!({"alg": "none"}), &claims(ISSUER, AUDIENCE), b""),
            AuthError::Malformed {
                what: "empty signature",
            },
        ),
        (
            "alg none with a signature",
            forge(&json!({"alg": "none"}), &claims(ISSUER, AUDIENCE), b"x"),
            AuthError::AlgorithmNotAccepted { alg: "none".into() },
        ),
        (
            "HS256 keyed with the RSA public key",
            mint::hs256_with_public_key(keys, &claims(ISSUER, AUDIENCE)),
            AuthError::AlgorithmNotAccepted {
                alg: "HS256".into(),
            },
        ),
        (
            "RS256 claimed for an EC key",
            forge(
                &json!({"alg": "RS256", "kid": keys.signer("ES256").kid}),
                &claims(ISSUER, AUDIENCE),
                b"sig",
            ),
            AuthError::KeyDoesNotFitAlgorithm {
                kid: keys.signer("ES256").kid.clone(),
            },
        ),
        (
            "unknown kid",
            other_keys().signer("RS256").sign(&claims(ISSUER, AUDIENCE)),
            AuthError::UnknownKey {
                kid: Some(other_keys().signer("RS256").kid.clone()),
            },
        ),
        (
            "malformed base64",
            format!("{}.@@@.c2ln", mint::b64(header("RS256").to_string())),
            AuthError::Malformed {
                what: "payload is not base64url JSON",
            },
        ),
        (
            "malformed JSON",
            format!(
                "{}.{}.c2ln",
                mint::b64(header("RS256").to_string()),
                mint::b64("{nope")
            ),
            AuthError::Malformed {
                what: "payload is not base64url JSON",
            },
        ),
        (
            "oversized",
            rs.sign(&claims_with(
                ISSUER,
                AUDIENCE,
                json!({"pad": "x".repeat(5000)}),
            )),
            AuthError::TokenTooLarge { max: 4096 },
        ),
    ];
    let mut auth = inline_authenticator(keys.jwks());
    for (name, token, expected) in cases {
        assert_eq!(
            denied_because(decide(&mut auth, &token)),
            Some(expected),
            "case: {name}"
        );
    }
}

#[test]
fn missing_or_non_bearer_header_is_refused() {
    let mut auth = inline_authenticator(shared_keys().jwks());
    assert_eq!(
        denied_because(auth.authenticate(None, now_ms(), KidRefetch::Allowed)),
        Some(AuthError::MissingToken)
    );
    assert_eq!(
        denied_because(auth.authenticate(
            Some("Basic YWxpY2U6c2VjcmV0"),
            now_ms(),
            KidRefetch::Allowed
        )),
        Some(AuthError::NotBearer)
    );
}

#[test]
fn token_without_kid_is_tried_only_against_keys_of_its_type() {
    let keys = shared_keys();
    let mut auth = inline_authenticator(keys.jwks_of(&["ES256", "RS256", "EdDSA"]));
    for alg in ["ES256", "RS256", "EdDSA"] {
        let token = keys.signer(alg).sign_without_kid(&claims(ISSUER, AUDIENCE));
        assert!(
            matches!(decide(&mut auth, &token), Verdict::Allow(_)),
            "{alg} without kid"
        );
    }
    let no_such_type = keys
        .signer("ES384")
        .sign_without_kid(&claims(ISSUER, AUDIENCE));
    assert_eq!(
        denied_because(decide(&mut auth, &no_such_type)),
        Some(AuthError::UnknownKey { kid: None })
    );
}

#[test]
fn keys_published_without_kid_still_verify_tokens_that_carry_one() {
    let es = shared_keys().signer("ES256");
    let mut jwk = es.public_jwk.clone();
    jwk.as_object_mut().unwrap().remove("kid");
    let mut auth = inline_authenticator(json!({"keys": [jwk]}));
    assert!(matches!(
        decide(&mut auth, &es.sign(&claims(ISSUER, AUDIENCE))),
        Verdict::Allow(_)
    ));
}

#[test]
fn token_signed_by_a_foreign_key_under_a_known_kid_is_a_bad_signature() {
    let keys = shared_keys();
    let mut auth = inline_authenticator(keys.jwks());
    let impostor = other_keys().signer("ES256");
    let header = json!({"alg": "ES256", "kid": keys.signer("ES256").kid});
    let real = impostor.sign(&claims(ISSUER, AUDIENCE));
    let signature = real.split('.').nth(2).unwrap();
    let token = format!(
        "{}.{}.{signature}",
        mint::b64(header.to_string()),
        real.split('.').nth(1).unwrap()
    );
    assert_eq!(
        denied_because(decide(&mut auth, &token)),
        Some(AuthError::BadSignature)
    );
}

fn remote_authenticator(min_refetch: &str) -> Authenticator {
    let config = json!({
        "providers": [{
            "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "idp",
            "jwks_min_refetch_interval": min_refetch,
        }],
    });
    Authenticator::new(Rc::new(
        Settings::parse(&config.to_string()).expect("valid config"),
    ))
}

fn record(jwks: Value, attempted_at_ms: u64) -> KeysRecord {
    KeysRecord {
        jwks: Some(jwks.to_string()),
        attempted_at_ms,
        ..KeysRecord::default()
    }
}

#[test]
fn request_before_keys_waits_then_passes_once_keys_arrive() {
    let keys = shared_keys();
    let token = keys.signer("ES384").sign(&claims(ISSUER, AUDIENCE));
    let mut auth = remote_authenticator("10s");
    assert_eq!(
        decide(&mut auth, &token),
        Verdict::AwaitKeys {
            provider: ProviderId(0),
            refetch: true,
            reason: WaitReason::NoKeys
        }
    );
    assert_eq!(
        auth.install_record(ProviderId(0), &record(keys.jwks(), now_ms())),
        Ok(true)
    );
    assert!(matches!(
        auth.authenticate(
            Some(&format!("Bearer {token}")),
            now_ms(),
            KidRefetch::AlreadyWaited
        ),
        Verdict::Allow(_)
    ));
}

#[test]
fn rotated_key_triggers_one_rate_limited_refetch() {
    let keys = shared_keys();
    let rotated = other_keys().signer("RS256").sign(&claims(ISSUER, AUDIENCE));
    let mut auth = remote_authenticator("10s");
    auth.install_record(ProviderId(0), &record(keys.jwks(), now_ms() - 60_000))
        .unwrap();
    assert_eq!(
        decide(&mut auth, &rotated),
        Verdict::AwaitKeys {
            provider: ProviderId(0),
            refetch: true,
            reason: WaitReason::UnknownKid
        }
    );
    // The refetch brought the same keys: after the wait the kid is final.
    assert_eq!(
        denied_because(auth.authenticate(
            Some(&format!("Bearer {rotated}")),
            now_ms(),
            KidRefetch::AlreadyWaited
        )),
        Some(AuthError::UnknownKey {
            kid: Some(other_keys().signer("RS256").kid.clone())
        })
    );
    // A refetch happened just now: the next unknown kid is refused without another.
    auth.install_record(ProviderId(0), &record(keys.jwks(), now_ms()))
        .unwrap();
    assert!(matches!(
        decide(&mut auth, &rotated),
        Verdict::Deny(AuthError::UnknownKey { .. })
    ));
    // The IdP published the new key: it works.
    auth.install_record(ProviderId(0), &record(other_keys().jwks(), now_ms()))
        .unwrap();
    assert!(matches!(decide(&mut auth, &rotated), Verdict::Allow(_)));
}

#[test]
fn token_with_new_kid_that_waited_for_first_keys_still_gets_its_refetch() {
    let keys = shared_keys();
    let rotated = other_keys().signer("ES256").sign(&claims(ISSUER, AUDIENCE));
    let mut auth = remote_authenticator("0s");
    let first = decide(&mut auth, &rotated);
    assert_eq!(
        first,
        Verdict::AwaitKeys {
            provider: ProviderId(0),
            refetch: true,
            reason: WaitReason::NoKeys
        }
    );
    // The first keys arrive without the token's kid: it has not had its refetch yet.
    auth.install_record(ProviderId(0), &record(keys.jwks(), now_ms()))
        .unwrap();
    let second = auth.authenticate(
        Some(&format!("Bearer {rotated}")),
        now_ms(),
        KidRefetch::Allowed,
    );
    assert_eq!(
        second,
        Verdict::AwaitKeys {
            provider: ProviderId(0),
            refetch: true,
            reason: WaitReason::UnknownKid
        }
    );
}

#[test]
fn key_removed_at_the_idp_stops_cached_tokens() {
    let keys = shared_keys();
    let token = keys.signer("EdDSA").sign(&claims(ISSUER, AUDIENCE));
    let mut auth = remote_authenticator("0s");
    auth.install_record(ProviderId(0), &record(keys.jwks(), now_ms()))
        .unwrap();
    assert!(matches!(decide(&mut auth, &token), Verdict::Allow(_)));
    auth.install_record(ProviderId(0), &record(keys.jwks_of(&["RS256"]), now_ms()))
        .unwrap();
    assert!(matches!(
        auth.authenticate(
            Some(&format!("Bearer {token}")),
            now_ms(),
            KidRefetch::AlreadyWaited
        ),
        Verdict::Deny(AuthError::UnknownKey { .. })
    ));
}

#[test]
fn cached_token_is_refused_once_expired() {
    let keys = shared_keys();
    let exp = mint::now_secs() + 5;
    let token = keys
        .signer("ES256")
        .sign(&claims_with(ISSUER, AUDIENCE, json!({"exp": exp})));
    let mut auth = inline_authenticator(keys.jwks());
    assert!(matches!(decide(&mut auth, &token), Verdict::Allow(_)));
    let after_skew = (exp + 61) * 1000;
    assert_eq!(
        denied_because(auth.authenticate(
            Some(&format!("Bearer {token}")),
            after_skew,
            KidRefetch::Allowed
        )),
        Some(AuthError::Expired)
    );
}

#[test]
fn unverified_email_is_never_passed_on_as_identity() {
    let keys = shared_keys();
    let rs = keys.signer("RS256");
    let mut auth = inline_authenticator(keys.jwks());
    let unverified = rs.sign(&claims_with(
        ISSUER,
        AUDIENCE,
        json!({ "email": "admin@corp.example", "email_verified": false }),
    ));
    match decide(&mut auth, &unverified) {
        Verdict::Allow(identity) => assert_eq!(identity.email, None, "no email header"),
        other => panic!("the token itself is fine: {other:?}"),
    }
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": keys.jwks(), "user_claim": "email" }],
    });
    let mut by_email = Authenticator::new(Rc::new(Settings::parse(&config.to_string()).unwrap()));
    assert_eq!(
        denied_because(decide(&mut by_email, &unverified)),
        Some(AuthError::EmailNotVerified)
    );
}

#[test]
fn id_token_signed_with_an_unknown_key_waits_for_a_refetch_not_a_refusal() {
    let config = json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "cluster": "idp",
                        "jwks_min_refetch_interval": "10s" }],
    });
    let mut auth = Authenticator::new(Rc::new(Settings::parse(&config.to_string()).unwrap()));
    let old = shared_keys();
    let rotated = other_keys();
    let id_token = rotated.signer("RS256").sign(&claims(ISSUER, AUDIENCE));
    assert!(
        auth.id_token_awaits_keys(ProviderId(0), &id_token),
        "no keys yet: wait"
    );
    let record = KeysRecord {
        jwks: Some(old.jwks().to_string()),
        attempted_at_ms: now_ms() - 60_000,
        ..KeysRecord::default()
    };
    auth.install_record(ProviderId(0), &record).unwrap();
    assert!(
        auth.id_token_awaits_keys(ProviderId(0), &id_token),
        "kid unknown: wait"
    );
    assert!(
        auth.may_refetch(ProviderId(0), now_ms()),
        "and ask for a fetch now"
    );
    let just_fetched = KeysRecord {
        attempted_at_ms: now_ms(),
        ..record
    };
    auth.install_record(ProviderId(0), &just_fetched).unwrap();
    assert!(
        auth.id_token_awaits_keys(ProviderId(0), &id_token),
        "still wait within the rate limit"
    );
    assert!(
        !auth.may_refetch(ProviderId(0), now_ms()),
        "but ask for the fetch only once the rate limit allows"
    );
    assert!(auth.may_refetch(ProviderId(0), now_ms() + 10_000));
    let known = old.signer("RS256").sign(&claims(ISSUER, AUDIENCE));
    assert!(!auth.id_token_awaits_keys(ProviderId(0), &known));
    let inline = inline_authenticator(old.jwks());
    assert!(
        !inline.id_token_awaits_keys(ProviderId(0), &id_token),
        "inline keys never change"
    );
}
