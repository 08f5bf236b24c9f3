//! The browser sign-in flow for one request to a protected host. `decide` takes, in order:
//! 1. the IdP's callback: check the state, then exchange the code (`sign_in`);
//! 2. sign-out (`sign_out`), which revokes the session it ends;
//! 3. oauth2-proxy's `/oauth2/start`: a new login that ends at `rd` (`start`);
//! 4. a valid session, not revoked, not idle past `idle_timeout` (`idle`): refresh when its
//!    tokens expired, a refresh token is held and the token endpoint is known, else forward
//!    (storing it again when its activity is due to be recorded);
//! 5. no session but an `Authorization` header: left to bearer validation;
//! 6. no session, a request to send to log in, the IdP's endpoints not known yet: wait for
//!    them (`Step::AwaitEndpoints`) when the request may wait;
//! 7. no session: browsers go to the IdP, everything else gets 401 (`start`).
//!
//! A callback or a `/oauth2/start` before the endpoints are known waits for them in the same
//! way. `sign_in::finish_login` and `refreshed::finish_refresh` continue after the token
//! endpoint answered.

use std::rc::Rc;

use crate::core::cluster::stored_session;
use crate::core::config::login::{LoginService, SessionStore};
use crate::core::cookies;
use crate::core::identity::Identity;
use crate::core::login::choice::{Choice, Next};
use crate::core::login::error::LoginError;
use crate::core::login::handles::{Handles, Stored};
use crate::core::login::idle::{self, Activity};
use crate::core::login::oidc;
use crate::core::login::opened::{Opened, OpenedSessions};
use crate::core::login::session::{self, Session};
use crate::core::login::start::{self, sends_to_login};
use crate::core::login::{sign_in, sign_out};
use crate::core::random::Random;
use crate::core::revocation::Revocations;
use crate::core::secret::Secret;

pub use crate::core::login::endpoints::Endpoints;
pub(crate) use crate::core::login::endpoints::ResolvedEndpoints;
pub use crate::core::login::step::{Forwarding, Request, Step};

#[cfg(any(test, feature = "testing"))]
pub fn decide(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Step {
    let mut opened = OpenedSessions::new(0);
    let mut revocations = Revocations::new();
    let known = Known {
        opened: &mut opened,
        revocations: &mut revocations,
        handles: None,
    };
    let choice = crate::core::login::choice::choose(service, request);
    decide_with(
        service, &choice, request, endpoints, now_secs, random, known,
    )
}

/// What this VM knows beyond the request: the sessions it already opened (each sealed
/// value is opened once) and the revoked ones.
pub(crate) struct Known<'a> {
    pub(crate) opened: &'a mut OpenedSessions,
    pub(crate) revocations: &'a mut Revocations,
    /// Server-side sessions this worker read from the cluster store.
    pub(crate) handles: Option<&'a mut Handles>,
}

/// `decide`, with what this VM knows; `endpoints` are those of the chosen IdP.
pub(crate) fn decide_with(
    service: &LoginService,
    choice: &Choice,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
    known: Known,
) -> Step {
    let path = request.path_only();
    if path == service.callback_path {
        return sign_in::callback(service, request, endpoints);
    }
    if path == service.sign_out_path {
        return sign_out_step(
            service,
            request,
            endpoints,
            now_secs,
            known.handles.as_deref(),
        );
    }
    if path == service.start_path {
        return start::start(service, choice, request, endpoints, now_secs, random);
    }
    let session = match session_of(service, request, known.opened, known.handles, now_secs) {
        Ok(session) => session,
        Err(step) => return *step,
    };
    let session = session.filter(|opened| now_secs < opened.session.expires_at);
    // A revoked session is no session: asked to sign in again, its cookies cleared.
    let session = session.filter(|opened| {
        !known
            .revocations
            .refuses(&opened.ids, opened.session.signed_in_at)
    });
    let (session, activity, idle_ended) = unless_idle(service, session, now_secs);
    let step = match session {
        Some(opened) => with_session(service, request, endpoints, now_secs, &opened, activity),
        None if request.has_authorization => Step::Bearer,
        None if endpoints.is_none()
            && request.may_wait
            && sends_to_login(request)
            && choice.next == Next::Go =>
        {
            Step::AwaitEndpoints
        }
        None => start::unauthenticated(service, choice, request, endpoints, now_secs, random),
    };
    match idle_ended {
        Some((sid, idle_secs)) => Step::SessionIdle {
            sid,
            idle_secs,
            then: Box::new(step),
        },
        None => step,
    }
}

/// Sign-out, with the session it ends when this worker has it (else read it first).
fn sign_out_step(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    handles: Option<&Handles>,
) -> Step {
    let stored = match read_here(service, request, handles, now_secs) {
        Ok(stored) => stored,
        Err(handle) => return Step::LoadSession(handle),
    };
    let session = stored.as_ref().map(|opened| &opened.session);
    let (reply, revoke) = sign_out::sign_out(service, request, endpoints, now_secs, session);
    Step::SignOut { reply, revoke }
}

/// A session unused longer than `idle_timeout` is no session: it is dropped, and its short
/// id and idle time returned for the log. A kept session comes with its activity.
fn unless_idle(
    service: &LoginService,
    session: Option<Rc<Opened>>,
    now_secs: u64,
) -> (Option<Rc<Opened>>, Activity, Option<(String, u64)>) {
    let Some(opened) = session else {
        return (None, Activity::Quiet, None);
    };
    match idle::activity(service, &opened.session, now_secs) {
        Activity::Ended { idle_secs } => {
            let sid = opened.session.sid.chars().take(8).collect();
            (None, Activity::Quiet, Some((sid, idle_secs)))
        }
        activity => (Some(opened), activity, None),
    }
}

/// A live session: refresh its tokens when they expired and it can, record its activity
/// when due, else forward.
fn with_session(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    opened: &Opened,
    activity: Activity,
) -> Step {
    let session = &opened.session;
    let refresh_token = session.refresh_token.clone().filter(|_| service.refresh);
    match (refresh_token, endpoints, activity) {
        (Some(token), Some(endpoints), _) if session.needs_refresh(now_secs) => Step::Refresh {
            request: oidc::refresh(&endpoints.token, service.idp(session.idp), &token),
            session: Box::new(session.clone()),
        },
        (_, _, Activity::Record(recorded)) => Step::RecordActivity(recorded),
        _ => Step::Forward(forward_as(
            service,
            request.cookie_header,
            session,
            Rc::clone(&opened.identity),
            Vec::new(),
        )),
    }
}

/// The server-side session the request's handle names, when this worker has read it; `Err`
/// (the handle) when it must be read first: sign-out ends the IdP's session with the ID
/// token as a hint.
fn read_here(
    service: &LoginService,
    request: &Request,
    handles: Option<&Handles>,
    now_secs: u64,
) -> Result<Option<Rc<Opened>>, String> {
    let cookies = request.cookies();
    let handle = session::sealed_value(&cookies, &service.cookie_name)
        .and_then(|sealed| open_handle(service, &sealed));
    let (Some(handle), Some(handles)) = (handle, handles) else {
        return Ok(None);
    };
    match handles.get(&handle, now_secs * 1000) {
        Some(Stored::Session(opened)) => Ok(Some(Rc::clone(opened))),
        Some(_) => Ok(None),
        None if service.end_idp_session => Err(handle),
        None => Ok(None),
    }
}

/// The session the request's cookie holds: opened from the cookie, or (cluster store) found
/// among the sessions this worker read; `Err` when it must be read first, or cannot be.
fn session_of(
    service: &LoginService,
    request: &Request,
    opened: &mut OpenedSessions,
    handles: Option<&mut Handles>,
    now_secs: u64,
) -> Result<Option<Rc<Opened>>, Box<Step>> {
    let cookies = request.cookies();
    let sealed = session::sealed_value(&cookies, &service.cookie_name);
    let handle = match service.session_store {
        SessionStore::Cookie => None,
        SessionStore::Cluster { .. } => sealed
            .as_deref()
            .and_then(|value| open_handle(service, value)),
    };
    if let (Some(handle), Some(handles)) = (handle, handles) {
        return match handles.get(&handle, now_secs * 1000) {
            Some(Stored::Session(opened)) => Ok(Some(Rc::clone(opened))),
            Some(Stored::Absent) => Ok(None),
            Some(Stored::Unreachable) => match service.session_store {
                SessionStore::Cluster {
                    sign_in_on_outage: true,
                } => Ok(None),
                _ => Err(Box::new(Step::Respond(
                    LoginError::SessionStoreUnavailable.reply(Vec::new()),
                ))),
            },
            None => Err(Box::new(Step::LoadSession(handle))),
        };
    }
    // A session in the cookie itself (or one signed in while the store was away).
    Ok(sealed.and_then(|sealed| {
        opened.get_or_open(&sealed, now_secs, |sealed| {
            let session = session::open_for(service, sealed)?;
            let issuer = &service.idp(session.idp).issuer;
            Some(Opened::new(session, issuer))
        })
    }))
}

/// The handle a cookie value carries, opened by the sealer of the IdP its tag names.
pub(crate) fn open_handle(service: &LoginService, sealed: &str) -> Option<String> {
    let idp = service.idps.of_sealed(sealed);
    stored_session::open_handle(&service.idp(idp).sealer, sealed)
}

/// Forwards with the session's identity, our cookies taken out of the request's `Cookie`
/// header; `set_cookies` go on the response.
pub(crate) fn forward(
    service: &LoginService,
    cookie_header: Option<&str>,
    session: &Session,
    set_cookies: Vec<String>,
) -> Forwarding {
    let identity = Rc::new(session.identity(&service.idp(session.idp).issuer));
    forward_as(service, cookie_header, session, identity, set_cookies)
}

/// `forward` with the session's identity already built (a session opened before).
fn forward_as(
    service: &LoginService,
    cookie_header: Option<&str>,
    session: &Session,
    identity: Rc<Identity>,
    set_cookies: Vec<String>,
) -> Forwarding {
    let cookie_header =
        cookie_header.and_then(|h| cookies::without(h, |n| service.is_our_cookie(n)));
    Forwarding {
        identity,
        cookie_header,
        set_cookies,
        access_token: session
            .access_token
            .clone()
            .filter(|_| service.pass_access_token),
        id_token: session
            .id_token
            .clone()
            .filter(|_| service.set_authorization_header),
        session_sid: Secret::new(session.sid.as_str()),
    }
}
