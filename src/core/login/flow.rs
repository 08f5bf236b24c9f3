//! The browser sign-in flow for one request to a protected host. `decide` handles, in order:
//! 1. the callback from the IdP (check state, then exchange the code),
//! 2. sign-out,
//! 3. requests with an `Authorization` header (left to bearer validation),
//! 4. a valid session (forward, or refresh when its tokens expired),
//! 5. no session (browsers go to the IdP, everything else gets 401).
//!
//! A callback or a login start before the IdP's endpoints are known waits for them
//! (`Step::AwaitEndpoints`) when the request may wait.
//!
//! `finish_login` and `finish_refresh` continue after the token endpoint answered.

use std::rc::Rc;

use subtle::ConstantTimeEq;
use url::{form_urlencoded, Url};

use crate::core::bearer::authenticator::IdTokenClaims;
use crate::core::bearer::error::AuthError;
use crate::core::config::login::{LoginService, Unauthenticated};
use crate::core::cookies::{self, CookieAttributes, SameSite};
use crate::core::hostname::host_name;
use crate::core::identity::Identity;
use crate::core::keys::record::Discovery;
use crate::core::login::error::LoginError;
use crate::core::login::oidc::{self, PendingLogin, TokenError, TokenRequest, Tokens};
use crate::core::login::opened::{Opened, OpenedSessions};
use crate::core::login::redirect::safe_target;
use crate::core::login::request_kind::{is_browser_navigation, RequestHints};
use crate::core::login::session::{self, Session};
use crate::core::random::Random;
use crate::core::refusal::{Refusal, Refused};
use crate::core::reply::{self, Reply};
use crate::core::secret::Secret;

const LOGIN_PURPOSE: &str = "login";
/// Login cookies sign-out deletes at most.
const MAX_LOGINS_CLEARED: usize = 8;

/// Verifies an ID token for the service's client, with the login's nonce when there is one.
pub type VerifyIdToken<'a> = &'a dyn Fn(&str, Option<&str>) -> Result<IdTokenClaims, AuthError>;
/// Session lifetime when the IdP says nothing about token expiry.
const DEFAULT_TOKEN_SECS: u64 = 300;

/// The parts of a request the flow reads.
pub struct Request<'a> {
    pub method: &'a str,
    /// `https` or `http`: Envoy's `:scheme` (never a client's `X-Forwarded-Proto`).
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
    pub cookie_header: Option<&'a str>,
    pub has_authorization: bool,
    pub hints: RequestHints<'a>,
    /// What the route says about requests without a session.
    pub unauthenticated: Unauthenticated,
    /// Whether a browser sent to log in may wait for the IdP's endpoints (first seconds after
    /// start) rather than get 503 at once.
    pub may_wait: bool,
}

impl Request<'_> {
    fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(self.path)
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.path.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn cookies(&self) -> Vec<(&str, &str)> {
        self.cookie_header.map(cookies::parse).unwrap_or_default()
    }
}

/// The IdP endpoints a service uses: configured, or else discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    pub end_session: Option<Url>,
}

/// A service's endpoints as last resolved: URLs are parsed again only when discovery
/// changes, not on every request.
#[derive(Default)]
pub struct ResolvedEndpoints {
    from: Option<Option<Discovery>>,
    endpoints: Option<Rc<Endpoints>>,
}

impl ResolvedEndpoints {
    pub fn get(
        &mut self,
        service: &LoginService,
        discovered: Option<&Discovery>,
    ) -> Option<Rc<Endpoints>> {
        if self.from.as_ref().map(Option::as_ref) != Some(discovered) {
            self.endpoints = Endpoints::resolve(service, discovered).map(Rc::new);
            self.from = Some(discovered.cloned());
        }
        self.endpoints.clone()
    }
}

impl Endpoints {
    pub fn resolve(service: &LoginService, discovered: Option<&Discovery>) -> Option<Endpoints> {
        let found = |configured: &Option<Url>, discovered: Option<&String>| {
            configured
                .clone()
                .or_else(|| discovered.and_then(|d| Url::parse(d).ok()))
        };
        Some(Endpoints {
            authorization: found(
                &service.endpoints.authorization,
                discovered.and_then(|d| d.authorization_endpoint.as_ref()),
            )?,
            token: found(
                &service.endpoints.token,
                discovered.and_then(|d| d.token_endpoint.as_ref()),
            )?,
            end_session: found(
                &service.endpoints.end_session,
                discovered.and_then(|d| d.end_session_endpoint.as_ref()),
            ),
        })
    }
}

/// A request that goes upstream under a session: with its identity, our cookies removed from
/// the `Cookie` header (`None`: remove the header), and these cookies set on the response.
/// Its `Authorization` header is always removed: the session is the identity, and a bearer
/// token nobody checked must not reach the upstream beside it.
pub struct Forwarding {
    pub identity: Rc<Identity>,
    pub cookie_header: Option<String>,
    pub set_cookies: Vec<String>,
    /// For `X-Auth-Request-Access-Token`, when the service passes it.
    pub access_token: Option<Secret>,
    /// For `Authorization: Bearer`, when the service sets it.
    pub id_token: Option<Secret>,
}

/// Cookies hold sessions (ours and the upstream's): never printed.
impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("identity", &self.identity)
            .field(
                "cookie_header",
                &self.cookie_header.as_ref().map(|_| "[redacted]"),
            )
            .field("set_cookies", &self.set_cookies.len())
            .finish()
    }
}

#[derive(Debug)]
pub enum Step {
    /// A valid session: forward.
    Forward(Forwarding),
    /// The session's tokens expired and a refresh token is held: refresh, then forward.
    Refresh {
        session: Session,
        request: TokenRequest,
    },
    /// The IdP sent the browser back with a code: exchange it.
    Exchange {
        pending: PendingLogin,
        request: TokenRequest,
    },
    /// Answer here.
    Respond(Reply),
    /// No session, and not sent to log in: refused (`401`), written as the mode writes
    /// refusals.
    Refuse(Refused),
    /// No session: the browser goes to the IdP to sign in (this redirect).
    StartLogin(Reply),
    /// No session but an `Authorization` header: bearer validation decides.
    Bearer,
    /// A browser must be sent to log in, but the IdP's endpoints are not known yet: wait for
    /// discovery, then decide again.
    AwaitEndpoints,
}

fn redirect_uri(service: &LoginService, request: &Request) -> String {
    match &service.redirect_url {
        Some(url) => url.to_string(),
        None => format!(
            "{}://{}{}",
            request.scheme, request.authority, service.callback_path
        ),
    }
}

/// Fails closed while discovery has not answered (IdP down, or a wait that ran out).
fn unavailable() -> Reply {
    LoginError::EndpointsUnknown.reply(vec![])
}

/// Browsers keep cookies of up to 4096 bytes (name, value and attributes).
const MAX_COOKIE_BYTES: usize = 4000;

/// Where to return after login, in order of preference: the deep link as asked, its path
/// alone, `/`. Each is safe; the caller takes the first whose login cookie fits a browser.
fn return_targets(path_and_query: &str) -> Vec<String> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let mut targets: Vec<String> = [path_and_query, path]
        .into_iter()
        .filter_map(|t| safe_target(t, &[]))
        .collect();
    targets.dedup();
    targets.push("/".into());
    targets
}

/// Where a browser whose session ended goes: the page it asked for when that is safe.
fn return_target(path_and_query: &str) -> String {
    return_targets(path_and_query)
        .into_iter()
        .next()
        .unwrap_or_else(|| "/".into())
}

/// Attributes of the short-lived login cookie: the IdP sends the browser back cross-site,
/// so `SameSite=Strict` would hide the cookie from the callback; `__Host-` names need `/`.
fn login_cookie_attributes(service: &LoginService) -> CookieAttributes {
    let mut attributes = service.cookie.clone();
    if attributes.same_site == SameSite::Strict {
        attributes.same_site = SameSite::Lax;
    }
    attributes
}

pub fn decide(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Step {
    let mut opened = OpenedSessions::new(0);
    decide_with(service, request, endpoints, now_secs, random, &mut opened)
}

/// `decide`, with the sessions this VM already opened (each sealed value is opened once).
pub fn decide_with(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
    opened: &mut OpenedSessions,
) -> Step {
    let path = request.path_only();
    if path == service.callback_path {
        return callback(service, request, endpoints);
    }
    if path == service.sign_out_path {
        return Step::Respond(sign_out(service, request, endpoints, now_secs));
    }
    if path == service.start_path {
        return start(service, request, endpoints, now_secs, random);
    }
    let cookies = request.cookies();
    let session = session::sealed_value(&cookies, &service.cookie_name).and_then(|sealed| {
        opened.get_or_open(&sealed, now_secs, |sealed| {
            let session = session::open(sealed, &service.sealer)?;
            let identity = Rc::new(session.identity(&service.issuer));
            Some(Opened { session, identity })
        })
    });
    match session {
        None if request.has_authorization => Step::Bearer,
        None if endpoints.is_none() && request.may_wait && sends_to_login(request) => {
            Step::AwaitEndpoints
        }
        None if !sends_to_login(request) => Step::Refuse(not_signed_in(service, request)),
        None => login_step(unauthenticated(
            service, request, endpoints, now_secs, random,
        )),
        Some(opened) => {
            let session = &opened.session;
            let refresh_token = session.refresh_token.clone().filter(|_| service.refresh);
            match (refresh_token, endpoints) {
                (Some(token), Some(endpoints)) if session.needs_refresh(now_secs) => {
                    Step::Refresh {
                        request: oidc::refresh(&endpoints.token, service, &token),
                        session: session.clone(),
                    }
                }
                _ => Step::Forward(forward_as(
                    service,
                    request.cookie_header,
                    session,
                    Rc::clone(&opened.identity),
                    Vec::new(),
                )),
            }
        }
    }
}

/// Forwards with the session's identity, our cookies taken out of the request's `Cookie`
/// header; `set_cookies` go on the response.
pub fn forward(
    service: &LoginService,
    cookie_header: Option<&str>,
    session: &Session,
    set_cookies: Vec<String>,
) -> Forwarding {
    let identity = Rc::new(session.identity(&service.issuer));
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
    }
}

/// Whether a request without a session is sent to log in (rather than refused with 401).
fn sends_to_login(request: &Request) -> bool {
    match request.unauthenticated {
        Unauthenticated::Login => true,
        Unauthenticated::Deny => false,
        Unauthenticated::Auto => is_browser_navigation(&request.hints),
    }
}

/// No valid session, and not sent to log in: `401`, with a stale session cleared.
fn not_signed_in(service: &LoginService, request: &Request) -> Refused {
    let cookies = request.cookies();
    let stale = session::clear_except(&cookies, &service.cookie_name, &service.cookie, &[]);
    Refused {
        refusal: Refusal::Token(AuthError::MissingToken),
        set_cookies: stale,
    }
}

/// No valid session: a browser is sent to log in, anything else gets 401.
pub fn unauthenticated(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Reply {
    let cookies = request.cookies();
    let stale = session::clear_except(&cookies, &service.cookie_name, &service.cookie, &[]);
    if !sends_to_login(request) {
        return AuthError::MissingToken.reply(stale);
    }
    let targets = return_targets(request.path)
        .into_iter()
        .map(|t| absolute_if_elsewhere(service, request, t))
        .collect();
    login_redirect(
        service, request, endpoints, now_secs, random, targets, stale,
    )
}

/// oauth2-proxy's `/oauth2/start?rd=...`: a new login, signed in or not, that ends at `rd`
/// (a path here, or a URL on this service's hosts or `allowed_redirect_hosts`), else `/`.
fn start(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Step {
    if endpoints.is_none() && request.may_wait {
        return Step::AwaitEndpoints;
    }
    let asked = request
        .query_param("rd")
        .and_then(|rd| safe_target(&rd, &redirect_hosts(service)));
    let targets = asked
        .into_iter()
        .chain(["/".to_string()])
        .map(|t| absolute_if_elsewhere(service, request, t))
        .collect();
    let reply = login_redirect(
        service,
        request,
        endpoints,
        now_secs,
        random,
        targets,
        vec![],
    );
    login_step(reply)
}

/// Hosts an `rd` may name: the service's own (not `*`) and `allowed_redirect_hosts`.
fn redirect_hosts(service: &LoginService) -> Vec<String> {
    service
        .hosts
        .iter()
        .filter(|h| *h != "*")
        .chain(&service.allowed_redirect_hosts)
        .cloned()
        .collect()
}

/// A reply that may start a login: only the way to the IdP is a redirect; the rest (no
/// endpoints, no randomness, a refusal) are answers.
fn login_step(reply: Reply) -> Step {
    if reply.status == 302 {
        Step::StartLogin(reply)
    } else {
        Step::Respond(reply)
    }
}

/// A path on this host, as a URL when the callback is on another host (a central auth host
/// serving several apps): after login the browser must come back here, not to the auth
/// host. Only for hosts this service names, never one a client made up under `*`.
fn absolute_if_elsewhere(service: &LoginService, request: &Request, target: String) -> String {
    let Some(callback_host) = service.redirect_url.as_ref().and_then(Url::host_str) else {
        return target;
    };
    let Some(here) = host_name(request.authority) else {
        return target;
    };
    let named = service
        .hosts
        .iter()
        .any(|h| h != "*" && h.eq_ignore_ascii_case(here));
    if !target.starts_with('/') || here.eq_ignore_ascii_case(callback_host) || !named {
        return target;
    }
    format!("{}://{}{target}", request.scheme, request.authority)
}

/// Redirects to the IdP with a new login's cookie; the login returns to the first of
/// `targets` whose sealed cookie fits a browser.
fn login_redirect(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
    targets: Vec<String>,
    stale: Vec<String>,
) -> Reply {
    let Some(endpoints) = endpoints else {
        return unavailable();
    };
    let Some(mut pending) =
        PendingLogin::new(String::new(), now_secs, service.login_timeout_secs, random)
    else {
        return LoginError::NoRandomness.reply(vec![]);
    };
    // The deep link as asked, else its path, else `/`: the first whose sealed cookie fits.
    let mut login_cookie = None;
    let attributes = login_cookie_attributes(service);
    for return_to in targets {
        pending.return_to = return_to;
        let Some(sealed) = serde_json::to_vec(&pending)
            .ok()
            .and_then(|plain| service.sealer.seal(LOGIN_PURPOSE, &plain, random))
        else {
            return LoginError::LoginStateNotSealed.reply(vec![]);
        };
        let cookie = cookies::set_cookie(
            &service.login_cookie_name(&pending.state),
            &sealed,
            &attributes,
            Some(service.login_cookie_path()),
            service.login_timeout_secs,
        );
        if cookie.len() <= MAX_COOKIE_BYTES {
            login_cookie = Some(cookie);
            break;
        }
    }
    let Some(login_cookie) = login_cookie else {
        return LoginError::LoginStateNotSealed.reply(vec![]);
    };
    let mut set_cookies = stale;
    set_cookies.push(login_cookie);
    let location = oidc::authorization_url(
        &endpoints.authorization,
        service,
        &redirect_uri(service, request),
        &pending,
    );
    reply::redirect(&location, set_cookies)
}

/// Deletes the login cookie of a login that cannot go on.
pub fn forget_login(service: &LoginService, pending: &PendingLogin) -> String {
    delete_login_cookie(service, &pending.state)
}

/// Deletes the login cookie of `state`, which must be well formed (it names the cookie).
fn delete_login_cookie(service: &LoginService, state: &str) -> String {
    cookies::delete_cookie(
        &service.login_cookie_name(state),
        &login_cookie_attributes(service),
        Some(service.login_cookie_path()),
    )
}

fn callback(service: &LoginService, request: &Request, endpoints: Option<&Endpoints>) -> Step {
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
        .and_then(|(_, v)| service.sealer.open(LOGIN_PURPOSE, v))
        .and_then(|plain| serde_json::from_slice::<PendingLogin>(&plain).ok())
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
        service,
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
            reply::redirect(&pending.return_to, set_cookies)
        }
        Err(error) => error.reply(clear),
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
    let mut session = Session {
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
    };
    store_session(service, &mut session, request_cookies, now_secs, random)
        .ok_or(LoginError::SessionNotStored)
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
            &service.sealer,
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
fn granted_scopes(scope: Option<&str>) -> Vec<String> {
    scope
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn token_expiry(id_token_exp: Option<u64>, expires_in: Option<u64>, now_secs: u64) -> u64 {
    id_token_exp
        .or_else(|| expires_in.map(|s| now_secs.saturating_add(s)))
        .unwrap_or(now_secs.saturating_add(DEFAULT_TOKEN_SECS))
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

#[derive(Debug)]
pub enum Refreshed {
    /// New tokens: the renewed session, to forward with and store.
    Renewed(Box<Session>),
    /// The IdP is unreachable: keep the old session for now and try again later.
    KeepOld,
    /// The IdP refused the refresh token (revoked, expired): the session is over.
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
        Err(TokenError::Refused(why)) => return Refreshed::Ended(why),
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

fn sign_out(
    service: &LoginService,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
) -> Reply {
    let cookies = request.cookies();
    let session = session::read(&cookies, &service.cookie_name, &service.sealer, now_secs);
    // Every session cookie name, carried or not: the browser may hold chunks this request
    // did not send. Logins in flight are cleared when the request names them.
    let mut clear = session::delete_all(&service.cookie_name, &service.cookie);
    let mut logins: Vec<&str> = cookies
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
    let end_session = endpoints
        .and_then(|e| e.end_session.as_ref())
        .filter(|_| service.end_idp_session);
    let Some(end_session) = end_session else {
        return reply::redirect(&rd, clear);
    };
    let mut url = end_session.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("client_id", &service.client_id);
        if let Some(hint) = session.as_ref().and_then(|s| s.id_token.as_ref()) {
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
