//! What one VM (one worker thread) holds, shared by its root context and its HTTP contexts.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::types::LogLevel;

use super::host::{self, HostShared};
use super::login;
use crate::core::bearer::authenticator::{Authenticator, Verdict, WaitReason};
use crate::core::bearer::error::AuthError;
use crate::core::config::Settings;
use crate::core::login::oidc::{TokenError, Tokens};
use crate::core::login::refresh::{self, Lease};
use crate::core::secret::Secret;

/// A request paused until its issuer's keys (or discovered endpoints) arrive.
pub struct Waiting {
    pub context_id: u32,
    pub provider: usize,
    pub deadline_ms: u64,
    pub waits_for: WaitsFor,
}

pub enum WaitsFor {
    /// A bearer token's verdict.
    Keys {
        authorization: Option<Secret>,
        /// Set once a refetch for the token's unknown `kid` was asked for: the next verdict
        /// is final.
        kid_refetched: bool,
    },
    /// A browser to be sent to log in at login service `service`.
    Endpoints { service: usize },
    /// A login or refresh whose ID token names a key not fetched yet.
    IdTokenKeys {
        phase: Box<login::Phase>,
        tokens: Result<Tokens, TokenError>,
        /// Whether a fetch was asked for; until then the root asks once the rate limit allows.
        fetch_asked: bool,
    },
}

pub struct Vm {
    pub authn: Authenticator,
    pub waiting: Vec<Waiting>,
    /// Providers whose keys a request asked to fetch now; the root starts it on its next tick.
    pub fetch_wanted: Vec<bool>,
    /// Refresh results this VM published in shared data, and when to blank them.
    pub published_refreshes: Vec<(Lease, u64)>,
    /// Cookies for the responses of requests the root finished (after waiting for keys).
    pub deferred_cookies: Vec<(u32, Vec<String>)>,
}

pub type SharedVm = Rc<RefCell<Option<Vm>>>;

impl Vm {
    pub fn new(settings: Rc<Settings>) -> Vm {
        let providers = settings.providers.len();
        Vm {
            authn: Authenticator::new(settings),
            waiting: Vec::new(),
            fetch_wanted: vec![false; providers],
            published_refreshes: Vec::new(),
            deferred_cookies: Vec::new(),
        }
    }

    /// Carries out a verdict on the current (or effective) request. Returns whether the
    /// request may go on; `AwaitKeys` is the caller's to handle and is refused here.
    pub fn carry_out(&self, verdict: &Verdict) -> bool {
        match verdict {
            Verdict::Allow(identity) => {
                let settings = self.authn.settings();
                for (name, value) in identity.headers(&settings.identity_headers) {
                    host::set_request_header(name, value);
                }
                if !settings.forward_authorization {
                    host::remove_request_header("authorization");
                }
                true
            }
            Verdict::Deny(error) => {
                refuse(error);
                false
            }
            Verdict::AwaitKeys { .. } => {
                refuse(&AuthError::KeysUnavailable);
                false
            }
        }
    }

    /// Re-decides paused requests of `provider` after its keys changed, or any whose wait
    /// ran out; the rest keep waiting. Host calls act on `root_context_id` again afterwards.
    pub fn settle_waiting(&mut self, provider: Option<usize>, now_ms: u64, root_context_id: u32) {
        let waiting = std::mem::take(&mut self.waiting);
        for mut request in waiting {
            let keys_changed = provider == Some(request.provider);
            let timed_out = now_ms >= request.deadline_ms;
            if let WaitsFor::IdTokenKeys {
                fetch_asked: asked @ false,
                ..
            } = &mut request.waits_for
            {
                *asked = self.ask_for_keys(request.provider, now_ms);
            }
            if !keys_changed && !timed_out {
                self.waiting.push(request);
                continue;
            }
            let verdict = match request.waits_for {
                WaitsFor::IdTokenKeys { phase, tokens, .. } => {
                    if host::switch_to(request.context_id) {
                        let phase = login::finish_token_response(self, *phase, tokens);
                        if let login::Phase::Forwarded { set_cookies } = phase {
                            self.deferred_cookies
                                .push((request.context_id, set_cookies));
                        }
                        host::switch_to(root_context_id);
                    }
                    continue;
                }
                WaitsFor::Endpoints { service } => {
                    if !timed_out && self.authn.discovery(request.provider).is_none() {
                        self.waiting.push(request);
                    } else if host::switch_to(request.context_id) {
                        let headers = host::request_headers();
                        // Parked requests have no session: deciding again yields a local
                        // answer (a redirect, or 503). Anything else cannot be carried out
                        // from here, so it is refused rather than left hanging.
                        if !matches!(
                            login::on_request(self, service, &headers, false).0,
                            login::Phase::Answered
                        ) {
                            refuse(&AuthError::KeysUnavailable);
                        }
                        host::switch_to(root_context_id);
                    }
                    continue;
                }
                WaitsFor::Keys {
                    ref authorization,
                    kid_refetched,
                } => {
                    let authorization = authorization.as_ref().map(Secret::expose);
                    self.authn
                        .authenticate(authorization, now_ms, kid_refetched)
                }
            };
            if let Verdict::AwaitKeys {
                provider,
                refetch,
                reason,
            } = verdict
            {
                if !timed_out {
                    self.await_keys(provider, refetch, reason, &mut request);
                    self.waiting.push(request);
                    continue;
                }
            }
            if !host::switch_to(request.context_id) {
                continue; // the client went away
            }
            if self.carry_out(&verdict) {
                host::resume_request();
            }
            host::switch_to(root_context_id);
        }
    }

    /// Asks the root for a fetch of `provider`'s keys when the rate limit allows it now;
    /// returns whether it asked.
    pub fn ask_for_keys(&mut self, provider: usize, now_ms: u64) -> bool {
        if !self.authn.may_refetch(provider, now_ms) {
            return false;
        }
        if let Some(wanted) = self.fetch_wanted.get_mut(provider) {
            *wanted = true;
        }
        true
    }

    /// Records what a waiting request waits for, and asks the root for a fetch when allowed.
    pub fn await_keys(
        &mut self,
        provider: usize,
        refetch: bool,
        reason: WaitReason,
        request: &mut Waiting,
    ) {
        if refetch {
            if let Some(wanted) = self.fetch_wanted.get_mut(provider) {
                *wanted = true;
            }
        }
        if let (WaitReason::UnknownKid, WaitsFor::Keys { kid_refetched, .. }) =
            (reason, &mut request.waits_for)
        {
            *kid_refetched = true;
        }
    }

    /// Blanks refresh results whose grace period is over, so that sessions refreshing over
    /// months do not pile up sealed copies in shared memory.
    /// Blanks refresh results whose grace period is over (`refresh::forget` leaves a slot
    /// another session took over since).
    pub fn blank_old_refresh_results(&mut self, now_ms: u64) {
        self.published_refreshes.retain(|(lease, blank_at_ms)| {
            if now_ms < *blank_at_ms {
                return true;
            }
            refresh::forget(&mut HostShared, lease);
            false
        });
    }

    /// Cookies the root decided for this request's response, if any.
    pub fn take_deferred_cookies(&mut self, context_id: u32) -> Vec<String> {
        match self
            .deferred_cookies
            .iter()
            .position(|(id, _)| *id == context_id)
        {
            Some(at) => self.deferred_cookies.swap_remove(at).1,
            None => Vec::new(),
        }
    }

    pub fn forget(&mut self, context_id: u32) {
        self.waiting.retain(|w| w.context_id != context_id);
        self.deferred_cookies.retain(|(id, _)| *id != context_id);
    }
}

/// Refusals of bad tokens are routine (debug); running out of keys is an outage (warn).
fn refuse(error: &AuthError) {
    let answer = error.reply(Vec::new());
    let level = if answer.status >= 500 {
        LogLevel::Warn
    } else {
        LogLevel::Debug
    };
    host::log(level, &format!("refused with {}: {error}", answer.status));
    host::send_reply(answer);
}
