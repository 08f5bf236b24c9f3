//! Property tests of every parser in `wasm_iap::core`: arbitrary input never panics, and
//! each parser keeps the promise its documentation makes. Cases: 256, or `PROPTEST_CASES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::Ed25519KeyPair;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use support::props::config;
use url::Url;
use wasm_iap::core::bearer::claims::{self, ClaimRules};
use wasm_iap::core::bearer::error::AuthError;
use wasm_iap::core::bearer::token;
use wasm_iap::core::config::duration;
use wasm_iap::core::config::Settings;
use wasm_iap::core::cookies::{self, CookieAttributes, SameSite};
use wasm_iap::core::hostname::strip_port;
use wasm_iap::core::keys::algorithm::Algorithm;
use wasm_iap::core::keys::fetch::{read_discovery, read_jwks, CalloutResponse, MAX_DOCUMENT_BYTES};
use wasm_iap::core::keys::jwks::KeySet;
use wasm_iap::core::keys::record::{lease_available, lease_value, max_age, Discovery, KeysRecord};
use wasm_iap::core::login::oidc::{
    is_well_formed_state, read_tokens, PendingLogin, TokenError, Tokens,
};
use wasm_iap::core::login::redirect::safe_target;
use wasm_iap::core::login::request_kind::{is_browser_navigation, RequestHints};
use wasm_iap::core::login::session::{self, is_session_cookie, Session};
use wasm_iap::core::random::{NoRandomness, Random};
use wasm_iap::core::seal::Sealer;
use wasm_iap::core::secret::Secret;

// ---------------------------------------------------------------------------------------
// Shared helpers and strategies
// ---------------------------------------------------------------------------------------

const ISSUER: &str = "https://dex.example.com";
const NOW: u64 = 1_800_000_000;
const SECRET: &str = "a-cookie-secret-of-at-least-32-bytes!";
const DEPTHS: [usize; 3] = [129, 1_000, 10_000];

/// Xorshift: the deterministic randomness the core asks for (nonces, session ids).
struct Xorshift(u64);

impl Random for Xorshift {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        for byte in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
        Ok(())
    }
}

fn seeded(seed: u64) -> Xorshift {
    Xorshift(seed | 1)
}

fn sealer() -> Sealer {
    Sealer::new(
        &[Secret::new(SECRET)],
        "https://issuer.example.com",
        "client\n_iap",
    )
    .expect("a 37-byte secret is enough")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Any text, control characters and all Unicode planes included.
fn text(max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(any::<char>(), 0..=max)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

/// Text made mostly of `fragments` that matter to a parser, with arbitrary characters
/// in between, so that interesting combinations come up far more often than by chance.
fn soup(fragments: &'static [&'static str], max: usize) -> BoxedStrategy<String> {
    let piece = prop_oneof![
        4 => prop::sample::select(fragments).prop_map(str::to_string),
        1 => text(3),
    ];
    prop::collection::vec(piece, 0..=max)
        .prop_map(|pieces| pieces.concat())
        .boxed()
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max).boxed()
}

/// Arbitrary JSON, a few levels deep. Without floats, values survive a text round trip
/// exactly.
fn arb_json(floats: bool) -> BoxedStrategy<Value> {
    let numbers = if floats {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
        ]
        .boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        numbers,
        text(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(6), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// JSON text nested `depth` levels deep, built as a string (no recursion in the test).
fn deeply_nested(depth: usize, shape: u8) -> String {
    match shape % 5 {
        0 => "[".repeat(depth),
        1 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        2 => format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)),
        3 => format!(r#"{{"keys":[{{"kty":"RSA","n":{}"#, "[".repeat(depth)),
        _ => format!("{}{}", r#"{"a":["#.repeat(depth), "]}".repeat(depth)),
    }
}

fn deep_json() -> BoxedStrategy<String> {
    (prop::sample::select(&DEPTHS[..]), any::<u8>())
        .prop_map(|(depth, shape)| deeply_nested(depth, shape))
        .boxed()
}

/// A real Ed25519 public JWK (kid "good"), generated once.
fn good_jwk() -> &'static Value {
    static JWK: OnceLock<Value> = OnceLock::new();
    JWK.get_or_init(|| {
        let pair = Ed25519KeyPair::generate();
        let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).expect("jwk");
        jwk["kid"] = json!("good");
        jwk["alg"] = json!("EdDSA");
        jwk["use"] = json!("sig");
        jwk
    })
}

fn good_jwks() -> Value {
    json!({ "keys": [good_jwk().clone()] })
}

fn http_url(text: &str) -> bool {
    Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// Percent-decoding as a browser does it, independent of the code under test.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// core::bearer::token::parse
// ---------------------------------------------------------------------------------------

const ALG_NAMES: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "none",
    "HS256", "rs256", "",
];

/// Checks what `parse` promises for any input, and returns the decoded header when the
/// token was accepted.
fn check_token_result(text: &str, max: usize) -> Result<(), TestCaseError> {
    match token::parse(text, max) {
        Err(AuthError::TokenTooLarge { max: m }) => {
            prop_assert_eq!(m, max);
            prop_assert!(text.len() > max);
        }
        Err(AuthError::Malformed { what }) => prop_assert!(!what.is_empty()),
        Err(AuthError::AlgorithmNotAccepted { alg }) => {
            prop_assert!(Algorithm::from_name(&alg).is_none(), "{alg} is accepted")
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        Ok(t) => {
            prop_assert!(text.len() <= max);
            prop_assert_eq!(t.compact, text);
            let parts: Vec<&str> = text.split('.').collect();
            prop_assert_eq!(parts.len(), 3);
            prop_assert!(!parts[2].is_empty(), "unsigned token accepted");
            let header = URL_SAFE_NO_PAD
                .decode(parts[0])
                .expect("header was base64url");
            let header: Value = serde_json::from_slice(&header).expect("header was JSON");
            // RFC 7515 §5.2 step 4, RFC 7519 §7.2 step 4: the header is a JSON object.
            prop_assert!(
                header.is_object(),
                "accepted header {header}, not a JSON object"
            );
            prop_assert_eq!(
                header.get("alg").and_then(Value::as_str),
                Some(t.alg.name())
            );
            prop_assert_eq!(header.get("kid").and_then(Value::as_str), t.kid.as_deref());
        }
    }
    Ok(())
}

fn header_json() -> BoxedStrategy<Value> {
    let alg = prop_oneof![
        4 => prop::sample::select(ALG_NAMES).prop_map(Value::from),
        1 => arb_json(true),
    ];
    let kid = prop_oneof![
        3 => text(8).prop_map(Value::from),
        1 => arb_json(true),
    ];
    // The same fields in the other shapes JSON has: `[alg]`, `[alg, kid]`, a bare string.
    let other_shapes =
        (prop::sample::select(ALG_NAMES), text(4), 0usize..3).prop_map(|(alg, kid, shape)| {
            match shape {
                0 => json!([alg]),
                1 => json!([alg, kid]),
                _ => json!(alg),
            }
        });
    prop_oneof![
        1 => other_shapes,
        6 => (
            prop::option::weighted(0.9, alg),
            prop::option::weighted(0.5, kid),
            prop::collection::btree_map(
                prop_oneof![4 => "[a-z]{1,4}", 1 => Just("typ".to_string()), 1 => Just("crit".to_string())],
                prop_oneof![3 => arb_json(true), 1 => Just(Value::String("JWT".into())), 1 => Just(Value::String("at+jwt".into()))],
                0..3,
            ),
        )
            .prop_map(|(alg, kid, extra)| {
                let mut header: Map<String, Value> = extra.into_iter().collect();
                if let Some(alg) = alg {
                    header.insert("alg".into(), alg);
                }
                if let Some(kid) = kid {
                    header.insert("kid".into(), kid);
                }
                Value::Object(header)
            }),
        1 => arb_json(true),
    ]
    .boxed()
}

fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        4 => bytes(64).prop_map(b64),
        2 => "[A-Za-z0-9_-]{0,40}",
        1 => text(20),
        1 => deep_json().prop_map(b64),
        1 => (1usize..300_000).prop_map(|n| "A".repeat(n)),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_parser_never_panics_on_arbitrary_text(
        text in prop_oneof![text(300), soup(&[".", "e30", "eyJhbGciOiJSUzI1NiJ9", "=", "%", "..", "A"], 40)],
        max in prop_oneof![0usize..400, Just(usize::MAX)],
    ) {
        check_token_result(&text, max)?;
    }

    #[test]
    fn token_parser_reads_back_header_and_claims_of_three_base64url_json_segments(
        header in header_json(),
        claims in arb_json(false),
        signature in "[A-Za-z0-9_-]{0,20}",
    ) {
        let text = format!(
            "{}.{}.{signature}",
            b64(header.to_string()),
            b64(claims.to_string())
        );
        check_token_result(&text, usize::MAX)?;
        let kid_ok = matches!(header.get("kid"), None | Some(Value::Null) | Some(Value::String(_)));
        // No JWS extension is understood (RFC 7515 §4.1.11); a `typ` must name a JWT.
        let crit_ok = matches!(header.get("crit"), None | Some(Value::Null));
        let typ_ok = match header.get("typ") {
            None | Some(Value::Null) => true,
            Some(Value::String(typ)) => {
                let typ = typ.to_ascii_uppercase();
                typ == "JWT" || typ.ends_with("+JWT")
            }
            Some(_) => false,
        };
        let alg = header.get("alg").and_then(Value::as_str).and_then(Algorithm::from_name);
        let expected_ok = header.is_object()
            && alg.is_some()
            && kid_ok
            && crit_ok
            && typ_ok
            && claims.is_object()
            && !signature.is_empty();
        let parsed = token::parse(&text, usize::MAX);
        if expected_ok {
            let parsed = parsed.map_err(|e| TestCaseError::fail(format!("refused: {e:?}")))?;
            prop_assert_eq!(Some(parsed.alg), alg);
            prop_assert_eq!(Value::Object(parsed.claims), claims);
        } else if let Ok(parsed) = parsed {
            // `[alg, kid]` arrays would pass through serde's sequence form of a struct.
            prop_assert!(false, "accepted a token with header {header} and claims of type {}: {parsed:?}",
                if claims.is_object() { "object" } else { "other" });
        }
    }

    #[test]
    fn token_parser_never_panics_on_many_dots_huge_or_deeply_nested_segments(
        segments in prop::collection::vec(segment(), 0..6),
        dots in prop_oneof![Just(0usize), 1usize..20_000],
        max in prop_oneof![Just(16_384usize), Just(usize::MAX)],
    ) {
        let mut text = segments.join(".");
        text.push_str(&".".repeat(dots));
        check_token_result(&text, max)?;
        let many = "a.".repeat(dots);
        check_token_result(&many, max)?;
    }
}

// ---------------------------------------------------------------------------------------
// core::cookies
// ---------------------------------------------------------------------------------------

const COOKIE_BITS: &[&str] = &[
    ";",
    "; ",
    "=",
    "\"",
    " ",
    "\t",
    "a",
    "b",
    "_iap",
    "_iap_0",
    "_iap_login_x",
    "value",
    "==",
    ";;",
    "\u{a0}",
    "\u{3000}",
];

fn cookie_header() -> BoxedStrategy<String> {
    prop_oneof![text(200), soup(COOKIE_BITS, 30)].boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cookie_parser_never_panics_and_every_name_is_non_empty_without_semicolon(
        header in cookie_header(),
    ) {
        let pairs = cookies::parse(&header);
        prop_assert!(pairs.len() <= header.split(';').filter(|s| s.contains('=')).count());
        for (name, value) in pairs {
            prop_assert!(!name.is_empty());
            prop_assert!(!name.contains(';') && !name.contains('='), "{name:?}");
            prop_assert_eq!(name, name.trim());
            prop_assert!(!value.contains(';'), "{value:?}");
        }
    }

    #[test]
    fn cookie_filter_keeps_every_non_empty_pair_when_none_is_ours(header in cookie_header()) {
        let kept: Vec<&str> = header.split(';').map(str::trim).filter(|p| !p.is_empty()).collect();
        let expected = (!kept.is_empty()).then(|| kept.join("; "));
        prop_assert_eq!(cookies::without(&header, |_| false), expected);
    }

    #[test]
    fn cookie_filter_never_keeps_a_cookie_it_claims_and_keeps_all_others(
        header in cookie_header(),
        prefix in prop::sample::select(&["_iap", "a", "", "b="][..]),
    ) {
        let ours = |name: &str| name.starts_with(prefix);
        let name_of = |pair: &str| pair.split_once('=').map_or(pair, |(n, _)| n.trim()).to_string();
        let others = header
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty() && !ours(&name_of(p)))
            .count();
        match cookies::without(&header, ours) {
            None => prop_assert_eq!(others, 0),
            Some(rest) => {
                let kept: Vec<&str> = rest.split("; ").collect();
                prop_assert_eq!(kept.len(), others);
                for pair in kept {
                    prop_assert!(!ours(&name_of(pair)), "kept {pair:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// core::seal
// ---------------------------------------------------------------------------------------

const BASE64URL: &[char] = &[
    'A', 'B', 'Q', 'Z', 'a', 'b', 'q', 'z', '0', '1', '9', '-', '_', '=', '+', '/', '!',
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn sealer_open_never_panics_or_opens_arbitrary_text(
        sealed in prop_oneof![
            text(200),
            "[A-Za-z0-9_-]{0,200}",
            // version byte 1, then random nonce and "ciphertext"
            bytes(120).prop_map(|b| b64([&[1u8][..], &b].concat())),
        ],
        purpose in prop::sample::select(&["session", "login", ""][..]),
    ) {
        prop_assert_eq!(sealer().open(purpose, &sealed), None);
    }

    #[test]
    fn sealed_value_opens_to_its_plaintext_and_only_for_its_purpose(
        plaintext in bytes(2_000),
        purpose in text(10),
        other in text(10),
        seed in any::<u64>(),
    ) {
        let s = sealer();
        let sealed = s.seal(&purpose, &plaintext, &mut seeded(seed)).expect("sealing works");
        prop_assert!(sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(s.open(&purpose, &sealed), Some(plaintext));
        if other != purpose {
            prop_assert_eq!(s.open(&other, &sealed), None);
        }
    }

    #[test]
    fn sealed_value_with_one_character_changed_or_cut_never_opens(
        plaintext in bytes(200),
        seed in any::<u64>(),
        at in any::<Index>(),
        replacement in prop::sample::select(BASE64URL),
        cut in any::<Index>(),
    ) {
        let s = sealer();
        let sealed = s.seal("session", &plaintext, &mut seeded(seed)).expect("sealing works");
        let i = at.index(sealed.len());
        let mut chars: Vec<char> = sealed.chars().collect();
        if chars[i] != replacement {
            chars[i] = replacement;
            let tampered: String = chars.into_iter().collect();
            prop_assert_eq!(s.open("session", &tampered), None, "{} opened", tampered);
        }
        let truncated = &sealed[..cut.index(sealed.len())];
        prop_assert_eq!(s.open("session", truncated), None);
    }
}

// ---------------------------------------------------------------------------------------
// core::login::session::read
// ---------------------------------------------------------------------------------------

fn attributes() -> CookieAttributes {
    CookieAttributes {
        domain: None,
        path: "/".into(),
        secure: true,
        same_site: SameSite::Lax,
    }
}

fn arb_session() -> BoxedStrategy<Session> {
    (
        (text(20), text(20), prop::option::of(text(20))),
        prop::collection::vec(text(30), 0..300),
        (1u64..10_000_000, any::<u64>()),
        (prop::option::of(text(40)), prop::option::of(text(40))),
    )
        .prop_map(
            |((sid, user, email), groups, (lifetime, refresh_at), (rt, idt))| Session {
                sid,
                user,
                email,
                groups,
                expires_at: NOW + lifetime,
                refresh_at,
                refresh_token: rt.map(Secret::new),
                id_token: idt.map(Secret::new),
                ..Session::default()
            },
        )
        .boxed()
}

fn cookie_name() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(&["_iap", "_iap_0", "_iap_1", "_iap_7", "_iap_8", "_iap_00", "_iap_x"][..])
            .prop_map(str::to_string),
        1 => text(8),
    ]
    .boxed()
}

fn cookie_value() -> BoxedStrategy<String> {
    prop_oneof![
        text(60),
        "[A-Za-z0-9_-]{0,80}",
        bytes(200).prop_map(|b| b64([&[1u8][..], &b].concat())),
    ]
    .boxed()
}

fn as_pairs(cookies: &[(String, String)]) -> Vec<(&str, &str)> {
    cookies
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn session_reader_never_panics_or_yields_a_session_from_arbitrary_cookies(
        jar in prop::collection::vec((cookie_name(), cookie_value()), 0..12),
        now in prop_oneof![Just(NOW), any::<u64>()],
    ) {
        prop_assert_eq!(session::read(&as_pairs(&jar), "_iap", &sealer(), now), None);
    }

    #[test]
    fn session_written_then_read_among_foreign_cookies_is_the_same_session(
        s in arb_session(),
        before in prop::collection::vec((text(8), cookie_value()), 0..4),
        after in prop::collection::vec((text(8), cookie_value()), 0..4),
        seed in any::<u64>(),
    ) {
        let foreign = |jar: Vec<(String, String)>| -> Vec<(String, String)> {
            jar.into_iter().filter(|(n, _)| !is_session_cookie(n, "_iap")).collect()
        };
        let (before, after) = (foreign(before), foreign(after));
        let Some(headers) = session::write(
            &s, &as_pairs(&before), "_iap", &attributes(), &sealer(), NOW, &mut seeded(seed),
        ) else {
            // Only a session too large for 8 cookies is refused.
            prop_assert!(serde_json::to_vec(&s).map_or(0, |v| v.len()) > 4 * 3800);
            return Ok(());
        };
        let stored: Vec<(String, String)> = headers
            .iter()
            .filter_map(|h| h.split(';').next()?.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let jar: Vec<(String, String)> = before.into_iter().chain(stored).chain(after).collect();
        prop_assert_eq!(session::read(&as_pairs(&jar), "_iap", &sealer(), NOW), Some(s.clone()));
        prop_assert_eq!(session::read(&as_pairs(&jar), "_iap", &sealer(), s.expires_at), None);
    }
}

// ---------------------------------------------------------------------------------------
// core::login::redirect::safe_target
// ---------------------------------------------------------------------------------------

const ALLOWED_HOSTS: [&str; 2] = ["grafana.example.com", ".apps.example.com"];

const REDIRECT_BITS: &[&str] = &[
    "/",
    "/",
    "//",
    "\\",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "%09",
    "%0a",
    "%0D",
    "%00",
    "%7F",
    "%C2%85",
    "%E2%80%A8",
    "%",
    "%%",
    "%2",
    "&",
    "+",
    "=",
    "@",
    ":",
    "#",
    "?",
    ".",
    " ",
    "\t",
    "\n",
    "\u{a0}",
    "\u{2028}",
    "\u{85}",
    "https://",
    "http://",
    "HTTPS://",
    "https:",
    "https:/",
    "javascript:",
    "ftp://",
    "grafana.example.com",
    "GRAFANA.EXAMPLE.COM",
    "team.apps.example.com",
    "apps.example.com",
    "evil.com",
    "user:pw@",
    "[::1]",
    "127.0.0.1",
    ":8443",
    "a",
    "b",
    "é",
];

/// Absolute URLs: scheme, maybe user info, a host allowed or not, maybe a port, a path.
fn redirect_url() -> BoxedStrategy<String> {
    (
        prop::sample::select(
            &[
                "https://",
                "http://",
                "HTTPS://",
                "https:",
                "https:/",
                "https:///",
                "ftp://",
                "javascript:",
                "//",
            ][..],
        ),
        prop::option::weighted(
            0.2,
            prop::sample::select(&["user:pw@", "grafana.example.com@", "@", "u@"][..]),
        ),
        prop::sample::select(
            &[
                "grafana.example.com",
                "GRAFANA.example.com",
                "team.apps.example.com",
                "apps.example.com",
                "x.team.apps.example.com",
                "apps.example.com.evil.com",
                "grafana.example.com.",
                "evil.com",
                "grafana.example.com%2eevil.com",
                "xn--grafana-.example.com",
                "[::1]",
                "127.0.0.1",
                "grafana%2Eexample.com",
                "apps%2eexample.com",
            ][..],
        ),
        prop::option::weighted(
            0.2,
            prop::sample::select(&[":443", ":8443", ":", ":99999"][..]),
        ),
        soup(
            &[
                "/", "/", "a", "?", "#", "%2F", "%5C", "&", "=", "@", "\\", ".", "..",
            ],
            5,
        ),
    )
        .prop_map(|(scheme, user, host, port, path)| {
            format!(
                "{scheme}{}{host}{}{path}",
                user.unwrap_or(""),
                port.unwrap_or("")
            )
        })
        .boxed()
}

/// What a path may well hold: nothing a browser rewrites, but encoded characters that
/// would be dangerous if decoded, after query punctuation.
const PATH_BITS: &[&str] = &[
    "a", "b", "/", "&", "=", "?", "#", ";", "+", ".", "%20", "%25", "%2F", "%5C", "%0A", "%0d",
    "%09", "%7f",
];

fn host_allowed(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    ALLOWED_HOSTS
        .iter()
        .any(|allowed| match allowed.strip_prefix('.') {
            Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
            None => host == *allowed,
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn redirect_target_accepted_is_a_single_slash_path_or_a_url_on_an_allowed_host(
        target in prop_oneof![
            text(60),
            soup(REDIRECT_BITS, 12),
            soup(REDIRECT_BITS, 8).prop_map(|rest| format!("/{rest}")),
            soup(PATH_BITS, 8).prop_map(|rest| format!("/{rest}")),
            redirect_url(),
        ],
    ) {
        let allowed: Vec<String> = ALLOWED_HOSTS.iter().map(|h| h.to_string()).collect();
        let Some(accepted) = safe_target(&target, &allowed) else {
            return Ok(());
        };
        prop_assert!(
            !accepted.chars().any(|c| c.is_control() || c == '\\' || c.is_whitespace()),
            "{target:?} accepted as {accepted:?}"
        );
        if accepted.starts_with('/') {
            prop_assert!(accepted.is_ascii(), "a Location is ASCII: {accepted:?}");
            prop_assert_eq!(
                percent_decoded(&accepted),
                percent_decoded(&target),
                "a path is kept as given, non-ASCII percent-encoded"
            );
            prop_assert!(!accepted.starts_with("//"), "{accepted:?}");
            let decoded = percent_decoded(&accepted);
            prop_assert!(!decoded.starts_with("//"), "{accepted:?} decodes to {decoded:?}");
            prop_assert!(
                !decoded.chars().any(|c| c.is_control() || c == '\\'),
                "{accepted:?} decodes to {decoded:?}"
            );
        } else {
            let url = Url::parse(&accepted)
                .map_err(|e| TestCaseError::fail(format!("{accepted:?}: {e}")))?;
            prop_assert!(matches!(url.scheme(), "http" | "https"), "{accepted:?}");
            prop_assert!(url.username().is_empty() && url.password().is_none(), "{accepted:?}");
            prop_assert!(url.host_str().is_some_and(host_allowed), "{target:?} accepted as {accepted:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// core::config::Settings::parse
// ---------------------------------------------------------------------------------------

type Field = BoxedStrategy<Option<(String, Value)>>;

/// One of `values` mostly, sometimes anything.
fn pick(values: Vec<Value>) -> BoxedStrategy<Value> {
    prop_oneof![8 => prop::sample::select(values), 1 => arb_json(true)].boxed()
}

fn field(key: &'static str, present: f64, values: BoxedStrategy<Value>) -> Field {
    prop::option::weighted(present, values.prop_map(move |v| (key.to_string(), v))).boxed()
}

fn object(fields: Vec<Field>) -> BoxedStrategy<Value> {
    let extra = prop::option::weighted(0.05, ("[a-z_]{1,12}", arb_json(true)));
    prop_oneof![
        20 => (fields, extra).prop_map(|(fields, extra)| {
            Value::Object(fields.into_iter().flatten().chain(extra).collect())
        }),
        1 => arb_json(true),
    ]
    .boxed()
}

fn list_of(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    prop_oneof![
        12 => prop::collection::vec(item, 0..=max).prop_map(Value::Array),
        1 => arb_json(true),
    ]
    .boxed()
}

fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|v| Value::from(*v)).collect()
}

fn issuers() -> Vec<Value> {
    strings(&[
        ISSUER,
        ISSUER,
        "https://i",
        "http://idp.local:5556/dex",
        "dex.example.com",
        "ftp://i",
        "",
    ])
}

fn durations() -> Vec<Value> {
    let mut d = strings(&[
        "5s",
        "250ms",
        "1h",
        "10m",
        "0s",
        "5",
        "-1s",
        "1.5s",
        "99999999999999999999h",
    ]);
    d.push(json!(5));
    d
}

fn bools() -> Vec<Value> {
    vec![json!(true), json!(false), json!("no")]
}

fn string_lists(values: &[&str]) -> BoxedStrategy<Value> {
    prop_oneof![
        8 => prop::collection::vec(prop::sample::select(strings(values)), 0..4).prop_map(Value::Array),
        1 => pick(vec![json!("a"), json!([1, null])]),
    ]
    .boxed()
}

fn provider_json() -> BoxedStrategy<Value> {
    let deep = Value::from(deeply_nested(10_000, 0));
    let jwks = vec![
        good_jwks(),
        Value::from(good_jwks().to_string()),
        json!({ "keys": [] }),
        json!("[]"),
        json!("not json"),
        deep,
        json!({ "keys": [{ "kty": "RSA", "n": "AQAB", "e": "AQAB" }] }),
    ];
    object(vec![
        field("issuer", 0.95, pick(issuers())),
        field(
            "audiences",
            0.95,
            string_lists(&["prometheus", "grafana", ""]),
        ),
        field(
            "algorithms",
            0.2,
            string_lists(&["RS256", "EdDSA", "ES256", "HS256", "none"]),
        ),
        field("clock_skew", 0.2, pick(durations())),
        field("require_expiry", 0.2, pick(bools())),
        field("user_claim", 0.2, pick(strings(&["sub", "email", ""]))),
        field(
            "email_verified",
            0.1,
            pick(strings(&["required", "when_present", "never"])),
        ),
        field("discovery", 0.2, pick(bools())),
        field(
            "jwks_uri",
            0.2,
            pick(strings(&[
                "https://dex.example.com/keys",
                "ftp://i/k",
                "nope",
                "",
            ])),
        ),
        field("jwks", 0.3, pick(jwks)),
        field(
            "cluster",
            0.9,
            pick(strings(&["outbound|443||dex.example.com", "dex", ""])),
        ),
        field("timeout", 0.2, pick(durations())),
        field("jwks_refresh_interval", 0.1, pick(durations())),
        field("jwks_min_refetch_interval", 0.1, pick(durations())),
    ])
}

fn route_json() -> BoxedStrategy<Value> {
    object(vec![
        field("path_prefix", 0.8, pick(strings(&["/", "/api", "api", ""]))),
        field("methods", 0.5, string_lists(&["GET", "POST", "head"])),
        field(
            "unauthenticated",
            0.7,
            pick(strings(&["auto", "login", "deny", "maybe"])),
        ),
    ])
}

fn login_json() -> BoxedStrategy<Value> {
    let secrets = vec![
        json!([SECRET]),
        json!([SECRET, "another-secret-of-at-least-32-bytes!!"]),
        json!(["short"]),
        json!([]),
        json!([{ "env": "COOKIE_SECRET" }]),
        json!([7]),
        json!(SECRET),
    ];
    let endpoints = || {
        pick(strings(&[
            "https://dex.example.com/auth",
            "http://idp.local/token",
            "ftp://x",
            "",
        ]))
    };
    object(vec![
        field(
            "hosts",
            0.95,
            string_lists(&["grafana.example.com", "*", "GRAFANA.example.com:8443", ""]),
        ),
        field("issuer", 0.95, pick(issuers())),
        field("client_id", 0.95, pick(strings(&["grafana", ""]))),
        field(
            "client_secret",
            0.95,
            pick(vec![
                json!("s3cret"),
                json!({ "env": "CLIENT_SECRET" }),
                json!({ "env": 1 }),
                json!(5),
            ]),
        ),
        field(
            "client_auth",
            0.2,
            pick(strings(&[
                "client_secret_basic",
                "client_secret_post",
                "jwt",
            ])),
        ),
        field(
            "redirect_url",
            0.2,
            pick(strings(&[
                "https://grafana.example.com/cb",
                "ftp://x",
                "/cb",
            ])),
        ),
        field(
            "callback_path",
            0.2,
            pick(strings(&["/oauth2/callback", "cb", ""])),
        ),
        field("scopes", 0.2, string_lists(&["openid", "email", "groups"])),
        field("cookie_secrets", 0.95, pick(secrets)),
        field(
            "cookie_name",
            0.2,
            pick(strings(&[
                "_iap",
                "bad name",
                "",
                "a-b_c",
                "__Host-iap",
                "__Secure-iap",
            ])),
        ),
        field("cookie_domain", 0.1, pick(strings(&[".example.com", ""]))),
        field("cookie_path", 0.1, pick(strings(&["/", "x"]))),
        field("cookie_secure", 0.1, pick(bools())),
        field(
            "cookie_samesite",
            0.2,
            pick(strings(&["Strict", "lax", "NONE", "sometimes"])),
        ),
        field("session_lifetime", 0.1, pick(durations())),
        field("login_timeout", 0.1, pick(durations())),
        field(
            "sign_out_path",
            0.1,
            pick(strings(&["/oauth2/sign_out", "out"])),
        ),
        field("end_idp_session", 0.1, pick(bools())),
        field(
            "post_logout_redirect_url",
            0.1,
            pick(strings(&["https://example.com/", "/bye"])),
        ),
        field(
            "allowed_redirect_hosts",
            0.1,
            string_lists(&[".example.com", "x"]),
        ),
        field("refresh", 0.1, pick(bools())),
        field("routes", 0.3, list_of(route_json(), 3)),
        field("authorization_endpoint", 0.3, endpoints()),
        field("token_endpoint", 0.3, endpoints()),
        field("end_session_endpoint", 0.1, endpoints()),
        field(
            "cluster",
            0.2,
            pick(strings(&["outbound|443||dex.example.com", ""])),
        ),
        field("timeout", 0.1, pick(durations())),
    ])
}

fn settings_json() -> BoxedStrategy<Value> {
    object(vec![
        field("providers", 0.95, list_of(provider_json(), 3)),
        field(
            "max_token_size",
            0.2,
            pick(vec![
                json!(4096),
                json!(0),
                json!(-1),
                json!(1.5),
                json!("big"),
            ]),
        ),
        field("keys_wait_timeout", 0.1, pick(durations())),
        field(
            "identity_headers",
            0.2,
            object(vec![
                field(
                    "user",
                    0.5,
                    pick(strings(&["x-user", "bad header", "", "X-Email"])),
                ),
                field("email", 0.5, pick(strings(&["x-email", "é"]))),
            ]),
        ),
        field("forward_authorization", 0.1, pick(bools())),
        field(
            "strip_request_headers",
            0.2,
            string_lists(&["x-user", "x-auth-*", "bad header", "*", ""]),
        ),
        field("login", 0.5, list_of(login_json(), 2)),
    ])
}

/// `random`'s values for a few of its keys written over `base`, and a few of `base`'s keys
/// removed: a valid configuration with a handful of random changes.
fn overlay(base: Value, random: &Value, writes: &[Index], removals: &[Index]) -> Value {
    let Value::Object(mut base) = base else {
        return base;
    };
    if let Some(random) = random.as_object().filter(|r| !r.is_empty()) {
        let keys: Vec<&String> = random.keys().collect();
        for at in writes {
            let key = keys[at.index(keys.len())];
            base.insert(key.clone(), random[key].clone());
        }
    }
    for at in removals {
        if !base.is_empty() {
            let key = base
                .keys()
                .nth(at.index(base.len()))
                .cloned()
                .unwrap_or_default();
            base.remove(&key);
        }
    }
    Value::Object(base)
}

/// Valid configurations (discovery, or inline keys with explicit endpoints), each changed
/// in a few random places.
fn near_valid_settings() -> BoxedStrategy<Value> {
    let changes = || {
        (
            prop::collection::vec(any::<Index>(), 0..2),
            prop::option::weighted(0.15, any::<Index>())
                .prop_map(|r| r.into_iter().collect::<Vec<_>>()),
        )
    };
    (
        any::<bool>(),
        (settings_json(), changes()),
        (provider_json(), changes()),
        (login_json(), changes()),
    )
        .prop_map(|(inline, (top, (tw, tr)), (provider, (pw, pr)), (login, (lw, lr)))| {
            let (base_provider, base_login) = if inline {
                (
                    json!({"issuer": "https://i", "audiences": ["grafana"], "jwks": good_jwks()}),
                    json!({
                        "hosts": ["grafana.example.com"], "issuer": "https://i",
                        "client_id": "grafana", "client_secret": "s3cret",
                        "cookie_secrets": [SECRET], "cluster": "idp",
                        "authorization_endpoint": "https://i/auth", "token_endpoint": "https://i/token",
                    }),
                )
            } else {
                (
                    json!({"issuer": ISSUER, "audiences": ["grafana"], "cluster": "outbound|443||dex.example.com"}),
                    json!({
                        "hosts": ["grafana.example.com"], "issuer": ISSUER,
                        "client_id": "grafana", "client_secret": "s3cret", "cookie_secrets": [SECRET],
                    }),
                )
            };
            let provider = overlay(base_provider, &provider, &pw, &pr);
            let login = overlay(base_login, &login, &lw, &lr);
            let mut top = top;
            if let Some(top) = top.as_object_mut() {
                top.remove("providers");
                top.remove("login");
            }
            overlay(json!({"providers": [provider], "login": [login]}), &top, &tw, &tr)
        })
        .boxed()
}

fn check_settings(text: &str) -> Result<(), TestCaseError> {
    match Settings::parse(text) {
        Err(problems) => {
            prop_assert!(!problems.is_empty(), "rejected without a reason");
            prop_assert!(
                problems.iter().all(|p| !p.trim().is_empty()),
                "{problems:?}"
            );
        }
        Ok(settings) => {
            prop_assert!(!settings.providers.is_empty());
            prop_assert!(settings.max_token_bytes > 0);
            for (i, p) in settings.providers.iter().enumerate() {
                prop_assert!(http_url(&p.rules.issuer), "{}", p.rules.issuer);
                prop_assert!(!p.rules.audiences.is_empty());
                prop_assert!(!p.algorithms.is_empty());
                prop_assert!(settings.providers[..i]
                    .iter()
                    .all(|q| q.rules.issuer != p.rules.issuer));
            }
            for service in &settings.login {
                prop_assert!(service.idps.first().provider.0 < settings.providers.len());
                prop_assert!(
                    !service.hosts.is_empty() && !service.idps.first().client_id.is_empty()
                );
                prop_assert!(service.idps.first().scopes.iter().any(|s| s == "openid"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn settings_parser_never_panics_on_arbitrary_text(
        text in prop_oneof![
            text(200),
            soup(&["{", "}", "[", "]", "\"providers\"", ":", ",", "\"issuer\"", "\"", "null", "1"], 40),
            deep_json(),
        ],
    ) {
        check_settings(&text)?;
    }

    #[test]
    fn settings_parser_never_panics_on_config_shaped_json_and_rejects_with_reasons(
        value in prop_oneof![settings_json(), near_valid_settings()],
    ) {
        check_settings(&value.to_string())?;
    }

    #[test]
    fn settings_parser_never_panics_on_json_nested_ten_thousand_levels_in_a_field(
        deep in deep_json(),
        place in 0usize..4,
    ) {
        let text = match place {
            0 => format!(r#"{{"providers":{deep}}}"#),
            1 => format!(r#"{{"providers":[{{"issuer":"{ISSUER}","audiences":["a"],"jwks":{deep}}}]}}"#),
            2 => format!(r#"{{"providers":[{{"issuer":"{ISSUER}","audiences":["a"],"jwks":{}}}]}}"#, Value::from(deep)),
            _ => format!(r#"{{"login":[{deep}]}}"#),
        };
        check_settings(&text)?;
    }
}

// ---------------------------------------------------------------------------------------
// core::keys::jwks::KeySet::parse
// ---------------------------------------------------------------------------------------

fn jwk_json() -> BoxedStrategy<Value> {
    let b64_value = || {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..520).prop_map(|b| Value::from(b64(b))),
            1 => Just(Value::from("AQAB")),
            1 => arb_json(true),
        ]
        .boxed()
    };
    let kty = pick(strings(&["RSA", "EC", "OKP", "oct", "rsa", ""]));
    let crv = pick(strings(&[
        "P-256",
        "P-384",
        "P-521",
        "Ed25519",
        "X25519",
        "secp256k1",
    ]));
    let alg = pick(strings(ALG_NAMES));
    let usage = pick(strings(&["sig", "enc", ""]));
    let kid = pick(strings(&["good", "k1", "k2", ""]));
    object(vec![
        field("kty", 0.9, kty),
        field("crv", 0.6, crv),
        field("n", 0.5, b64_value()),
        field("e", 0.5, b64_value()),
        field("x", 0.5, b64_value()),
        field("y", 0.5, b64_value()),
        field("alg", 0.4, alg),
        field("use", 0.4, usage),
        field("kid", 0.6, kid),
    ])
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn key_set_parser_never_panics_on_arbitrary_text(
        text in prop_oneof![text(200), deep_json(), soup(&["{", "\"keys\"", ":", "[", "]", "}", "\"kty\"", "\"RSA\"", ","], 30)],
    ) {
        if let Err(e) = KeySet::parse(&text, &Algorithm::ALL) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn key_set_parser_never_panics_on_random_keys_and_a_bad_key_never_hides_a_good_one(
        keys in prop::collection::vec(jwk_json(), 0..5),
        good_at in prop::option::of(any::<Index>()),
        allowed in prop::sample::subsequence(Algorithm::ALL.to_vec(), 0..=9),
        as_text in any::<bool>(),
    ) {
        let mut keys = keys;
        if let Some(at) = good_at {
            keys.insert(at.index(keys.len() + 1), good_jwk().clone());
        }
        let document = json!({ "keys": keys });
        let parsed = if as_text {
            KeySet::parse(&document.to_string(), &allowed)
        } else {
            KeySet::from_value(&document, &allowed)
        };
        if good_at.is_some() && allowed.contains(&Algorithm::EdDSA) {
            let set = parsed.map_err(|e| TestCaseError::fail(format!("good key hidden: {e}")))?;
            prop_assert!(set.has_kid("good"));
            prop_assert!(set.candidates(Algorithm::EdDSA, Some("good")).next().is_some());
        } else if allowed.is_empty() {
            prop_assert!(parsed.is_err(), "a key usable with no algorithm");
        }
    }
}

// ---------------------------------------------------------------------------------------
// core::keys::fetch::read_discovery and read_jwks
// ---------------------------------------------------------------------------------------

fn status() -> BoxedStrategy<Option<u32>> {
    prop_oneof![
        4 => Just(Some(200)),
        1 => Just(None),
        1 => any::<u32>().prop_map(Some),
        1 => (100u32..600).prop_map(Some),
    ]
    .boxed()
}

fn cache_control() -> BoxedStrategy<Option<String>> {
    prop::option::of(prop_oneof![
        text(40),
        soup(
            &[
                "max-age",
                "Max-Age",
                "=",
                "3600",
                "\"60\"",
                ",",
                " ",
                "no-store",
                "-1",
                "+5",
                "99999999999999999999"
            ],
            8
        ),
    ])
    .boxed()
}

fn endpoint_value() -> BoxedStrategy<Value> {
    pick(vec![
        json!("https://dex.example.com/keys"),
        json!("https://dex.example.com/keys"),
        json!("https://dex.example.com/auth?x=1"),
        json!("http://i/k"),
        json!("http://i/k"),
        json!("file:///etc/passwd"),
        json!("ftp://x"),
        json!("not a url"),
        json!(""),
        json!(7),
        Value::Null,
    ])
}

fn discovery_json() -> BoxedStrategy<Value> {
    object(vec![
        field(
            "issuer",
            0.9,
            pick(vec![
                json!(ISSUER),
                json!(ISSUER),
                json!(ISSUER),
                json!("https://evil"),
                json!(5),
                Value::Null,
            ]),
        ),
        field("jwks_uri", 0.95, endpoint_value()),
        field("authorization_endpoint", 0.3, endpoint_value()),
        field("token_endpoint", 0.3, endpoint_value()),
        field("end_session_endpoint", 0.3, endpoint_value()),
    ])
}

fn body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        bytes(300),
        text(100).prop_map(String::into_bytes),
        deep_json().prop_map(String::into_bytes),
        discovery_json().prop_map(|v| v.to_string().into_bytes()),
        Just(good_jwks().to_string().into_bytes()),
        Just(vec![b' '; MAX_DOCUMENT_BYTES + 1]),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn discovery_reader_never_panics_on_arbitrary_responses(
        status in status(),
        body in body(),
        cache_control in cache_control(),
    ) {
        let response = CalloutResponse { status, cache_control: cache_control.as_deref(), body: &body };
        match read_discovery(&response, ISSUER) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(d) => {
                prop_assert_eq!(status, Some(200));
                prop_assert!(body.len() <= MAX_DOCUMENT_BYTES);
                prop_assert!(http_url(&d.jwks_uri), "{}", d.jwks_uri);
            }
        }
    }

    #[test]
    fn discovery_reader_accepts_only_our_issuer_with_http_endpoints(doc in discovery_json()) {
        let body = doc.to_string();
        let response = CalloutResponse { status: Some(200), cache_control: None, body: body.as_bytes() };
        let text_of = |k: &str| doc.get(k).and_then(Value::as_str);
        let expected_ok = text_of("issuer") == Some(ISSUER)
            && text_of("jwks_uri").is_some_and(http_url)
            && ["authorization_endpoint", "token_endpoint", "end_session_endpoint"]
                .iter()
                .all(|k| text_of(k).is_none_or(http_url));
        match read_discovery(&response, ISSUER) {
            Ok(d) => {
                prop_assert!(expected_ok, "accepted {doc}");
                let normalised = |k: &str| text_of(k).and_then(|t| Url::parse(t).ok()).map(|u| u.to_string());
                prop_assert_eq!(Some(d.jwks_uri), normalised("jwks_uri"));
                prop_assert_eq!(d.authorization_endpoint, normalised("authorization_endpoint"));
                prop_assert_eq!(d.token_endpoint, normalised("token_endpoint"));
                prop_assert_eq!(d.end_session_endpoint, normalised("end_session_endpoint"));
            }
            Err(e) => prop_assert!(!expected_ok, "refused {doc}: {e}"),
        }
    }

    #[test]
    fn jwks_reader_never_panics_on_arbitrary_responses_and_keeps_only_usable_sets(
        status in status(),
        body in body(),
        cache_control in cache_control(),
    ) {
        let response = CalloutResponse { status, cache_control: cache_control.as_deref(), body: &body };
        match read_jwks(&response, &Algorithm::ALL) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok((text, age)) => {
                prop_assert_eq!(status, Some(200));
                prop_assert!(body.len() <= MAX_DOCUMENT_BYTES);
                prop_assert_eq!(text.as_bytes(), &body[..]);
                prop_assert!(KeySet::parse(&text, &Algorithm::ALL).is_ok());
                prop_assert_eq!(age, cache_control.as_deref().and_then(max_age));
            }
        }
    }

    #[test]
    fn key_fetch_readers_never_panic_on_json_nested_ten_thousand_levels(
        deep in deep_json(),
        wrap in any::<bool>(),
    ) {
        let body = if wrap {
            format!(r#"{{"issuer":"{ISSUER}","jwks_uri":"https://i/k","x":{deep}}}"#)
        } else {
            deep
        };
        let response = CalloutResponse { status: Some(200), cache_control: None, body: body.as_bytes() };
        prop_assert!(read_discovery(&response, ISSUER).is_err());
        prop_assert!(read_jwks(&response, &Algorithm::ALL).is_err());
        // Unknown fields are skipped without building them (serde_json does so without
        // recursion), so a deep but well-formed object reads as "no tokens".
        let no_tokens = Tokens::default();
        let tokens = read_tokens(Some(200), body.as_bytes());
        prop_assert!(matches!(&tokens, Err(TokenError::Garbage)) || tokens == Ok(no_tokens), "{tokens:?}");
    }
}

// ---------------------------------------------------------------------------------------
// core::login::oidc::read_tokens
// ---------------------------------------------------------------------------------------

/// `expires_in` as the token endpoint may send it: a number, or a numeric string.
fn seconds(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn token_response_json() -> BoxedStrategy<Value> {
    let strings_or_junk = || {
        pick(vec![
            json!("a.b.c"),
            json!("r"),
            json!(""),
            json!(5),
            Value::Null,
        ])
    };
    object(vec![
        field("id_token", 0.7, strings_or_junk()),
        field("refresh_token", 0.5, strings_or_junk()),
        field("access_token", 0.5, strings_or_junk()),
        field(
            "expires_in",
            0.6,
            pick(vec![
                json!(300),
                json!(0),
                json!(-1),
                json!(1.5),
                json!("300"),
                json!(" 3599 "),
                json!("soon"),
                json!([1]),
                json!(u64::MAX),
                Value::Null,
            ]),
        ),
        field(
            "error",
            0.4,
            pick(vec![
                json!("invalid_grant"),
                json!(""),
                json!(1),
                Value::Null,
            ]),
        ),
    ])
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_response_reader_never_panics_and_classifies_by_status(
        status in prop_oneof![status(), (400u32..500).prop_map(Some)],
        body in prop_oneof![
            bytes(200),
            deep_json().prop_map(String::into_bytes),
            token_response_json().prop_map(|v| v.to_string().into_bytes()),
        ],
    ) {
        let result = read_tokens(status, &body);
        let doc: Option<Value> = serde_json::from_slice(&body).ok();
        match status {
            None => prop_assert!(matches!(result, Err(TokenError::Unavailable(_))), "{result:?}"),
            Some(200) => match result {
                Err(e) => prop_assert_eq!(e, TokenError::Garbage),
                Ok(tokens) => {
                    let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
                    prop_assert!(well_formed, "tokens read from non-JSON");
                    // Too deep for a `Value`, but well-formed: only unknown fields are deep.
                    let Some(doc) = doc else { return Ok(()) };
                    let text = |k: &str| doc.get(k).and_then(Value::as_str);
                    prop_assert_eq!(tokens.id_token.as_ref().map(Secret::expose), text("id_token"));
                    prop_assert_eq!(tokens.refresh_token.as_ref().map(Secret::expose), text("refresh_token"));
                    prop_assert_eq!(tokens.expires_in, seconds(doc.get("expires_in")));
                }
            },
            Some(s @ (408 | 429)) => {
                prop_assert_eq!(result, Err(TokenError::Unavailable(format!("HTTP {s}"))))
            }
            Some(s @ 400..=499) => match result {
                Err(TokenError::Refused(message)) => {
                    let prefix = format!("HTTP {s}: ");
                    prop_assert!(message.starts_with(&prefix), "{}", message);
                }
                other => prop_assert!(false, "HTTP {s} gave {other:?}"),
            },
            Some(s) => prop_assert_eq!(result, Err(TokenError::Unavailable(format!("HTTP {s}")))),
        }
    }

    #[test]
    fn token_response_with_well_typed_fields_is_always_read(doc in token_response_json()) {
        let well_typed = doc.as_object().is_some_and(|o| {
            ["id_token", "refresh_token", "error"]
                .iter()
                .all(|k| o.get(*k).is_none_or(|v| v.is_null() || v.is_string()))
        });
        let result = read_tokens(Some(200), doc.to_string().as_bytes());
        if well_typed {
            prop_assert!(result.is_ok(), "{doc} gave {result:?}");
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn login_state_check_accepts_exactly_the_states_a_login_makes(
        text in prop_oneof![
            text(50),
            "[A-Za-z0-9_=+/-]{43}",
            ("[A-Za-z0-9_-]{42}", any::<char>()).prop_map(|(s, c)| format!("{s}{c}")),
        ],
        seed in any::<u64>(),
    ) {
        if is_well_formed_state(&text) {
            prop_assert_eq!(text.len(), 43);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text:?}");
        }
        let login = PendingLogin::new("/".into(), NOW, 600, &mut seeded(seed))
            .ok_or_else(|| TestCaseError::fail("randomness was there"))?;
        prop_assert!(is_well_formed_state(&login.state), "{:?}", login.state);
    }
}

// ---------------------------------------------------------------------------------------
// core::keys::record: max_age, KeysRecord::decode, lease_available
// ---------------------------------------------------------------------------------------

fn arb_record() -> BoxedStrategy<KeysRecord> {
    let discovery = (
        text(20),
        prop::option::of(text(20)),
        prop::option::of(text(20)),
        prop::option::of(text(20)),
    )
        .prop_map(|(jwks_uri, a, t, e)| Discovery {
            jwks_uri,
            authorization_endpoint: a,
            token_endpoint: t,
            end_session_endpoint: e,
        });
    (
        prop::option::of(text(60)),
        prop::option::of(discovery),
        any::<bool>(),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        any::<u32>(),
    )
        .prop_map(
            |(jwks, discovery, rediscover, (fetched, attempted, refresh), failures)| KeysRecord {
                jwks,
                discovery,
                rediscover,
                fetched_at_ms: fetched,
                attempted_at_ms: attempted,
                refresh_at_ms: refresh,
                failures,
            },
        )
        .boxed()
}

const DIRECTIVES: &[&str] = &[
    "public",
    "private",
    "no-cache",
    "no-store",
    "must-revalidate",
    "s-maxage=5",
    "max-agex=7",
    "stale-while-revalidate=30",
    "",
    " ",
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn max_age_never_panics_and_is_only_read_from_a_max_age_directive(
        text in prop_oneof![text(80), cache_control().prop_map(Option::unwrap_or_default)],
    ) {
        if let Some(age) = max_age(&text) {
            let lower = text.to_ascii_lowercase();
            prop_assert!(lower.contains("max-age"), "{text:?} gave {age}");
        }
    }

    #[test]
    fn max_age_reads_the_first_max_age_directive_among_others(
        before in prop::collection::vec(prop::sample::select(DIRECTIVES), 0..4),
        age in any::<u64>(),
        spelling in 0usize..4,
        after in text(30),
    ) {
        let directive = match spelling {
            0 => format!("max-age={age}"),
            1 => format!("Max-Age = {age}"),
            2 => format!("MAX-AGE=\"{age}\""),
            _ => format!("\tmax-age ={age} "),
        };
        let header = before.into_iter().map(str::to_string).chain([directive, after]).collect::<Vec<_>>().join(",");
        prop_assert_eq!(max_age(&header), Some(age), "{:?}", header);
    }

    #[test]
    fn keys_record_decode_never_panics_and_reads_back_what_encode_wrote(
        garbage in prop_oneof![bytes(200), deep_json().prop_map(String::into_bytes), arb_json(true).prop_map(|v| v.to_string().into_bytes())],
        record in arb_record(),
    ) {
        let _ = KeysRecord::decode(&garbage);
        prop_assert_eq!(KeysRecord::decode(&record.encode()), Some(record));
    }

    #[test]
    fn fetch_lease_is_available_exactly_when_no_readable_deadline_is_ahead(
        lease in prop::option::of(prop_oneof![bytes(24), any::<u64>().prop_map(|d| d.to_string().into_bytes())]),
        deadline in any::<u64>(),
        now in any::<u64>(),
    ) {
        let readable = lease
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.parse::<u64>().ok());
        prop_assert_eq!(lease_available(lease.as_deref(), now), readable.is_none_or(|d| now >= d));
        prop_assert_eq!(lease_available(Some(&lease_value(deadline)), now), now >= deadline);
    }
}

// ---------------------------------------------------------------------------------------
// core::login::request_kind::is_browser_navigation
// ---------------------------------------------------------------------------------------

const ACCEPT_BITS: &[&str] = &[
    "text/html",
    "TEXT/HTML",
    "application/xhtml+xml",
    "application/json",
    "*/*",
    "image/avif",
    ",",
    ", ",
    ";",
    "q=",
    ";q=",
    "0",
    "0.5",
    "1",
    "NaN",
    "inf",
    "-1",
    "1e9",
    " ",
];

fn optional_hint(known: &'static [&'static str]) -> BoxedStrategy<Option<String>> {
    prop::option::of(prop_oneof![
        3 => prop::sample::select(known).prop_map(str::to_string),
        1 => text(20),
    ])
    .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn browser_navigation_check_never_panics_on_arbitrary_hints(
        method in prop_oneof![prop::sample::select(&["GET", "HEAD", "POST", "get", ""][..]).prop_map(str::to_string), text(8)],
        accept in prop::option::of(prop_oneof![soup(ACCEPT_BITS, 12), text(60)]),
        mode in optional_hint(&["navigate", "NAVIGATE", "cors", "no-cors", "same-origin"]),
        xrw in optional_hint(&["XMLHttpRequest"]),
    ) {
        let hints = RequestHints {
            method: &method,
            accept: accept.as_deref(),
            sec_fetch_mode: mode.as_deref(),
            x_requested_with: xrw.as_deref(),
        };
        let browser = is_browser_navigation(&hints);
        if !matches!(method.as_str(), "GET" | "HEAD") || xrw.is_some() {
            prop_assert!(!browser);
        } else if let Some(mode) = &mode {
            prop_assert_eq!(browser, mode.eq_ignore_ascii_case("navigate"));
        } else if browser {
            let accept = accept.unwrap_or_default().to_ascii_lowercase();
            prop_assert!(accept.contains("text/html") || accept.contains("application/xhtml+xml"), "{accept:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// core::bearer::claims::check
// ---------------------------------------------------------------------------------------

/// A NumericDate near `NOW`, mostly within `offsets` of it, sometimes anything odd.
fn time_value(offsets: std::ops::Range<i64>) -> BoxedStrategy<Value> {
    let (low, high) = (offsets.start as f64, offsets.end as f64);
    prop_oneof![
        4 => offsets.prop_map(|d| json!(NOW as i64 + d)),
        1 => (low..high).prop_map(|d| json!(NOW as f64 + d)),
        1 => pick(vec![json!(0), json!(-1), json!(1e300), json!(u64::MAX), json!(-0.5), json!("tomorrow"), Value::Null]),
    ]
    .boxed()
}

fn claims_json() -> BoxedStrategy<Map<String, Value>> {
    let fields = vec![
        // Weighted towards valid values, so that acceptance is common enough for its
        // properties to be checked.
        field(
            "iss",
            0.95,
            prop_oneof![
                8 => Just(json!(ISSUER)),
                1 => prop::sample::select(vec![json!("https://evil"), json!(ISSUER.to_uppercase()), json!(5), Value::Null]),
                1 => arb_json(true),
            ]
            .boxed(),
        ),
        field(
            "aud",
            0.95,
            prop_oneof![
                6 => prop::sample::select(vec![
                    json!("prometheus"),
                    json!("grafana"),
                    json!(["x", "grafana"]),
                    json!([1, "prometheus"]),
                ]),
                2 => prop::sample::select(vec![json!(["x"]), json!([]), json!(7), json!("Grafana"), Value::Null]),
                1 => arb_json(true),
            ]
            .boxed(),
        ),
        // Mostly an expiry ahead and nbf/iat behind; the edges (skew, saturation) come up too.
        field("exp", 0.9, time_value(-1_000..100_000)),
        field("nbf", 0.4, time_value(-100_000..1_000)),
        field("iat", 0.7, time_value(-100_000..1_000)),
        field("sub", 0.3, arb_json(true)),
    ];
    (
        fields,
        prop::collection::btree_map(text(5), arb_json(true), 0..3),
    )
        .prop_map(|(fields, extra)| {
            extra
                .into_iter()
                .chain(fields.into_iter().flatten())
                .collect()
        })
        .boxed()
}

fn numeric(claims: &Map<String, Value>, name: &str) -> Option<u64> {
    claims
        .get(name)
        .and_then(Value::as_f64)
        .map(|secs| secs as u64)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn claim_check_never_panics_and_accepts_only_valid_claims(
        claims in claims_json(),
        skew in prop_oneof![Just(0u64), Just(60), Just(u64::MAX), any::<u64>()],
        require_expiry in any::<bool>(),
        require_issued_at in any::<bool>(),
        now in prop_oneof![4 => Just(NOW), 1 => any::<u64>()],
    ) {
        let rules = ClaimRules {
            issuer: ISSUER.into(),
            audiences: vec!["prometheus".into(), "grafana".into()],
            clock_skew_secs: skew,
            require_expiry,
            require_issued_at,
        };
        let result = claims::check(&claims, &rules, now);
        if claims.get("iss").and_then(Value::as_str).is_none() {
            prop_assert_eq!(result.clone(), Err(AuthError::MissingClaim { claim: "iss".into() }));
        }
        let Ok(exp) = result else { return Ok(()) };
        prop_assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
        let ours = |v: &Value| v.as_str().is_some_and(|a| rules.audiences.iter().any(|r| r == a));
        let aud_ok = match claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(ours),
            Some(v) => ours(v),
            None => false,
        };
        prop_assert!(aud_ok, "aud {:?}", claims.get("aud"));
        prop_assert_eq!(exp, numeric(&claims, "exp"));
        if require_expiry {
            prop_assert!(exp.is_some());
        }
        if require_issued_at {
            prop_assert!(numeric(&claims, "iat").is_some(), "no iat: {:?}", claims.get("iat"));
        }
        for name in ["exp", "nbf", "iat"] {
            let time = claims.get(name).filter(|v| !v.is_null());
            prop_assert!(
                time.is_none_or(|v| v.as_f64().is_some_and(|t| t >= 0.0)),
                "{name} {time:?} accepted"
            );
        }
        let horizon = now.saturating_add(skew);
        if let Some(exp) = exp {
            prop_assert!(now < exp.saturating_add(skew), "expired {exp} accepted at {now}");
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = numeric(&claims, name) {
                prop_assert!(t <= horizon, "{name} {t} accepted at {now}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Smaller parsers: strip_port, durations, algorithm and SameSite names
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn host_port_stripping_never_panics_and_only_removes_a_numeric_port(
        host in prop_oneof![
            text(30),
            soup(&["example.com", ":", "8443", "[", "]", "::1", "[::1]", "a", "0", "."], 6),
        ],
        name in "[a-z0-9.-]{1,20}",
        port in any::<u16>(),
    ) {
        let stripped = strip_port(&host);
        prop_assert!(host.starts_with(stripped));
        if stripped != host {
            let rest = &host[stripped.len()..];
            prop_assert!(rest.starts_with(':'), "{host:?} -> {stripped:?}");
            prop_assert!(rest[1..].bytes().all(|b| b.is_ascii_digit()), "{host:?} -> {stripped:?}");
        }
        let with_port = format!("{name}:{port}");
        prop_assert_eq!(strip_port(&with_port), name.as_str());
        let ipv6 = format!("[::1]:{port}");
        prop_assert_eq!(strip_port(&ipv6), "[::1]");
        prop_assert_eq!(strip_port(&name), name.as_str());
    }

    #[test]
    fn duration_parser_never_panics_and_reads_a_whole_number_with_a_unit(
        text in prop_oneof![text(20), soup(&["1", "0", "99999999999999999999", "ms", "s", "m", "h", " ", "-", "."], 5)],
        amount in any::<u64>(),
        unit in prop::sample::select(&[("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)][..]),
    ) {
        if let Ok(ms) = duration::parse_millis(&text) {
            let trimmed = text.trim();
            let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
            let scale = match &trimmed[digits..] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                other => return Err(TestCaseError::fail(format!("{text:?} read with unit {other:?}"))),
            };
            let n: u64 = trimmed[..digits].parse().map_err(|_| TestCaseError::fail(format!("{text:?}")))?;
            prop_assert_eq!(Some(ms), n.checked_mul(scale));
        }
        let (suffix, scale) = unit;
        let spelled = format!(" {amount}{suffix} ");
        match amount.checked_mul(scale) {
            Some(ms) => prop_assert_eq!(duration::parse_millis(&spelled), Ok(ms)),
            None => prop_assert!(duration::parse_millis(&spelled).is_err()),
        }
    }

    #[test]
    fn algorithm_and_samesite_names_are_read_exactly(
        name in prop_oneof![prop::sample::select(ALG_NAMES).prop_map(str::to_string), text(8)],
        same_site in prop_oneof![prop::sample::select(&["Strict", "LAX", "none", "strict "][..]).prop_map(str::to_string), text(8)],
    ) {
        if let Some(alg) = Algorithm::from_name(&name) {
            prop_assert_eq!(alg.name(), name.as_str());
        }
        if SameSite::parse(&same_site).is_some() {
            prop_assert!(["strict", "lax", "none"].iter().any(|n| same_site.eq_ignore_ascii_case(n)));
        }
    }
}
