//! The test IdP's modes do what the fleet tests rely on, straight at its endpoints: refresh
//! token rotation (off, strict, family), token-endpoint counts, back-channel logout, and
//! users with many groups.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::browser::Browser;
use support::idp::Idp;
use support::mint::claims_of;
use support::servers::{free_port, Served};

/// The IdP started with `env` (its `demo` client coming back to a port where nothing
/// listens), and `user`'s tokens by the authorization-code flow.
fn signed_in(env: &[(&str, &str)], user: &str) -> (Idp, Browser, Value) {
    let redirect_uri = format!("http://127.0.0.1:{}/oauth2/callback", free_port());
    let mut all = vec![
        ("REDIRECT_URIS", redirect_uri.as_str()),
        ("IDP_TEST_COUNTS", "1"),
    ];
    all.extend_from_slice(env);
    let idp = Idp::start(&all);
    let mut browser = Browser::default();
    let tokens = idp.code_flow_tokens(&mut browser, &redirect_uri, user);
    (idp, browser, tokens)
}

fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string()
}

/// The new refresh token of a successful refresh; panics with the answer otherwise.
fn refreshed(idp: &Idp, token: &str) -> String {
    let response = idp.refresh(token);
    assert_eq!(response.status, 200, "refresh: {response:?}");
    refresh_token(&response.json())
}

fn refused_as_invalid_grant(idp: &Idp, token: &str) {
    let response = idp.refresh(token);
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.json()["error"], "invalid_grant", "{response:?}");
}

#[test]
fn without_rotation_a_refresh_token_is_used_again_and_again() {
    let (idp, _, tokens) = signed_in(&[], "olga");
    let first = refresh_token(&tokens);
    assert_eq!(refreshed(&idp, &first), first, "the same token comes back");
    assert_eq!(refreshed(&idp, &first), first);
    assert_eq!(
        idp.counts(),
        json!({ "authorization_code": { "ok": 1 }, "refresh_token": { "ok": 2 } })
    );
}

#[test]
fn strict_rotation_refuses_a_used_token_and_the_grant_lives_on() {
    let (idp, _, tokens) = signed_in(&[("REFRESH_ROTATION", "strict")], "pia");
    let first = refresh_token(&tokens);
    let second = refreshed(&idp, &first);
    assert_ne!(second, first, "rotated");
    refused_as_invalid_grant(&idp, &first);
    let third = refreshed(&idp, &second);
    refused_as_invalid_grant(&idp, &second);
    refreshed(&idp, &third);
    assert_eq!(
        idp.counts(),
        json!({
            "authorization_code": { "ok": 1 },
            "refresh_token": { "ok": 3, "invalid_grant": 2 }
        })
    );
}

#[test]
fn family_rotation_revokes_the_whole_grant_when_a_used_token_comes_back() {
    let (idp, _, tokens) = signed_in(&[("REFRESH_ROTATION", "family")], "quinn");
    let first = refresh_token(&tokens);
    let second = refreshed(&idp, &first);
    assert_ne!(second, first, "rotated");
    refused_as_invalid_grant(&idp, &first);
    refused_as_invalid_grant(&idp, &second);
    assert_eq!(
        idp.counts()["refresh_token"],
        json!({ "ok": 1, "invalid_grant": 2 })
    );
}

#[test]
fn ending_the_idp_session_posts_a_logout_token_for_the_id_tokens_sid() {
    let posted: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = Arc::clone(&posted);
    let receiver = Served::start(0, move |request| {
        recorder.lock().unwrap().push(request.body.clone());
        (200, vec![], String::new())
    });
    let uri = format!(
        "http://127.0.0.1:{}/oauth2/backchannel_logout",
        receiver.port
    );
    let (idp, mut browser, tokens) = signed_in(&[("BACKCHANNEL_LOGOUT_URI", &uri)], "rosa");
    let id_token = claims_of(tokens["id_token"].as_str().unwrap());
    assert!(id_token["sid"].is_string(), "{id_token}");

    idp.end_session(&mut browser);

    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(posted[0].as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form.len(), 1, "{form:?}");
    assert_eq!(form[0].0, "logout_token");
    let logout = claims_of(&form[0].1);
    assert_eq!(logout["sid"], id_token["sid"], "{logout}");
    assert_eq!(logout["sub"], "rosa");
    assert_eq!(logout["aud"], "demo");
    assert_eq!(logout["iss"], json!(idp.issuer));
    assert!(
        logout["jti"].is_string() && logout["iat"].is_u64(),
        "{logout}"
    );
    assert_eq!(
        logout["events"],
        json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    assert!(logout.get("nonce").is_none(), "{logout}");
}

#[test]
fn a_user_with_200_groups_gets_them_all_in_the_id_token() {
    let groups: Vec<String> = (0..200).map(|i| format!("myorg:team-{i:03}")).collect();
    let users = json!({ "sam": { "groups": groups } }).to_string();
    let (_, _, tokens) = signed_in(&[("IDP_USERS", &users)], "sam");
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(claims_of(id_token)["groups"], json!(groups));
    assert!(id_token.len() > 4096, "{} bytes", id_token.len());
}
