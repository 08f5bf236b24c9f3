//! The session a browser holds after login: what later requests need, sealed into one or
//! more cookies (browsers keep about 4 KB per cookie, so large sessions are chunked).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::core::config::idp::IdpId;
use crate::core::config::login::LoginService;
use crate::core::cookies::{self, CookieAttributes};
use crate::core::identity::Identity;
use crate::core::random::Random;
use crate::core::seal::Sealer;
use crate::core::secret::Secret;

/// Longest value put in one cookie; with name and attributes it stays below 4096 bytes.
pub(crate) const CHUNK_BYTES: usize = 3800;
/// Chunks read at most: a larger session is not ours.
const MAX_CHUNKS: usize = 8;
const PURPOSE: &str = "session";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random id, kept across refreshes: names the session for refresh coordination.
    pub sid: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Granted at login (the token response's `scope`), for scope rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The ID token's claims that rules and claim headers read, and no others.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// When the session ends whatever happens (cookie lifetime), unix seconds.
    pub expires_at: u64,
    /// When the IdP's tokens expire: refresh then, if a refresh token is held.
    pub refresh_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// For `id_token_hint` at sign-out (`end_idp_session`) and for the upstream's
    /// `Authorization` header (`set_authorization_header`), when either is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
    /// For the upstream (`pass_access_token`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// The ID token's `sid` (the IdP's session), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sid: Option<String>,
    /// The ID token's `sub` when the user claim is another one (back-channel logout names
    /// users by `sub`); `None`: `user` is the `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When the user signed in (unix seconds), kept across refreshes: a revocation of the
    /// user or the IdP session ends the sessions signed in before it. 0 in cookies written
    /// before it existed (every revocation of theirs applies).
    #[serde(default)]
    pub signed_in_at: u64,
    /// The IdP of its service that signed it in: the one whose sealer opened it (never
    /// written into the session, whose sealer already names it).
    #[serde(skip)]
    pub idp: IdpId,
    /// Last activity recorded (unix seconds), with `idle_timeout` only: written at sign-in,
    /// refresh and at most every tenth of the idle timeout (`idle.rs`). 0: none recorded
    /// (idle timeout off, or a session sealed before it existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active_at: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Session {
    /// Who the session's user is, as rules and identity headers see it; `issuer` is the
    /// service's provider (the ID token was checked against it at login).
    pub fn identity(&self, issuer: &str) -> Identity {
        Identity {
            user: self.user.clone(),
            email: self.email.clone(),
            preferred_username: self.preferred_username.clone(),
            groups: self.groups.clone(),
            scopes: self.scopes.clone(),
            issuer: issuer.to_string(),
            claims: self.claims.clone(),
            ..Identity::default()
        }
    }

    /// Takes in what a verified ID token says of the user (at login and on refresh).
    pub(crate) fn learn(&mut self, identity: Identity) {
        self.user = identity.user;
        self.email = identity.email;
        self.preferred_username = identity.preferred_username;
        self.groups = identity.groups;
        self.claims = identity.claims;
    }

    /// The ID token's `sub`.
    pub fn subject(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.user)
    }

    pub(crate) fn needs_refresh(&self, now_secs: u64) -> bool {
        now_secs >= self.refresh_at
    }
}

/// Whether a cookie name is one of the session cookies named `name`: `name` or `name_<n>`.
#[cfg(any(test, feature = "testing"))]
pub fn is_session_cookie(cookie: &str, name: &str) -> bool {
    cookie == name
        || cookie
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reassembles and opens the session from the request's cookies. Tampered, truncated,
/// foreign or expired sessions are all simply "no session".
#[cfg(any(test, feature = "testing"))]
pub fn read(
    request_cookies: &[(&str, &str)],
    name: &str,
    sealer: &Sealer,
    now_secs: u64,
) -> Option<Session> {
    let session = open(&sealed_value(request_cookies, name)?, sealer)?;
    (now_secs < session.expires_at).then_some(session)
}

/// The sealed session the request carries: the cookie `name`, or its chunks joined.
pub(crate) fn sealed_value<'a>(
    request_cookies: &[(&'a str, &'a str)],
    name: &str,
) -> Option<Cow<'a, str>> {
    let find = |wanted: &str| {
        request_cookies
            .iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, v)| *v)
    };
    if let Some(whole) = find(name) {
        return Some(Cow::Borrowed(whole));
    }
    let chunks: Vec<&str> = (0..MAX_CHUNKS)
        .map_while(|i| find(&format!("{name}_{i}")))
        .collect();
    (!chunks.is_empty()).then(|| Cow::Owned(chunks.concat()))
}

/// A session as sealed: with the issuer whose ID token started it.
#[derive(Serialize)]
struct Sealing<'a> {
    iss: &'a str,
    #[serde(flatten)]
    session: &'a Session,
}

#[derive(Deserialize)]
struct Unsealed {
    iss: String,
    #[serde(flatten)]
    session: Session,
}

/// Seals `session` as one of `sealer`'s issuer.
pub(crate) fn seal(session: &Session, sealer: &Sealer, random: &mut dyn Random) -> Option<String> {
    let plain = serde_json::to_vec(&Sealing {
        iss: sealer.issuer(),
        session,
    })
    .ok()?;
    sealer.seal(PURPOSE, &plain, random)
}

/// Opens a sealed session, whatever its expiry; `None` when it is not one of ours, or
/// names another issuer than the sealer's.
pub(crate) fn open(sealed: &str, sealer: &Sealer) -> Option<Session> {
    let plain = sealer.open(PURPOSE, sealed)?;
    let unsealed: Unsealed = serde_json::from_slice(&plain).ok()?;
    (unsealed.iss == sealer.issuer()).then_some(unsealed.session)
}

/// Opens a session sealed by one of `service`'s IdPs: the one its tag names, whose sealer
/// alone can open it; the session then knows its IdP.
pub(crate) fn open_for(service: &LoginService, sealed: &str) -> Option<Session> {
    let idp = service.idps.of_sealed(sealed);
    let mut session = open(sealed, &service.idp(idp).sealer)?;
    session.idp = idp;
    Some(session)
}

/// `read` for `service`: with whichever of its IdPs sealed the session.
pub(crate) fn read_for(
    request_cookies: &[(&str, &str)],
    service: &LoginService,
    now_secs: u64,
) -> Option<Session> {
    let session = open_for(
        service,
        &sealed_value(request_cookies, &service.cookie_name)?,
    )?;
    (now_secs < session.expires_at).then_some(session)
}

/// `Set-Cookie` values that store `session`, and delete any other session cookie the
/// browser still has (stale chunks of a larger, older session).
pub fn write(
    session: &Session,
    request_cookies: &[(&str, &str)],
    name: &str,
    attributes: &CookieAttributes,
    sealer: &Sealer,
    now_secs: u64,
    random: &mut dyn Random,
) -> Option<Vec<String>> {
    let sealed = seal(session, sealer, random)?;
    let max_age = session.expires_at.saturating_sub(now_secs);
    let chunks: Vec<&str> = sealed
        .as_bytes()
        .chunks(CHUNK_BYTES)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    if chunks.len() > MAX_CHUNKS {
        return None;
    }
    let names: Vec<String> = if chunks.len() == 1 {
        vec![name.to_string()]
    } else {
        (0..chunks.len()).map(|i| format!("{name}_{i}")).collect()
    };
    let mut headers: Vec<String> = names
        .iter()
        .zip(&chunks)
        .map(|(n, v)| cookies::set_cookie(n, v, attributes, None, max_age))
        .collect();
    headers.extend(clear_except(request_cookies, name, attributes, &names));
    Some(headers)
}

/// Deletes every cookie a session named `name` can be stored in, carried or not.
pub(crate) fn delete_all(name: &str, attributes: &CookieAttributes) -> Vec<String> {
    session_cookie_names(name)
        .map(|n| cookies::delete_cookie(&n, attributes, None))
        .collect()
}

/// Deletes every session cookie the request carries, except those in `keep`: each name
/// once, and only names a session of ours can have (so thousands of made-up chunk cookies
/// cannot blow up the response).
pub(crate) fn clear_except(
    request_cookies: &[(&str, &str)],
    name: &str,
    attributes: &CookieAttributes,
    keep: &[String],
) -> Vec<String> {
    session_cookie_names(name)
        .filter(|n| request_cookies.iter().any(|(c, _)| c == n) && !keep.contains(n))
        .map(|n| cookies::delete_cookie(&n, attributes, None))
        .collect()
}

/// Every cookie name a session named `name` is stored under: whole, or in chunks.
fn session_cookie_names(name: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(name.to_string()).chain((0..MAX_CHUNKS).map(move |i| format!("{name}_{i}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cookies::tests::attributes;
    use crate::core::random::Seeded;

    const NOW: u64 = 1_800_000_000;
    const ISSUER: &str = "https://dex.example.com";

    fn sealer() -> Sealer {
        Sealer::new(&[Secret::new("k".repeat(32))], ISSUER, "prometheus").unwrap()
    }

    fn session(groups: usize) -> Session {
        Session {
            sid: "sid-1".into(),
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: (0..groups)
                .map(|i| format!("team-with-a-long-group-name-{i}"))
                .collect(),
            expires_at: NOW + 3600,
            refresh_at: NOW + 300,
            refresh_token: Some(Secret::new("rt")),
            id_token: None,
            ..Session::default()
        }
    }

    /// What a browser sends back after storing these Set-Cookie headers.
    fn browser_cookies(set_cookies: &[String]) -> Vec<(String, String)> {
        set_cookies
            .iter()
            .filter(|h| !h.contains("Max-Age=0"))
            .filter_map(|h| {
                h.split(';')
                    .next()?
                    .split_once('=')
                    .map(|(n, v)| (n.to_string(), v.to_string()))
            })
            .collect()
    }

    fn as_pairs(cookies: &[(String, String)]) -> Vec<(&str, &str)> {
        cookies
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn small_session_is_one_cookie_and_round_trips() {
        let headers = write(
            &session(1),
            &[],
            "_iap",
            &attributes(),
            &sealer(),
            NOW,
            &mut Seeded(1),
        )
        .unwrap();
        assert_eq!(headers.len(), 1);
        assert!(headers[0].starts_with("_iap=") && headers[0].contains("Max-Age=3600"));
        let jar = browser_cookies(&headers);
        assert_eq!(
            read(&as_pairs(&jar), "_iap", &sealer(), NOW),
            Some(session(1))
        );
    }

    #[test]
    fn large_session_is_chunked_below_4kb_and_reassembled() {
        let big = session(200);
        let headers = write(
            &big,
            &[],
            "_iap",
            &attributes(),
            &sealer(),
            NOW,
            &mut Seeded(2),
        )
        .unwrap();
        assert!(headers.len() > 1, "chunked");
        assert!(
            headers.iter().all(|h| h.len() < 4096),
            "every cookie fits a browser"
        );
        let jar = browser_cookies(&headers);
        assert_eq!(jar[0].0, "_iap_0");
        assert_eq!(read(&as_pairs(&jar), "_iap", &sealer(), NOW), Some(big));
    }

    #[test]
    fn stale_chunks_are_cleared_when_the_session_shrinks() {
        let big = write(
            &session(200),
            &[],
            "_iap",
            &attributes(),
            &sealer(),
            NOW,
            &mut Seeded(3),
        )
        .unwrap();
        let old_jar = browser_cookies(&big);
        let mut request = as_pairs(&old_jar);
        request.push(("other_app", "1"));
        let small = write(
            &session(0),
            &request,
            "_iap",
            &attributes(),
            &sealer(),
            NOW,
            &mut Seeded(4),
        )
        .unwrap();
        let deleted: Vec<&String> = small.iter().filter(|h| h.contains("Max-Age=0")).collect();
        assert_eq!(
            deleted.len(),
            old_jar.len(),
            "every old chunk is deleted: {small:#?}"
        );
        assert!(
            !small.iter().any(|h| h.starts_with("other_app")),
            "others' cookies untouched"
        );
    }

    #[test]
    fn tampered_truncated_foreign_or_expired_sessions_mean_no_session() {
        let headers = write(
            &session(200),
            &[],
            "_iap",
            &attributes(),
            &sealer(),
            NOW,
            &mut Seeded(5),
        )
        .unwrap();
        let jar = browser_cookies(&headers);
        let pairs = as_pairs(&jar);
        assert_eq!(
            read(&pairs[..pairs.len() - 1], "_iap", &sealer(), NOW),
            None,
            "a chunk missing"
        );
        let mut tampered = jar.clone();
        let flipped = if &tampered[0].1[10..11] == "A" {
            "B"
        } else {
            "A"
        };
        tampered[0].1.replace_range(10..11, flipped);
        assert_eq!(
            read(&as_pairs(&tampered), "_iap", &sealer(), NOW),
            None,
            "tampered"
        );
        let foreign = Sealer::new(&[Secret::new("k".repeat(32))], ISSUER, "alertmanager").unwrap();
        assert_eq!(
            read(&pairs, "_iap", &foreign, NOW),
            None,
            "another service's cookie"
        );
        assert_eq!(read(&pairs, "_iap", &sealer(), NOW + 3600), None, "expired");
        assert_eq!(
            read(&[("_iap", "garbage")], "_iap", &sealer(), NOW),
            None,
            "garbage"
        );
    }

    #[test]
    fn a_session_whose_stored_issuer_differs_from_the_sealers_is_no_session() {
        let mut plain = serde_json::to_value(session(0)).unwrap();
        plain["iss"] = "https://self-signup.example.com".into();
        let sealed = sealer()
            .seal(PURPOSE, plain.to_string().as_bytes(), &mut Seeded(6))
            .unwrap();
        assert_eq!(open(&sealed, &sealer()), None);
        plain["iss"] = ISSUER.into();
        let sealed = sealer()
            .seal(PURPOSE, plain.to_string().as_bytes(), &mut Seeded(7))
            .unwrap();
        assert_eq!(open(&sealed, &sealer()), Some(session(0)), "its own issuer");
        let without_issuer = serde_json::to_vec(&session(0)).unwrap();
        let sealed = sealer()
            .seal(PURPOSE, &without_issuer, &mut Seeded(8))
            .unwrap();
        assert_eq!(open(&sealed, &sealer()), None, "no issuer stored");
    }

    #[test]
    fn a_session_sealed_before_revocations_existed_still_opens() {
        let plain = json_without(&["idp_sid", "sub", "signed_in_at"]);
        let sealed = sealer()
            .seal(PURPOSE, plain.to_string().as_bytes(), &mut Seeded(9))
            .unwrap();
        let opened = open(&sealed, &sealer()).expect("opens");
        assert_eq!((opened.idp_sid.as_deref(), opened.signed_in_at), (None, 0));
        assert_eq!(opened.subject(), "alice");
    }

    /// A sealed session's JSON, with `fields` taken out.
    fn json_without(fields: &[&str]) -> serde_json::Value {
        let full = Session {
            idp_sid: Some("idp-1".into()),
            sub: Some("alice-id".into()),
            signed_in_at: NOW,
            ..session(0)
        };
        let mut plain = serde_json::to_value(&full).unwrap();
        plain["iss"] = ISSUER.into();
        for field in fields {
            plain.as_object_mut().unwrap().remove(*field);
        }
        plain
    }

    #[test]
    fn thousands_of_made_up_chunk_cookies_are_cleared_at_most_once_each() {
        let names: Vec<String> = (0..5000).map(|i| format!("_iap_{}", i % 3000)).collect();
        let request: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let cleared = clear_except(&request, "_iap", &attributes(), &[]);
        assert_eq!(cleared.len(), MAX_CHUNKS, "{}", cleared.len());
    }

    #[test]
    fn secrets_in_a_session_never_print() {
        let printed = format!("{:?}", session(0));
        assert!(
            !printed.contains("\"rt\"") && printed.contains("redacted"),
            "{printed}"
        );
    }

    #[test]
    fn session_cookie_names_are_recognised() {
        for (cookie, ours) in [
            ("_iap", true),
            ("_iap_0", true),
            ("_iap_12", true),
            ("_iap_", false),
            ("_iap_x", false),
            ("_iapx", false),
            ("_iap_login_abc", false),
        ] {
            assert_eq!(is_session_cookie(cookie, "_iap"), ours, "{cookie}");
        }
    }
}
