//! What the token endpoint's answer to a refresh makes of a session: renewed, kept for now,
//! or ended (and then what the request gets).

use crate::core::bearer::error::AuthError;
use crate::core::config::login::LoginService;
use crate::core::cookies;
use crate::core::login::oidc::{TokenError, Tokens};
use crate::core::login::session::{self, Session};
use crate::core::login::sign_in::{granted_scopes, token_expiry, VerifyIdToken};
use crate::core::login::start::return_targets;
use crate::core::refusal::{Refusal, Refused};
use crate::core::reply::{self, Reply};

#[derive(Debug)]
pub enum Refreshed {
    /// New tokens: the renewed session, to forward with and store.
    Renewed(Box<Session>),
    /// The IdP is unreachable: keep the old session for now and try again later.
    KeepOld,
    /// The IdP refused the refresh token: revoked or expired (the session is over), or
    /// spent by another replica moments ago (see `refusal_tolerated`).
    Refused(String),
    /// The answer cannot renew this session (its ID token is rejected or names another
    /// user): the session is over.
    Ended(String),
}

pub fn finish_refresh(
    old: &Session,
    tokens: Result<Tokens, TokenError>,
    verify: VerifyIdToken,
    now_secs: u64,
) -> Refreshed {
    let tokens = match tokens {
        Ok(tokens) => tokens,
        Err(TokenError::Refused(why)) => return Refreshed::Refused(why),
        Err(TokenError::Unavailable(_) | TokenError::Garbage) => return Refreshed::KeepOld,
    };
    let mut session = old.clone();
    let mut id_exp = None;
    if let Some(id_token) = &tokens.id_token {
        match verify(id_token.expose(), None) {
            Ok(claims) if claims.identity.user == old.user => {
                id_exp = claims.expires_at;
                session.learn(claims.identity);
                if old.id_token.is_some() {
                    session.id_token = Some(id_token.clone());
                }
            }
            Ok(_) => return Refreshed::Ended("the refreshed ID token names another user".into()),
            Err(e) => return Refreshed::Ended(format!("refreshed ID token rejected: {e}")),
        }
    }
    session.refresh_at = token_expiry(id_exp, tokens.expires_in, now_secs);
    if tokens.refresh_token.is_some() {
        session.refresh_token = tokens.refresh_token;
    }
    if old.access_token.is_some() && tokens.access_token.is_some() {
        session.access_token = tokens.access_token;
    }
    if tokens.scope.is_some() {
        session.scopes = granted_scopes(tokens.scope.as_deref());
    }
    Refreshed::Renewed(Box::new(session))
}

/// Whether a refused refresh of `old` may keep it for now: the refusal came within the
/// service's grace after the tokens expired, when another replica may have spent the
/// (rotating) refresh token first and its renewed cookie is on the way to the browser.
pub(crate) fn refusal_tolerated(service: &LoginService, old: &Session, now_secs: u64) -> bool {
    now_secs < grace_ends(service, old)
}

/// Until when (unix ms) a tolerated refusal keeps the old session.
pub(crate) fn tolerated_until_ms(service: &LoginService, old: &Session) -> u64 {
    grace_ends(service, old).saturating_mul(1000)
}

fn grace_ends(service: &LoginService, old: &Session) -> u64 {
    let grace = service.refresh_race_grace_secs;
    old.refresh_at.saturating_add(grace)
}

/// The IdP refused a refresh: the session is over. A browser is sent back to the page it
/// asked for (through the redirect guard, so `//evil.example` cannot become a `Location`),
/// with the session cleared so it logs in again; anything else gets 401.
pub fn session_ended(
    service: &LoginService,
    cookie_header: Option<&str>,
    path_and_query: &str,
    browser: bool,
) -> Result<Reply, Refused> {
    let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
    let clear = session::clear_except(&request_cookies, &service.cookie_name, &service.cookie, &[]);
    if browser {
        Ok(reply::redirect(&return_target(path_and_query), clear))
    } else {
        Err(Refused {
            refusal: Refusal::Token(AuthError::MissingToken),
            set_cookies: clear,
        })
    }
}

/// Where a browser whose session ended goes: the page it asked for when that is safe.
fn return_target(path_and_query: &str) -> String {
    return_targets(path_and_query)
        .into_iter()
        .next()
        .unwrap_or_else(|| "/".into())
}
