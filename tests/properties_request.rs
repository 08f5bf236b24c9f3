//! Property tests of what reads a request: the header map as the host hands it over, the
//! login flow's decision on any path, cookie and hints, the refresh slots and the reply
//! guard. Arbitrary input never panics, and nothing it does reaches a header unchecked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use proptest::prelude::*;
use serde_json::json;
use support::props::config;
use support::random::Counter;
use url::Url;
use wasm_iap::core::config::login::Unauthenticated;
use wasm_iap::core::config::Settings;
use wasm_iap::core::identity::StrippedHeaders;
use wasm_iap::core::login::flow::{self, Endpoints, Request, Step};
use wasm_iap::core::login::refresh_slots::{self, Generation};
use wasm_iap::core::login::refreshed;
use wasm_iap::core::login::request_kind::RequestHints;
use wasm_iap::core::policy::path;
use wasm_iap::core::reply::{header_name_safe, header_value_safe, Reply};
use wasm_iap::core::request_headers::{serialize, RequestHeaders};

const ISSUER: &str = "https://dex.example.com";

thread_local! {
    static SETTINGS: &'static Settings = Box::leak(Box::new(parse_settings()));
}

fn settings() -> &'static Settings {
    SETTINGS.with(|s| *s)
}

fn parse_settings() -> Settings {
    {
        let config = json!({
            "providers": [{ "issuer": ISSUER, "audiences": ["prometheus"],
                            "jwks": support::mint::shared_keys().jwks() }],
            "login": [{
                "hosts": ["*"], "issuer": ISSUER, "client_id": "prometheus",
                "client_secret": "s3cret", "cookie_secrets": ["a-cookie-secret-of-at-least-32-bytes!"],
                "cluster": "dex", "allowed_redirect_hosts": [".example.com"],
                "authorization_endpoint": "https://dex.example.com/auth",
                "token_endpoint": "https://dex.example.com/token",
                "end_session_endpoint": "https://dex.example.com/logout",
                "end_idp_session": true,
            }],
        });
        Settings::parse(&config.to_string()).unwrap()
    }
}

fn endpoints() -> Endpoints {
    Endpoints {
        authorization: Url::parse("https://dex.example.com/auth").unwrap(),
        token: Url::parse("https://dex.example.com/token").unwrap(),
        end_session: Some(Url::parse("https://dex.example.com/logout").unwrap()),
    }
}

fn assert_safe(reply: &Reply) -> Result<(), TestCaseError> {
    for (name, value) in &reply.headers {
        prop_assert!(header_name_safe(name), "header name {name:?}");
        prop_assert!(header_value_safe(value), "{name}: {value:?}");
    }
    if let Some(location) = reply.header("location") {
        let on_this_host = location.starts_with('/') && !location.starts_with("//");
        let to_idp = location.starts_with("https://dex.example.com/");
        let allowed = Url::parse(location)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.ends_with(".example.com")))
            .unwrap_or(false);
        prop_assert!(on_this_host || to_idp || allowed, "Location {location:?}");
    }
    Ok(())
}

/// Paths that look like ours and like attacks: our endpoints with arbitrary query values.
fn path() -> impl Strategy<Value = String> {
    let value = "[\\PC\r\n\0;/\\\\%]{0,40}";
    prop_oneof![
        "\\PC{0,80}",
        (value, value).prop_map(|(s, c)| format!("/oauth2/callback?state={s}&code={c}")),
        (value, value).prop_map(|(e, s)| format!(
            "/oauth2/callback?error={e}&error_description={e}&state={s}"
        )),
        value.prop_map(|rd| format!("/oauth2/sign_out?rd={rd}")),
        value.prop_map(|p| format!("/{p}")),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn header_map_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Some(headers) = RequestHeaders::decode(bytes) {
            for (name, value) in headers.iter() {
                let _ = (name.len(), value.len());
            }
            let _ = headers.text("authorization");
        }
    }

    #[test]
    fn header_map_round_trips_any_bytes(pairs in proptest::collection::vec(("[a-z:-]{1,12}", proptest::collection::vec(any::<u8>(), 0..30)), 0..12)) {
        let borrowed: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let headers = RequestHeaders::decode(serialize(&borrowed)).unwrap();
        let back: Vec<(Vec<u8>, Vec<u8>)> = headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.clone())).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn spoofed_header_check_never_panics_and_never_strips_routing_headers(name in proptest::collection::vec(any::<u8>(), 0..40)) {
        let stripped = &settings().stripped_headers;
        let matched = stripped.matches(&name);
        for keep in [&b"x-forwarded-for"[..], b"x-forwarded-proto", b"authorization", b"cookie", b":path"] {
            if name.eq_ignore_ascii_case(keep) {
                prop_assert!(!matched);
            }
        }
        let _ = StrippedHeaders::new(&settings().identity_headers, &[String::from_utf8_lossy(&name).into_owned()]);
    }

    #[test]
    fn login_flow_never_writes_an_unsafe_header_or_an_open_redirect(
        path in path(),
        cookie in proptest::option::of("[\\PC\r\n;=\"]{0,120}"),
        accept in proptest::option::of("\\PC{0,40}"),
        mode in proptest::option::of(prop_oneof![Just("navigate".to_string()), "\\PC{0,10}"]),
        authority in "[\\PC:\\[\\]@/]{0,30}",
        has_authorization in any::<bool>(),
    ) {
        let service = &settings().login[0];
        let request = Request {
            scheme: "https",
            authority: &authority,
            path: &path,
            cookie_header: cookie.as_deref(),
            has_authorization,
            hints: RequestHints {
                method: "GET",
                accept: accept.as_deref(),
                sec_fetch_mode: mode.as_deref(),
                x_requested_with: None,
            },
            unauthenticated: Unauthenticated::Auto,
            may_wait: false,
        };
        match flow::decide(service, &request, Some(&endpoints()), 1_800_000_000, &mut Counter(1)) {
            Step::Respond(reply) | Step::StartLogin(reply) | Step::SignOut { reply, .. } => {
                assert_safe(&reply)?
            }
            Step::Forward(forwarding) => {
                if let Some(cookie) = &forwarding.cookie_header {
                    prop_assert!(header_value_safe(cookie) || cookie.contains('\t'));
                }
            }
            _ => {}
        }
        let ended = refreshed::session_ended(service, cookie.as_deref().filter(|c| header_value_safe(c)), &path, true);
        match &ended {
            Ok(reply) => assert_safe(reply)?,
            Err(refused) => prop_assert!(false, "a browser is sent back, not refused: {refused:?}"),
        }
    }

    #[test]
    fn refresh_slot_reader_never_panics_and_never_adopts_another_generation(
        value in proptest::collection::vec(any::<u8>(), 0..80),
        sid in "[a-zA-Z0-9]{1,20}",
        now in any::<u64>(),
    ) {
        let mine = Generation::new("prometheus", &sid, 1);
        let slot = refresh_slots::read(Some(&value), &mine, now);
        if !mine.owns(&value) {
            prop_assert!(matches!(slot, refresh_slots::Slot::Free | refresh_slots::Slot::Foreign));
        }
    }

    #[test]
    fn a_checked_reply_is_always_safe_to_write(
        headers in proptest::collection::vec(("\\PC{0,12}", "[\\PC\r\n\0]{0,30}"), 0..6),
    ) {
        let mut reply = wasm_iap::core::reply::redirect("/", vec![]);
        reply.headers.extend(headers);
        let checked = reply.checked().unwrap_or_else(|refused| refused);
        assert_safe(&checked)?;
    }

    #[test]
    fn normalised_paths_are_canonical_and_normalising_twice_changes_nothing(
        raw in prop_oneof![
            "\\PC{0,40}",
            "(/|//|/\\.|/\\.\\.|/%2[eE]|/%2[fF]|;|%[0-9a-fA-F]{2}|[a-z]{1,3}|\\?|#){0,12}",
        ],
    ) {
        if let Ok(normalised) = path::normalize(&raw) {
            prop_assert!(normalised.starts_with('/'), "{raw:?} -> {normalised:?}");
            prop_assert!(normalised.is_ascii(), "{raw:?} -> {normalised:?}");
            prop_assert!(!normalised.contains("//"), "{raw:?} -> {normalised:?}");
            prop_assert!(
                !normalised.split('/').any(|s| s == "." || s == ".."),
                "{raw:?} -> {normalised:?}"
            );
            prop_assert!(!normalised.contains(';') && !normalised.contains('?'));
            prop_assert_eq!(path::normalize(&normalised), Ok(normalised.clone()));
        }
    }
}
