//! Several IdPs per login service, natively: the `idps` configuration, the chooser, the
//! `provider` parameter, the remembered choice, and every session bound to the IdP that
//! created it (sign-in, cookie, refresh, sign-out, back-channel logout, bearer tokens).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::mint::{self, shared_keys};
use support::native_bed::*;
use support::native_two_idps::*;
use support::random::Counter;
use wasm_iap::core::config::idp::IdpId;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::{Decision, RequestBody};
use wasm_iap::core::login::backchannel::BACKCHANNEL_EVENT;
use wasm_iap::core::login::session::{self, Session};
use wasm_iap::core::reply::Reply;

fn problems(login: Value) -> Vec<String> {
    let config = json!({ "providers": providers(), "login": [login] });
    Settings::parse(&config.to_string()).expect_err("a configuration error")
}

fn with_cookie(cookie: &str) -> Vec<(&str, &str)> {
    let mut headers = BROWSER.to_vec();
    headers.push(("cookie", cookie));
    headers
}

/// A session of IdP `idp` of the service, sealed as its cookie (`name=value`).
fn session_cookie(bed: &Bed, idp: usize, session: &Session) -> String {
    let service = &bed.gateway.settings().login[0];
    let sealer = &service.idp(IdpId(idp)).sealer;
    let written = session::write(
        session,
        &[],
        &service.cookie_name,
        &service.cookie,
        sealer,
        mint::now_secs(),
        &mut Counter(7),
    )
    .unwrap();
    written
        .iter()
        .map(|c| support::sent_back(c).to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn alice(idp_sid: Option<&str>) -> Session {
    let now = mint::now_secs();
    Session {
        sid: "s-1".into(),
        user: "alice-id".into(),
        expires_at: now + 3600,
        refresh_at: now + 3600,
        signed_in_at: now - 60,
        idp_sid: idp_sid.map(str::to_string),
        ..Session::default()
    }
}

fn user_of(decision: Decision) -> Option<String> {
    match decision {
        Decision::Forward(forward) => header(&forward, "x-auth-request-user").map(str::to_string),
        Decision::Respond(_) => None,
        other => panic!("forwarded or answered, got {other:?}"),
    }
}

#[test]
fn both_forms_missing_ids_bad_labels_and_repeated_ids_are_configuration_errors() {
    let both = service(json!({ "issuer": ISSUER, "client_id": "x" }));
    let found = problems(both);
    for field in ["login[0].issuer", "login[0].client_id"] {
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(field) && p.contains("not both")),
            "{field}: {found:?}"
        );
    }
    let mut repeated = service(json!({}));
    repeated["idps"][1]["id"] = json!("corp");
    let found = problems(repeated);
    assert!(
        found
            .iter()
            .any(|p| p == "login[0].idps[1].id: \"corp\" appears twice"),
        "{found:?}"
    );
    for bad in ["", "Corp", "a.b", "x y", "corp;home", &"x".repeat(33)] {
        let mut entry = service(json!({}));
        entry["idps"][0]["id"] = json!(bad);
        let found = problems(entry);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("login[0].idps[0].id: must be")),
            "{bad:?}: {found:?}"
        );
    }
    let mut control = service(json!({}));
    control["idps"][0]["label"] = json!("Company\nSSO");
    assert!(problems(control)
        .iter()
        .any(|p| p.starts_with("login[0].idps[0].label")));
    let empty = service(json!({ "idps": [] }));
    assert!(problems(empty)
        .iter()
        .any(|p| p == "login[0].idps: must list at least one IdP"));
    let mut unknown_issuer = service(json!({}));
    unknown_issuer["idps"][1]["issuer"] = json!("https://nobody.example.com");
    assert!(problems(unknown_issuer)
        .iter()
        .any(|p| p.starts_with("login[0].idps[1].issuer")));
}

#[test]
fn a_browser_without_a_session_gets_the_chooser_and_a_program_401() {
    let mut bed = Bed::new(&config(json!({})));
    let chooser = responded(bed.get(APP, "/dash?tab=1", &BROWSER));
    assert_eq!(chooser.status, 200, "{chooser:?}");
    assert!(chooser.body.contains("Company SSO"), "{}", chooser.body);
    // Labels are escaped; each link starts a login with its IdP that ends at the deep link.
    assert!(
        chooser.body.contains("Home &lt;IdP&gt; &amp; co"),
        "{}",
        chooser.body
    );
    assert!(!chooser.body.contains("<IdP>"));
    assert!(chooser
        .body
        .contains("href=\"/oauth2/start?provider=corp&amp;rd=%2Fdash%3Ftab%3D1\""));
    assert!(chooser
        .body
        .contains("href=\"/oauth2/start?provider=home&amp;rd=%2Fdash%3Ftab%3D1\""));
    assert_eq!(chooser.header("cache-control"), Some("no-store"));
    let api = responded(bed.get(APP, "/dash", &[JSON]));
    assert_eq!(api.status, 401, "{api:?}");
}

#[test]
fn the_provider_parameter_skips_the_chooser_and_an_unknown_one_is_400() {
    let mut bed = Bed::new(&config(json!({})));
    let start = responded(bed.get(APP, "/oauth2/start?provider=home&rd=%2Fx", &BROWSER));
    assert_eq!(start.status, 302, "{start:?}");
    let location = start.header("location").unwrap();
    assert!(
        location.starts_with("https://home.example.com/auth?"),
        "{location}"
    );
    assert_eq!(param(location, "client_id").as_deref(), Some("app-home"));
    let login = start.set_cookies().find(|c| c.contains("_login_")).unwrap();
    assert!(
        support::cookie_value(login).starts_with("home."),
        "the login cookie names its IdP: {login}"
    );
    let corp = responded(bed.get(APP, "/oauth2/start?provider=corp", &BROWSER));
    let location = corp.header("location").unwrap();
    assert!(
        location.starts_with("https://dex.example.com/auth?"),
        "{location}"
    );
    assert_eq!(param(location, "client_id").as_deref(), Some("app-corp"));
    for unknown in ["nobody", "HOME", "home%0d%0aX:1", ""] {
        let path = format!("/oauth2/start?provider={unknown}");
        let reply = responded(bed.get(APP, &path, &BROWSER));
        assert_eq!(reply.status, 400, "{unknown}: {reply:?}");
        assert!(reply.set_cookies().next().is_none());
    }
}

/// Signs in through `provider` on `bed`: every cookie the browser then holds.
fn sign_in(bed: &mut Bed, provider: &str, issuer: &str, client_id: &str) -> Reply {
    let path = format!("/oauth2/start?provider={provider}&rd=%2Fdash");
    let start = responded(bed.get(APP, &path, &BROWSER));
    let login_cookie = start
        .set_cookies()
        .find(|c| c.contains("_login_"))
        .unwrap()
        .to_string();
    let state = param(start.header("location").unwrap(), "state").unwrap();
    let nonce = param(start.header("location").unwrap(), "nonce").unwrap();
    let callback = format!("/oauth2/callback?code=c0de&state={state}");
    let sent_back = support::sent_back(&login_cookie).to_string();
    let exchange = bed.get(APP, &callback, &with_cookie(&sent_back));
    let context = bed.last_context();
    let Decision::Calling(exchange) = exchange else {
        panic!("the code is exchanged: {exchange:?}")
    };
    let call = bed.host.calls.last().cloned().unwrap();
    assert_eq!(
        call.cluster, provider,
        "the token call goes to the IdP's cluster"
    );
    let claims = mint::claims_with(
        issuer,
        client_id,
        json!({ "nonce": nonce, "sid": format!("{provider}-idp-session") }),
    );
    let id_token = shared_keys().signer("RS256").sign(&claims);
    let answer = json!({ "id_token": id_token, "expires_in": 3600 }).to_string();
    let decision = bed.gateway.on_token_response(
        &mut bed.host,
        context,
        *exchange,
        call.token,
        Some(200),
        answer.as_bytes(),
    );
    responded(decision)
}

fn jar(reply: &Reply) -> String {
    reply
        .set_cookies()
        .filter(|c| !c.contains("Max-Age=0"))
        .map(|c| support::sent_back(c).to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_sign_in_through_the_second_idp_is_bound_to_it_and_remembered() {
    let mut bed = Bed::new(&config(json!({})));
    let signed_in = sign_in(&mut bed, "home", HOME_ISSUER, "app-home");
    assert_eq!(signed_in.status, 302, "{signed_in:?}");
    assert_eq!(signed_in.header("location"), Some("/dash"));
    let session = signed_in
        .set_cookies()
        .find(|c| c.starts_with("_app="))
        .unwrap();
    assert!(
        support::cookie_value(session).starts_with("home."),
        "{session}"
    );
    let remembered = signed_in
        .set_cookies()
        .find(|c| c.starts_with("_app_idp="))
        .expect("the choice is remembered");
    assert!(remembered.starts_with("_app_idp=home;"), "{remembered}");
    assert!(remembered.contains("Max-Age=2592000"), "{remembered}");
    assert!(remembered.contains("HttpOnly") && remembered.contains("Secure"));
    let cookies = jar(&signed_in);
    let forwarded = forwarded(bed.get(APP, "/dash", &with_cookie(&cookies)));
    assert_eq!(header(&forwarded, "x-auth-request-user"), Some("alice-id"));
    // Our cookies, the remembered choice among them, never reach the upstream.
    let cookie_sent = header(&forwarded, "cookie").unwrap_or_default();
    assert!(!cookie_sent.contains("_app"), "{cookie_sent}");
    // A token of the other IdP's for the same user does not make it the other's session:
    // the ID token was checked against home's issuer and client.
    let refused = sign_in_with_wrong_issuer(&mut bed);
    assert_eq!(refused.status, 401, "{refused:?}");
}

/// A login started with `home` whose ID token comes from `corp`'s issuer: refused.
fn sign_in_with_wrong_issuer(bed: &mut Bed) -> Reply {
    sign_in(bed, "home", ISSUER, "app-home")
}

#[test]
fn a_remembered_choice_skips_the_chooser_unless_switching_account() {
    let mut bed = Bed::new(&config(json!({})));
    let reply = responded(bed.get(APP, "/dash", &with_cookie("_app_idp=home")));
    assert_eq!(reply.status, 302, "{reply:?}");
    let location = reply.header("location").unwrap();
    assert!(
        location.starts_with("https://home.example.com/auth?"),
        "{location}"
    );
    let start = responded(bed.get(APP, "/oauth2/start?rd=%2Fa", &with_cookie("_app_idp=home")));
    assert!(start
        .header("location")
        .unwrap()
        .starts_with("https://home.example.com/auth?"));
    let switch = "/oauth2/start?prompt=select_account&rd=%2Fa";
    let chooser = responded(bed.get(APP, switch, &with_cookie("_app_idp=home")));
    assert_eq!(
        chooser.status, 200,
        "switch account shows the chooser: {chooser:?}"
    );
    assert!(chooser.body.contains("provider=corp"));
    // A value that names no configured IdP (or is no id at all) is no choice.
    for bad in [
        "_app_idp=gone",
        "_app_idp=home.x",
        "_app_idp=Home",
        "_app_idp=",
    ] {
        let reply = responded(bed.get(APP, "/dash", &with_cookie(bad)));
        assert_eq!(reply.status, 200, "{bad}: {reply:?}");
        assert!(reply.body.contains("provider=home"), "{bad}");
    }
}

#[test]
fn a_session_of_one_idp_never_opens_as_another() {
    let mut bed = Bed::new(&config(json!({})));
    let corp = session_cookie(&bed, 0, &alice(None));
    let home = session_cookie(&bed, 1, &alice(None));
    assert!(corp.starts_with("_app=corp."), "{corp}");
    assert!(home.starts_with("_app=home."), "{home}");
    assert_eq!(
        user_of(bed.get(APP, "/api", &[("cookie", &corp), JSON])).as_deref(),
        Some("alice-id")
    );
    assert_eq!(
        user_of(bed.get(APP, "/api", &[("cookie", &home), JSON])).as_deref(),
        Some("alice-id")
    );
    // The same sealed bytes under the other IdP's tag, or without a tag: no session.
    let moved = corp.replacen("_app=corp.", "_app=home.", 1);
    let untagged = corp.replacen("_app=corp.", "_app=", 1);
    for cookie in [moved, untagged] {
        let reply = responded(bed.get(APP, "/api", &[("cookie", &cookie), JSON]));
        assert_eq!(reply.status, 401, "{cookie}: {reply:?}");
    }
    // Each IdP's identity keeps its issuer: rules on issuers tell them apart.
    let by_issuer = config(json!({
        "routes": [{ "allow": [{ "issuers": [HOME_ISSUER] }] }],
    }));
    let mut bed = Bed::new(&by_issuer);
    let corp = session_cookie(&bed, 0, &alice(None));
    let home = session_cookie(&bed, 1, &alice(None));
    let refused = responded(bed.get(APP, "/api", &[("cookie", &corp), JSON]));
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(matches!(
        bed.get(APP, "/api", &[("cookie", &home), JSON]),
        Decision::Forward(_)
    ));
}

#[test]
fn a_single_idp_service_keeps_its_cookies_untagged_and_valid() {
    let single = json!({
        "providers": [provider()],
        "login": [login_service(APP, "app", "_app", json!({}))],
    });
    let mut bed = Bed::new(&single);
    let cookie = bed.session_cookie(0, &alice(None));
    assert!(!cookie.contains('.'), "no tag with one IdP: {cookie}");
    assert!(matches!(
        bed.get(APP, "/api", &[("cookie", &cookie), JSON]),
        Decision::Forward(_)
    ));
    let start = responded(bed.get(APP, "/dash", &BROWSER));
    assert_eq!(start.status, 302, "no chooser with one IdP");
    assert!(start.set_cookies().all(|c| !c.starts_with("_app_idp=")));
}

#[test]
fn bearer_tokens_of_either_idp_are_accepted() {
    let mut bed = Bed::new(&config(json!({})));
    for issuer in [ISSUER, HOME_ISSUER] {
        let token =
            shared_keys()
                .signer("ES256")
                .sign(&mint::claims_with(issuer, AUDIENCE, json!({})));
        let auth = bearer(&token);
        assert!(
            matches!(
                bed.get(APP, "/api", &with_bearer(&auth)),
                Decision::Forward(_)
            ),
            "{issuer}"
        );
    }
}

#[test]
fn sign_out_ends_the_session_at_its_own_idp() {
    let mut bed = Bed::new(&config(json!({ "end_idp_session": true })));
    let home = session_cookie(&bed, 1, &alice(None));
    let reply = responded(bed.get(APP, "/oauth2/sign_out?rd=%2Fbye", &with_cookie(&home)));
    assert_eq!(reply.status, 302, "{reply:?}");
    let location = reply.header("location").unwrap();
    assert!(
        location.starts_with("https://home.example.com/logout?"),
        "{location}"
    );
    assert_eq!(param(location, "client_id").as_deref(), Some("app-home"));
    let corp = session_cookie(&bed, 0, &alice(None));
    let reply = responded(bed.get(APP, "/oauth2/sign_out", &with_cookie(&corp)));
    let location = reply.header("location").unwrap();
    assert!(
        location.starts_with("https://dex.example.com/logout?"),
        "{location}"
    );
    assert_eq!(param(location, "client_id").as_deref(), Some("app-corp"));
}

#[test]
fn a_refresh_goes_to_the_sessions_own_idp_and_stays_bound_to_it() {
    let mut entry = service(json!({}));
    entry["idps"][1]["client_auth"] = json!("client_secret_post");
    let mut bed = Bed::new(&json!({ "providers": providers(), "login": [entry] }));
    let mut expired = alice(None);
    expired.refresh_at = mint::now_secs() - 10;
    expired.refresh_token = Some(wasm_iap::core::secret::Secret::new("rt-home"));
    let home = session_cookie(&bed, 1, &expired);
    let decision = bed.get(APP, "/dash", &with_cookie(&home));
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    assert!(bed.gateway.settle(&mut bed.host, None).is_empty());
    let call = bed.host.calls.last().cloned().expect("the refresh is sent");
    assert_eq!(call.cluster, "home", "{call:?}");
    assert!(call.body.contains("refresh_token=rt-home"), "{}", call.body);
    assert!(call.body.contains("client_id=app-home"), "{}", call.body);
    assert!(
        call.url.starts_with("https://home.example.com/token"),
        "{}",
        call.url
    );
}

/// A logout token of `issuer` for `client_id`, naming IdP session `sid`.
fn logout_token(issuer: &str, client_id: &str, sid: &str, jti: &str) -> String {
    let now = mint::now_secs();
    let claims = json!({
        "iss": issuer, "aud": client_id, "iat": now, "exp": now + 120, "jti": jti,
        "sid": sid, "sub": "alice-id", "events": { BACKCHANNEL_EVENT: {} },
    });
    shared_keys().signer("RS256").sign_as_logout(&claims)
}

fn post_logout(bed: &mut Bed, token: &str) -> Reply {
    let body = format!("logout_token={token}");
    let body = RequestBody::Whole(body.as_bytes());
    let form = ("content-type", "application/x-www-form-urlencoded");
    responded(bed.send_with_body("POST", APP, "/oauth2/backchannel_logout", &[form], body))
}

#[test]
fn a_back_channel_logout_is_checked_against_the_idp_it_names_and_ends_only_its_sessions() {
    let mut bed = Bed::new(&config(json!({})));
    let corp = session_cookie(&bed, 0, &alice(Some("idp-1")));
    let home = session_cookie(&bed, 1, &alice(Some("idp-1")));
    let passes = |bed: &mut Bed, cookie: &str| {
        matches!(
            bed.get(APP, "/api", &[("cookie", cookie), JSON]),
            Decision::Forward(_)
        )
    };
    // Home's issuer with corp's client: no IdP of the service is that pair.
    let mixed = post_logout(
        &mut bed,
        &logout_token(HOME_ISSUER, "app-corp", "idp-1", "j-0"),
    );
    assert_eq!(mixed.status, 400, "{mixed:?}");
    let done = post_logout(
        &mut bed,
        &logout_token(HOME_ISSUER, "app-home", "idp-1", "j-1"),
    );
    assert_eq!(done.status, 200, "{done:?}");
    bed.tick();
    assert!(!passes(&mut bed, &home), "home's IdP session ended");
    assert!(
        passes(&mut bed, &corp),
        "corp's session of the same sid is another IdP's"
    );
    let done = post_logout(&mut bed, &logout_token(ISSUER, "app-corp", "idp-1", "j-2"));
    assert_eq!(done.status, 200, "{done:?}");
    bed.tick();
    assert!(!passes(&mut bed, &corp));
}

#[test]
fn a_login_cookie_of_one_idp_does_not_finish_at_another() {
    let mut bed = Bed::new(&config(json!({})));
    let start = responded(bed.get(APP, "/oauth2/start?provider=home", &BROWSER));
    let login_cookie = start.set_cookies().find(|c| c.contains("_login_")).unwrap();
    let (name, value) = support::sent_back(login_cookie).split_once('=').unwrap();
    let state = param(start.header("location").unwrap(), "state").unwrap();
    let moved = format!("{name}={}", value.replacen("home.", "corp.", 1));
    let callback = format!("/oauth2/callback?code=c0de&state={state}");
    let reply = responded(bed.get(APP, &callback, &with_cookie(&moved)));
    assert_eq!(reply.status, 400, "{reply:?}");
}
