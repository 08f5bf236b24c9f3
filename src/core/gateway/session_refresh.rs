//! The refresh protocol: one refresh per session generation across workers. A request
//! whose session's tokens expired leases the generation (`start_refresh`); the root sends
//! the refresh on its next tick, so its answer is taken in and published even when the
//! client goes away (an IdP that rotates refresh tokens would refuse the old one again);
//! `finish_refresh` adopts, keeps or ends the session with the answer.

use super::fleet_refresh::LockValue;
use super::session::{logged, token_call, At};
use super::{Decision, Ended, Fleet, Gateway, Judged, Pending, Waiting, Way};
use crate::core::bearer::error::AuthError;
use crate::core::config::login::LoginService;
use crate::core::host::{Callout, Host, Metric};
use crate::core::login::idle;
use crate::core::login::oidc::{TokenError, TokenRequest, Tokens};
use crate::core::login::refresh::{self, Claim, Lease};
use crate::core::login::refresh_slots::RESULT_KEPT_MS;
use crate::core::login::refreshed::{self, Refreshed};
use crate::core::login::session::Session;
use crate::core::reply::Severity;

/// A refresh's answer, with what finishing it needs.
pub(super) struct RefreshAnswer<'a> {
    pub(crate) service: &'a LoginService,
    pub(crate) session: &'a Session,
    pub(crate) lease: Lease,
    pub(crate) cookie_header: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) judged: &'a Judged,
    pub(crate) fleet: &'a Fleet,
}

impl Gateway {
    /// A session whose tokens expired: adopt another worker's result, keep the session
    /// while a refresh is under way elsewhere, or lease the generation and queue the call.
    pub(super) fn start_refresh(
        &mut self,
        host: &mut dyn Host,
        at: &At,
        session: Session,
        request: &TokenRequest,
    ) -> Ended {
        let (service, cookie_header) = (at.service, at.cookie_header.as_deref());
        let now_ms = host.now_ms();
        let candidate = match refresh::claim(host, service, &session, now_ms) {
            Claim::Free(candidate) => candidate,
            Claim::Adopt(renewed) => {
                return self.adopt(host, service, &renewed, cookie_header, at.judged)
            }
            Claim::Ended => {
                let ended = refreshed::session_ended(
                    service,
                    cookie_header,
                    at.path,
                    at.judged.gate.browser,
                );
                return match ended {
                    Ok(reply) => logged(host, service, &at.judged.gate.place(), reply),
                    Err(refused) => Ended::Refuse(refused),
                };
            }
            Claim::KeepOld => {
                return self.keep_old(host, service, &session, cookie_header, at.judged)
            }
        };
        let lease = host
            .token(12)
            .and_then(|marker| refresh::take(host, candidate, service, now_ms, marker));
        let Some(lease) = lease else {
            return self.keep_old(host, service, &session, cookie_header, at.judged);
        };
        let call = token_call(service.idp(session.idp), request);
        let pending = Pending::Refresh {
            token: None,
            service: at.id,
            session: Box::new(session),
            lease,
            cookie_header: at.cookie_header.clone(),
            path: at.path.to_string(),
            judged: Box::new(at.judged.clone()),
            fleet: Fleet::Alone,
        };
        let queued = Waiting::Queued(call, Box::new(pending));
        self.in_flight.wait(at.context_id, queued);
        Ended::Parked
    }

    /// Sends the refreshes requests leased (from the root, so the answers reach it): to the
    /// cluster store's lock first when there is one. One that cannot be sent goes on with
    /// the old session.
    pub(super) fn send_queued_refreshes(&mut self, host: &mut dyn Host) -> Vec<(u32, Decision)> {
        let mut decided = Vec::new();
        for (context_id, call, mut pending) in self.in_flight.take_queued() {
            let call = self.lock_first(host, &mut pending, call);
            if let Some(decision) = self.send_from_root(host, context_id, pending, &call) {
                decided.push((context_id, decision));
            }
        }
        decided
    }

    /// Sends `call` for a refresh from the root and waits for its answer there; `Some`
    /// decision when it could not be sent (the old session goes on).
    pub(super) fn send_from_root(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        mut pending: Box<Pending>,
        call: &Callout,
    ) -> Option<Decision> {
        let Pending::Refresh {
            token,
            service,
            session,
            lease,
            cookie_header,
            judged,
            ..
        } = &mut *pending
        else {
            return None;
        };
        if let Some(sent) = host.call(call) {
            *token = Some(sent);
            self.in_flight.wait(context_id, Waiting::RootCall(pending));
            return None;
        }
        refresh::release(host, lease);
        let settings = std::rc::Rc::clone(&self.settings);
        let svc = settings.login.get(service.0)?;
        let ended = self.keep_old(host, svc, session, cookie_header.as_deref(), judged);
        let way = Way::of(judged, Some(context_id));
        Some(self.exit(host, &way, ended))
    }

    /// The token endpoint answered a refresh.
    pub(super) fn finish_refresh(
        &mut self,
        host: &mut dyn Host,
        answer: RefreshAnswer,
        tokens: Result<Tokens, TokenError>,
    ) -> Ended {
        let RefreshAnswer {
            service,
            session,
            cookie_header,
            judged,
            ..
        } = answer;
        let now_ms = host.now_ms();
        let authn = &self.authn;
        let verify = |id_token: &str, nonce: Option<&str>| {
            let idp = service.idp(session.idp);
            authn.verify_id_token(idp.provider, id_token, &idp.client_id, nonce, now_ms)
        };
        match refreshed::finish_refresh(session, tokens, &verify, now_ms / 1000) {
            Refreshed::Renewed(mut renewed) => {
                // A refresh is activity (`idle_timeout`).
                renewed.active_at = idle::active_at(service, now_ms / 1000);
                host.count(Metric::Refreshed);
                let sealed = refresh::seal(service, &renewed, host);
                if refresh::publish_renewed(host, &answer.lease, sealed.as_deref(), now_ms) {
                    self.published
                        .push((answer.lease.clone(), now_ms + RESULT_KEPT_MS));
                }
                let done = sealed.map(LockValue::Done);
                self.publish_to_fleet(host, service.idp(session.idp), answer.fleet, done);
                if let Some(id) = judged.gate.login() {
                    self.store_renewed(host, id, service, &renewed, cookie_header, true);
                }
                self.adopt(host, service, &renewed, cookie_header, judged)
            }
            Refreshed::KeepOld => {
                let line = format!(
                    "refresh for {} failed; keeping the session for now",
                    service.idp(session.idp).client_id
                );
                host.log(Severity::Warn, &line);
                refresh::release(host, &answer.lease);
                self.publish_to_fleet(host, service.idp(session.idp), answer.fleet, None);
                self.keep_old(host, service, session, cookie_header, judged)
            }
            Refreshed::Refused(why) => {
                if refreshed::refusal_tolerated(service, session, now_ms / 1000)
                    && refresh::renewed_elsewhere(host, &answer.lease, service, now_ms).is_none()
                {
                    return self.tolerate_refusal(host, &answer, &why);
                }
                self.end_session(host, &answer, &why)
            }
            Refreshed::Ended(why) => self.end_session(host, &answer, &why),
        }
    }

    /// A refresh refused right after the tokens expired: another replica may have spent the
    /// rotating refresh token first, and its renewed cookie is on the way to the browser. The
    /// request goes on with the old session and writes no cookie, so it cannot overwrite the
    /// winner's; this Envoy's other requests of the session do the same until the grace ends.
    fn tolerate_refusal(
        &mut self,
        host: &mut dyn Host,
        answer: &RefreshAnswer,
        why: &str,
    ) -> Ended {
        let RefreshAnswer {
            service, session, ..
        } = *answer;
        let line = format!(
            "refresh of session {}… of {} refused right after its tokens expired ({why}): \
             another replica may have renewed it; going on with the old session, no cookie \
             written, for at most {} s",
            short_sid(session),
            service.idp(session.idp).client_id,
            service.refresh_race_grace_secs
        );
        host.log(Severity::Warn, &line);
        host.count(Metric::RefreshRefusalsTolerated);
        let until_ms = refreshed::tolerated_until_ms(service, session);
        refresh::extend(host, &answer.lease, until_ms);
        self.keep_old(host, service, session, answer.cookie_header, answer.judged)
    }

    /// The session is over, unless another worker's refresh of it was published meanwhile
    /// (its result stands).
    fn end_session(&mut self, host: &mut dyn Host, answer: &RefreshAnswer, why: &str) -> Ended {
        let RefreshAnswer {
            service,
            session,
            cookie_header,
            path,
            judged,
            ..
        } = *answer;
        let now_ms = host.now_ms();
        if let Some(renewed) = refresh::renewed_elsewhere(host, &answer.lease, service, now_ms) {
            return self.adopt(host, service, &renewed, cookie_header, judged);
        }
        let line = format!(
            "session {}… of {} ended: {why}",
            short_sid(session),
            service.idp(session.idp).client_id
        );
        host.log(Severity::Debug, &line);
        refresh::publish_ended(host, &answer.lease, now_ms);
        let ended = Some(LockValue::Ended);
        self.publish_to_fleet(host, service.idp(session.idp), answer.fleet, ended);
        match refreshed::session_ended(service, cookie_header, path, judged.gate.browser) {
            Ok(reply) => logged(host, service, &judged.gate.place(), reply),
            Err(refused) => Ended::Refuse(refused),
        }
    }
}

/// The user's name is personal data: the start of the session id says enough in a log.
fn short_sid(session: &Session) -> String {
    session.sid.chars().take(8).collect()
}

/// No login service for a pending call (cannot happen: services never change in a VM).
pub(super) fn no_service() -> Ended {
    AuthError::KeysUnavailable.into()
}
