//! Starting a login: a request without a session (a browser goes to the IdP, anything else
//! gets 401) and oauth2-proxy's `/oauth2/start`.

use url::Url;

use crate::core::bearer::error::AuthError;
use crate::core::config::login::{LoginService, Unauthenticated};
use crate::core::cookies;
use crate::core::hostname::host_name;
use crate::core::login::choice::{self, Choice, Next};
use crate::core::login::endpoints::{redirect_uri, unavailable, Endpoints};
use crate::core::login::error::LoginError;
use crate::core::login::hints::{start_hints, with_hints};
use crate::core::login::login_cookie::{login_cookie_attributes, LOGIN_PURPOSE};
use crate::core::login::oidc::{self, PendingLogin};
use crate::core::login::redirect::{redirect_hosts, safe_target};
use crate::core::login::request_kind::is_browser_navigation;
use crate::core::login::session;
use crate::core::login::step::{Request, Step};
use crate::core::random::Random;
use crate::core::refusal::{Refusal, Refused};
use crate::core::reply::{self, Reply};

/// Browsers keep cookies of up to 4096 bytes (name, value and attributes).
const MAX_COOKIE_BYTES: usize = 4000;

/// Where to return after login, in order of preference: the deep link as asked, its path
/// alone, `/`. Each is safe; the caller takes the first whose login cookie fits a browser.
pub(super) fn return_targets(path_and_query: &str) -> Vec<String> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let mut targets: Vec<String> = [path_and_query, path]
        .into_iter()
        .filter_map(|t| safe_target(t, &[]))
        .collect();
    targets.dedup();
    targets.push("/".into());
    targets
}

/// Whether a request without a session is sent to log in (rather than refused with 401).
pub(super) fn sends_to_login(request: &Request) -> bool {
    match request.unauthenticated {
        Unauthenticated::Login => true,
        Unauthenticated::Deny => false,
        Unauthenticated::Auto => is_browser_navigation(&request.hints),
    }
}

/// No valid session: a browser is sent to log in; anything else is refused (`401`, written
/// as the mode writes refusals), a stale session cleared either way.
pub(crate) fn unauthenticated(
    service: &LoginService,
    choice: &Choice,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Step {
    let cookies = request.cookies();
    let stale = session::clear_except(&cookies, &service.cookie_name, &service.cookie, &[]);
    if !sends_to_login(request) {
        return Step::Refuse(Refused {
            refusal: Refusal::Token(AuthError::MissingToken),
            set_cookies: stale,
        });
    }
    let targets: Vec<String> = return_targets(request.path)
        .into_iter()
        .map(|t| absolute_if_elsewhere(service, request, t))
        .collect();
    if choice.next != Next::Go {
        let back = targets.first().map_or("/", String::as_str);
        return Step::Respond(choice::chooser(service, back, &[], stale));
    }
    let to = Login {
        service,
        choice,
        request,
    };
    login_step(login_redirect(
        &to,
        endpoints,
        now_secs,
        random,
        (targets, stale),
        &[],
    ))
}

/// A login about to start: at which service, with which IdP, for which request.
struct Login<'a> {
    service: &'a LoginService,
    choice: &'a Choice,
    request: &'a Request<'a>,
}

/// oauth2-proxy's `/oauth2/start?rd=...`: a new login, signed in or not, that ends at `rd`
/// (a path here, or a URL on this service's hosts or `allowed_redirect_hosts`), else `/`.
pub(super) fn start(
    service: &LoginService,
    choice: &Choice,
    request: &Request,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
) -> Step {
    if choice.next == Next::Unknown {
        return Step::Respond(choice::unknown_provider());
    }
    if endpoints.is_none() && request.may_wait && choice.next == Next::Go {
        return Step::AwaitEndpoints;
    }
    let asked = request
        .query_param("rd")
        .and_then(|rd| safe_target(&rd, &redirect_hosts(service)));
    let targets: Vec<String> = asked
        .into_iter()
        .chain(["/".to_string()])
        .map(|t| absolute_if_elsewhere(service, request, t))
        .collect();
    let hints = start_hints(service, request);
    if choice.next == Next::Chooser {
        let back = targets.first().map_or("/", String::as_str);
        return Step::Respond(choice::chooser(service, back, &hints, Vec::new()));
    }
    let to = Login {
        service,
        choice,
        request,
    };
    let reply = login_redirect(&to, endpoints, now_secs, random, (targets, vec![]), &hints);
    login_step(reply)
}

/// A reply that may start a login: only the way to the IdP is a redirect; the rest (no
/// endpoints, no randomness, a refusal) are answers.
pub(super) fn login_step(reply: Reply) -> Step {
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

/// Redirects to the IdP with a new login's cookie (and `stale` cookies cleared); the login
/// returns to the first of `targets` whose sealed cookie fits a browser. `hints` go to the
/// IdP with the authorization request.
fn login_redirect(
    to: &Login,
    endpoints: Option<&Endpoints>,
    now_secs: u64,
    random: &mut dyn Random,
    (targets, stale): (Vec<String>, Vec<String>),
    hints: &[(&'static str, String)],
) -> Reply {
    let (service, request) = (to.service, to.request);
    let idp = service.idp(to.choice.idp);
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
            .and_then(|plain| idp.sealer.seal(LOGIN_PURPOSE, &plain, random))
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
        idp,
        &redirect_uri(service, request),
        &pending,
    );
    reply::redirect(&with_hints(location, hints), set_cookies)
}
