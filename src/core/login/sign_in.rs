//! The IdP's callback and finishing a login: check the state, exchange the code, then
//! verify the ID token and store the new session.

use subtle::ConstantTimeEq;

use crate::core::bearer::authenticator::IdTokenClaims;
use crate::core::bearer::error::AuthError;
use crate::core::config::login::LoginService;
use crate::core::login::choice;
use crate::core::login::endpoints::{redirect_uri, unavailable, Endpoints};
use crate::core::login::error::LoginError;
use crate::core::login::idle;
use crate::core::login::login_cookie::{delete_login_cookie, LOGIN_PURPOSE};
use crate::core::login::oidc::{self, PendingLogin, TokenError, Tokens};
use crate::core::login::session::{self, Session};
use crate::core::login::step::{Request, Step};
use crate::core::random::Random;
use crate::core::reply::{self, Reply};

/// Verifies an ID token for the service's client, with the login's nonce when there is one.
pub(crate) type VerifyIdToken<'a> =
    &'a dyn Fn(&str, Option<&str>) -> Result<IdTokenClaims, AuthError>;
/// Session lifetime when the IdP says nothing about token expiry.
const DEFAULT_TOKEN_SECS: u64 = 300;

/// The login a login cookie carries, opened by the sealer of the IdP its tag names; the
/// login then knows its IdP.
pub(crate) fn open_login(service: &LoginService, sealed: &str) -> Option<PendingLogin> {
    let idp = service.idps.of_sealed(sealed);
    let plain = service.idp(idp).sealer.open(LOGIN_PURPOSE, sealed)?;
    let mut pending = serde_json::from_slice::<PendingLogin>(&plain).ok()?;
    pending.idp = idp;
    Some(pending)
}

pub(super) fn callback(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
) -> Step {
    let fail = |error: LoginError, clear: Vec<String>| Step::Respond(error.reply(clear));
    let state = request.query_param("state").unwrap_or_default();
    // Only a state of our own shape is ever used, so nothing a client puts there reaches a
    // cookie name or any other header.
    let well_formed = oidc::is_well_formed_state(&state);
    let clear = if well_formed {
        vec![delete_login_cookie(service, &state)]
    } else {
        vec![]
    };
    let cookies = request.cookies();
    let cookie_name = well_formed.then(|| service.login_cookie_name(&state));
    let pending = cookies
        .iter()
        .find(|(n, _)| cookie_name.as_deref() == Some(*n))
        .and_then(|(_, v)| open_login(service, v))
        .filter(|p| bool::from(p.state.as_bytes().ct_eq(state.as_bytes())));
    if let Some(error) = request.query_param("error") {
        let description = request.query_param("error_description");
        let started_here = pending.is_some();
        return fail(
            LoginError::IdpRefused {
                error,
                description,
                started_here,
            },
            clear,
        );
    }
    let code = request.query_param("code").unwrap_or_default();
    if state.is_empty() || code.is_empty() {
        return fail(LoginError::MissingCodeOrState, clear);
    }
    if !well_formed {
        return fail(LoginError::MalformedState, clear);
    }
    let Some(pending) = pending else {
        return fail(LoginError::UnknownState, clear);
    };
    // RFC 9207: an authorization response that names its issuer must name the IdP this
    // login started with. Every IdP of a service shares the callback, so a response of
    // another (a mix-up: the login's authorization request bounced to it) would send that
    // IdP's code, and the PKCE verifier, to this login's IdP's token endpoint.
    let issuer = &service.idp(pending.idp).issuer;
    if request.query_params("iss").iter().any(|iss| iss != issuer) {
        return fail(LoginError::IssuerMismatch, clear);
    }
    // A callback right after a restart, before discovery answered: wait for the endpoints
    // rather than fail a login the user just completed at the IdP.
    let Some(endpoints) = endpoints else {
        return if request.may_wait {
            Step::AwaitEndpoints
        } else {
            Step::Respond(unavailable())
        };
    };
    let request = oidc::code_exchange(
        &endpoints.token,
        service.idp(pending.idp),
        &redirect_uri(service, request),
        &code,
        &pending.verifier,
    );
    Step::Exchange { pending, request }
}

/// After the code exchange: a session and a redirect to where the user was going, or an
/// error page. Never a redirect back into login, so a failure cannot loop.
pub fn finish_login(
    service: &LoginService,
    pending: &PendingLogin,
    tokens: Result<Tokens, TokenError>,
    verify: VerifyIdToken,
    request_cookies: &[(&str, &str)],
    now_secs: u64,
    random: &mut dyn Random,
) -> Reply {
    let clear = vec![delete_login_cookie(service, &pending.state)];
    match login_session(
        service,
        pending,
        tokens,
        verify,
        request_cookies,
        now_secs,
        random,
    ) {
        Ok(mut set_cookies) => {
            set_cookies.extend(clear);
            set_cookies.extend(choice::remember(service, pending.idp));
            reply::redirect(&pending.return_to, set_cookies)
        }
        Err(error) => error.reply(clear),
    }
}

/// After the code exchange, for a service that keeps sessions in the cluster store: the new
/// session and the redirect (where to, and the login cookie to clear), or the error page.
pub(crate) fn finish_login_stored(
    service: &LoginService,
    pending: &PendingLogin,
    tokens: Result<Tokens, TokenError>,
    verify: VerifyIdToken,
    now_secs: u64,
    random: &mut dyn Random,
) -> Result<(Session, (String, Vec<String>)), Reply> {
    let clear = vec![delete_login_cookie(service, &pending.state)];
    match new_session(service, pending, tokens, verify, now_secs, random) {
        Ok(session) => {
            let mut set_cookies = clear;
            set_cookies.extend(choice::remember(service, pending.idp));
            Ok((session, (pending.return_to.clone(), set_cookies)))
        }
        Err(error) => Err(error.reply(clear)),
    }
}

/// The cookies of the session a successful code exchange starts.
fn login_session(
    service: &LoginService,
    pending: &PendingLogin,
    tokens: Result<Tokens, TokenError>,
    verify: VerifyIdToken,
    request_cookies: &[(&str, &str)],
    now_secs: u64,
    random: &mut dyn Random,
) -> Result<Vec<String>, LoginError> {
    let mut session = new_session(service, pending, tokens, verify, now_secs, random)?;
    store_session(service, &mut session, request_cookies, now_secs, random)
        .ok_or(LoginError::SessionNotStored)
}

/// The session a successful code exchange starts.
fn new_session(
    service: &LoginService,
    pending: &PendingLogin,
    tokens: Result<Tokens, TokenError>,
    verify: VerifyIdToken,
    now_secs: u64,
    random: &mut dyn Random,
) -> Result<Session, LoginError> {
    if now_secs >= pending.expires_at {
        return Err(LoginError::TookTooLong);
    }
    let tokens = tokens.map_err(|e| match e {
        TokenError::Refused(why) => LoginError::CodeRefused(why),
        TokenError::Unavailable(why) => LoginError::TokenEndpointFailed(why),
        TokenError::Garbage => LoginError::TokenEndpointGarbage,
    })?;
    let id_token = tokens.id_token.as_ref().ok_or(LoginError::NoIdToken)?;
    let claims =
        verify(id_token.expose(), Some(&pending.nonce)).map_err(LoginError::IdTokenRejected)?;
    let identity = claims.identity;
    let sub = claims.sub.filter(|sub| *sub != identity.user);
    Ok(Session {
        sid: random.token(16).ok_or(LoginError::NoRandomness)?,
        user: identity.user,
        email: identity.email,
        preferred_username: identity.preferred_username,
        groups: identity.groups,
        scopes: granted_scopes(tokens.scope.as_deref()),
        claims: identity.claims,
        expires_at: now_secs.saturating_add(service.session_lifetime_secs),
        refresh_at: token_expiry(claims.expires_at, tokens.expires_in, now_secs),
        refresh_token: tokens.refresh_token.filter(|_| service.refresh),
        id_token: (service.end_idp_session || service.set_authorization_header)
            .then(|| id_token.clone()),
        access_token: tokens.access_token.filter(|_| service.pass_access_token),
        idp_sid: claims.sid,
        sub,
        signed_in_at: now_secs,
        idp: pending.idp,
        active_at: idle::active_at(service, now_secs),
    })
}

/// `Set-Cookie` values that store `session`. A session too large for the cookie chunks
/// (hundreds of groups) keeps only the groups rules name.
pub fn store_session(
    service: &LoginService,
    session: &mut Session,
    request_cookies: &[(&str, &str)],
    now_secs: u64,
    random: &mut dyn Random,
) -> Option<Vec<String>> {
    let mut write = |session: &Session| {
        session::write(
            session,
            request_cookies,
            &service.cookie_name,
            &service.cookie,
            &service.idp(session.idp).sealer,
            now_secs,
            random,
        )
    };
    if let Some(cookies) = write(session) {
        return Some(cookies);
    }
    let before = session.groups.len();
    session.groups.retain(|g| service.kept_groups.contains(g));
    if session.groups.len() == before {
        return None;
    }
    write(session)
}

/// The scopes a token response grants (space-separated).
pub(super) fn granted_scopes(scope: Option<&str>) -> Vec<String> {
    scope
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

pub(super) fn token_expiry(
    id_token_exp: Option<u64>,
    expires_in: Option<u64>,
    now_secs: u64,
) -> u64 {
    id_token_exp
        .or_else(|| expires_in.map(|s| now_secs.saturating_add(s)))
        .unwrap_or(now_secs.saturating_add(DEFAULT_TOKEN_SECS))
}
