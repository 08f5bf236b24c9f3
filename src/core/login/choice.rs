//! Which IdP of a login service a request concerns: the one that sealed its cookie, the one
//! `/oauth2/start?provider=` names, the one the browser chose before (cookie
//! `<cookie_name>_idp`), or none yet: then a browser is shown the chooser.

use url::form_urlencoded;

use crate::core::config::idp::{valid_idp_id, IdpId};
use crate::core::config::login::LoginService;
use crate::core::cookies;
use crate::core::host::Metric;
use crate::core::login::oidc;
use crate::core::login::session;
use crate::core::login::step::Request;
use crate::core::reply::{self, Reply};

/// How long the chosen IdP is remembered.
const REMEMBERED_SECS: u64 = 30 * 24 * 3600;

/// What a login this request starts does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Goes to `Choice::idp`.
    Go,
    /// Shows the chooser (several IdPs, none chosen, or "switch account").
    Chooser,
    /// `/oauth2/start?provider=` named no IdP of the service: `400`.
    Unknown,
}

/// The IdP a request concerns: whose sealer opens its cookies and whose endpoints serve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub idp: IdpId,
    pub next: Next,
}

impl Choice {
    const FIRST: Choice = Choice {
        idp: IdpId(0),
        next: Next::Go,
    };
}

/// The cookie that remembers the chosen IdP.
pub(crate) fn remembered_cookie_name(service: &LoginService) -> String {
    format!("{}_idp", service.cookie_name)
}

/// The IdP the browser chose before, when its cookie names one still configured.
fn remembered(service: &LoginService, cookies: &[(&str, &str)]) -> Option<IdpId> {
    let name = remembered_cookie_name(service);
    let (_, value) = cookies.iter().find(|(n, _)| *n == name)?;
    valid_idp_id(value)
        .then(|| service.idps.find(value))
        .flatten()
}

/// Which IdP `request` concerns, and where a login it starts goes.
pub fn choose(service: &LoginService, request: &Request) -> Choice {
    // One IdP (also one listed under `idps`): nothing to choose.
    if service.idps.iter().nth(1).is_none() {
        return Choice::FIRST;
    }
    let path = request.path_only();
    let go = |idp| Choice {
        idp,
        next: Next::Go,
    };
    if path == service.callback_path {
        return go(login_idp(service, request).unwrap_or_default());
    }
    let cookies = request.cookies();
    let remembered = remembered(service, &cookies);
    if path == service.start_path {
        if let Some(asked) = request.query_param("provider") {
            return match service.idps.find(&asked) {
                Some(idp) => go(idp),
                None => Choice {
                    idp: IdpId(0),
                    next: Next::Unknown,
                },
            };
        }
        let switching = request.query_param("prompt").as_deref() == Some("select_account");
        return match remembered.filter(|_| !switching) {
            Some(idp) => go(idp),
            None => Choice {
                idp: IdpId(0),
                next: Next::Chooser,
            },
        };
    }
    let sealed = session::sealed_value(&cookies, &service.cookie_name);
    let of_session = sealed.and_then(|s| {
        let (tag, _) = s.split_once('.')?;
        service.idps.find(tag)
    });
    match of_session.or(remembered) {
        Some(idp) => go(idp),
        None => Choice {
            idp: IdpId(0),
            next: Next::Chooser,
        },
    }
}

/// The IdP of the login a callback ends: its login cookie's tag.
fn login_idp(service: &LoginService, request: &Request) -> Option<IdpId> {
    let state = request.query_param("state")?;
    if !oidc::is_well_formed_state(&state) {
        return None;
    }
    let name = service.login_cookie_name(&state);
    let cookies = request.cookies();
    let (_, value) = cookies.iter().find(|(n, _)| *n == name)?;
    Some(service.idps.of_sealed(value))
}

/// `Set-Cookie` remembering `idp` as the browser's choice, with the session cookie's
/// attributes; `None` for a service of one IdP (nothing to choose).
pub(crate) fn remember(service: &LoginService, idp: IdpId) -> Option<String> {
    if !service.idps.several() {
        return None;
    }
    let id = &service.idp(idp).id;
    Some(cookies::set_cookie(
        &remembered_cookie_name(service),
        id,
        &service.cookie,
        None,
        REMEMBERED_SECS,
    ))
}

/// The chooser: one link per IdP, each starting a login with it that ends at `return_to`.
/// `hints` (switch account's `prompt=select_account` among them) ride along to the IdP chosen.
pub(crate) fn chooser(
    service: &LoginService,
    return_to: &str,
    hints: &[(&'static str, String)],
    set_cookies: Vec<String>,
) -> Reply {
    let hrefs: Vec<(String, &str)> = service
        .idps
        .iter()
        .map(|(_, idp)| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("provider", &idp.id);
            query.append_pair("rd", return_to);
            for (name, value) in hints {
                query.append_pair(name, value);
            }
            let query = query.finish();
            (
                format!("{}?{query}", service.start_path),
                idp.label.as_str(),
            )
        })
        .collect();
    let links: Vec<(&str, &str)> = hrefs.iter().map(|(h, l)| (h.as_str(), *l)).collect();
    let mut page = reply::page_with_links(
        200,
        "Sign in",
        "Choose how to sign in.",
        &links,
        set_cookies,
    );
    // A `200` that lets nobody in: sent to sign in, as a redirect to the one IdP would be
    // (never counted or logged as allowed).
    page.counted = Some(Metric::Redirected);
    page
}

/// `/oauth2/start?provider=` naming no IdP of the service.
pub(crate) fn unknown_provider() -> Reply {
    reply::page(
        400,
        "Unknown sign-in provider",
        "The sign-in link names a provider this site does not offer.",
        Vec::new(),
    )
}
