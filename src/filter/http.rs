//! One request's context: asks the core's gateway to decide, and carries the decision out.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use super::apply::{self, Held};
use super::host::{self, ProxyHost};
use crate::core::bearer::error::AuthError;
use crate::core::gateway::{Decision, Gateway, Pending};

/// What one VM (one worker thread) decides with, shared by its root and HTTP contexts.
pub type SharedGateway = Rc<RefCell<Option<Gateway>>>;

pub struct Request {
    context_id: u32,
    gateway: SharedGateway,
    /// A token call this request waits on.
    calling: Option<Box<Pending>>,
    response_cookies: Vec<String>,
}

impl Request {
    pub fn new(context_id: u32, gateway: SharedGateway) -> Self {
        Request {
            context_id,
            gateway,
            calling: None,
            response_cookies: Vec::new(),
        }
    }

    fn hold(&mut self, held: Held) {
        match held {
            Held::Nothing => {}
            Held::ResponseCookies(cookies) => self.response_cookies = cookies,
            Held::Calling(pending) => self.calling = Some(pending),
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
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter_answered(self.context_id);
        let Some(pending) = self.calling.take() else {
            return;
        };
        let response = host::call_response(body_size);
        let mut slot = self.gateway.try_borrow_mut().ok();
        let decision = match slot.as_mut().and_then(|slot| slot.as_mut()) {
            Some(gateway) => gateway.on_token_response(
                &mut ProxyHost,
                self.context_id,
                *pending,
                token_id,
                response.status,
                &response.body,
            ),
            None => Decision::Respond(AuthError::KeysUnavailable.reply(Vec::new())),
        };
        drop(slot);
        let held = apply::carry_out_paused(decision);
        self.hold(held);
    }

    fn on_done(&mut self) -> bool {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        if let Ok(mut slot) = self.gateway.try_borrow_mut() {
            if let Some(gateway) = slot.as_mut() {
                gateway.forget(self.context_id);
            }
        }
        #[cfg(feature = "host-call-count")]
        super::host_calls::report(self.context_id, "host calls");
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        #[cfg(feature = "crash-probe")]
        super::crash_probe::maybe_crash();
        let headers = host::request_headers();
        let outcome = match self.gateway.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(gateway) => gateway.decide(&mut ProxyHost, self.context_id, &headers),
                None => return fail_closed("not configured"),
            },
            Err(_) => return fail_closed("VM state busy"),
        };
        for name in &outcome.strip {
            host::remove_request_header(name);
        }
        let (action, held) = apply::carry_out_sent(outcome.decision, &headers);
        self.hold(held);
        action
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        let mut cookies = std::mem::take(&mut self.response_cookies);
        if let Ok(mut slot) = self.gateway.try_borrow_mut() {
            if let Some(gateway) = slot.as_mut() {
                cookies.extend(gateway.take_response_cookies(self.context_id));
            }
        }
        for cookie in &cookies {
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
