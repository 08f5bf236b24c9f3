//! OIDC Back-Channel Logout 1.0: the IdP POSTs a form with a `logout_token` (a JWT) when a
//! session ends there. After its signature and registered claims are checked
//! (`Authenticator::verify_logout_token`), `order` applies the logout token's own rules
//! (§2.4, §2.6) and says what to revoke: the IdP session (`sid`), else every session of
//! the user (`sub`) signed in until now. The answers are §2.8's: `200`, or `400` with a
//! JSON error, never cached.

use serde_json::{json, Map, Value};
use url::form_urlencoded;

use crate::core::bearer::error::AuthError;
use crate::core::reply::{self, LogNote, Reply, Severity};
use crate::core::revocation::{Entry, RevokedId};

/// The `events` member that makes a JWT a logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The largest body read: a form holding one JWT.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How old (by `iat`) a logout token may be. Its `jti` is remembered as long as it could
/// be accepted, so a replay is always recognised.
pub const MAX_AGE_SECS: u64 = 600;

/// Why a logout request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a form with exactly one `logout_token`.
    NotAForm,
    /// The body did not come whole (the upstream answered first).
    BodyCut,
    /// The signature or a registered claim (`iss`, `aud`, `iat`, `exp`), or not a JWS.
    Token(AuthError),
    /// Issued more than `MAX_AGE_SECS` ago.
    TooOld,
    NoJti,
    /// `events` missing, or without the back-channel logout member as an object.
    NotALogoutEvent,
    /// A `nonce`: an ID token, not a logout token.
    Nonce,
    /// Neither `sid` nor `sub`.
    NoSubject,
    /// Its `jti` was taken in before.
    Replayed,
    /// The revocation could not be recorded.
    NotStored,
}

impl Refused {
    fn description(&self) -> String {
        match self {
            Refused::NotAForm => "expected a form with one logout_token".into(),
            Refused::BodyCut => "the body did not arrive whole".into(),
            Refused::Token(e) => format!("logout token rejected: {e}"),
            Refused::TooOld => "logout token issued too long ago".into(),
            Refused::NoJti => "logout token without jti".into(),
            Refused::NotALogoutEvent => {
                format!("logout token without the {BACKCHANNEL_EVENT} event")
            }
            Refused::Nonce => "a logout token must not carry a nonce".into(),
            Refused::NoSubject => "logout token with neither sid nor sub".into(),
            Refused::Replayed => "logout token seen before (jti)".into(),
            Refused::NotStored => "the logout could not be recorded".into(),
        }
    }

    /// What anyone can send (a broken form, a token whose signature or claims fail, a
    /// replay) is `Debug`, so it cannot flood the log; a validly signed token that breaks
    /// the logout rules is the IdP's doing.
    fn severity(&self) -> Severity {
        match self {
            Refused::NotAForm | Refused::BodyCut | Refused::Token(_) | Refused::Replayed => {
                Severity::Debug
            }
            Refused::NotStored => Severity::Warn,
            _ => Severity::Info,
        }
    }

    /// `400` with a JSON error (§2.8), and why, for the log.
    pub fn reply(&self, client_id: &str) -> Reply {
        let description = self.description();
        let body = json!({ "error": "invalid_request", "error_description": description });
        let mut reply = json_reply(400, &body);
        reply.reason = Some(LogNote {
            severity: self.severity(),
            text: format!("back-channel logout for {client_id} refused: {description}"),
        });
        reply
    }
}

fn json_reply(status: u32, body: &Value) -> Reply {
    let headers = vec![("content-type".into(), "application/json".into())];
    reply::with_cookies(status, headers, format!("{body}\n"), Vec::new())
}

/// A logout taken in: `200`, never cached.
pub fn done() -> Reply {
    reply::with_cookies(200, Vec::new(), String::new(), Vec::new())
}

/// Anything but a POST: `405`.
pub fn not_post() -> Reply {
    let body = json!({ "error": "invalid_request", "error_description": "use POST" });
    let mut reply = json_reply(405, &body);
    reply.headers.push(("allow".into(), "POST".into()));
    reply
}

/// A body over `MAX_BODY_BYTES`: `413`.
pub fn too_large() -> Reply {
    let body = json!({ "error": "invalid_request", "error_description": "body too large" });
    json_reply(413, &body)
}

/// Whether a `Content-Type` is a form's (parameters such as `charset` allowed).
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The form's one `logout_token`.
pub fn logout_token(body: &[u8]) -> Result<String, Refused> {
    let mut tokens = form_urlencoded::parse(body).filter(|(k, _)| k == "logout_token");
    match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) if !token.is_empty() => Ok(token.into_owned()),
        _ => Err(Refused::NotAForm),
    }
}

/// What a valid logout token orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutOrder {
    /// Its `jti`, to take in once.
    pub jti: Entry,
    /// The IdP session, or every session of the user.
    pub revoke: Entry,
    /// Whether `revoke` names the user (the token had no `sid`).
    pub whole_user: bool,
}

/// The rules of a logout token whose signature and registered claims passed: young
/// enough, a `jti`, the logout event, no `nonce`, a `sid` or `sub`. Sessions signed in up
/// to `now_secs` are revoked until `revoke_until`.
pub fn order(
    claims: &Map<String, Value>,
    issuer: &str,
    now_secs: u64,
    clock_skew_secs: u64,
    revoke_until: u64,
) -> Result<LogoutOrder, Refused> {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let iat = claims.get("iat").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    let accepted_until = iat
        .saturating_add(MAX_AGE_SECS)
        .saturating_add(clock_skew_secs);
    if now_secs > accepted_until {
        return Err(Refused::TooOld);
    }
    let jti = text("jti").ok_or(Refused::NoJti)?;
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(Refused::NotALogoutEvent);
    }
    if claims.contains_key("nonce") {
        return Err(Refused::Nonce);
    }
    let (id, whole_user) = match (text("sid"), text("sub")) {
        (Some(sid), _) => (RevokedId::idp_session(issuer, sid), false),
        (None, Some(sub)) => (RevokedId::user(issuer, sub), true),
        (None, None) => return Err(Refused::NoSubject),
    };
    Ok(LogoutOrder {
        jti: Entry {
            id: RevokedId::logout_jti(issuer, jti),
            revoked_at: now_secs,
            until: accepted_until.saturating_add(1),
        },
        revoke: Entry {
            id,
            revoked_at: now_secs,
            until: revoke_until,
        },
        whole_user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://dex.example.com";
    const NOW: u64 = 1_800_000_000;

    fn claims(changes: Value) -> Map<String, Value> {
        let mut claims = json!({
            "iss": ISS,
            "aud": "prometheus",
            "iat": NOW - 5,
            "jti": "j-1",
            "sid": "idp-1",
            "sub": "alice-id",
            "events": { BACKCHANNEL_EVENT: {} },
        });
        for (k, v) in changes.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(&k);
            } else {
                claims[k] = v;
            }
        }
        claims.as_object().unwrap().clone()
    }

    fn order_of(changes: Value) -> Result<LogoutOrder, Refused> {
        order(&claims(changes), ISS, NOW, 60, NOW + 3600)
    }

    #[test]
    fn a_sid_revokes_the_idp_session_and_a_sub_alone_the_user() {
        let by_sid = order_of(json!({})).unwrap();
        assert_eq!(by_sid.revoke.id, RevokedId::idp_session(ISS, "idp-1"));
        assert!(!by_sid.whole_user);
        assert_eq!(by_sid.revoke.revoked_at, NOW);
        assert_eq!(by_sid.revoke.until, NOW + 3600);
        assert_eq!(by_sid.jti.id, RevokedId::logout_jti(ISS, "j-1"));
        assert!(
            by_sid.jti.until > NOW - 5 + MAX_AGE_SECS + 60,
            "the jti is kept while the token could be accepted"
        );
        let by_sub = order_of(json!({ "sid": null })).unwrap();
        assert_eq!(by_sub.revoke.id, RevokedId::user(ISS, "alice-id"));
        assert!(by_sub.whole_user);
    }

    #[test]
    fn each_rule_of_the_logout_token_refuses() {
        for (changes, refused) in [
            (json!({ "sid": null, "sub": null }), Refused::NoSubject),
            (json!({ "sid": "", "sub": "" }), Refused::NoSubject),
            (json!({ "jti": null }), Refused::NoJti),
            (json!({ "jti": 7 }), Refused::NoJti),
            (json!({ "events": null }), Refused::NotALogoutEvent),
            (json!({ "events": {} }), Refused::NotALogoutEvent),
            (
                json!({ "events": [BACKCHANNEL_EVENT] }),
                Refused::NotALogoutEvent,
            ),
            (
                json!({ "events": { BACKCHANNEL_EVENT: "yes" } }),
                Refused::NotALogoutEvent,
            ),
            (
                json!({ "events": { "http://schemas.openid.net/event/other": {} } }),
                Refused::NotALogoutEvent,
            ),
            (json!({ "nonce": "n" }), Refused::Nonce),
            (json!({ "iat": NOW - MAX_AGE_SECS - 61 }), Refused::TooOld),
        ] {
            assert_eq!(order_of(changes.clone()), Err(refused), "{changes}");
        }
        let mut null_nonce = claims(json!({}));
        null_nonce.insert("nonce".into(), Value::Null);
        assert_eq!(
            order(&null_nonce, ISS, NOW, 60, NOW + 3600),
            Err(Refused::Nonce),
            "present, even as null"
        );
        assert!(
            order_of(json!({ "iat": NOW - MAX_AGE_SECS - 60 })).is_ok(),
            "as old as allowed"
        );
        assert!(
            order_of(json!({ "events": { BACKCHANNEL_EVENT: { "reason": "x" } } })).is_ok(),
            "an event object with members"
        );
    }

    #[test]
    fn the_form_holds_exactly_one_logout_token() {
        assert_eq!(logout_token(b"logout_token=a.b.c").as_deref(), Ok("a.b.c"));
        assert_eq!(
            logout_token(b"x=1&logout_token=a.b.c&y=2").as_deref(),
            Ok("a.b.c")
        );
        for body in [
            &b""[..],
            b"logout_token=",
            b"token=a.b.c",
            b"logout_token=a.b.c&logout_token=d.e.f",
        ] {
            assert_eq!(logout_token(body), Err(Refused::NotAForm), "{body:?}");
        }
        assert!(
            logout_token(b"logout_token=\xff\xfe").is_ok(),
            "bytes, not a panic"
        );
    }

    #[test]
    fn only_a_form_content_type_is_a_form() {
        assert!(is_form(Some("application/x-www-form-urlencoded")));
        assert!(is_form(Some(
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        )));
        for other in [None, Some("application/json"), Some("text/plain"), Some("")] {
            assert!(!is_form(other), "{other:?}");
        }
    }

    #[test]
    fn answers_are_never_cached_and_refusals_say_why_in_json() {
        let ok = done();
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("cache-control"), Some("no-store"));
        let refused = Refused::Nonce.reply("prometheus");
        assert_eq!(refused.status, 400);
        assert_eq!(refused.header("cache-control"), Some("no-store"));
        let body: Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("nonce"));
        let note = refused.reason.unwrap();
        assert_eq!(note.severity, Severity::Info);
        let forged = Refused::Token(AuthError::BadSignature).reply("prometheus");
        assert_eq!(forged.reason.unwrap().severity, Severity::Debug);
        assert_eq!(not_post().header("allow"), Some("POST"));
        assert_eq!(too_large().status, 413);
    }
}
