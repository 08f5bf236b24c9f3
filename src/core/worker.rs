//! One VM's (one worker thread's) core, with one door per proxy-wasm callback: a request's
//! headers, its body (when a decision asked for it), a callout's answer, the tick, a
//! response's headers, and a request's end. The
//! adapter only calls a door and carries out the `Act`s it returns; what a request keeps
//! between callbacks lives in the gateway's one table of requests under way.

use std::rc::Rc;

use crate::core::config::Settings;
use crate::core::forward::Forward;
use crate::core::gateway::{Decision, Gateway, RequestBody};
use crate::core::host::Host;
use crate::core::keys::fetch::CalloutResponse;
use crate::core::keys::fetcher::KeyFetcher;
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;

/// What the adapter does with a request.
#[derive(Debug)]
pub(crate) enum Act {
    /// Let it go upstream with these edits (resumed, when it was paused).
    Forward(Forward),
    /// Answer it here.
    Respond(Reply),
    /// Keep it paused: it waits for keys, endpoints or a token call.
    Pause,
    /// Read its body (up to this many bytes) and hand it to `on_request_body`, whose
    /// answer is the one the client gets.
    ReadBody(usize),
}

/// What the upstream must not get of a request whose body the filter reads: its headers go
/// on before the body is read (a Proxy-Wasm host gives no body to a filter that paused the
/// headers), so the credentials the client sent with them are taken off first.
pub(crate) const KEPT_FROM_UPSTREAM: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The first decision on a request: the client-sent headers to remove whatever it is, and
/// what to do with it.
#[derive(Debug)]
pub(crate) struct Arrival<'a> {
    pub(crate) strip: Vec<&'a str>,
    pub(crate) act: Act,
}

pub(crate) struct Worker {
    pub(crate) gateway: Gateway,
    fetcher: KeyFetcher,
}

impl Worker {
    /// A worker for `settings`; writes what every worker expects in shared data first.
    pub(crate) fn new(host: &mut dyn Host, settings: Rc<Settings>) -> Worker {
        let mut gateway = Gateway::new(Rc::clone(&settings));
        gateway.prepare(host);
        Worker {
            gateway,
            fetcher: KeyFetcher::new(settings),
        }
    }

    /// Door: a request's headers arrived.
    pub(crate) fn on_request_headers<'a>(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &'a RequestHeaders,
    ) -> Arrival<'a> {
        let outcome = self.gateway.decide(host, context_id, headers);
        Arrival {
            strip: outcome.strip,
            act: self.hold(context_id, outcome.decision),
        }
    }

    /// Door: the body a `ReadBody` asked for (or why it cannot be had).
    pub(crate) fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        body: RequestBody,
    ) -> Act {
        let decision = self.gateway.on_request_body(host, context_id, body);
        self.hold(context_id, decision)
    }

    /// Door: a callout answered, in the root's context (`None`: key fetches and token calls
    /// the root sent) or in a request's own.
    pub(crate) fn on_callout_response(
        &mut self,
        host: &mut dyn Host,
        context_id: Option<u32>,
        token: u32,
        response: &CalloutResponse,
    ) -> Vec<(u32, Act)> {
        let decided = match context_id {
            Some(context_id) => self.own_call_answered(host, context_id, token, response),
            None => match self
                .fetcher
                .on_response(host, &mut self.gateway, token, response)
            {
                Some(changed) => self.gateway.keys_changed(host, &changed),
                None => {
                    let (status, body) = (response.status, response.body);
                    let settled = self
                        .gateway
                        .on_settled_call_response(host, token, status, body);
                    settled.into_iter().collect()
                }
            },
        };
        self.hold_all(decided)
    }

    /// Door: the tick. Takes in keys other workers fetched, starts fetches that are due,
    /// reports counters, takes in sessions other workers revoked, and decides again the
    /// requests whose wait is over.
    pub(crate) fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u32, Act)> {
        let changed = self.fetcher.take_in(host, &mut self.gateway);
        let mut decided = self.gateway.keys_changed(host, &changed);
        let changed = self.fetcher.start_fetches(host, &mut self.gateway);
        decided.extend(self.gateway.keys_changed(host, &changed));
        self.gateway.tick(host);
        self.gateway.sync_revocations(host);
        decided.extend(self.gateway.settle(host, None));
        self.hold_all(decided)
    }

    /// Door: the response's headers are on their way: the cookies to set on it.
    pub(crate) fn on_response_headers(&mut self, context_id: u32) -> Vec<String> {
        self.gateway.take_cookies(context_id)
    }

    /// Door: the request is gone. A refresh it started from the root still finishes, so its
    /// result is published for the session's other requests.
    pub(crate) fn on_done(&mut self, context_id: u32) {
        self.gateway.forget(context_id);
    }

    fn own_call_answered(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        token: u32,
        response: &CalloutResponse,
    ) -> Vec<(u32, Decision)> {
        let Some(pending) = self.gateway.take_calling(context_id) else {
            return Vec::new();
        };
        let (status, body) = (response.status, response.body);
        let decision = self
            .gateway
            .on_token_response(host, context_id, *pending, token, status, body);
        vec![(context_id, decision)]
    }

    fn hold_all(&mut self, decided: Vec<(u32, Decision)>) -> Vec<(u32, Act)> {
        decided
            .into_iter()
            .map(|(context_id, decision)| (context_id, self.hold(context_id, decision)))
            .collect()
    }

    /// Keeps what the request needs later, and says what the adapter does now.
    fn hold(&mut self, context_id: u32, decision: Decision) -> Act {
        match decision {
            Decision::Forward(mut forward) => {
                let cookies = std::mem::take(&mut forward.response_cookies);
                self.gateway.hold_cookies(context_id, cookies);
                Act::Forward(forward)
            }
            Decision::Respond(reply) => Act::Respond(reply),
            Decision::Calling(pending) => {
                self.gateway.hold_calling(context_id, pending);
                Act::Pause
            }
            Decision::Parked => Act::Pause,
            Decision::ReadBody(max_bytes) => Act::ReadBody(max_bytes),
        }
    }
}
