//! Step 7: a request to a login host, as the sign-in flow sees it: its own endpoints, a
//! session cookie, or no credential. An `Authorization` header goes on to the bearer step.

use std::ops::ControlFlow;
use std::rc::Rc;

use super::arrival::hints;
use super::parked::{WaitsFor, MAX_PARKED};
use super::{Ended, Gateway, Judged, Pending, Wait};
use crate::core::bearer::authenticator::WaitReason;
use crate::core::config::idp::{Idp, IdpId};
use crate::core::config::login::LoginService;
use crate::core::config::ServiceId;
use crate::core::cookies;
use crate::core::host::{Callout, Host, Metric};
use crate::core::keys::fetch::request_line;
use crate::core::login::choice::{self, Choice};
use crate::core::login::error::LoginError;
use crate::core::login::flow::{self, Endpoints, Step};
use crate::core::login::oidc::TokenRequest;
use crate::core::login::opened::OpenedSessions;
use crate::core::login::session::Session;
use crate::core::login::{login_cookie, sign_in};
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;

/// What deciding a login host's request reads: all a parked one keeps of its headers.
pub(super) const LOGIN_HEADERS: [&str; 9] = [
    ":authority",
    ":path",
    ":method",
    ":scheme",
    "cookie",
    "authorization",
    "accept",
    "sec-fetch-mode",
    "x-requested-with",
];

/// A POST to an IdP's token endpoint, through its cluster.
pub(super) fn token_call(idp: &Idp, request: &TokenRequest) -> Callout {
    let mut headers = request_line("POST", &request.url);
    headers.extend(request.headers.iter().cloned());
    Callout {
        cluster: idp.cluster.clone(),
        headers,
        body: Some(request.body.clone()),
        timeout_ms: idp.timeout_ms,
    }
}

/// A local answer of the login flow, logged with its reason, host and path when it has a
/// reason. A sign-in this browser started and that failed is logged at info or louder and
/// counted; what any client can forge (a callback with a made-up state) stays at debug, so
/// it cannot flood.
pub(super) fn logged(
    host: &mut dyn Host,
    service: &LoginService,
    place: &str,
    reply: Reply,
) -> Ended {
    if let Some(note) = &reply.reason {
        host.log(
            note.severity,
            &format!(
                "login for {} on {place} failed with {}: {}",
                service.idps.first().client_id,
                reply.status,
                note.text
            ),
        );
        if reply.status >= 400 && note.severity >= crate::core::reply::Severity::Info {
            host.count(Metric::LoginsFailed);
        }
    }
    Ended::Answer(reply)
}

impl Gateway {
    /// Step 7: A login host: the flow decides; `Continue` leaves the request to its bearer token.
    pub(super) fn login_host(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        judged: &Judged,
        wait: Wait,
    ) -> ControlFlow<Ended> {
        let settings = Rc::clone(&self.settings);
        let Some(id) = judged.gate.login() else {
            return ControlFlow::Continue(());
        };
        let Some(service) = settings.login.get(id.0) else {
            return ControlFlow::Continue(());
        };
        let path = headers.lossy(":path");
        let path_only = path.as_deref().unwrap_or("/").split('?').next();
        if path_only == Some(service.backchannel_logout_path.as_str())
            && !judged.mode.answered_here()
        {
            return ControlFlow::Break(self.backchannel_logout(host, context_id, id, headers));
        }
        let authority = headers.lossy(":authority");
        let method = headers.text(":method").unwrap_or("GET");
        // Envoy's `:scheme`, never the client's `X-Forwarded-Proto`: Envoy derives it from
        // the connection, or from X-Forwarded-Proto only as far as its own trust settings
        // allow (`use_remote_address`, `xff_num_trusted_hops`).
        let scheme = headers
            .text(":scheme")
            .filter(|s| matches!(*s, "http" | "https"))
            .unwrap_or("https");
        let route_says = judged.gate.unauthenticated(&settings);
        let request = flow::Request {
            scheme,
            authority: authority.as_deref().unwrap_or_default(),
            path: path.as_deref().unwrap_or("/"),
            // A `Cookie` header that is not text holds no session of ours: not signed in.
            cookie_header: headers.text("cookie"),
            has_authorization: headers.get("authorization").is_some(),
            hints: hints(headers, method),
            unauthenticated: judged.mode.unauthenticated(route_says),
            may_wait: wait == Wait::Allowed,
        };
        let choice = choice::choose(service, &request);
        let step = self.flow_step(host, (id, service), &choice, &request);
        let at = At {
            context_id,
            id,
            idp: choice.idp,
            service,
            cookie_header: request.cookie_header.map(str::to_string),
            path: request.path,
            judged,
        };
        self.take_step(host, headers, &at, step)
    }

    /// What the sign-in flow makes of the request, with the service's endpoints and the
    /// sessions this VM opened.
    fn flow_step(
        &mut self,
        host: &mut dyn Host,
        (id, service): (ServiceId, &LoginService),
        choice: &Choice,
        request: &flow::Request,
    ) -> Step {
        let idp = service.idp(choice.idp);
        let discovery = self.authn.discovery(idp.provider);
        let resolved = self.endpoints.get_mut(id.0);
        let endpoints = match resolved.and_then(|r| r.get_mut(choice.idp.0)) {
            Some(resolved) => resolved.get(idp, discovery),
            None => Endpoints::resolve(idp, discovery).map(Rc::new),
        };
        let now_secs = host.now_ms() / 1000;
        let mut no_cache = OpenedSessions::new(0);
        let opened = match self.opened.get_mut(id.0) {
            Some(opened) => opened,
            None => &mut no_cache,
        };
        let known = flow::Known {
            opened,
            revocations: &mut self.revocations,
            handles: self.handles.get_mut(id.0),
        };
        flow::decide_with(
            service,
            choice,
            request,
            endpoints.as_deref(),
            now_secs,
            host,
            known,
        )
    }

    /// Carries out a step of the flow; `Continue` for a bearer token's request.
    pub(super) fn take_step(
        &mut self,
        host: &mut dyn Host,
        headers: &RequestHeaders,
        at: &At,
        step: Step,
    ) -> ControlFlow<Ended> {
        let (service, place) = (at.service, at.judged.gate.place());
        ControlFlow::Break(match step {
            Step::Bearer => return ControlFlow::Continue(()),
            Step::AwaitEndpoints => self.await_endpoints(host, headers, at),
            Step::LoadSession(handle) => return self.load_session(host, headers, at, handle),
            Step::Respond(reply) => logged(host, service, &place, reply),
            Step::SignOut { reply, revoke } => {
                let cookie_header = at.cookie_header.as_deref();
                let stored = self.forget_stored(host, at.id, service, cookie_header);
                let entries: Vec<_> = revoke.into_iter().chain(stored).collect();
                if !entries.is_empty() {
                    self.revoke(host, service, &entries, "signed out");
                }
                logged(host, service, &place, reply)
            }
            Step::Refuse(refused) => Ended::Refuse(refused),
            Step::StartLogin(reply) => {
                host.count(Metric::LoginsStarted);
                Ended::Answer(reply)
            }
            Step::Forward(forwarding) => self.session_forward(host, at.judged, forwarding),
            Step::Exchange { pending, request } => {
                match host.call(&token_call(service.idp(pending.idp), &request)) {
                    Some(token) => Ended::Calling(Box::new(Pending::Exchange {
                        token,
                        service: at.id,
                        login: pending,
                        cookie_header: at.cookie_header.clone(),
                        judged: Box::new(at.judged.clone()),
                    })),
                    None => {
                        let clear = vec![login_cookie::forget_login(service, &pending)];
                        let reply = LoginError::TokenEndpointUnreachable.reply(clear);
                        logged(host, service, &place, reply)
                    }
                }
            }
            Step::Refresh { session, request } => self.start_refresh(host, at, *session, &request),
            Step::RecordActivity(recorded) => self.record_activity(host, at, &recorded),
            Step::SessionIdle {
                sid,
                idle_secs,
                then,
            } => return self.session_idle(host, headers, at, (&sid, idle_secs), *then),
        })
    }

    /// A callback or a login start before the IdP's endpoints are known: it waits for
    /// them (rate-limited like bearer refetches: browsers must not hammer an IdP that is
    /// down; the root retries with backoff anyway), or gets `503` past the bound.
    fn await_endpoints(&mut self, host: &mut dyn Host, headers: &RequestHeaders, at: &At) -> Ended {
        if self.in_flight.parked() >= MAX_PARKED {
            let reply = LoginError::EndpointsUnknown.reply(Vec::new());
            return logged(host, at.service, &at.judged.gate.place(), reply);
        }
        let now_ms = host.now_ms();
        let provider = at.service.idp(at.idp).provider;
        let refetch = self.authn.may_refetch(provider, now_ms);
        let waits_for = WaitsFor::Endpoints {
            headers: headers.only(&LOGIN_HEADERS),
        };
        let deadline_ms = now_ms + self.settings.keys_wait_timeout_ms;
        self.park(
            at.context_id,
            provider,
            deadline_ms,
            waits_for,
            refetch,
            WaitReason::NoKeys,
        );
        Ended::Parked
    }

    /// Goes on with the session as it is (a refresh is under way elsewhere, or failed).
    pub(super) fn keep_old(
        &self,
        host: &dyn Host,
        service: &LoginService,
        session: &Session,
        cookie_header: Option<&str>,
        judged: &Judged,
    ) -> Ended {
        let forwarding = flow::forward(service, cookie_header, session, Vec::new());
        self.session_forward(host, judged, forwarding)
    }

    /// Forwards with a renewed session and stores it in the browser.
    pub(super) fn adopt(
        &mut self,
        host: &mut dyn Host,
        service: &LoginService,
        renewed: &Session,
        cookie_header: Option<&str>,
        judged: &Judged,
    ) -> Ended {
        if let Some(id) = judged.gate.login() {
            // A server-side session: renewed under its handle, the cookie stays as it is.
            if self.store_renewed(host, id, service, renewed, cookie_header, false) {
                let forwarding = flow::forward(service, cookie_header, renewed, Vec::new());
                return self.session_forward(host, judged, forwarding);
            }
        }
        let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
        let mut stored = renewed.clone();
        let now_secs = host.now_ms() / 1000;
        let set_cookies =
            sign_in::store_session(service, &mut stored, &request_cookies, now_secs, host)
                .unwrap_or_default();
        let forwarding = flow::forward(service, cookie_header, renewed, set_cookies);
        self.session_forward(host, judged, forwarding)
    }
}

/// Where a login host's request is: what carrying out its step needs.
pub(super) struct At<'a> {
    pub(crate) context_id: u32,
    pub(crate) id: ServiceId,
    /// The IdP the request concerns (its cookie's, or the one it asks for).
    pub(crate) idp: IdpId,
    pub(crate) service: &'a LoginService,
    pub(crate) cookie_header: Option<String>,
    pub(crate) path: &'a str,
    pub(crate) judged: &'a Judged,
}
