//! One worker's decisions about requests. `decide` takes a request from its headers to a
//! decision the adapter only carries out, in this order:
//! 1. strip what clients may not send (identity and impersonation headers, every spelling);
//! 2. find the login service by host; on a login host:
//!    a. our own endpoints: the callback (exchange the code), sign-out;
//!    b. a session cookie: forward with its identity (refreshing first when its tokens
//!    expired: one refresh per session across workers, sent by the root so its answer is
//!    never lost with the client);
//!    c. an `Authorization` header: on to 3;
//!    d. no credential: a browser goes to log in, anything else gets `401`;
//!    a callback or a login start waits for the IdP's endpoints when they are not known yet;
//! 3. a bearer token: forward with its identity, refuse, or wait for the issuer's keys;
//! 4. authorization: the rules of the service and route (found once, from the normalised
//!    path, before anything else; a public route skips 2b-3), `403` when they refuse;
//! 5. identity headers for the upstream, set from the token or the session.
//!
//! Parked requests are decided again by `settle` (keys or endpoints arrived, or the wait ran
//! out); token-endpoint answers come back through `on_token_response`.

use std::rc::Rc;

use crate::core::bearer::authenticator::{Authenticator, KidRefetch, Outside, Verdict, WaitReason};
use crate::core::bearer::budget::SourceBudget;
use crate::core::bearer::error::AuthError;
use crate::core::config::login::LoginService;
use crate::core::config::{ProviderId, ServiceId, Settings};
use crate::core::cookies;
use crate::core::forward_auth::{self, Answer, HandedOn, OwnEndpoint};
use crate::core::host::{Callout, Host, Metric};
use crate::core::hostname::host_name;
use crate::core::identity::{self, Identity};
use crate::core::impersonation;
use crate::core::keys::fetch::request_line;
use crate::core::login::error::LoginError;
use crate::core::login::flow::{self, Endpoints, Forwarding, ResolvedEndpoints, Step};
use crate::core::login::login_cookie;
use crate::core::login::oidc::{self, PendingLogin, TokenError, TokenRequest, Tokens};
use crate::core::login::opened::OpenedSessions;
use crate::core::login::refresh::{self, Claim, Lease};
use crate::core::login::refresh_slots::RESULT_KEPT_MS;
use crate::core::login::refreshed::{self, Refreshed};
use crate::core::login::request_kind::{is_browser_navigation, RequestHints};
use crate::core::login::session::Session;
use crate::core::login::sign_in;
use crate::core::policy::denial;
use crate::core::policy::gate::{Gate, Target};
use crate::core::policy::route::Unauthenticated;
use crate::core::reply::{header_value_safe, Reply, Severity};
use crate::core::request_headers::RequestHeaders;
use crate::core::secret::Secret;
use crate::core::shared_data::SharedData;

/// What deciding a login host's request reads: all a parked one keeps of its headers.
const LOGIN_HEADERS: [&str; 9] = [
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

/// Header edits for a request that goes upstream, and cookies for its response.
#[derive(Default, PartialEq, Eq)]
pub struct Forward {
    pub set_headers: Vec<(String, String)>,
    /// Added beside any of the same name (one `Impersonate-Group` per group).
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub response_cookies: Vec<String>,
}

impl Forward {
    /// Whether a request to the apiserver asks it to act as someone: `Impersonate-User` set
    /// and the client's `Authorization` removed, not set. Anything else would run as the
    /// proxy's own certificate identity.
    pub fn impersonates(&self) -> bool {
        let user = self
            .set_headers
            .iter()
            .any(|(n, v)| n == "impersonate-user" && !v.trim().is_empty() && v.trim() == v);
        let authorization_removed = self.remove_headers.iter().any(|n| n == "authorization")
            && !self
                .set_headers
                .iter()
                .chain(&self.add_headers)
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        user && authorization_removed
    }
}

/// Values hold cookies and sessions: printed as names only.
impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<&str> = self.set_headers.iter().map(|(n, _)| n.as_str()).collect();
        let added: Vec<&str> = self.add_headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Forward")
            .field("set_headers", &set)
            .field("add_headers", &added)
            .field("remove_headers", &self.remove_headers)
            .field("response_cookies", &self.response_cookies.len())
            .finish()
    }
}

/// A token-endpoint call under way, with what finishing it needs.
pub enum Pending {
    Exchange {
        token: u32,
        service: ServiceId,
        login: PendingLogin,
        cookie_header: Option<String>,
        /// Host and path of the callback, for the log line of a refused sign-in.
        place: String,
    },
    Refresh {
        token: u32,
        service: ServiceId,
        session: Box<Session>,
        lease: Lease,
        cookie_header: Option<String>,
        path: String,
        gate: Box<Gate>,
    },
}

/// The session and cookies it carries are never printed.
impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Exchange { token, service, .. } => f
                .debug_struct("Exchange")
                .field("token", token)
                .field("service", service)
                .finish_non_exhaustive(),
            Pending::Refresh { token, service, .. } => f
                .debug_struct("Refresh")
                .field("token", token)
                .field("service", service)
                .finish_non_exhaustive(),
        }
    }
}

impl Pending {
    fn token(&self) -> u32 {
        match self {
            Pending::Exchange { token, .. } | Pending::Refresh { token, .. } => *token,
        }
    }
}

/// What the adapter does with a request.
#[derive(Debug)]
pub enum Decision {
    /// Let it go upstream with these edits.
    Forward(Forward),
    /// Answer it here.
    Respond(Reply),
    /// A token-endpoint call is under way: hand its answer to `on_token_response`.
    Calling(Box<Pending>),
    /// Parked in the gateway: `settle` decides it again.
    Parked,
}

/// The decision on a request, and the client-sent headers (named as the request names
/// them) to remove whatever it is.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub strip: Vec<&'a str>,
    pub decision: Decision,
}

/// What a parked request waits for.
enum WaitsFor {
    /// A bearer token's verdict.
    Keys {
        authorization: Option<Secret>,
        kid: KidRefetch,
        gate: Gate,
        /// The client's address, read when it parked (with a budget): its check, when the
        /// keys come, is charged to it like any other.
        source: Option<String>,
    },
    /// A browser request on a login host (login start or callback): the IdP's endpoints.
    Endpoints { headers: RequestHeaders },
    /// A login or refresh whose ID token names a key not fetched yet.
    IdTokenKeys {
        pending: Box<Pending>,
        tokens: Result<Tokens, TokenError>,
        /// Whether a fetch was asked for; until then `settle` asks once the rate limit allows.
        fetch_asked: bool,
        /// When it was parked: only a fetch attempted since then may end the wait.
        since_ms: u64,
    },
}

struct Parked {
    context_id: u32,
    provider: ProviderId,
    deadline_ms: u64,
    waits_for: WaitsFor,
}

pub struct Gateway {
    settings: Rc<Settings>,
    pub authn: Authenticator,
    parked: Vec<Parked>,
    /// Providers whose keys a request asked to fetch; the root starts it on its next tick.
    fetch_wanted: Vec<bool>,
    /// Refresh results this worker published, and when to forget them.
    published: Vec<(Lease, u64)>,
    /// Cookies for the responses of requests `settle` forwarded.
    response_cookies: Vec<(u32, Vec<String>)>,
    /// Token calls made while settling parked requests: their answers reach the root.
    settled_calls: Vec<(u32, Pending)>,
    /// Refreshes leased by a request, for the root to send on its next tick.
    queued_refreshes: Vec<(u32, Callout, Pending)>,
    /// Per login service, the sessions this VM has opened.
    opened: Vec<OpenedSessions>,
    /// Per login service, its endpoints as last resolved.
    endpoints: Vec<ResolvedEndpoints>,
    /// Requests allowed since the last tick.
    allowed: u64,
    /// Failed signature checks per client address, when limited.
    budget: Option<SourceBudget>,
}

/// Requests one VM keeps waiting for keys or endpoints (first start, an IdP outage): each
/// holds a few of its headers; past this, they get `503` at once.
pub const MAX_PARKED: usize = 4096;

/// Memory for opened sessions, per login service and VM.
const OPENED_SESSIONS_BYTES: usize = 2 << 20;

/// A POST to the service's token endpoint, through the service's cluster.
fn token_call(service: &LoginService, request: &TokenRequest) -> Callout {
    let mut headers = request_line("POST", &request.url);
    headers.extend(request.headers.iter().cloned());
    Callout {
        cluster: service.cluster.clone(),
        headers,
        body: Some(request.body.clone()),
        timeout_ms: service.timeout_ms,
    }
}

/// A bearer check's view of the host: shared data, and the client address's budget of
/// failed signature checks (its address read from the host only when a check is due).
struct Surroundings<'h> {
    host: &'h mut dyn Host,
    budget: Option<&'h SourceBudget>,
    /// Set once the address was read: a check was due, and its failure is charged to it.
    source: Option<String>,
    /// The address of a parked request, read when it parked (the root, which settles it,
    /// has no request to read it from).
    parked_source: Option<String>,
    now_ms: u64,
}

impl SharedData for Surroundings<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.host.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.host.set(key, value, cas)
    }
}

impl Outside for Surroundings<'_> {
    fn may_verify(&mut self) -> bool {
        let Some(budget) = self.budget else {
            return true;
        };
        let source = match self.parked_source.take() {
            Some(source) => source,
            None => self.host.source_address().unwrap_or_default(),
        };
        let allowed = budget.allows(&source, self.now_ms);
        self.source = Some(source);
        allowed
    }
}

/// Counts a decision by its kind (a parked request is counted again when it is decided);
/// every error also counts as `Refused`. Allowed requests, the common case, are added up
/// in `allowed` and reported on the tick: no host call per request.
fn counted(host: &mut dyn Host, allowed: &mut u64, decision: Decision) -> Decision {
    match &decision {
        Decision::Forward(_) => *allowed += 1,
        // Forward-auth grants, user info and probes.
        Decision::Respond(reply) if reply.status < 300 => *allowed += 1,
        Decision::Respond(reply) => {
            let metric = Metric::of_reply(reply);
            if metric != Metric::Redirected {
                host.count(Metric::Refused);
            }
            host.count(metric);
        }
        Decision::Parked => host.count(Metric::Parked),
        Decision::Calling(_) => {}
    }
    decision
}

/// `400` for an `auth_request` check of a request with headers only the proxy may set,
/// logged with their names.
fn refused_spoofed(host: &dyn Host, spoofed: &[&str]) -> Option<Reply> {
    let (reply, named) = forward_auth::refused_spoofed(spoofed)?;
    host.log(
        Severity::Info,
        &format!("400 for an auth_request check: the request carries {named:?}, headers only the proxy may set"),
    );
    Some(reply)
}

/// A refusal as the Kubernetes apiserver writes it.
fn as_kubernetes_status(decision: Decision) -> Decision {
    match decision {
        Decision::Respond(reply) => Decision::Respond(impersonation::as_status(reply)),
        other => other,
    }
}

/// Refusals of bad tokens are routine (debug); running out of keys is an outage (warn).
fn refusal(host: &dyn Host, error: &AuthError) -> Decision {
    let reply = error.reply(Vec::new());
    let severity = if reply.status >= 500 {
        Severity::Warn
    } else {
        Severity::Debug
    };
    host.log(severity, &format!("refused with {}: {error}", reply.status));
    Decision::Respond(reply)
}

/// A local answer of the login flow, logged with its reason, host and path when it has a
/// reason. A sign-in this browser started and that failed is logged at info or louder and
/// counted; what any client can forge (a callback with a made-up state) stays at debug, so
/// it cannot flood.
fn answer(host: &mut dyn Host, service: &LoginService, place: &str, reply: Reply) -> Decision {
    if let Some(note) = &reply.reason {
        host.log(
            note.severity,
            &format!(
                "login for {} on {place} failed with {}: {}",
                service.client_id, reply.status, note.text
            ),
        );
        if reply.status >= 400 && note.severity >= Severity::Info {
            host.count(Metric::LoginsFailed);
        }
    }
    Decision::Respond(reply)
}

/// The request as the gate reads it.
fn target<'h>(headers: &'h RequestHeaders, authority: &'h str, path: &'h str) -> Target<'h> {
    let method = headers.text(":method").unwrap_or("GET");
    Target {
        authority,
        path_and_query: path,
        method,
        browser: is_browser_navigation(&hints(headers, method)),
    }
}

fn hints<'h>(headers: &'h RequestHeaders, method: &'h str) -> RequestHints<'h> {
    RequestHints {
        method,
        accept: headers.text("accept"),
        sec_fetch_mode: headers.text("sec-fetch-mode"),
        x_requested_with: headers.text("x-requested-with"),
    }
}

impl Gateway {
    pub fn new(settings: Rc<Settings>) -> Gateway {
        let providers = settings.providers.len();
        let opened = settings
            .login
            .iter()
            .map(|_| OpenedSessions::new(OPENED_SESSIONS_BYTES))
            .collect();
        let endpoints = settings
            .login
            .iter()
            .map(|_| ResolvedEndpoints::default())
            .collect();
        let budget = settings.signature_check_budget.map(SourceBudget::new);
        Gateway {
            authn: Authenticator::new(Rc::clone(&settings)),
            settings,
            parked: Vec::new(),
            fetch_wanted: vec![false; providers],
            published: Vec::new(),
            response_cookies: Vec::new(),
            settled_calls: Vec::new(),
            queued_refreshes: Vec::new(),
            opened,
            endpoints,
            allowed: 0,
            budget,
        }
    }

    /// Writes what every worker expects in shared data (the refresh slots); each VM does it
    /// once at start, before deciding requests.
    pub fn prepare(&self, host: &mut dyn Host) {
        for service in &self.settings.login {
            refresh::init_slots(host, &service.client_id);
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Decides a request from its headers (see the order at the top of this file).
    pub fn decide<'a>(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &'a RequestHeaders,
    ) -> Outcome<'a> {
        let settings = Rc::clone(&self.settings);
        let strip = identity::spoofed(headers.iter().map(|(n, _)| n), &settings.stripped_headers);
        let decision = self.decide_unstripped(host, context_id, headers, true);
        Outcome {
            strip,
            decision: counted(host, &mut self.allowed, decision),
        }
    }

    /// Steps 2-5; `may_wait`: a browser sent to log in may wait for the IdP's endpoints
    /// (not when it already waited: parked requests are decided again here).
    fn decide_unstripped(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        may_wait: bool,
    ) -> Decision {
        let (decision, kubernetes) = self.decide_at_gate(host, context_id, headers, may_wait);
        if kubernetes {
            as_kubernetes_status(decision)
        } else {
            decision
        }
    }

    /// `decide_unstripped`, and whether the host is in Kubernetes API mode (its refusals
    /// are then written as the apiserver's `Status`).
    fn decide_at_gate(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        may_wait: bool,
    ) -> (Decision, bool) {
        let mut authority = headers.lossy(":authority").unwrap_or_default();
        if let Some(refused) = self.host_header_disagrees(headers, &authority) {
            return (Decision::Respond(refused), false);
        }
        let mut path = headers.lossy(":path").unwrap_or_default();
        let mut original_method = None;
        // An `auth_request` check judged without the request it is about: every
        // restriction of the service holds.
        let mut every_route = false;
        let own = forward_auth::own_endpoint(&self.settings.endpoints, &path);
        let mut answer = Answer::Upstream;
        let mut public_passes = true;
        match own {
            Some(OwnEndpoint::Ping) => return (Decision::Respond(forward_auth::ping()), false),
            Some(OwnEndpoint::Ready) => {
                let ready = forward_auth::ready(self.authn.all_keys_loaded());
                return (Decision::Respond(ready), false);
            }
            Some(OwnEndpoint::Answer {
                answer: asked,
                rules_path,
                public_passes: passes,
            }) => {
                let spoofed = identity::spoofed(
                    headers.iter().map(|(n, _)| n),
                    &self.settings.stripped_headers,
                );
                if asked.is_auth_request() && self.settings.endpoints.refuse_spoofed_headers {
                    if let Some(refused) = refused_spoofed(host, &spoofed) {
                        return (Decision::Respond(refused), false);
                    }
                }
                let auth_request = asked.is_auth_request();
                answer = asked.with_spoofed(&spoofed);
                public_passes = passes;
                path = rules_path.into();
                if auth_request && self.settings.endpoints.trust_original_url {
                    let original = forward_auth::original_request(
                        headers.text("x-original-url"),
                        headers.text("x-original-method"),
                    );
                    match original {
                        Ok(original) => {
                            authority = original.authority.into();
                            path = original.path_and_query.into();
                            original_method = Some(original.method);
                        }
                        Err(why) => {
                            return (Decision::Respond(denial::bad_request(why, false)), false)
                        }
                    }
                } else {
                    every_route = auth_request;
                }
            }
            None => {}
        }
        let mut target = target(headers, &authority, &path);
        if let Some(method) = &original_method {
            target.method = method;
        }
        // A check is answered to NGINX or Envoy, never sent to log in.
        target.browser &= !answer.is_here();
        let mut gate = match Gate::find(&self.settings, &target) {
            Ok(gate) => gate,
            Err(reply) => {
                if reply.status == 403 {
                    // Debug: any client can pick a Host; `{:?}` keeps its bytes on one line.
                    let line = format!("403 for host {authority:?}: no service lists it");
                    host.log(Severity::Debug, &line);
                }
                return (Decision::Respond(reply), false);
            }
        };
        gate.answer = answer;
        gate.public &= public_passes;
        if every_route {
            gate.require_every_route(&self.settings);
        }
        let settings = Rc::clone(&self.settings);
        let kubernetes = gate.impersonation(&settings);
        if kubernetes.is_some()
            && impersonation::client_impersonates(headers.iter().map(|(n, _)| n))
        {
            return (
                Decision::Respond(impersonation::refused_client_impersonation()),
                true,
            );
        }
        (
            self.decide_on(host, context_id, headers, gate, may_wait),
            kubernetes.is_some(),
        )
    }

    /// An h2 `host` header beside `:authority` that names another host: which one the
    /// upstream reads is its choice, so neither is trusted (RFC 9113 calls it malformed).
    fn host_header_disagrees(&self, headers: &RequestHeaders, authority: &str) -> Option<Reply> {
        if !self.settings.has_services() {
            return None;
        }
        let host = headers.get("host")?;
        let same = std::str::from_utf8(host)
            .ok()
            .and_then(host_name)
            .zip(host_name(authority))
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
        let method = headers.text(":method").unwrap_or("GET");
        let browser = is_browser_navigation(&hints(headers, method));
        (!same).then(|| denial::bad_request("the Host header names another host", browser))
    }

    fn decide_on(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        gate: Gate,
        may_wait: bool,
    ) -> Decision {
        let login = gate.login();
        if gate.public {
            if gate.answer.is_here() {
                return Decision::Respond(forward_auth::granted(
                    &gate.answer,
                    None,
                    &HandedOn::default(),
                    Vec::new(),
                ));
            }
            let forward = self.public_forward(login, headers);
            return self.impersonated(&gate, None, forward);
        }
        let decision = match login {
            Some(id) => self.login(host, context_id, id, headers, &gate, may_wait),
            None => None,
        };
        decision.unwrap_or_else(|| self.bearer(host, context_id, headers, gate))
    }

    /// A public route: nothing to check or add; on a login host our cookies stay ours.
    fn public_forward(&self, login: Option<ServiceId>, headers: &RequestHeaders) -> Forward {
        let mut forward = Forward::default();
        let service = login.and_then(|id| self.settings.login.get(id.0));
        if let (Some(service), Some(cookie)) = (service, headers.text("cookie")) {
            match cookies::without(cookie, |n| service.is_our_cookie(n)) {
                Some(kept) if kept != cookie => forward.set_headers.push(("cookie".into(), kept)),
                Some(_) => {}
                None => forward.remove_headers.push("cookie".into()),
            }
        }
        forward
    }

    /// Step 3: the request's bearer token.
    fn bearer(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        gate: Gate,
    ) -> Decision {
        let authorization = match headers.get("authorization").map(std::str::from_utf8) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err(_)) => return refusal(host, &AuthError::HeaderNotText),
        };
        let now_ms = host.now_ms();
        let mut outside = Surroundings {
            host: &mut *host,
            budget: self.budget.as_ref(),
            source: None,
            parked_source: None,
            now_ms,
        };
        let verdict =
            self.authn
                .authenticate_with(authorization, now_ms, KidRefetch::Allowed, &mut outside);
        let checked_for = outside.source.take();
        if let Some(budget) = self.budget.as_mut() {
            budget.charge(&verdict, checked_for, now_ms);
        }
        if let Verdict::AwaitKeys {
            provider,
            refetch,
            reason,
        } = verdict
        {
            if self.parked.len() >= MAX_PARKED {
                // Waiting costs memory: past the bound, the wait is over at once.
                return self.carry(host, verdict, &gate);
            }
            self.park(
                context_id,
                provider,
                now_ms + self.settings.keys_wait_timeout_ms,
                WaitsFor::Keys {
                    authorization: authorization.map(Secret::new),
                    kid: KidRefetch::Allowed,
                    gate,
                    source: self
                        .budget
                        .is_some()
                        .then(|| host.source_address())
                        .flatten(),
                },
                refetch,
                reason,
            );
            return Decision::Parked;
        }
        self.carry(host, verdict, &gate)
    }

    /// A bearer verdict as a decision; `AwaitKeys` here means the wait is over: 503.
    fn carry(&self, host: &dyn Host, verdict: Verdict, gate: &Gate) -> Decision {
        let decision = self.carry_verdict(host, verdict, gate);
        if gate.impersonation(&self.settings).is_some() {
            as_kubernetes_status(decision)
        } else {
            decision
        }
    }

    fn carry_verdict(&self, host: &dyn Host, verdict: Verdict, gate: &Gate) -> Decision {
        match verdict {
            Verdict::Allow(identity) => {
                self.admit(host, gate, &identity, self.identity_forward(&identity))
            }
            Verdict::Deny(error) => refusal(host, &error),
            Verdict::AwaitKeys { .. } => refusal(host, &AuthError::KeysUnavailable),
        }
    }

    /// Step 4: the caller is known; the rules say whether `forward` happens or a `403`
    /// (with any cookies `forward` would have set, such as a renewed session).
    fn admit(
        &self,
        host: &dyn Host,
        gate: &Gate,
        identity: &Identity,
        forward: Forward,
    ) -> Decision {
        let checked = gate
            .check(&self.settings, identity)
            .and_then(|()| self.narrowed(gate, identity));
        match checked {
            Ok(()) if gate.answer.is_here() => {
                let value = |name: &str| {
                    forward
                        .set_headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                };
                let handed_on = HandedOn {
                    access_token: value("x-auth-request-access-token"),
                    authorization: value("authorization"),
                    removes_authorization: forward
                        .remove_headers
                        .iter()
                        .any(|h| h == "authorization"),
                };
                Decision::Respond(forward_auth::granted(
                    &gate.answer,
                    Some(identity),
                    &handed_on,
                    forward.response_cookies,
                ))
            }
            Ok(()) => self.impersonated(gate, Some(identity), forward),
            Err((mut reply, line)) => {
                host.log(Severity::Info, &line);
                reply.headers.extend(
                    forward
                        .response_cookies
                        .into_iter()
                        .map(|c| ("set-cookie".to_string(), c)),
                );
                Decision::Respond(reply)
            }
        }
    }

    /// Kubernetes API mode: the apiserver hears who the caller is only from `Impersonate-*`
    /// (anonymous on a public route, never the proxy's own identity), never from the
    /// client's `Authorization` or our identity headers. A user that cannot be written is
    /// refused: without `Impersonate-User` the apiserver would act as the proxy.
    fn impersonated(
        &self,
        gate: &Gate,
        identity: Option<&Identity>,
        mut forward: Forward,
    ) -> Decision {
        // `forward_normalized_path`: the upstream serves the path the rules judged.
        let judged_path = gate.forward_path.clone().map(|p| (":path".to_string(), p));
        let Some(impersonation) = gate.impersonation(&self.settings) else {
            forward.set_headers.extend(judged_path);
            return Decision::Forward(forward);
        };
        forward.set_headers.retain(|(name, _)| name == "cookie");
        if !forward.remove_headers.iter().any(|h| h == "authorization") {
            forward.remove_headers.push("authorization".into());
        }
        let edits = match identity {
            Some(identity) => impersonation.headers(identity),
            None => impersonation::anonymous(),
        };
        if !edits.set.iter().any(|(name, _)| name == "impersonate-user") {
            let nameless = AuthError::ClaimNotHeaderSafe {
                claim: "the user".into(),
            };
            return Decision::Respond(impersonation::as_status(nameless.reply(Vec::new())));
        }
        forward.set_headers.extend(edits.set);
        forward.add_headers.extend(edits.add);
        forward.set_headers.extend(judged_path);
        if !forward.impersonates() {
            // Never as the proxy's own identity, whatever a change above might do.
            let refused = AuthError::ClaimNotHeaderSafe {
                claim: "the user".into(),
            };
            return Decision::Respond(impersonation::as_status(refused.reply(Vec::new())));
        }
        Decision::Forward(forward)
    }

    /// A forward-auth check's own narrowing (`allowed_groups` and the like in its query).
    fn narrowed(&self, gate: &Gate, identity: &Identity) -> Result<(), (Reply, String)> {
        let Answer::Check { narrowing, .. } = &gate.answer else {
            return Ok(());
        };
        narrowing.allows(identity).map_err(|why| {
            let line = format!(
                "403 for user {} on {}{}: {why}",
                identity.reference(),
                gate.host,
                gate.path
            );
            (denial::forbidden(identity, Vec::new(), false, None), line)
        })
    }

    /// Step 5: identity headers for the upstream.
    fn identity_forward(&self, identity: &Identity) -> Forward {
        let set_headers = identity.headers(&self.settings.identity_headers);
        let remove_headers = if self.settings.forward_authorization {
            Vec::new()
        } else {
            vec!["authorization".to_string()]
        };
        Forward {
            set_headers,
            remove_headers,
            ..Forward::default()
        }
    }

    /// A session's request, when the rules let it pass: its identity (and the tokens the
    /// service passes on), never an unchecked `Authorization` beside it, and our cookies out
    /// of the upstream's sight.
    fn session_forward(&self, host: &dyn Host, gate: &Gate, forwarding: Forwarding) -> Decision {
        let mut forward = self.identity_forward(&forwarding.identity);
        let bearer = forwarding
            .id_token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()))
            .filter(|v| header_value_safe(v));
        match bearer {
            Some(value) => {
                forward.remove_headers.retain(|h| h != "authorization");
                forward.set_headers.push(("authorization".into(), value));
            }
            None if !forward.remove_headers.iter().any(|h| h == "authorization") => {
                forward.remove_headers.push("authorization".into());
            }
            None => {}
        }
        if let Some(token) = forwarding
            .access_token
            .as_ref()
            .filter(|t| header_value_safe(t.expose()))
        {
            forward.set_headers.push((
                "x-auth-request-access-token".into(),
                token.expose().to_string(),
            ));
        }
        match forwarding.cookie_header {
            Some(value) => forward.set_headers.push(("cookie".into(), value)),
            None => forward.remove_headers.push("cookie".into()),
        }
        forward.response_cookies = forwarding.set_cookies;
        self.admit(host, gate, &forwarding.identity, forward)
    }

    /// Step 2 on a login host; `None` leaves the request to bearer validation.
    fn login(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        id: ServiceId,
        headers: &RequestHeaders,
        gate: &Gate,
        may_wait: bool,
    ) -> Option<Decision> {
        let settings = Rc::clone(&self.settings);
        let service = settings.login.get(id.0)?;
        let path = headers.lossy(":path");
        let authority = headers.lossy(":authority");
        let method = headers.text(":method").unwrap_or("GET");
        // Envoy's `:scheme`, never the client's `X-Forwarded-Proto`: Envoy derives it from
        // the connection, or from X-Forwarded-Proto only as far as its own trust settings
        // allow (`use_remote_address`, `xff_num_trusted_hops`).
        let scheme = headers
            .text(":scheme")
            .filter(|s| matches!(*s, "http" | "https"))
            .unwrap_or("https");
        let request = flow::Request {
            method,
            scheme,
            authority: authority.as_deref().unwrap_or_default(),
            path: path.as_deref().unwrap_or("/"),
            // A `Cookie` header that is not text holds no session of ours: not signed in.
            cookie_header: headers.text("cookie"),
            has_authorization: headers.get("authorization").is_some(),
            hints: hints(headers, method),
            unauthenticated: if gate.answer.is_here() {
                Unauthenticated::Deny
            } else {
                gate.unauthenticated(&settings)
            },
            may_wait,
        };
        let endpoints = match self.endpoints.get_mut(id.0) {
            Some(resolved) => resolved.get(service, self.authn.discovery(service.provider)),
            None => {
                Endpoints::resolve(service, self.authn.discovery(service.provider)).map(Rc::new)
            }
        };
        let now_ms = host.now_ms();
        let mut no_cache = OpenedSessions::new(0);
        let opened = match self.opened.get_mut(id.0) {
            Some(opened) => opened,
            None => &mut no_cache,
        };
        let step = flow::decide_with(
            service,
            &request,
            endpoints.as_deref(),
            now_ms / 1000,
            host,
            opened,
        );
        let cookie_header = request.cookie_header.map(str::to_string);
        Some(match step {
            Step::Bearer => return None,
            Step::AwaitEndpoints if self.parked.len() >= MAX_PARKED => {
                let reply = LoginError::EndpointsUnknown.reply(Vec::new());
                answer(host, service, &gate.place(), reply)
            }
            Step::AwaitEndpoints => {
                // Rate-limited like bearer refetches: browsers must not hammer an IdP that
                // is down (the root retries with backoff anyway).
                let refetch = self.authn.may_refetch(service.provider, now_ms);
                self.park(
                    context_id,
                    service.provider,
                    now_ms + self.settings.keys_wait_timeout_ms,
                    WaitsFor::Endpoints {
                        headers: headers.only(&LOGIN_HEADERS),
                    },
                    refetch,
                    WaitReason::NoKeys,
                );
                Decision::Parked
            }
            Step::Respond(reply) => answer(host, service, &gate.place(), reply),
            Step::StartLogin(reply) => {
                host.count(Metric::LoginsStarted);
                Decision::Respond(reply)
            }
            Step::Forward(forwarding) => self.session_forward(host, gate, forwarding),
            Step::Exchange { pending, request } => {
                match host.call(&token_call(service, &request)) {
                    Some(token) => Decision::Calling(Box::new(Pending::Exchange {
                        token,
                        service: id,
                        login: pending,
                        cookie_header,
                        place: gate.place(),
                    })),
                    None => answer(
                        host,
                        service,
                        &gate.place(),
                        LoginError::TokenEndpointUnreachable
                            .reply(vec![login_cookie::forget_login(service, &pending)]),
                    ),
                }
            }
            Step::Refresh {
                session,
                request: token_request,
            } => {
                let candidate = match refresh::claim(host, service, &session, now_ms) {
                    Claim::Free(candidate) => candidate,
                    Claim::Adopt(renewed) => {
                        return Some(self.adopt(host, service, &renewed, cookie_header, gate))
                    }
                    Claim::Ended => {
                        return Some(answer(
                            host,
                            service,
                            &gate.place(),
                            refreshed::session_ended(
                                service,
                                cookie_header.as_deref(),
                                request.path,
                                gate.browser,
                            ),
                        ))
                    }
                    Claim::KeepOld => {
                        return Some(self.keep_old(host, service, &session, cookie_header, gate))
                    }
                };
                let lease = host
                    .token(12)
                    .and_then(|marker| refresh::take(host, candidate, service, now_ms, marker));
                let Some(lease) = lease else {
                    return Some(self.keep_old(host, service, &session, cookie_header, gate));
                };
                // The root sends the refresh on its next tick: its answer is then taken in,
                // and published for the session's other requests, even when this client goes
                // away (an IdP that rotates refresh tokens would refuse the old one again).
                self.queued_refreshes.push((
                    context_id,
                    token_call(service, &token_request),
                    Pending::Refresh {
                        token: 0,
                        service: id,
                        session: Box::new(session),
                        lease,
                        cookie_header,
                        path: request.path.to_string(),
                        gate: Box::new(gate.clone()),
                    },
                ));
                Decision::Parked
            }
        })
    }

    fn keep_old(
        &self,
        host: &dyn Host,
        service: &LoginService,
        session: &Session,
        cookie_header: Option<String>,
        gate: &Gate,
    ) -> Decision {
        let forwarding = flow::forward(service, cookie_header.as_deref(), session, Vec::new());
        self.session_forward(host, gate, forwarding)
    }

    /// Forwards with a renewed session and stores it in the browser.
    fn adopt(
        &self,
        host: &mut dyn Host,
        service: &LoginService,
        renewed: &Session,
        cookie_header: Option<String>,
        gate: &Gate,
    ) -> Decision {
        let request_cookies = cookie_header
            .as_deref()
            .map(cookies::parse)
            .unwrap_or_default();
        let mut stored = renewed.clone();
        let now_secs = host.now_ms() / 1000;
        let set_cookies =
            sign_in::store_session(service, &mut stored, &request_cookies, now_secs, host)
                .unwrap_or_default();
        let forwarding = flow::forward(service, cookie_header.as_deref(), renewed, set_cookies);
        self.session_forward(host, gate, forwarding)
    }

    /// The token endpoint answered the call `pending` is waiting on. When its ID token is
    /// signed with a key this worker lacks, the request is parked until the keys arrive.
    pub fn on_token_response(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        pending: Pending,
        token_id: u32,
        status: Option<u32>,
        body: &[u8],
    ) -> Decision {
        if pending.token() != token_id {
            return Decision::Calling(Box::new(pending));
        }
        let tokens = oidc::read_tokens(status, body);
        let provider = self.service_of(&pending).map(|s| s.provider);
        let id_token = tokens.as_ref().ok().and_then(|t| t.id_token.as_ref());
        if let (Some(provider), Some(id_token)) = (provider, id_token) {
            if self.authn.id_token_awaits_keys(provider, id_token.expose()) {
                let now_ms = host.now_ms();
                // The fetch is asked for now, or (rate limit) by `settle` once it may be.
                let fetch_asked = self.ask_for_keys(provider, now_ms);
                let wait_ms = self.settings.keys_wait_timeout_ms
                    + self.settings.min_refetch_interval_ms(provider);
                if let Pending::Refresh { lease, service, .. } = &pending {
                    // Nobody else may spend the refresh token while this one waits.
                    let timeout_ms = self
                        .settings
                        .login
                        .get(service.0)
                        .map_or(0, |s| s.timeout_ms);
                    refresh::extend(host, lease, now_ms + wait_ms + timeout_ms);
                }
                self.parked.push(Parked {
                    context_id,
                    provider,
                    deadline_ms: now_ms + wait_ms,
                    waits_for: WaitsFor::IdTokenKeys {
                        pending: Box::new(pending),
                        tokens,
                        fetch_asked,
                        since_ms: now_ms,
                    },
                });
                return Decision::Parked;
            }
        }
        let decision = self.finish(host, pending, tokens);
        counted(host, &mut self.allowed, decision)
    }

    /// An answer to a token call made while settling (it reached the root): the request it
    /// belongs to and what to do with it.
    pub fn on_settled_call_response(
        &mut self,
        host: &mut dyn Host,
        token_id: u32,
        status: Option<u32>,
        body: &[u8],
    ) -> Option<(u32, Decision)> {
        let at = self
            .settled_calls
            .iter()
            .position(|(_, p)| p.token() == token_id)?;
        let (context_id, pending) = self.settled_calls.swap_remove(at);
        let decision = self.on_token_response(host, context_id, pending, token_id, status, body);
        Some((context_id, self.settle_calls(context_id, decision)))
    }

    fn service_of(&self, pending: &Pending) -> Option<&LoginService> {
        let (Pending::Exchange { service, .. } | Pending::Refresh { service, .. }) = pending;
        self.settings.login.get(service.0)
    }

    /// Finishes a login or a refresh with the token endpoint's answer.
    fn finish(
        &mut self,
        host: &mut dyn Host,
        pending: Pending,
        tokens: Result<Tokens, TokenError>,
    ) -> Decision {
        let settings = Rc::clone(&self.settings);
        let (Pending::Exchange { service, .. } | Pending::Refresh { service, .. }) = &pending;
        let Some(svc) = settings.login.get(service.0) else {
            return refusal(host, &AuthError::KeysUnavailable);
        };
        let now_ms = host.now_ms();
        let authn = &self.authn;
        let verify = |id_token: &str, nonce: Option<&str>| {
            authn.verify_id_token(svc.provider, id_token, &svc.client_id, nonce, now_ms)
        };
        match pending {
            Pending::Exchange {
                login,
                cookie_header,
                place,
                ..
            } => {
                let request_cookies = cookie_header
                    .as_deref()
                    .map(cookies::parse)
                    .unwrap_or_default();
                let reply = sign_in::finish_login(
                    svc,
                    &login,
                    tokens,
                    &verify,
                    &request_cookies,
                    now_ms / 1000,
                    host,
                );
                if reply.status == 302 {
                    host.count(Metric::SignedIn);
                }
                answer(host, svc, &place, reply)
            }
            Pending::Refresh {
                session,
                lease,
                cookie_header,
                path,
                gate,
                ..
            } => match refreshed::finish_refresh(&session, tokens, &verify, now_ms / 1000) {
                Refreshed::Renewed(renewed) => {
                    host.count(Metric::Refreshed);
                    let sealed = refresh::seal(svc, &renewed, host);
                    if refresh::publish_renewed(host, &lease, sealed.as_deref(), now_ms) {
                        self.published.push((lease, now_ms + RESULT_KEPT_MS));
                    }
                    self.adopt(host, svc, &renewed, cookie_header, &gate)
                }
                Refreshed::KeepOld => {
                    host.log(
                        Severity::Warn,
                        &format!(
                            "refresh for {} failed; keeping the session for now",
                            svc.client_id
                        ),
                    );
                    refresh::release(host, &lease);
                    self.keep_old(host, svc, &session, cookie_header, &gate)
                }
                Refreshed::Ended(why) => {
                    match refresh::renewed_elsewhere(host, &lease, svc, now_ms) {
                        // Another worker refreshed this session first; its result stands.
                        Some(renewed) => self.adopt(host, svc, &renewed, cookie_header, &gate),
                        None => {
                            // The user's name is personal data: the session id says enough.
                            let sid: String = session.sid.chars().take(8).collect();
                            host.log(
                                Severity::Debug,
                                &format!("session {sid}… of {} ended: {why}", svc.client_id),
                            );
                            refresh::publish_ended(host, &lease, now_ms);
                            let reply = refreshed::session_ended(
                                svc,
                                cookie_header.as_deref(),
                                &path,
                                gate.browser,
                            );
                            answer(host, svc, &gate.place(), reply)
                        }
                    }
                }
            },
        }
    }

    /// Parks a request, asking for a fetch when the verdict allows one now.
    fn park(
        &mut self,
        context_id: u32,
        provider: ProviderId,
        deadline_ms: u64,
        mut waits_for: WaitsFor,
        refetch: bool,
        reason: WaitReason,
    ) {
        if refetch {
            self.want_fetch(provider);
        }
        if let (WaitReason::UnknownKid, WaitsFor::Keys { kid, .. }) = (reason, &mut waits_for) {
            *kid = KidRefetch::AlreadyWaited;
        }
        self.parked.push(Parked {
            context_id,
            provider,
            deadline_ms,
            waits_for,
        });
    }

    fn want_fetch(&mut self, provider: ProviderId) {
        if let Some(wanted) = self.fetch_wanted.get_mut(provider.0) {
            *wanted = true;
        }
    }

    /// Asks for a fetch of `provider`'s keys when the rate limit allows it now.
    fn ask_for_keys(&mut self, provider: ProviderId, now_ms: u64) -> bool {
        let allowed = self.authn.may_refetch(provider, now_ms);
        if allowed {
            self.want_fetch(provider);
        }
        allowed
    }

    /// Whether a request asked for `provider`'s keys to be fetched.
    pub fn fetch_wanted(&self, provider: ProviderId) -> bool {
        self.fetch_wanted.get(provider.0).copied().unwrap_or(false)
    }

    pub fn clear_fetch_wanted(&mut self, provider: ProviderId) {
        if let Some(wanted) = self.fetch_wanted.get_mut(provider.0) {
            *wanted = false;
        }
    }

    /// Decides parked requests again: those of `changed` (its keys or endpoints arrived),
    /// and any whose wait ran out. Returns what to do with each, by context.
    pub fn settle(
        &mut self,
        host: &mut dyn Host,
        changed: Option<ProviderId>,
    ) -> Vec<(u32, Decision)> {
        let now_ms = host.now_ms();
        let mut decided = self.send_queued_refreshes(host);
        for mut parked in std::mem::take(&mut self.parked) {
            let keys_changed = changed == Some(parked.provider);
            let timed_out = now_ms >= parked.deadline_ms;
            if let WaitsFor::IdTokenKeys {
                fetch_asked: asked @ false,
                ..
            } = &mut parked.waits_for
            {
                *asked = self.ask_for_keys(parked.provider, now_ms);
            }
            if !keys_changed && !timed_out {
                self.parked.push(parked);
                continue;
            }
            if !timed_out && self.still_waits_for_a_fetch(&parked) {
                self.parked.push(parked);
                continue;
            }
            let context_id = parked.context_id;
            let decision = match parked.waits_for {
                WaitsFor::IdTokenKeys {
                    pending, tokens, ..
                } => self.finish(host, *pending, tokens),
                WaitsFor::Endpoints { headers } => {
                    if !timed_out && self.authn.discovery(parked.provider).is_none() {
                        self.parked.push(Parked {
                            waits_for: WaitsFor::Endpoints { headers },
                            ..parked
                        });
                        continue;
                    }
                    // Its rules are found again from the headers it kept.
                    self.decide_unstripped(host, context_id, &headers, false)
                }
                WaitsFor::Keys {
                    authorization,
                    kid,
                    gate,
                    source,
                } => {
                    // A forged token that waited is checked, and charged, as one that did not.
                    let mut outside = Surroundings {
                        host: &mut *host,
                        budget: self.budget.as_ref(),
                        source: None,
                        parked_source: source.clone(),
                        now_ms,
                    };
                    let verdict = self.authn.authenticate_with(
                        authorization.as_ref().map(Secret::expose),
                        now_ms,
                        kid,
                        &mut outside,
                    );
                    let checked_for = outside.source.take();
                    if let Some(budget) = self.budget.as_mut() {
                        budget.charge(&verdict, checked_for, now_ms);
                    }
                    match verdict {
                        Verdict::AwaitKeys {
                            provider,
                            refetch,
                            reason,
                        } if !timed_out => {
                            self.park(
                                context_id,
                                provider,
                                parked.deadline_ms,
                                WaitsFor::Keys {
                                    authorization,
                                    kid,
                                    gate,
                                    source,
                                },
                                refetch,
                                reason,
                            );
                            continue;
                        }
                        verdict => self.carry(host, verdict, &gate),
                    }
                }
            };
            let decision = counted(host, &mut self.allowed, decision);
            decided.push((context_id, self.settle_calls(context_id, decision)));
        }
        decided
    }

    /// An ID token whose key is still unknown, and no fetch was attempted since it parked
    /// (the record changed for another reason): finishing now would refuse the sign-in.
    fn still_waits_for_a_fetch(&self, parked: &Parked) -> bool {
        let WaitsFor::IdTokenKeys {
            tokens, since_ms, ..
        } = &parked.waits_for
        else {
            return false;
        };
        let id_token = tokens.as_ref().ok().and_then(|t| t.id_token.as_ref());
        id_token.is_some_and(|t| self.authn.id_token_awaits_keys(parked.provider, t.expose()))
            && self.authn.attempted_at_ms(parked.provider) < *since_ms
    }

    /// Sends the refreshes requests leased (from the root, so the answers reach it).
    fn send_queued_refreshes(&mut self, host: &mut dyn Host) -> Vec<(u32, Decision)> {
        let mut decided = Vec::new();
        for (context_id, call, mut pending) in std::mem::take(&mut self.queued_refreshes) {
            match host.call(&call) {
                Some(token) => {
                    if let Pending::Refresh { token: sent, .. } = &mut pending {
                        *sent = token;
                    }
                    self.settled_calls.push((context_id, pending));
                }
                None => {
                    let Pending::Refresh {
                        service,
                        session,
                        lease,
                        cookie_header,
                        gate,
                        ..
                    } = pending
                    else {
                        continue;
                    };
                    refresh::release(host, &lease);
                    let settings = Rc::clone(&self.settings);
                    if let Some(svc) = settings.login.get(service.0) {
                        let decision = self.keep_old(host, svc, &session, cookie_header, &gate);
                        decided.push((context_id, counted(host, &mut self.allowed, decision)));
                    }
                }
            }
        }
        decided
    }

    /// A decision made outside the request's own context: a token call's answer will reach
    /// the root, so its state is kept here; cookies for the response wait for the adapter.
    fn settle_calls(&mut self, context_id: u32, decision: Decision) -> Decision {
        match decision {
            Decision::Calling(pending) => {
                self.settled_calls.push((context_id, *pending));
                Decision::Parked
            }
            Decision::Forward(mut forward) => {
                let cookies = std::mem::take(&mut forward.response_cookies);
                if !cookies.is_empty() {
                    self.response_cookies.push((context_id, cookies));
                }
                Decision::Forward(forward)
            }
            other => other,
        }
    }

    /// Cookies decided for this request's response while it was parked, if any.
    pub fn take_response_cookies(&mut self, context_id: u32) -> Vec<String> {
        match self
            .response_cookies
            .iter()
            .position(|(id, _)| *id == context_id)
        {
            Some(at) => self.response_cookies.swap_remove(at).1,
            None => Vec::new(),
        }
    }

    /// Forgets published refresh results whose grace period is over; reports the token
    /// cache's hits and misses (once a tick rather than a host call per request).
    pub fn tick(&mut self, host: &mut dyn Host) {
        let lookups = self.authn.take_lookups();
        let allowed = std::mem::take(&mut self.allowed);
        for (metric, by) in [
            (Metric::Allowed, allowed),
            (Metric::TokenCacheHits, lookups.hits),
            (Metric::TokenCacheSharedHits, lookups.shared_hits),
            (Metric::TokenCacheMisses, lookups.misses),
        ] {
            if by > 0 {
                host.add(metric, by);
            }
        }
        let now_ms = host.now_ms();
        let (over, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.published)
            .into_iter()
            .partition(|(_, until)| now_ms >= *until);
        self.published = kept;
        for (lease, _) in over {
            refresh::forget(host, &lease);
        }
    }

    /// The request is gone: nothing of it stays parked. A refresh it started from the root
    /// still finishes, so its result is published for the session's other requests.
    pub fn forget(&mut self, context_id: u32) {
        self.parked.retain(|p| p.context_id != context_id);
        self.response_cookies.retain(|(id, _)| *id != context_id);
        self.settled_calls
            .retain(|(id, p)| *id != context_id || matches!(p, Pending::Refresh { .. }));
    }

    /// How many requests are parked (for tests and metrics).
    pub fn parked(&self) -> usize {
        self.parked.len()
    }
}
