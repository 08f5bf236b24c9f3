//! One request: strip spoofed identity headers, ask the core for a verdict, carry it out.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use super::host;
use super::vm::{SharedVm, Waiting};
use crate::core::authn::Verdict;
use crate::core::error::AuthError;
use crate::core::identity;
use crate::core::secret::Secret;

pub struct Request {
    context_id: u32,
    vm: SharedVm,
}

impl Request {
    pub fn new(context_id: u32, vm: SharedVm) -> Self {
        Request { context_id, vm }
    }
}

impl Context for Request {
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
        let headers = self.get_http_request_headers();
        let mut slot = match self.vm.try_borrow_mut() {
            Ok(slot) => slot,
            Err(_) => return fail_closed("VM state busy"),
        };
        let Some(vm) = slot.as_mut() else {
            return fail_closed("not configured");
        };
        let names = &vm.authn.settings().identity_headers;
        for spoofed in identity::spoofed(headers.iter().map(|(n, _)| n.as_str()), names) {
            host::remove_request_header(spoofed);
        }
        let authorization = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str());
        let now_ms = host::now_ms();
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
                    authorization: authorization.map(Secret::new),
                    kid_refetched: false,
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

/// Should never happen; if it does, nobody passes unchecked.
fn fail_closed(why: &str) -> Action {
    host::log(LogLevel::Error, &format!("refusing request: {why}"));
    host::reject(&AuthError::KeysUnavailable.rejection());
    Action::Pause
}
