//! Sign-out: revoke the session and clear it and any logins in flight, then go to `rd` (a
//! safe target), through the IdP's end-session endpoint when the service ends the IdP's
//! session too.

use crate::core::config::login::LoginService;
use crate::core::cookies;
use crate::core::login::endpoints::Endpoints;
use crate::core::login::login_cookie::login_cookie_attributes;
use crate::core::login::redirect::{redirect_hosts, safe_target};
use crate::core::login::session::{self, Session};
use crate::core::login::step::Request;
use crate::core::reply::{self, Reply};
use crate::core::revocation::{Entry, RevokedId};

/// Login cookies sign-out deletes at most.
const MAX_LOGINS_CLEARED: usize = 8;

/// The answer (with `id_token_hint` from the session, `stored` or in the cookie), and the
/// revocation of the session the request carried (so a copy of its
/// cookie opens nothing afterwards), until the session would have expired anyway.
pub(super) fn sign_out(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    stored: Option<&Session>,
) -> (Reply, Option<Entry>) {
    let cookies = request.cookies();
    // A server-side session this worker read (its cookie holds only a handle), else the
    // session the cookie holds.
    let session = stored
        .cloned()
        .or_else(|| session::read_for(&cookies, service, now_secs));
    let revoke = session.as_ref().map(|s| Entry {
        id: RevokedId::session(&s.sid),
        revoked_at: now_secs,
        until: s.expires_at,
    });
    (
        answer(service, request, endpoints, session.as_ref(), &cookies),
        revoke,
    )
}

fn answer(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    session: Option<&Session>,
    request_cookies: &[(&str, &str)],
) -> Reply {
    // Every session cookie name, carried or not: the browser may hold chunks this request
    // did not send. Logins in flight are cleared when the request names them.
    let mut clear = session::delete_all(&service.cookie_name, &service.cookie);
    let mut logins: Vec<&str> = request_cookies
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| service.is_login_cookie(n))
        .collect();
    logins.sort_unstable();
    logins.dedup();
    // A few logins in flight at most (tabs); more are expired leftovers or made up.
    clear.extend(logins.into_iter().take(MAX_LOGINS_CLEARED).map(|n| {
        cookies::delete_cookie(
            n,
            &login_cookie_attributes(service),
            Some(service.login_cookie_path()),
        )
    }));
    let rd = request
        .query_param("rd")
        .and_then(|rd| safe_target(&rd, &redirect_hosts(service)))
        .unwrap_or_else(|| "/".into());
    // The endpoints are those of the session's IdP: the caller chose it from the cookie.
    let end_session = endpoints
        .and_then(|e| e.end_session.as_ref())
        .filter(|_| service.end_idp_session);
    let Some(end_session) = end_session else {
        return reply::redirect(&rd, clear);
    };
    let mut url = end_session.clone();
    {
        let mut query = url.query_pairs_mut();
        let idp = service.idp(session.map_or_else(Default::default, |s| s.idp));
        query.append_pair("client_id", &idp.client_id);
        if let Some(hint) = session.and_then(|s| s.id_token.as_ref()) {
            query.append_pair("id_token_hint", hint.expose());
        }
        let after = service.post_logout_redirect_url.clone().unwrap_or_else(|| {
            if rd.starts_with('/') {
                format!("{}://{}{rd}", request.scheme, request.authority)
            } else {
                rd.clone()
            }
        });
        query.append_pair("post_logout_redirect_uri", &after);
    }
    reply::redirect(url.as_str(), clear)
}
