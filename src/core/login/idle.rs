//! `idle_timeout`: a session unused that long ends. Its last activity lives in the session
//! itself (`Session::active_at`: the cookie, or the cluster store's value) and is written
//! at a coarse grain: at sign-in, at each refresh, and otherwise at most once every tenth of
//! the idle timeout, so a session ends after 90-100% of `idle_timeout` without requests.

use crate::core::config::login::LoginService;
use crate::core::login::session::Session;

/// No activity is recorded this close before the tokens expire: the refresh, due soon, is
/// activity and writes the session anyway; a cookie written now could reach the browser
/// after the refreshed one and put back the refresh token the refresh spent.
const BEFORE_REFRESH_SECS: u64 = 30;

/// What a request does to a session's activity.
#[derive(Debug, PartialEq, Eq)]
pub enum Activity {
    /// Nothing to write: no idle timeout, or activity recorded recently enough.
    Quiet,
    /// Activity is due to be recorded: the session as it is to be stored again.
    Record(Box<Session>),
    /// Unused for `idle_secs`, at least the idle timeout: the session is over.
    Ended { idle_secs: u64 },
}

/// Seconds between two writes of a session's activity, for an idle timeout of `timeout_secs`.
pub fn record_every_secs(timeout_secs: u64) -> u64 {
    (timeout_secs / 10).max(1)
}

/// What a request at `now_secs` does to `session`'s activity. A session without activity
/// recorded (sealed before the idle timeout was on) counts as active now.
pub fn activity(service: &LoginService, session: &Session, now_secs: u64) -> Activity {
    let Some(timeout) = service.idle_timeout_secs else {
        return Activity::Quiet;
    };
    if session.active_at != 0 {
        let idle_secs = now_secs.saturating_sub(session.active_at);
        if idle_secs >= timeout {
            return Activity::Ended { idle_secs };
        }
        if idle_secs < record_every_secs(timeout) {
            return Activity::Quiet;
        }
    }
    let refresh_soon = service.refresh
        && session.refresh_token.is_some()
        && now_secs.saturating_add(BEFORE_REFRESH_SECS) >= session.refresh_at;
    if refresh_soon {
        return Activity::Quiet;
    }
    let mut recorded = session.clone();
    recorded.active_at = now_secs;
    Activity::Record(Box::new(recorded))
}

/// `active_at` of a session written at `now_secs` by a sign-in or a refresh (both are
/// activity): `now_secs` with an idle timeout, else none.
pub(crate) fn active_at(service: &LoginService, now_secs: u64) -> u64 {
    if service.idle_timeout_secs.is_some() {
        now_secs
    } else {
        0
    }
}
