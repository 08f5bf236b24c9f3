//! One request: strip spoofed identity headers, then either the login flow (hosts with a
//! `login` service) or bearer validation decides, and this context carries the verdict out.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use super::host;
use super::login::{self, Phase};
use super::vm::{SharedVm, Vm, Waiting, WaitsFor};
use crate::core::bearer::authenticator::Verdict;
use crate::core::bearer::error::AuthError;
use crate::core::identity;
use crate::core::request_headers::RequestHeaders;
use crate::core::secret::Secret;

pub struct Request {
    context_id: u32,
    vm: SharedVm,
    phase: Phase,
}

impl Request {
    pub fn new(context_id: u32, vm: SharedVm) -> Self {
        Request {
            context_id,
            vm,
            phase: Phase::Deciding,
        }
    }

    fn bearer(&self, vm: &mut Vm, headers: &RequestHeaders) -> Action {
        let now_ms = host::now_ms();
        let authorization = match headers.get("authorization") {
            None => None,
            Some(value) => match std::str::from_utf8(value) {
                Ok(text) => Some(text),
                Err(_) => {
                    vm.carry_out(&Verdict::Deny(AuthError::HeaderNotText));
                    return Action::Pause;
                }
            },
        };
        match vm.authn.authenticate(authorization, now_ms, false) {
            Verdict::AwaitKeys {
                provider,
                refetch,
                reason,
            } => {
                let mut request = Waiting {
                    context_id: self.context_id,
                    provider,
                    deadline_ms: now_ms + vm.authn.settings().keys_wait_timeout_ms,
                    waits_for: WaitsFor::Keys {
                        authorization: authorization.map(Secret::new),
                        kid_refetched: false,
                    },
                };
                vm.await_keys(provider, refetch, reason, &mut request);
                vm.waiting.push(request);
                Action::Pause
            }
            verdict if vm.carry_out(&verdict) => Action::Continue,
            _ => Action::Pause,
        }
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let response = host::call_response(body_size);
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return;
        };
        let Some(vm) = slot.as_mut() else { return };
        let phase = std::mem::replace(&mut self.phase, Phase::Deciding);
        self.phase = login::on_token_response(
            vm,
            self.context_id,
            phase,
            token_id,
            response.status,
            &response.body,
        );
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut slot) = self.vm.try_borrow_mut() {
            if let Some(vm) = slot.as_mut() {
                vm.forget(self.context_id);
            }
        }
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "crash-probe")]
        super::crash_probe::maybe_crash();
        let headers = host::request_headers();
        let Ok(mut slot) = self.vm.try_borrow_mut() else {
            return fail_closed("VM state busy");
        };
        let Some(vm) = slot.as_mut() else {
            return fail_closed("not configured");
        };
        let settings = vm.authn.settings_rc();
        for spoofed in identity::spoofed(headers.iter().map(|(n, _)| n), &settings.stripped_headers)
        {
            host::remove_request_header(spoofed);
        }
        let authority = headers.lossy(":authority").unwrap_or_default();
        if let Some(service) = settings.login.iter().position(|s| s.serves(&authority)) {
            let (phase, action) = login::on_request(vm, service, &headers, true);
            match phase {
                Phase::Bearer => {}
                Phase::AwaitingEndpoints { provider } => {
                    let now_ms = host::now_ms();
                    let deadline_ms = now_ms + vm.authn.settings().keys_wait_timeout_ms;
                    // Rate-limited like bearer refetches: browsers must not hammer an IdP
                    // that is down (the root retries with backoff anyway).
                    vm.ask_for_keys(provider, now_ms);
                    let waits_for = WaitsFor::Endpoints { service };
                    vm.waiting.push(Waiting {
                        context_id: self.context_id,
                        provider,
                        deadline_ms,
                        waits_for,
                    });
                    return action;
                }
                phase => {
                    self.phase = phase;
                    return action;
                }
            }
        }
        self.bearer(vm, &headers)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let deferred = match &self.phase {
            Phase::AwaitingIdTokenKeys => self
                .vm
                .try_borrow_mut()
                .ok()
                .and_then(|mut slot| {
                    slot.as_mut()
                        .map(|vm| vm.take_deferred_cookies(self.context_id))
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let set_cookies = match &self.phase {
            Phase::Forwarded { set_cookies } => set_cookies.as_slice(),
            _ => deferred.as_slice(),
        };
        for cookie in set_cookies {
            host::add_response_header("set-cookie", cookie);
        }
        Action::Continue
    }
}

/// Should never happen; if it does, nobody passes unchecked.
fn fail_closed(why: &str) -> Action {
    host::log(LogLevel::Error, &format!("refusing request: {why}"));
    host::send_reply(AuthError::KeysUnavailable.reply(Vec::new()));
    Action::Pause
}
