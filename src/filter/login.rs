//! Carries out the login flow's steps for one request: local answers, token-endpoint
//! callouts, and one refresh per session across all workers (coordinated in shared data).

use std::rc::Rc;

use proxy_wasm::types::{Action, LogLevel};

use super::host::{self, HostRandom, HostShared};
use super::vm::{Vm, Waiting, WaitsFor};
use crate::core::bearer::authenticator::Verdict;
use crate::core::config::login::LoginService;
use crate::core::cookies;
use crate::core::keys::fetch::request_line;
use crate::core::login::error::LoginError;
use crate::core::login::flow::{self, Endpoints, Forwarding, Refreshed, Step};
use crate::core::login::oidc::{self, PendingLogin, TokenError, TokenRequest, Tokens};
use crate::core::login::refresh::{self, Claim, Lease};
use crate::core::login::refresh_slots;
use crate::core::login::request_kind::{is_browser_navigation, RequestHints};
use crate::core::login::session::{self, Session};
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;

/// Where a request stands; in-flight data lives in the variant that needs it.
pub enum Phase {
    Deciding,
    /// The login flow left the request to bearer validation.
    Bearer,
    /// Parked until the provider's discovery document arrives; the root decides again.
    AwaitingEndpoints {
        provider: usize,
    },
    /// Answered locally.
    Answered,
    Exchanging {
        token: u32,
        service: usize,
        pending: PendingLogin,
        cookie_header: Option<String>,
    },
    Refreshing {
        token: u32,
        service: usize,
        session: Session,
        lease: Lease,
        cookie_header: Option<String>,
        path: String,
        browser: bool,
    },
    /// The token endpoint answered with an ID token signed by a key this VM does not have
    /// yet; the root finishes once the keys are fetched (or the wait runs out).
    AwaitingIdTokenKeys,
    /// Forwarded upstream; these cookies go on the response.
    Forwarded {
        set_cookies: Vec<String>,
    },
}

/// Decides and carries out the login flow for a request; `may_wait` lets a browser wait
/// for the IdP's endpoints (the caller then parks it; see `Phase::AwaitingEndpoints`).
pub fn on_request(
    vm: &mut Vm,
    index: usize,
    headers: &RequestHeaders,
    may_wait: bool,
) -> (Phase, Action) {
    let settings = vm.authn.settings_rc();
    let Some(service) = settings.login.get(index) else {
        return (Phase::Bearer, Action::Continue);
    };
    let path = headers.lossy(":path");
    let authority = headers.lossy(":authority");
    let method = headers.text(":method").unwrap_or("GET");
    // Envoy's `:scheme`, never the client's `X-Forwarded-Proto`: Envoy derives it from the
    // connection, or from X-Forwarded-Proto only as far as its own trust settings allow
    // (`use_remote_address`, `xff_num_trusted_hops`).
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
        hints: RequestHints {
            method,
            accept: headers.text("accept"),
            sec_fetch_mode: headers.text("sec-fetch-mode"),
            x_requested_with: headers.text("x-requested-with"),
        },
        may_wait,
    };
    let endpoints = Endpoints::resolve(service, vm.authn.discovery(service.provider));
    let now_secs = host::now_ms() / 1000;
    let step = flow::decide(
        service,
        &request,
        endpoints.as_ref(),
        now_secs,
        &mut HostRandom,
    );
    let cookie_header = request.cookie_header.map(str::to_string);
    match step {
        Step::Bearer => (Phase::Bearer, Action::Continue),
        Step::AwaitEndpoints => (
            Phase::AwaitingEndpoints {
                provider: service.provider,
            },
            Action::Pause,
        ),
        Step::Respond(reply) => answer(service, reply),
        Step::Forward(forwarding) => forward(vm, forwarding),
        Step::Exchange { pending, request } => match call_token_endpoint(service, &request) {
            Some(token) => (
                Phase::Exchanging {
                    token,
                    service: index,
                    pending,
                    cookie_header,
                },
                Action::Pause,
            ),
            None => answer(
                service,
                LoginError::TokenEndpointUnreachable
                    .reply(vec![flow::forget_login(service, &pending)]),
            ),
        },
        Step::Refresh {
            session,
            request: token_request,
        } => {
            let browser = is_browser_navigation(&request.hints);
            let path = request.path.to_string();
            refresh(
                vm,
                index,
                service,
                session,
                token_request,
                cookie_header,
                path,
                browser,
            )
        }
    }
}

/// Sends a local answer; a failed sign-in is logged with its reason.
fn answer(service: &LoginService, reply: Reply) -> (Phase, Action) {
    if let Some(note) = &reply.reason {
        host::log(
            host::level(note.severity),
            &format!(
                "login for {} failed with {}: {}",
                service.client_id, reply.status, note.text
            ),
        );
    }
    host::send_reply(reply);
    (Phase::Answered, Action::Pause)
}

fn forward(vm: &Vm, forwarding: Forwarding) -> (Phase, Action) {
    vm.carry_out(&Verdict::Allow(Rc::new(forwarding.identity)));
    host::remove_request_header("authorization");
    match forwarding.cookie_header {
        Some(value) => host::set_request_header("cookie", &value),
        None => host::remove_request_header("cookie"),
    }
    (
        Phase::Forwarded {
            set_cookies: forwarding.set_cookies,
        },
        Action::Continue,
    )
}

fn call_token_endpoint(service: &LoginService, request: &TokenRequest) -> Option<u32> {
    let mut headers = request_line("POST", &request.url);
    headers.extend(request.headers.iter().cloned());
    match host::dispatch(
        &service.cluster,
        &headers,
        Some(request.body.expose().as_bytes()),
        service.timeout_ms,
    ) {
        Ok(token) => Some(token),
        Err(status) => {
            host::log(
                LogLevel::Warn,
                &format!(
                    "cannot call the token endpoint through cluster \"{}\": {status:?}",
                    service.cluster
                ),
            );
            None
        }
    }
}

/// Refreshes the session when this worker wins the generation's lease (see
/// `core::login::refresh`); otherwise goes on with the old session, the published one, or
/// ends it.
#[allow(clippy::too_many_arguments)]
fn refresh(
    vm: &Vm,
    index: usize,
    service: &LoginService,
    session: Session,
    request: TokenRequest,
    cookie_header: Option<String>,
    path: String,
    browser: bool,
) -> (Phase, Action) {
    let lease = match refresh::claim(
        &mut HostShared,
        service,
        &session,
        host::now_ms(),
        &mut HostRandom,
    ) {
        Claim::Refresh(lease) => lease,
        Claim::Adopt(renewed) => return adopt(vm, service, &renewed, cookie_header),
        Claim::Ended => {
            return answer(
                service,
                flow::session_ended(service, cookie_header.as_deref(), &path, browser),
            )
        }
        Claim::KeepOld => return keep_old(vm, service, &session, cookie_header),
    };
    match call_token_endpoint(service, &request) {
        Some(token) => (
            Phase::Refreshing {
                token,
                service: index,
                session,
                lease,
                cookie_header,
                path,
                browser,
            },
            Action::Pause,
        ),
        None => {
            refresh::release(&mut HostShared, &lease);
            keep_old(vm, service, &session, cookie_header)
        }
    }
}

fn keep_old(
    vm: &Vm,
    service: &LoginService,
    session: &Session,
    cookie_header: Option<String>,
) -> (Phase, Action) {
    forward(
        vm,
        flow::forward(service, cookie_header.as_deref(), session, Vec::new()),
    )
}

/// Forwards with a renewed session and stores it in the browser.
fn adopt(
    vm: &Vm,
    service: &LoginService,
    renewed: &Session,
    cookie_header: Option<String>,
) -> (Phase, Action) {
    let request_cookies = cookie_header
        .as_deref()
        .map(cookies::parse)
        .unwrap_or_default();
    let now_secs = host::now_ms() / 1000;
    let set_cookies = session::write(
        renewed,
        &request_cookies,
        &service.cookie_name,
        &service.cookie,
        &service.sealer,
        now_secs,
        &mut HostRandom,
    )
    .unwrap_or_default();
    forward(
        vm,
        flow::forward(service, cookie_header.as_deref(), renewed, set_cookies),
    )
}

/// The token endpoint answered a request of this context. When its ID token needs keys
/// this VM lacks, the request waits for them (the root finishes it); otherwise it is
/// finished here.
pub fn on_token_response(
    vm: &mut Vm,
    context_id: u32,
    phase: Phase,
    token_id: u32,
    status: Option<u32>,
    body: &[u8],
) -> Phase {
    let settings = vm.authn.settings_rc();
    let (Phase::Exchanging { token, service, .. } | Phase::Refreshing { token, service, .. }) =
        &phase
    else {
        return phase;
    };
    let Some(svc) = settings.login.get(*service).filter(|_| *token == token_id) else {
        return phase;
    };
    let now_ms = host::now_ms();
    let tokens = oidc::read_tokens(status, body);
    let id_token = tokens.as_ref().ok().and_then(|t| t.id_token.as_ref());
    if id_token.is_some_and(|t| vm.authn.id_token_awaits_keys(svc.provider, t.expose())) {
        // The fetch is asked for now, or (rate limit) by the root as soon as it may be.
        let fetch_asked = vm.ask_for_keys(svc.provider, now_ms);
        let settings = vm.authn.settings();
        let wait_ms =
            settings.keys_wait_timeout_ms + settings.min_refetch_interval_ms(svc.provider);
        vm.waiting.push(Waiting {
            context_id,
            provider: svc.provider,
            deadline_ms: now_ms + wait_ms,
            waits_for: WaitsFor::IdTokenKeys {
                phase: Box::new(phase),
                tokens,
                fetch_asked,
            },
        });
        return Phase::AwaitingIdTokenKeys;
    }
    finish_token_response(vm, phase, tokens)
}

/// Finishes a login or a refresh with the token endpoint's answer (ID token verified here).
pub fn finish_token_response(
    vm: &mut Vm,
    phase: Phase,
    tokens: Result<Tokens, TokenError>,
) -> Phase {
    let settings = vm.authn.settings_rc();
    let now_ms = host::now_ms();
    let (Phase::Exchanging { service, .. } | Phase::Refreshing { service, .. }) = &phase else {
        return phase;
    };
    let Some(svc) = settings.login.get(*service) else {
        return phase;
    };
    let verify = |id_token: &str, nonce: Option<&str>| {
        vm.authn
            .verify_id_token(svc.provider, id_token, &svc.client_id, nonce, now_ms)
    };
    match phase {
        Phase::Exchanging {
            pending,
            cookie_header,
            ..
        } => {
            let request_cookies = cookie_header
                .as_deref()
                .map(cookies::parse)
                .unwrap_or_default();
            let reply = flow::finish_login(
                svc,
                &pending,
                tokens,
                &verify,
                &request_cookies,
                now_ms / 1000,
                &mut HostRandom,
            );
            answer(svc, reply).0
        }
        Phase::Refreshing {
            session,
            lease,
            cookie_header,
            path,
            browser,
            ..
        } => {
            let (phase, action) =
                match flow::finish_refresh(&session, tokens, &verify, now_ms / 1000) {
                    Refreshed::Renewed(renewed) => {
                        let published = refresh::publish_renewed(
                            &mut HostShared,
                            &lease,
                            svc,
                            &renewed,
                            now_ms,
                            &mut HostRandom,
                        );
                        if published {
                            let blank_at_ms = now_ms + refresh_slots::RESULT_KEPT_MS;
                            vm.published_refreshes.push((lease, blank_at_ms));
                        }
                        adopt(vm, svc, &renewed, cookie_header)
                    }
                    Refreshed::KeepOld => {
                        host::log(
                            LogLevel::Warn,
                            &format!(
                                "refresh for {} failed; keeping the session for now",
                                svc.client_id
                            ),
                        );
                        refresh::release(&mut HostShared, &lease);
                        keep_old(vm, svc, &session, cookie_header)
                    }
                    Refreshed::Ended(why) => {
                        match refresh::renewed_elsewhere(&HostShared, &lease, svc, now_ms) {
                            // Another worker refreshed this session first; its result stands.
                            Some(renewed) => adopt(vm, svc, &renewed, cookie_header),
                            None => {
                                // The user's name is personal data: the session id says enough.
                                let sid: String = session.sid.chars().take(8).collect();
                                host::log(
                                    LogLevel::Debug,
                                    &format!("session {sid}… of {} ended: {why}", svc.client_id),
                                );
                                refresh::publish_ended(&mut HostShared, &lease, now_ms);
                                answer(
                                    svc,
                                    flow::session_ended(
                                        svc,
                                        cookie_header.as_deref(),
                                        &path,
                                        browser,
                                    ),
                                )
                            }
                        }
                    }
                };
            if matches!(action, Action::Continue) {
                host::resume_request();
            }
            phase
        }
        other => other,
    }
}
