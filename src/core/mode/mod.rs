//! How a request is answered: the one place that knows modes exist (besides the
//! configuration that turns them on). A mode says three things: what a request without a
//! credential gets, how an admitted one is answered, and how a refusal is written.
//!
//! - `Upstream`: the filter in front of the app; identity headers go upstream;
//! - `Check`: oauth2-proxy's forward-auth check for NGINX `auth_request` or Envoy
//!   `ext_authz` (`check`);
//! - `UserInfo`: `/oauth2/userinfo`;
//! - `Kubernetes`: in front of the apiserver, asking it to impersonate the caller
//!   (`kubernetes`).

pub(crate) mod check;
pub(crate) mod kubernetes;
pub mod pages;

use std::rc::Rc;

use crate::core::bearer::error::AuthError;
use crate::core::config::kubernetes::Impersonation;
use crate::core::config::Settings;
use crate::core::forward::Forward;
use crate::core::identity::{self, Identity};
use crate::core::policy::route::Unauthenticated;
use crate::core::refusal::{Refusal, Refused};
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;
use check::{Check, HandedOn, OriginalRequest};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    #[default]
    Upstream,
    Check(Check),
    /// `kubernetes`: about a Kubernetes API host, whose refusals are the apiserver's.
    UserInfo {
        kubernetes: bool,
    },
    Kubernetes(Rc<Impersonation>),
}

/// Which request a check is about.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum About {
    /// The request as sent (an `ext_authz` check's path, user info).
    AsSent,
    /// The one ingress-nginx names in `X-Original-URL` and `X-Original-Method`.
    Original(OriginalRequest),
    /// An `auth_request` check that does not say: every restriction of the service holds.
    EveryRoute,
}

/// An admitted request, answered as its mode says.
#[derive(Debug)]
pub(crate) enum Admitted {
    Forward(Forward),
    Answer(Reply),
}

impl Mode {
    /// The mode of a request to a service: a check or user info as asked, else Kubernetes
    /// API mode when the service has it.
    pub(crate) fn for_service(asked: Mode, impersonation: Option<&Rc<Impersonation>>) -> Mode {
        match (asked, impersonation) {
            (Mode::Upstream, Some(impersonation)) => Mode::Kubernetes(Rc::clone(impersonation)),
            (Mode::Check(check), Some(_)) => Mode::Check(Check {
                kubernetes: true,
                ..check
            }),
            (Mode::UserInfo { .. }, Some(_)) => Mode::UserInfo { kubernetes: true },
            (asked, _) => asked,
        }
    }

    /// The request is answered here (to NGINX, Envoy or a script), never forwarded: nobody
    /// is sent to log in, and refusals are never pages.
    pub(crate) fn answered_here(&self) -> bool {
        matches!(self, Mode::Check(_) | Mode::UserInfo { .. })
    }

    /// In front of a Kubernetes apiserver: clients may not impersonate on their own, and
    /// refusals are the apiserver's `Status`.
    pub(crate) fn for_apiserver(&self) -> bool {
        match self {
            Mode::Kubernetes(_) => true,
            Mode::Check(check) => check.kubernetes,
            Mode::UserInfo { kubernetes } => *kubernetes,
            Mode::Upstream => false,
        }
    }

    /// Before the rules: a check learns which of the request's headers Envoy must remove
    /// (an `auth_request` check carrying one is refused, when so set: NGINX would hand them
    /// to the app), and which request it is about. `Err` with the refusal and its log line.
    pub(crate) fn learn(
        &mut self,
        headers: &RequestHeaders,
        settings: &Settings,
    ) -> Result<About, (Refusal, Option<String>)> {
        let Mode::Check(check) = self else {
            return Ok(About::AsSent);
        };
        let names = headers.iter().map(|(n, _)| n);
        let spoofed = identity::spoofed(names, &settings.stripped_headers);
        if !check.is_auth_request() {
            check.spoofed = spoofed.iter().map(|n| n.to_string()).collect();
            return Ok(About::AsSent);
        }
        let endpoints = &settings.endpoints;
        if endpoints.refuse_spoofed_headers {
            if let Some((refusal, named)) = check::refused_spoofed(&spoofed) {
                let line = format!("400 for an auth_request check: the request carries {named:?}, headers only the proxy may set");
                return Err((refusal, Some(line)));
            }
        }
        check.spoofed = spoofed.iter().map(|n| n.to_string()).collect();
        if !endpoints.trust_original_url {
            return Ok(About::EveryRoute);
        }
        let original = check::original_request(
            headers.text("x-original-url"),
            headers.text("x-original-method"),
        );
        original
            .map(About::Original)
            .map_err(|why| (Refusal::BadRequest(why.into()), None))
    }

    /// The first of the three answers: what a request without a credential gets, given
    /// what its route says.
    pub(crate) fn unauthenticated(&self, route_says: Unauthenticated) -> Unauthenticated {
        if self.answered_here() {
            Unauthenticated::Deny
        } else {
            route_says
        }
    }

    /// A refusal of the client's own headers, before anyone asks who it is: in front of an
    /// apiserver, a client may not ask it to impersonate (kube-oidc-proxy's rule).
    pub(crate) fn refuses_client(&self, headers: &RequestHeaders) -> Option<Refusal> {
        let names = headers.iter().map(|(n, _)| n);
        (self.for_apiserver() && kubernetes::client_impersonates(names))
            .then_some(Refusal::ClientImpersonates)
    }

    /// A check's own narrowing (`allowed_groups` and the like in its query); every other
    /// mode has none. `Err` says which list refused.
    pub(crate) fn allows(&self, identity: &Identity) -> Result<(), &'static str> {
        match self {
            Mode::Check(check) => check.narrowing.allows(identity),
            _ => Ok(()),
        }
    }

    /// The second: how an admitted request is answered (`identity` is `None` on a public route):
    /// `forward` holds what inline mode would send upstream, `judged_path` the `:path` to
    /// forward (`forward_normalized_path`).
    pub(crate) fn admitted(
        &self,
        identity: Option<&Identity>,
        mut forward: Forward,
        judged_path: Option<String>,
    ) -> Result<Admitted, Refusal> {
        let judged_path = judged_path.map(|p| (":path".to_string(), p));
        match self {
            Mode::Upstream => {
                forward.set_headers.extend(judged_path);
                Ok(Admitted::Forward(forward))
            }
            Mode::UserInfo { .. } => Ok(Admitted::Answer(check::user_info(
                identity,
                forward.response_cookies,
            ))),
            Mode::Check(check) => {
                let cookies = std::mem::take(&mut forward.response_cookies);
                let handed_on = HandedOn::of(&forward);
                let reply = check::granted(check, identity, &handed_on, cookies);
                Ok(Admitted::Answer(reply))
            }
            Mode::Kubernetes(impersonation) => {
                kubernetes::forward(impersonation, identity, forward, judged_path)
                    .map(Admitted::Forward)
                    .ok_or(Refusal::Token(AuthError::ClaimNotHeaderSafe {
                        claim: "the user".into(),
                    }))
            }
        }
    }

    /// The third: how a refusal is written: for a person or a program, or as the apiserver's
    /// `Status` (built from the refusal, so `kubectl` prints why).
    pub(crate) fn render(&self, refused: Refused, browser: bool) -> Reply {
        let browser = browser && !self.answered_here();
        if !self.for_apiserver() {
            return pages::render(refused, browser);
        }
        let description = refused.refusal.description();
        kubernetes::as_status(pages::render(refused, browser), &description)
    }
}
