//! Requests waiting for an issuer's keys or a login service's endpoints, and what the
//! root does for them: asks for fetches, decides them again when what they wait for
//! arrives or the wait runs out (`settle`), and keeps what they decided for the adapter.

use super::{Decision, Gateway, Judged, Pending, Wait, Waiting, Way};
use crate::core::bearer::authenticator::{KidRefetch, Verdict, WaitReason};
use crate::core::config::ProviderId;
use crate::core::host::Host;
use crate::core::keys::error::KeysError;
use crate::core::keys::fetcher::KeyTaker;
use crate::core::keys::record::KeysRecord;
use crate::core::login::oidc::{TokenError, Tokens};
use crate::core::request_headers::RequestHeaders;
use crate::core::secret::Secret;

/// Requests one VM keeps waiting for keys or endpoints (first start, an IdP outage): each
/// holds a few of its headers; past this, they get `503` at once.
pub const MAX_PARKED: usize = 4096;

/// What a parked request waits for.
pub(super) enum WaitsFor {
    /// A bearer token's verdict.
    Keys {
        authorization: Option<Secret>,
        kid: KidRefetch,
        judged: Judged,
        /// The client's address, read when it parked (with a budget): its check, when the
        /// keys come, is charged to it like any other.
        source: Option<String>,
    },
    /// A browser request on a login host (login start or callback): the IdP's endpoints.
    Endpoints { headers: RequestHeaders },
    /// A login or refresh whose ID token names a key not fetched yet.
    IdTokenKeys {
        pending: Box<Pending>,
        tokens: Result<Tokens, TokenError>,
        /// Whether a fetch was asked for; until then `settle` asks once the rate limit allows.
        fetch_asked: bool,
        /// When it was parked: only a fetch attempted since then may end the wait.
        since_ms: u64,
    },
}

pub(super) struct Parked {
    pub(crate) context_id: u32,
    pub(crate) provider: ProviderId,
    pub(crate) deadline_ms: u64,
    pub(crate) waits_for: WaitsFor,
}

impl Gateway {
    /// Parks a request, asking for a fetch when the verdict allows one now.
    pub(super) fn park(
        &mut self,
        context_id: u32,
        provider: ProviderId,
        deadline_ms: u64,
        mut waits_for: WaitsFor,
        refetch: bool,
        reason: WaitReason,
    ) {
        if refetch {
            self.want_fetch(provider);
        }
        if let (WaitReason::UnknownKid, WaitsFor::Keys { kid, .. }) = (reason, &mut waits_for) {
            *kid = KidRefetch::AlreadyWaited;
        }
        let parked = Parked {
            context_id,
            provider,
            deadline_ms,
            waits_for,
        };
        self.in_flight
            .wait(context_id, Waiting::Parked(Box::new(parked)));
    }

    fn want_fetch(&mut self, provider: ProviderId) {
        if let Some(wanted) = self.fetch_wanted.get_mut(provider.0) {
            *wanted = true;
        }
    }

    /// Asks for a fetch of `provider`'s keys when the rate limit allows it now.
    pub(super) fn ask_for_keys(&mut self, provider: ProviderId, now_ms: u64) -> bool {
        let allowed = self.authn.may_refetch(provider, now_ms);
        if allowed {
            self.want_fetch(provider);
        }
        allowed
    }

    /// Decides parked requests again: those of `changed` (its keys or endpoints arrived),
    /// and any whose wait ran out; first sends the refreshes requests queued. Returns what
    /// to do with each, by context.
    pub fn settle(
        &mut self,
        host: &mut dyn Host,
        changed: Option<ProviderId>,
    ) -> Vec<(u32, Decision)> {
        let now_ms = host.now_ms();
        let mut decided = self.send_queued_refreshes(host);
        for mut parked in self.in_flight.take_parked() {
            let keys_changed = changed == Some(parked.provider);
            let timed_out = now_ms >= parked.deadline_ms;
            if let WaitsFor::IdTokenKeys {
                fetch_asked: asked @ false,
                ..
            } = &mut parked.waits_for
            {
                *asked = self.ask_for_keys(parked.provider, now_ms);
            }
            let still_waits = !keys_changed || self.still_waits_for_a_fetch(&parked);
            if still_waits && !timed_out {
                self.in_flight
                    .wait(parked.context_id, Waiting::Parked(Box::new(parked)));
                continue;
            }
            let context_id = parked.context_id;
            if let Some(decision) = self.decide_parked(host, parked, timed_out, now_ms) {
                decided.push((context_id, decision));
            }
        }
        decided
    }

    /// A parked request whose wait is over, decided again; `None` when it parks again.
    fn decide_parked(
        &mut self,
        host: &mut dyn Host,
        parked: Parked,
        timed_out: bool,
        now_ms: u64,
    ) -> Option<Decision> {
        let context_id = parked.context_id;
        let settled = Some(context_id);
        match parked.waits_for {
            WaitsFor::IdTokenKeys {
                pending, tokens, ..
            } => Some(self.finish(host, *pending, tokens, settled)),
            WaitsFor::Endpoints { headers } => {
                if !timed_out && self.authn.discovery(parked.provider).is_none() {
                    let parked = Parked {
                        waits_for: WaitsFor::Endpoints { headers },
                        ..parked
                    };
                    self.in_flight
                        .wait(context_id, Waiting::Parked(Box::new(parked)));
                    return None;
                }
                // Its rules are found again from the headers it kept.
                Some(self.decide_stripped(host, context_id, &headers, Wait::AlreadyWaited, settled))
            }
            WaitsFor::Keys {
                authorization,
                kid,
                judged,
                source,
            } => {
                // A forged token that waited is checked, and charged, as one that did not.
                let token = authorization.as_ref().map(Secret::expose);
                let verdict = self.verify(host, token, kid, source.clone(), now_ms);
                if let Verdict::AwaitKeys {
                    provider,
                    refetch,
                    reason,
                } = verdict
                {
                    if !timed_out {
                        let waits_for = WaitsFor::Keys {
                            authorization,
                            kid,
                            judged,
                            source,
                        };
                        let deadline_ms = parked.deadline_ms;
                        self.park(
                            context_id,
                            provider,
                            deadline_ms,
                            waits_for,
                            refetch,
                            reason,
                        );
                        return None;
                    }
                }
                let ended = self.carry(host, verdict, &judged);
                Some(self.exit(host, &Way::of(&judged, settled), ended))
            }
        }
    }

    /// An ID token whose key is still unknown, and no fetch was attempted since it parked
    /// (the record changed for another reason): finishing now would refuse the sign-in.
    fn still_waits_for_a_fetch(&self, parked: &Parked) -> bool {
        let WaitsFor::IdTokenKeys {
            tokens, since_ms, ..
        } = &parked.waits_for
        else {
            return false;
        };
        let id_token = tokens.as_ref().ok().and_then(|t| t.id_token.as_ref());
        id_token.is_some_and(|t| self.authn.id_token_awaits_keys(parked.provider, t.expose()))
            && self.authn.attempted_at_ms(parked.provider) < *since_ms
    }

    /// A decision made outside the request's own context: a token call's answer will reach
    /// the root, so its state is kept here.
    pub(super) fn hold_settled(&mut self, context_id: u32, decision: Decision) -> Decision {
        match decision {
            Decision::Calling(pending) => {
                self.in_flight.wait(context_id, Waiting::RootCall(pending));
                Decision::Parked
            }
            other => other,
        }
    }

    /// Requests waiting for these issuers' keys or endpoints, decided again.
    pub fn keys_changed(
        &mut self,
        host: &mut dyn Host,
        changed: &[ProviderId],
    ) -> Vec<(u32, Decision)> {
        let mut decided = Vec::new();
        for provider in changed {
            decided.extend(self.settle(host, Some(*provider)));
        }
        decided
    }

    /// How many requests are parked (for tests and metrics).
    #[cfg(any(test, feature = "testing"))]
    pub fn parked(&self) -> usize {
        self.in_flight.parked()
    }
}

impl KeyTaker for Gateway {
    fn take_record(&mut self, provider: ProviderId, record: &KeysRecord) -> Result<(), KeysError> {
        self.authn.install_record(provider, record).map(|_| ())
    }

    /// Whether a request asked for `provider`'s keys to be fetched.
    fn fetch_wanted(&self, provider: ProviderId) -> bool {
        self.fetch_wanted.get(provider.0).copied().unwrap_or(false)
    }

    fn clear_fetch_wanted(&mut self, provider: ProviderId) {
        if let Some(wanted) = self.fetch_wanted.get_mut(provider.0) {
            *wanted = false;
        }
    }
}
