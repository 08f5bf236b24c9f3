//! One worker's decisions about requests. `decide` takes a request from its headers to a
//! decision the adapter only carries out, in this order (`steps`, one call per step):
//! 1. strip what clients may not send (identity and impersonation headers, every spelling);
//! 2. one host: an h2 `host` header naming another host than `:authority` gets `400`;
//! 3. our own endpoints: ping, ready and the identity assertion's JWKS are answered; a check (`auth_request`, `ext_authz`)
//!    or user info sets the mode and the request the rules judge (`400` for an
//!    `auth_request` check with a header only the proxy may set, or no original URL);
//! 4. the rules: the service by host, the route by normalised path and method (`400` for a
//!    path no rule can judge safely, `403` for a host no service lists); a Kubernetes
//!    service answers in Kubernetes mode;
//! 5. the mode may refuse the client's own headers (Kubernetes mode: `Impersonate-*`, `403`);
//! 6. a public route: answered as the mode says, with no caller;
//! 7. a login host: its sign-in endpoints (callback, sign-out, start, back-channel logout,
//!    whose body is read first: `backchannel.rs`), a session cookie not revoked
//!    (refreshed first when its tokens expired: `session_refresh.rs`), or no credential
//!    (a browser goes to log in, anything else gets `401`); an `Authorization` header goes
//!    on to 8; a callback or login start waits for the IdP's endpoints when not known yet;
//! 8. a bearer token: verified, refused, or parked until the issuer's keys come;
//! 9. admission: the service's and route's rules, and a check's own narrowing (`403`);
//! 10. the answer, as the mode says: identity headers (and a signed identity assertion,
//!     when the service asks: `assertion.rs`) upstream, a check's answer, user info, or
//!     impersonation of the caller.
//!
//! Every path leaves through `exit`, which writes a refusal for the mode, counts the
//! decision and keeps what a request decided outside its own context waits for. What each
//! request under way keeps lives in one table by context (`in_flight.rs`). Parked
//! requests come back through `settle` (at 7 or 8, or with a token answer); token-endpoint
//! answers through `on_token_response`, which finish a sign-in or a refresh at 9.

mod admit;
mod arrival;
mod assertion;
mod backchannel;
mod bearer;
mod decision;
mod fleet_refresh;
mod fleet_revocation;
mod idle;
mod in_flight;
mod parked;
mod session;
mod session_refresh;
mod stored_sessions;
mod token_answer;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use crate::core::access_log;
use crate::core::assertion::Assertions;
use crate::core::bearer::authenticator::Authenticator;
use crate::core::bearer::budget::SourceBudget;
use crate::core::cluster::client::StoreClient;
use crate::core::config::pages::Branding;
use crate::core::config::Settings;
use crate::core::host::{Host, Metric};
use crate::core::identity::{self, Identity};
use crate::core::login::flow::ResolvedEndpoints;
use crate::core::login::handles::Handles;
use crate::core::login::opened::OpenedSessions;
use crate::core::login::refresh::{self, Lease};
use crate::core::mode::Mode;
use crate::core::policy::gate::PolicyOf;
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;
use crate::core::revocation::Revocations;

#[cfg(any(test, feature = "testing"))]
pub use crate::core::forward::Forward;
pub use backchannel::RequestBody;
pub(crate) use decision::Ended;
pub use decision::{Decision, Fleet, Judged, Outcome, Pending, StoredWait};
use in_flight::{InFlight, Waiting};
#[cfg(any(test, feature = "testing"))]
pub use parked::MAX_PARKED;

pub struct Gateway {
    settings: Rc<Settings>,
    pub authn: Authenticator,
    /// What each request under way waits for, and its response's cookies.
    in_flight: InFlight,
    /// Providers whose keys a request asked to fetch; the root starts it on its next tick.
    fetch_wanted: Vec<bool>,
    /// Refresh results this worker published, and when to forget them.
    published: Vec<(Lease, u64)>,
    /// Per login service, the sessions this VM has opened.
    opened: Vec<OpenedSessions>,
    /// Per login service and IdP, its endpoints as last resolved.
    endpoints: Vec<Vec<ResolvedEndpoints>>,
    /// Requests allowed since the last tick.
    allowed: u64,
    /// Failed signature checks per client address, when limited.
    budget: Option<SourceBudget>,
    /// The cluster store the fleet shares, when configured.
    store: Option<StoreClient>,
    /// Per login service, the server-side sessions this worker read.
    handles: Vec<Handles>,
    /// Revoked sessions: this worker's copy of the Envoy's set.
    pub revocations: Revocations,
    /// Signed identity assertions, reused for half their lifetime (decisions borrow the
    /// gateway shared, so it is a cell).
    assertions: RefCell<Assertions>,
}

/// Memory for opened sessions, per login service and VM.
const OPENED_SESSIONS_BYTES: usize = 2 << 20;

/// Whether a browser sent to log in may wait for the IdP's endpoints: not when it already
/// waited (a parked request is decided again from its headers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Allowed,
    AlreadyWaited,
}

/// How `exit` writes a decision: the request's mode, whether a person's browser asked,
/// and, for a request decided outside its own context, which one.
struct Way {
    mode: Mode,
    browser: bool,
    settled: Option<u32>,
    /// How its pages are branded: the top-level block until the service is known.
    pages: Rc<Branding>,
    /// The request's `x-request-id`, when a page may show it.
    request_id: Option<Rc<str>>,
    /// Whose rules the request answers to, once found (the decision's record names it).
    policy: Option<PolicyOf>,
}

impl Way {
    fn of(judged: &Judged, settled: Option<u32>) -> Way {
        Way {
            mode: judged.mode.clone(),
            browser: judged.gate.browser,
            settled,
            pages: Rc::clone(&judged.pages),
            request_id: judged.request_id.clone(),
            policy: Some(judged.gate.policy),
        }
    }

    /// A page written with the service's branding and the request's id.
    fn branded(&self, reply: Reply) -> Reply {
        reply.branded(&self.pages, self.request_id.as_deref())
    }
}

impl Gateway {
    pub fn new(settings: Rc<Settings>) -> Gateway {
        let providers = settings.providers.len();
        let logins = settings.login.len();
        let endpoints = (settings.login.iter())
            .map(|s| {
                s.idps
                    .iter()
                    .map(|_| ResolvedEndpoints::default())
                    .collect()
            })
            .collect();
        let store = settings.cluster_store.clone().map(|store| {
            let longest = settings.login.iter().map(|s| s.session_lifetime_secs).max();
            StoreClient::new(store, longest.unwrap_or(0))
        });
        Gateway {
            authn: Authenticator::new(Rc::clone(&settings)),
            budget: settings.signature_check_budget.map(SourceBudget::new),
            settings,
            in_flight: InFlight::default(),
            fetch_wanted: vec![false; providers],
            published: Vec::new(),
            opened: (0..logins)
                .map(|_| OpenedSessions::new(OPENED_SESSIONS_BYTES))
                .collect(),
            endpoints,
            allowed: 0,
            store,
            handles: (0..logins).map(|_| Handles::default()).collect(),
            revocations: Revocations::new(),
            assertions: RefCell::default(),
        }
    }

    /// Writes what every worker expects in shared data (the refresh slots, the revocation
    /// set) and reads the revoked sessions; each VM does it once at start, before deciding
    /// requests.
    pub fn prepare(&mut self, host: &mut dyn Host) {
        for service in &self.settings.login {
            for (_, idp) in service.idps.iter() {
                refresh::init_slots(host, &idp.client_id);
            }
        }
        Revocations::prepare(host);
        self.revocations.take_in(host);
    }

    /// On the tick: takes in sessions other workers revoked (a read of the shared set only
    /// when it changed).
    pub fn sync_revocations(&mut self, host: &mut dyn Host) {
        self.sync_fleet_revocations(host);
        self.revocations.take_in(host);
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Decides a request from its headers (the order at the top of this file).
    pub fn decide<'a>(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &'a RequestHeaders,
    ) -> Outcome<'a> {
        // 1. strip what clients may not send
        let stripped = &self.settings.stripped_headers;
        let strip = identity::spoofed(headers.iter().map(|(n, _)| n), stripped);
        let decision = self.decide_stripped(host, context_id, headers, Wait::Allowed, None);
        Outcome { strip, decision }
    }

    /// Steps 2-10 and the exit; `settled`: decided outside the request's own context.
    fn decide_stripped(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        wait: Wait,
        settled: Option<u32>,
    ) -> Decision {
        let browser = arrival::browser(headers);
        let mut way = Way {
            mode: Mode::default(),
            browser,
            settled,
            pages: Rc::clone(&self.settings.pages),
            // Only a person's browser is shown pages: no copy for every API call.
            request_id: browser.then(|| arrival::request_id(headers)).flatten(),
            policy: None,
        };
        let ended = match self.steps(host, context_id, headers, wait, &mut way) {
            ControlFlow::Break(ended) | ControlFlow::Continue(ended) => ended,
        };
        self.exit(host, &way, ended)
    }

    /// Steps 2-10, one call each; each step either ends the request or hands on.
    fn steps(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        wait: Wait,
        way: &mut Way,
    ) -> ControlFlow<Ended, Ended> {
        // 2. one host
        self.one_host(headers)?;
        // 3. our own endpoints: the mode, and the request the rules judge
        let asked = self.own_endpoint(host, headers, way)?;
        // 4. the rules of the host's service and route, and the mode for the service
        let judged = self.find_rules(host, asked, way)?;
        // 5. the mode may refuse the client's own headers (Kubernetes: Impersonate-*)
        self.client_headers_allowed(headers, &judged)?;
        // 6. a public route
        self.public_route(headers, &judged)?;
        // 7. a login host: sign-in endpoints, a session, or no credential
        self.login_host(host, context_id, headers, &judged, wait)?;
        // 8-10. a bearer token, admitted by the rules, answered as the mode says
        ControlFlow::Continue(self.bearer(host, context_id, headers, judged))
    }

    /// The one way out: a refusal written for the mode, the decision counted and its
    /// record kept for the access log, and the state of a request decided outside its own
    /// context kept for it.
    fn exit(&mut self, host: &mut dyn Host, way: &Way, ended: Ended) -> Decision {
        let mut user = None;
        let mut ended = ended;
        while let Ended::Caller(caller, inner) = ended {
            user = Some(caller);
            ended = *inner;
        }
        let mut decision = match ended {
            Ended::Forward(forward) => Decision::Forward(forward),
            Ended::Answer(reply) => Decision::Respond(way.branded(reply)),
            Ended::Refuse(refused) => {
                Decision::Respond(way.branded(way.mode.render(refused, way.browser)))
            }
            Ended::Calling(pending) => Decision::Calling(pending),
            Ended::Parked => Decision::Parked,
            Ended::ReadBody(max_bytes) => Decision::ReadBody(max_bytes),
            // Taken off above.
            Ended::Caller(..) => Decision::Parked,
        };
        let counted = counted_as(&decision);
        self.count(host, counted);
        if let (Decision::Respond(reply), Some(metric)) = (&mut decision, counted) {
            // Free: the local reply's own host call carries it.
            reply.counted = Some(metric);
        }
        if self.settings.access_log {
            let service = way.policy.and_then(|policy| self.service_name(policy));
            let record = |metric| access_log::record(metric, service, user.as_deref());
            match (&mut decision, counted) {
                (Decision::Forward(forward), Some(metric)) => {
                    forward.access_log = Some(record(metric));
                }
                (Decision::Respond(reply), Some(metric)) => reply.access_log = Some(record(metric)),
                _ => {}
            }
        }
        match way.settled {
            Some(context_id) => self.hold_settled(context_id, decision),
            None => decision,
        }
    }

    /// The service a decision's record names: the first host it lists.
    fn service_name(&self, policy: PolicyOf) -> Option<&str> {
        let hosts = match policy {
            PolicyOf::Login(id) => &self.settings.login.get(id.0)?.hosts,
            PolicyOf::Api(i) => &self.settings.services.get(i)?.hosts,
            PolicyOf::Open => return None,
        };
        hosts.first().map(String::as_str)
    }

    /// A known caller's request ended so: its user goes into the decision's record.
    pub(super) fn by_caller(&self, identity: &Identity, ended: Ended) -> Ended {
        if self.settings.access_log {
            Ended::Caller(identity.user.clone(), Box::new(ended))
        } else {
            ended
        }
    }

    /// Counts a decision by its kind (a parked request is counted again when it is
    /// decided); every error also counts as `Refused`. Allowed requests, the common case,
    /// are added up and reported on the tick: no host call per request.
    fn count(&mut self, host: &mut dyn Host, counted: Option<Metric>) {
        match counted {
            Some(Metric::Allowed) => self.allowed += 1,
            Some(Metric::Redirected) => host.count(Metric::Redirected),
            Some(Metric::Parked) => host.count(Metric::Parked),
            Some(metric) => {
                host.count(Metric::Refused);
                host.count(metric);
            }
            None => {}
        }
    }

    /// Forgets published refresh results whose grace period is over; reports the token
    /// cache's hits and misses (once a tick rather than a host call per request).
    pub fn tick(&mut self, host: &mut dyn Host) {
        if let Some(store) = self.store.as_mut() {
            store.tick(host);
        }
        let lookups = self.authn.take_lookups();
        let allowed = std::mem::take(&mut self.allowed);
        let revoked = self.revocations.take_refused();
        for (metric, by) in [
            (Metric::Allowed, allowed),
            (Metric::SessionsRevoked, revoked),
            (Metric::TokenCacheHits, lookups.hits),
            (Metric::TokenCacheSharedHits, lookups.shared_hits),
            (Metric::TokenCacheMisses, lookups.misses),
        ] {
            if by > 0 {
                host.add(metric, by);
            }
        }
        let now_ms = host.now_ms();
        self.assertions.get_mut().tick(now_ms / 1000);
        let (over, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.published)
            .into_iter()
            .partition(|(_, until)| now_ms >= *until);
        self.published = kept;
        for (lease, _) in over {
            refresh::forget(host, &lease);
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// Identity assertions signed by this worker so far, and kept now.
    pub fn assertion_counts(&self) -> (u64, usize) {
        self.assertions
            .try_borrow()
            .map(|a| a.counts())
            .unwrap_or_default()
    }

    /// The request is gone: nothing of it stays. A refresh it started from the root still
    /// finishes, so its result is published for the session's other requests.
    pub fn forget(&mut self, context_id: u32) {
        self.in_flight.forget(context_id);
    }

    /// A token call the request waits on in its own context.
    pub(crate) fn hold_calling(&mut self, context_id: u32, pending: Box<Pending>) {
        self.in_flight.wait(context_id, Waiting::Calling(pending));
    }

    /// The token call the request waited on, when its answer came.
    pub(crate) fn take_calling(&mut self, context_id: u32) -> Option<Box<Pending>> {
        self.in_flight.take_calling(context_id)
    }

    /// Cookies for the request's response.
    pub(crate) fn hold_cookies(&mut self, context_id: u32, cookies: Vec<String>) {
        self.in_flight.hold_cookies(context_id, cookies);
    }

    pub(crate) fn take_cookies(&mut self, context_id: u32) -> Vec<String> {
        self.in_flight.take_cookies(context_id)
    }
}

/// The counter a decision is counted in, besides `Refused` for every error: allowed
/// (forwarded, or answered below 300: forward-auth grants, user info, probes), by the
/// reply's status, or parked; `None` for a decision still under way.
fn counted_as(decision: &Decision) -> Option<Metric> {
    match decision {
        Decision::Forward(_) => Some(Metric::Allowed),
        // An answer that says what it is (a `200` chooser page lets nobody in).
        Decision::Respond(Reply {
            counted: Some(metric),
            ..
        }) => Some(*metric),
        Decision::Respond(reply) if reply.status < 300 => Some(Metric::Allowed),
        Decision::Respond(reply) => Some(reply.metric()),
        Decision::Parked => Some(Metric::Parked),
        Decision::Calling(_) | Decision::ReadBody(_) => None,
    }
}
