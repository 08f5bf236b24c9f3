//! One request's context: calls the worker's door for each callback, and carries out what
//! it says.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use super::apply;
use super::host::{self, ProxyHost};
use crate::core::bearer::error::AuthError;
use crate::core::gateway::RequestBody;
use crate::core::worker::{Act, Worker, KEPT_FROM_UPSTREAM};

/// What one VM (one worker thread) decides with, shared by its root and HTTP contexts.
pub(crate) type SharedWorker = Rc<RefCell<Option<Worker>>>;

pub(crate) struct Request {
    context_id: u32,
    worker: SharedWorker,
    /// While the core waits for the body: the most bytes it takes.
    body_wanted: Option<usize>,
}

impl Request {
    pub(crate) fn new(context_id: u32, worker: SharedWorker) -> Self {
        Request {
            context_id,
            worker,
            body_wanted: None,
        }
    }

    /// Hands the body to the worker's door, and carries out what it says.
    fn body_read(&mut self, body: RequestBody) -> Action {
        self.body_wanted = None;
        let act = match self.worker.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(worker) => worker.on_request_body(&mut ProxyHost, self.context_id, body),
                None => return fail_closed("not configured"),
            },
            Err(_) => return fail_closed("VM state busy"),
        };
        apply::carry_out(act)
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
        let answer = host::call_response(body_size);
        let response = answer.as_core();
        let mut slot = self.worker.try_borrow_mut().ok();
        let decided = match slot.as_mut().and_then(|slot| slot.as_mut()) {
            Some(worker) => worker.on_callout_response(
                &mut ProxyHost,
                Some(self.context_id),
                token_id,
                &response,
            ),
            None => vec![(
                self.context_id,
                Act::Respond(AuthError::KeysUnavailable.reply(Vec::new())),
            )],
        };
        drop(slot);
        for (context_id, act) in decided {
            if context_id == self.context_id {
                apply::carry_out_paused(act);
            }
        }
    }

    fn on_done(&mut self) -> bool {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        if let Ok(mut slot) = self.worker.try_borrow_mut() {
            if let Some(worker) = slot.as_mut() {
                worker.on_done(self.context_id);
            }
        }
        #[cfg(feature = "host-call-count")]
        super::host_calls::report(self.context_id, "host calls");
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        #[cfg(feature = "crash-probe")]
        super::crash_probe::maybe_crash();
        let headers = host::request_headers();
        let arrival = match self.worker.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(worker) => {
                    worker.on_request_headers(&mut ProxyHost, self.context_id, &headers)
                }
                None => return fail_closed("not configured"),
            },
            Err(_) => return fail_closed("VM state busy"),
        };
        for name in &arrival.strip {
            host::remove_request_header(name);
        }
        match arrival.act {
            // No body follows: the door gets an empty one now.
            Act::ReadBody(_) if end_of_stream => self.body_read(RequestBody::Whole(&[])),
            // A host gives no body to a filter that paused the headers (Envoy turns the
            // pause into a stop of everything), so the headers go on and the body is held
            // here: the upstream sees headers whose body never comes (the answer given here
            // resets it). A body sent with its headers is read before any upstream answers.
            Act::ReadBody(max_bytes) => {
                for name in KEPT_FROM_UPSTREAM {
                    host::remove_request_header(name);
                }
                self.body_wanted = Some(max_bytes);
                Action::Continue
            }
            act => apply::carry_out_sent(act, &headers),
        }
    }

    /// Buffers the body the core asked for until it is whole (or too large), then hands
    /// it over; any other request's body just passes.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        let Some(max_bytes) = self.body_wanted else {
            return Action::Continue;
        };
        if body_size > max_bytes {
            return self.body_read(RequestBody::TooLarge);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::request_body(body_size);
        self.body_read(RequestBody::Whole(&body))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        if self.body_wanted.is_some() {
            // The upstream answered before the body was whole (Envoy then hands no more of
            // it to filters): its answer is replaced by ours.
            return self.body_read(RequestBody::Overtaken);
        }
        let cookies = match self.worker.try_borrow_mut() {
            Ok(mut slot) => slot
                .as_mut()
                .map(|worker| worker.on_response_headers(self.context_id))
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
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
