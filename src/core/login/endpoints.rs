//! The IdP endpoints a service uses (configured, else discovered) and the callback URL the
//! IdP sends the browser back to.

use std::rc::Rc;

use url::Url;

use crate::core::config::idp::Idp;
use crate::core::config::login::LoginService;
use crate::core::keys::record::Discovery;
use crate::core::login::error::LoginError;
use crate::core::login::step::Request;
use crate::core::reply::Reply;

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
pub(crate) struct ResolvedEndpoints {
    from: Option<Option<Discovery>>,
    endpoints: Option<Rc<Endpoints>>,
}

impl ResolvedEndpoints {
    pub(crate) fn get(
        &mut self,
        idp: &Idp,
        discovered: Option<&Discovery>,
    ) -> Option<Rc<Endpoints>> {
        if self.from.as_ref().map(Option::as_ref) != Some(discovered) {
            self.endpoints = Endpoints::resolve(idp, discovered).map(Rc::new);
            self.from = Some(discovered.cloned());
        }
        self.endpoints.clone()
    }
}

impl Endpoints {
    pub(crate) fn resolve(idp: &Idp, discovered: Option<&Discovery>) -> Option<Endpoints> {
        let found = |configured: &Option<Url>, discovered: Option<&String>| {
            configured
                .clone()
                .or_else(|| discovered.and_then(|d| Url::parse(d).ok()))
        };
        Some(Endpoints {
            authorization: found(
                &idp.endpoints.authorization,
                discovered.and_then(|d| d.authorization_endpoint.as_ref()),
            )?,
            token: found(
                &idp.endpoints.token,
                discovered.and_then(|d| d.token_endpoint.as_ref()),
            )?,
            end_session: found(
                &idp.endpoints.end_session,
                discovered.and_then(|d| d.end_session_endpoint.as_ref()),
            ),
        })
    }
}

pub(super) fn redirect_uri(service: &LoginService, request: &Request) -> String {
    match &service.redirect_url {
        Some(url) => url.to_string(),
        None => format!(
            "{}://{}{}",
            request.scheme, request.authority, service.callback_path
        ),
    }
}

/// Fails closed while discovery has not answered (IdP down, or a wait that ran out).
pub(super) fn unavailable() -> Reply {
    LoginError::EndpointsUnknown.reply(vec![])
}
