//! A token endpoint answered: a sign-in's code exchange or a refresh. An answer whose ID
//! token names a key this worker lacks waits for the keys first.

use std::rc::Rc;

use super::parked::{Parked, WaitsFor};
use super::session::logged;
use super::session_refresh::{no_service, RefreshAnswer};
use super::stored_sessions::SignedIn;
use super::{Decision, Ended, Fleet, Gateway, Judged, Pending, Waiting, Way};
use crate::core::cluster::etcd_answer;
use crate::core::config::login::{LoginService, SessionStore};
use crate::core::config::ServiceId;
use crate::core::cookies;
use crate::core::host::{Host, Metric};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::login::oidc::PendingLogin;
use crate::core::login::oidc::{self, TokenError, Tokens};
use crate::core::login::refresh;
use crate::core::login::sign_in;

impl Gateway {
    /// The token endpoint answered the call `pending` is waiting on, in the request's own
    /// context. When its ID token is signed with a key this worker lacks, the request is
    /// parked until the keys arrive.
    pub fn on_token_response(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        pending: Pending,
        token_id: u32,
        status: Option<u32>,
        body: &[u8],
    ) -> Decision {
        if pending.token() != Some(token_id) {
            return Decision::Calling(Box::new(pending));
        }
        if let Pending::Stored {
            service,
            judged,
            wait,
            retry,
            ..
        } = pending
        {
            let response = CalloutResponse {
                status,
                cache_control: None,
                body,
            };
            if let (true, Some(call)) = (etcd_answer::unanswered(&response), retry) {
                // A member that is down: Envoy's balancer sends the second try elsewhere.
                let token = self
                    .store
                    .as_mut()
                    .and_then(|store| store.send(host, &call));
                if let Some(token) = token {
                    let again = Pending::Stored {
                        token,
                        service,
                        judged,
                        wait,
                        retry: None,
                    };
                    return Decision::Calling(Box::new(again));
                }
            }
            return self.on_stored_answer(host, context_id, service, judged, wait, &response);
        }
        self.token_answered(host, context_id, pending, status, body, None)
    }

    /// An answer to a token call sent from the root (a refresh, or a call made while
    /// settling): the request it belongs to and what to do with it.
    pub fn on_settled_call_response(
        &mut self,
        host: &mut dyn Host,
        token_id: u32,
        status: Option<u32>,
        body: &[u8],
    ) -> Option<(u32, Decision)> {
        let decided = self.root_call_answered(host, token_id, status, body);
        // In the root's context: the store writes it queued (a refresh's outcome) go now.
        if let Some(store) = self.store.as_mut() {
            store.flush(host);
        }
        decided
    }

    fn root_call_answered(
        &mut self,
        host: &mut dyn Host,
        token_id: u32,
        status: Option<u32>,
        body: &[u8],
    ) -> Option<(u32, Decision)> {
        let response = CalloutResponse {
            status,
            cache_control: None,
            body,
        };
        if self.store_answered(host, token_id, &response) {
            return None;
        }
        let (context_id, pending) = self.in_flight.take_root_call(token_id)?;
        if matches!(
            *pending,
            Pending::Refresh {
                fleet: Fleet::Locking { .. },
                ..
            }
        ) {
            let decision = self.lock_answered(host, context_id, pending, &response)?;
            return Some((context_id, decision));
        }
        let settled = Some(context_id);
        let decision = self.token_answered(host, context_id, *pending, status, body, settled);
        Some((context_id, decision))
    }

    fn token_answered(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        pending: Pending,
        status: Option<u32>,
        body: &[u8],
        settled: Option<u32>,
    ) -> Decision {
        let tokens = oidc::read_tokens(status, body);
        let provider =
            (self.settings.login.get(pending.service().0)).map(|s| s.idp(pending.idp()).provider);
        let id_token = tokens.as_ref().ok().and_then(|t| t.id_token.as_ref());
        let (Some(provider), Some(id_token)) = (provider, id_token) else {
            return self.finish(host, pending, tokens, settled);
        };
        if !self.authn.id_token_awaits_keys(provider, id_token.expose()) {
            return self.finish(host, pending, tokens, settled);
        }
        let now_ms = host.now_ms();
        // The fetch is asked for now, or (rate limit) by `settle` once it may be.
        let fetch_asked = self.ask_for_keys(provider, now_ms);
        let wait_ms =
            self.settings.keys_wait_timeout_ms + self.settings.min_refetch_interval_ms(provider);
        if let Pending::Refresh {
            lease,
            service,
            session,
            ..
        } = &pending
        {
            // Nobody else may spend the refresh token while this one waits.
            let timeout_ms =
                (self.settings.login.get(service.0)).map_or(0, |s| s.idp(session.idp).timeout_ms);
            refresh::extend(host, lease, now_ms + wait_ms + timeout_ms);
        }
        let parked = Parked {
            context_id,
            provider,
            deadline_ms: now_ms + wait_ms,
            waits_for: WaitsFor::IdTokenKeys {
                pending: Box::new(pending),
                tokens,
                fetch_asked,
                since_ms: now_ms,
            },
        };
        self.in_flight
            .wait(context_id, Waiting::Parked(Box::new(parked)));
        Decision::Parked
    }

    /// Finishes a sign-in or a refresh with the token endpoint's answer, and leaves
    /// through the exit.
    pub(super) fn finish(
        &mut self,
        host: &mut dyn Host,
        pending: Pending,
        tokens: Result<Tokens, TokenError>,
        settled: Option<u32>,
    ) -> Decision {
        let way = Way::of(pending.judged(), settled);
        let ended = self.finish_call(host, pending, tokens);
        self.exit(host, &way, ended)
    }

    /// The code exchange answered: the session goes into the cookie, or (cluster store) is
    /// written first.
    #[allow(clippy::too_many_arguments)]
    fn finish_sign_in(
        &mut self,
        host: &mut dyn Host,
        service_id: ServiceId,
        service: &LoginService,
        login: &PendingLogin,
        tokens: Result<Tokens, TokenError>,
        cookie_header: Option<String>,
        judged: &Judged,
    ) -> Ended {
        let now_ms = host.now_ms();
        let authn = &self.authn;
        let verify = |id_token: &str, nonce: Option<&str>| {
            let idp = service.idp(login.idp);
            authn.verify_id_token(idp.provider, id_token, &idp.client_id, nonce, now_ms)
        };
        let now_secs = now_ms / 1000;
        let place = judged.gate.place();
        if service.session_store != SessionStore::Cookie {
            let finished =
                sign_in::finish_login_stored(service, login, tokens, &verify, now_secs, host);
            return match finished {
                Ok((session, (target, other_cookies))) => {
                    let signed_in = SignedIn {
                        session,
                        target,
                        other_cookies,
                        cookie_header,
                    };
                    self.save_session(host, (service_id, service), signed_in, judged)
                        .unwrap_or_else(no_service)
                }
                Err(reply) => logged(host, service, &place, reply),
            };
        }
        let request_cookies = cookie_header
            .as_deref()
            .map(cookies::parse)
            .unwrap_or_default();
        let reply = sign_in::finish_login(
            service,
            login,
            tokens,
            &verify,
            &request_cookies,
            now_secs,
            host,
        );
        if reply.status == 302 {
            host.count(Metric::SignedIn);
        }
        logged(host, service, &place, reply)
    }

    fn finish_call(
        &mut self,
        host: &mut dyn Host,
        pending: Pending,
        tokens: Result<Tokens, TokenError>,
    ) -> Ended {
        let settings = Rc::clone(&self.settings);
        let Some(service) = settings.login.get(pending.service().0) else {
            return no_service();
        };
        match pending {
            Pending::Exchange {
                login,
                cookie_header,
                judged,
                service: service_id,
                ..
            } => self.finish_sign_in(
                host,
                service_id,
                service,
                &login,
                tokens,
                cookie_header,
                &judged,
            ),
            Pending::Stored { .. } => no_service(),
            Pending::Refresh {
                session,
                lease,
                cookie_header,
                path,
                judged,
                fleet,
                ..
            } => {
                let answer = RefreshAnswer {
                    service,
                    session: &session,
                    lease,
                    cookie_header: cookie_header.as_deref(),
                    path: &path,
                    judged: &judged,
                    fleet: &fleet,
                };
                self.finish_refresh(host, answer, tokens)
            }
        }
    }
}
