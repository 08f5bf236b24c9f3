//! Carries out the login flow's steps for one request: local answers, token-endpoint
//! callouts, and one refresh per session across all workers (coordinated in shared data).

use std::rc::Rc;

use proxy_wasm::types::{Action, LogLevel};

use super::host::{self, HostRandom};
use super::vm::Vm;
use crate::core::authn::Verdict;
use crate::core::key_fetch::request_line;
use crate::core::login::cookies;
use crate::core::login::flow::{self, Endpoints, Forwarding, Refreshed, Step};
use crate::core::login::oidc::{self, PendingLogin, TokenRequest};
use crate::core::login::reply;
use crate::core::login::request_kind::{is_browser_navigation, RequestHints};
use crate::core::login::session::{self, Session};
use crate::core::login::settings::LoginService;
use crate::core::random::Random;

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
        lease_key: String,
        cookie_header: Option<String>,
        return_to: String,
        browser: bool,
    },
    /// Forwarded upstream; these cookies go on the response.
    Forwarded {
        set_cookies: Vec<String>,
    },
}

/// Refresh coordination values in shared data, under one key per session generation.
const REFRESH_DONE: &str = "done:";
const REFRESH_ENDED: &str = "ended";
const REFRESH_LEASE: &str = "lease:";
/// How long a published refresh result stays readable for requests still carrying the old
/// cookie; afterwards its value is blanked (shared data cannot delete keys).
const REFRESH_RESULT_KEPT_MS: u64 = 10 * 60 * 1000;

fn refresh_key(service: &LoginService, session: &Session) -> String {
    format!(
        "wasm-iap/refresh/{}/{}/{}",
        service.client_id, session.sid, session.refresh_at
    )
}

/// A request header's value; names from the host are lower case already.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decides and carries out the login flow for a request; `may_wait` lets a browser wait
/// for the IdP's endpoints (the caller then parks it; see `Phase::AwaitingEndpoints`).
pub fn on_request(
    vm: &mut Vm,
    index: usize,
    headers: &[(String, String)],
    may_wait: bool,
) -> (Phase, Action) {
    let header = |name: &str| header(headers, name);
    let settings = vm.authn.settings_rc();
    let Some(service) = settings.login.get(index) else {
        return (Phase::Bearer, Action::Continue);
    };
    let request = flow::Request {
        method: header(":method").unwrap_or("GET"),
        scheme: header("x-forwarded-proto")
            .or_else(|| header(":scheme"))
            .unwrap_or("https"),
        authority: header(":authority").unwrap_or_default(),
        path: header(":path").unwrap_or("/"),
        cookie_header: header("cookie"),
        has_authorization: header("authorization").is_some(),
        hints: RequestHints {
            method: header(":method").unwrap_or("GET"),
            accept: header("accept"),
            sec_fetch_mode: header("sec-fetch-mode"),
            x_requested_with: header("x-requested-with"),
        },
        may_wait,
    };
    let endpoints = Endpoints::resolve(service, vm.authn.discovery(service.provider));
    let now_secs = host::now_ms() / 1000;
    let mut random = HostRandom::default();
    let step = flow::decide(service, &request, endpoints.as_ref(), now_secs, &mut random);
    if random.failed {
        host::log(
            LogLevel::Critical,
            "no randomness from the host: refusing to start a login",
        );
        host::send_reply(&reply::page(
            500,
            "Sign-in unavailable",
            "No randomness available.",
            vec![],
        ));
        return (Phase::Answered, Action::Pause);
    }
    let cookie_header = request.cookie_header.map(str::to_string);
    match step {
        Step::Bearer => (Phase::Bearer, Action::Continue),
        Step::AwaitEndpoints => (
            Phase::AwaitingEndpoints {
                provider: service.provider,
            },
            Action::Pause,
        ),
        Step::Respond(reply) => {
            host::send_reply(&reply);
            (Phase::Answered, Action::Pause)
        }
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
            None => answer_unreachable(),
        },
        Step::Refresh {
            session,
            request: token_request,
        } => {
            let browser = is_browser_navigation(&request.hints);
            refresh(
                vm,
                index,
                service,
                session,
                token_request,
                cookie_header,
                request.path.to_string(),
                browser,
            )
        }
    }
}

fn forward(vm: &Vm, forwarding: Forwarding) -> (Phase, Action) {
    vm.carry_out(&Verdict::Allow(Rc::new(forwarding.identity)));
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

fn answer_unreachable() -> (Phase, Action) {
    host::send_reply(&reply::page(
        502,
        "Sign-in failed",
        "The identity provider's token endpoint cannot be reached.",
        vec![],
    ));
    (Phase::Answered, Action::Pause)
}

/// One refresh per session generation across all workers: the first request takes a lease
/// and refreshes; the others go on with the still-valid old session meanwhile, and later
/// ones carrying the old cookie pick up the published result instead of refreshing again.
#[allow(clippy::too_many_arguments)]
fn refresh(
    vm: &Vm,
    index: usize,
    service: &LoginService,
    session: Session,
    request: TokenRequest,
    cookie_header: Option<String>,
    return_to: String,
    browser: bool,
) -> (Phase, Action) {
    let key = refresh_key(service, &session);
    let now_ms = host::now_ms();
    let (value, cas) = host::shared_data(&key);
    let value = value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    if let Some(renewed) = renewed_elsewhere(service, &key) {
        return adopt(vm, service, &renewed, cookie_header);
    }
    if value == REFRESH_ENDED {
        return ended(service, cookie_header.as_deref(), &return_to, browser);
    }
    let lease_held = value
        .strip_prefix(REFRESH_LEASE)
        .and_then(|rest| rest.split(':').next())
        .and_then(|d| d.parse::<u64>().ok())
        .is_some_and(|deadline| now_ms < deadline);
    // Shared data cannot create a key only if absent, so a new lease is ours only if it
    // reads back as written (another worker writing at the same moment wins instead).
    let marker = HostRandom::default().token(12);
    let lease = format!(
        "{REFRESH_LEASE}{}:{marker}",
        now_ms + 2 * service.timeout_ms + 1000
    );
    let ours = !lease_held
        && host::set_shared_data(&key, lease.as_bytes(), cas)
        && host::shared_data(&key).0.as_deref() == Some(lease.as_bytes());
    if !ours {
        return keep_old(vm, service, &session, cookie_header);
    }
    match call_token_endpoint(service, &request) {
        Some(token) => (
            Phase::Refreshing {
                token,
                service: index,
                session,
                lease_key: key,
                cookie_header,
                return_to,
                browser,
            },
            Action::Pause,
        ),
        None => {
            host::set_shared_data(&key, b"", None);
            keep_old(vm, service, &session, cookie_header)
        }
    }
}

/// The session another worker published after refreshing, if any.
fn renewed_elsewhere(service: &LoginService, key: &str) -> Option<Session> {
    let value = host::shared_data(key).0?;
    let sealed = std::str::from_utf8(&value)
        .ok()?
        .strip_prefix(REFRESH_DONE)?;
    let plain = service.sealer.open("session", sealed)?;
    serde_json::from_slice(&plain).ok()
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
        &mut HostRandom::default(),
    )
    .unwrap_or_default();
    forward(
        vm,
        flow::forward(service, cookie_header.as_deref(), renewed, set_cookies),
    )
}

/// The IdP refused the refresh: the session is over. Browsers are sent back to the page
/// (with the session cleared, so they log in); others get 401.
fn ended(
    service: &LoginService,
    cookie_header: Option<&str>,
    return_to: &str,
    browser: bool,
) -> (Phase, Action) {
    let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
    let clear = session::clear_except(&request_cookies, &service.cookie_name, &service.cookie, &[]);
    let answer = if browser {
        reply::redirect(return_to, clear)
    } else {
        reply::refused(&crate::core::error::AuthError::MissingToken, clear)
    };
    host::send_reply(&answer);
    (Phase::Answered, Action::Pause)
}

pub fn on_token_response(
    vm: &mut Vm,
    phase: Phase,
    token_id: u32,
    status: Option<u32>,
    body: &[u8],
) -> Phase {
    let settings = vm.authn.settings_rc();
    let now_ms = host::now_ms();
    let tokens = oidc::read_tokens(status, body);
    let (Phase::Exchanging { token, service, .. } | Phase::Refreshing { token, service, .. }) =
        &phase
    else {
        return phase;
    };
    let Some(svc) = settings.login.get(*service).filter(|_| *token == token_id) else {
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
            if let Err(e) = &tokens {
                host::log(
                    LogLevel::Warn,
                    &format!("code exchange for {} failed: {e:?}", svc.client_id),
                );
            }
            let request_cookies = cookie_header
                .as_deref()
                .map(cookies::parse)
                .unwrap_or_default();
            let answer = flow::finish_login(
                svc,
                &pending,
                tokens,
                &verify,
                &request_cookies,
                now_ms / 1000,
                &mut HostRandom::default(),
            );
            if answer.status != 302 {
                host::log(
                    LogLevel::Warn,
                    &format!("login for {} failed with {}", svc.client_id, answer.status),
                );
            }
            host::send_reply(&answer);
            Phase::Answered
        }
        Phase::Refreshing {
            session,
            lease_key,
            cookie_header,
            return_to,
            browser,
            ..
        } => {
            let (phase, action) =
                match flow::finish_refresh(&session, tokens, &verify, now_ms / 1000) {
                    Refreshed::Renewed(renewed) => {
                        let sealed = serde_json::to_vec(&renewed).ok().and_then(|plain| {
                            svc.sealer
                                .seal("session", &plain, &mut HostRandom::default())
                        });
                        if let Some(sealed) = sealed {
                            host::set_shared_data(
                                &lease_key,
                                format!("{REFRESH_DONE}{sealed}").as_bytes(),
                                None,
                            );
                            let blank_at_ms = now_ms + REFRESH_RESULT_KEPT_MS;
                            vm.published_refreshes
                                .push((lease_key.clone(), blank_at_ms));
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
                        host::set_shared_data(&lease_key, b"", None);
                        keep_old(vm, svc, &session, cookie_header)
                    }
                    Refreshed::Ended(why) => match renewed_elsewhere(svc, &lease_key) {
                        // Another worker refreshed this session first; its result stands.
                        Some(renewed) => adopt(vm, svc, &renewed, cookie_header),
                        None => {
                            host::log(
                                LogLevel::Info,
                                &format!("session of {} ended: {why}", session.user),
                            );
                            host::set_shared_data(&lease_key, REFRESH_ENDED.as_bytes(), None);
                            ended(svc, cookie_header.as_deref(), &return_to, browser)
                        }
                    },
                };
            if matches!(action, Action::Continue) {
                host::resume_request();
            }
            phase
        }
        other => other,
    }
}
