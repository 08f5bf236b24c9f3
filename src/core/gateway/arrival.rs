//! Steps 2-5: what a request is about before anyone asks who sent it. One host, our own
//! endpoints (which set the mode), the rules of its service and route, and the mode's
//! refusal of the client's own headers.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::rc::Rc;

use super::{Ended, Gateway, Judged, Way};
use crate::core::config::pages::Branding;
use crate::core::host::Host;
use crate::core::hostname::host_name;
use crate::core::login::request_kind::{is_browser_navigation, RequestHints};
use crate::core::mode::check::{self, OwnEndpoint};
use crate::core::mode::{About, Mode};
use crate::core::page::shown_request_id;
use crate::core::policy::gate::{policy_for, Gate, PolicyOf, Target};
use crate::core::refusal::Refusal;
use crate::core::reply::Severity;
use crate::core::request_headers::RequestHeaders;

/// The request the rules judge: as sent, or the one a check is about.
pub(super) struct Asked<'h> {
    authority: Cow<'h, str>,
    path: Cow<'h, str>,
    method: Cow<'h, str>,
    /// Every restriction of the service holds: an `auth_request` check that does not say
    /// which request it is about.
    every_route: bool,
    /// A public route passes without a caller (not for an `auth_request` check).
    public_passes: bool,
    browser: bool,
    mode: Mode,
}

/// What a person's browser sends when it navigates.
pub(super) fn hints<'h>(headers: &'h RequestHeaders, method: &'h str) -> RequestHints<'h> {
    RequestHints {
        method,
        accept: headers.text("accept"),
        sec_fetch_mode: headers.text("sec-fetch-mode"),
        x_requested_with: headers.text("x-requested-with"),
    }
}

/// The request's `x-request-id` (Envoy's or the client's), when a page may show it.
pub(super) fn request_id(headers: &RequestHeaders) -> Option<Rc<str>> {
    headers
        .text("x-request-id")
        .filter(|id| shown_request_id(id))
        .map(Rc::from)
}

/// Whether a person's browser asked (refusals are then pages).
pub(super) fn browser(headers: &RequestHeaders) -> bool {
    let method = headers.text(":method").unwrap_or("GET");
    is_browser_navigation(&hints(headers, method))
}

impl Gateway {
    /// Step 2: An h2 `host` header beside `:authority` that names another host: which one the
    /// upstream reads is its choice, so neither is trusted (RFC 9113 calls it malformed).
    pub(super) fn one_host(&self, headers: &RequestHeaders) -> ControlFlow<Ended> {
        if !self.settings.has_services() {
            return ControlFlow::Continue(());
        }
        let Some(host) = headers.get("host") else {
            return ControlFlow::Continue(());
        };
        let authority = headers.lossy(":authority").unwrap_or_default();
        let same = std::str::from_utf8(host)
            .ok()
            .and_then(host_name)
            .zip(host_name(&authority))
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
        if same {
            return ControlFlow::Continue(());
        }
        let why = "the Host header names another host";
        ControlFlow::Break(Refusal::BadRequest(why.into()).into())
    }

    /// Step 3: Our own endpoints: probes are answered; a check or user info sets the mode and
    /// the request the rules judge.
    pub(super) fn own_endpoint<'h>(
        &self,
        host: &mut dyn Host,
        headers: &'h RequestHeaders,
        way: &mut Way,
    ) -> ControlFlow<Ended, Asked<'h>> {
        let mut asked = Asked {
            authority: headers.lossy(":authority").unwrap_or_default(),
            path: headers.lossy(":path").unwrap_or_default(),
            method: Cow::Borrowed(headers.text(":method").unwrap_or("GET")),
            every_route: false,
            public_passes: true,
            browser: way.browser,
            mode: Mode::default(),
        };
        if let Some(jwks) = self.jwks(&asked.path, &asked.method) {
            return ControlFlow::Break(jwks);
        }
        let endpoint = check::own_endpoint(&self.settings.endpoints, &asked.path);
        let Some(endpoint) = endpoint else {
            return ControlFlow::Continue(asked);
        };
        let (mode, rules_path, public_passes) = match endpoint {
            OwnEndpoint::Ping => return ControlFlow::Break(Ended::Answer(check::ping())),
            OwnEndpoint::Ready => {
                let degraded = self.store.as_ref().is_some_and(|s| s.degraded());
                let ready = check::ready(self.authn.all_keys_loaded(), degraded);
                return ControlFlow::Break(Ended::Answer(ready));
            }
            OwnEndpoint::Answer {
                mode,
                rules_path,
                public_passes,
            } => (mode, rules_path, public_passes),
        };
        // A check is answered to NGINX or Envoy, never sent to log in.
        asked.browser = false;
        way.browser = false;
        way.mode = mode.clone();
        asked.path = Cow::Owned(rules_path);
        asked.public_passes = public_passes;
        asked.mode = mode;
        match asked.mode.learn(headers, &self.settings) {
            Ok(About::AsSent) => {}
            Ok(About::EveryRoute) => asked.every_route = true,
            Ok(About::Original(original)) => {
                asked.authority = Cow::Owned(original.authority);
                asked.path = Cow::Owned(original.path_and_query);
                asked.method = Cow::Owned(original.method);
            }
            Err((refusal, line)) => {
                if let Some(line) = line {
                    host.log(Severity::Info, &line);
                }
                return ControlFlow::Break(refusal.into());
            }
        }
        ControlFlow::Continue(asked)
    }

    /// Step 4: The rules of the host's service and the route, and the mode for the service.
    pub(super) fn find_rules(
        &self,
        host: &mut dyn Host,
        asked: Asked,
        way: &mut Way,
    ) -> ControlFlow<Ended, Judged> {
        let target = Target {
            authority: &asked.authority,
            path_and_query: &asked.path,
            method: &asked.method,
            browser: asked.browser,
        };
        let mut gate = match Gate::find(&self.settings, &target) {
            Ok(gate) => gate,
            Err(refusal) => {
                way.pages = self.pages_of(policy_for(&self.settings, &asked.authority));
                if refusal == Refusal::UnlistedHost {
                    // Debug: any client can pick a Host; `{:?}` keeps its bytes on one line.
                    let line = format!("403 for host {:?}: no service lists it", asked.authority);
                    host.log(Severity::Debug, &line);
                }
                return ControlFlow::Break(refusal.into());
            }
        };
        gate.public &= asked.public_passes;
        if asked.every_route {
            gate.require_every_route(&self.settings);
        }
        let impersonation = match gate.policy {
            PolicyOf::Login(id) => self.settings.login.get(id.0).map(|s| &s.impersonation),
            PolicyOf::Api(i) => self.settings.services.get(i).map(|s| &s.impersonation),
            PolicyOf::Open => None,
        }
        .and_then(Option::as_ref);
        let mode = Mode::for_service(asked.mode, impersonation);
        way.mode = mode.clone();
        way.pages = self.pages_of(gate.policy);
        ControlFlow::Continue(Judged {
            gate,
            mode,
            pages: Rc::clone(&way.pages),
            request_id: way.request_id.clone(),
        })
    }

    /// The branding of a service's pages; a host under none has the top-level one.
    fn pages_of(&self, policy: PolicyOf) -> Rc<Branding> {
        let own = match policy {
            PolicyOf::Login(id) => self.settings.login.get(id.0).map(|s| &s.pages),
            PolicyOf::Api(i) => self.settings.services.get(i).map(|s| &s.pages),
            PolicyOf::Open => None,
        };
        Rc::clone(own.unwrap_or(&self.settings.pages))
    }

    /// Step 5: the mode may refuse the client's own headers (in front of an apiserver, a
    /// client's `Impersonate-*`: `403`).
    pub(super) fn client_headers_allowed(
        &self,
        headers: &RequestHeaders,
        judged: &Judged,
    ) -> ControlFlow<Ended> {
        match judged.mode.refuses_client(headers) {
            Some(refusal) => ControlFlow::Break(refusal.into()),
            None => ControlFlow::Continue(()),
        }
    }
}
