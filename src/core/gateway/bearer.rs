//! Step 8: a request's bearer token, verified against its issuer's keys, refused, or
//! parked until the keys come; a verdict then goes on to admission.

use super::parked::{WaitsFor, MAX_PARKED};
use super::{Ended, Gateway, Judged};
use crate::core::bearer::authenticator::{KidRefetch, Outside, Verdict};
use crate::core::bearer::budget::SourceBudget;
use crate::core::bearer::error::AuthError;
use crate::core::host::Host;
use crate::core::reply::Severity;
use crate::core::request_headers::RequestHeaders;
use crate::core::secret::Secret;
use crate::core::shared_data::SharedData;

/// A bearer check's view of the host: shared data, and the client address's budget of
/// failed signature checks (its address read from the host only when a check is due).
pub(super) struct Surroundings<'h> {
    pub(crate) host: &'h mut dyn Host,
    pub(crate) budget: Option<&'h SourceBudget>,
    /// Set once the address was read: a check was due, and its failure is charged to it.
    pub(crate) source: Option<String>,
    /// The address of a parked request, read when it parked (the root, which settles it,
    /// has no request to read it from).
    pub(crate) parked_source: Option<String>,
    pub(crate) now_ms: u64,
}

impl SharedData for Surroundings<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.host.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.host.set(key, value, cas)
    }
}

impl Outside for Surroundings<'_> {
    fn may_verify(&mut self) -> bool {
        let Some(budget) = self.budget else {
            return true;
        };
        let source = match self.parked_source.take() {
            Some(source) => source,
            None => self.host.source_address().unwrap_or_default(),
        };
        let allowed = budget.allows(&source, self.now_ms);
        self.source = Some(source);
        allowed
    }
}

impl Gateway {
    /// Step 8: The request's bearer token, then (9, 10) admission and the answer.
    pub(super) fn bearer(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        judged: Judged,
    ) -> Ended {
        let authorization = match headers.get("authorization").map(std::str::from_utf8) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err(_)) => return refused(host, AuthError::HeaderNotText),
        };
        let now_ms = host.now_ms();
        let verdict = self.verify(host, authorization, KidRefetch::Allowed, None, now_ms);
        let Verdict::AwaitKeys {
            provider,
            refetch,
            reason,
        } = verdict
        else {
            return self.carry(host, verdict, &judged);
        };
        if self.in_flight.parked() >= MAX_PARKED {
            // Waiting costs memory: past the bound, the wait is over at once.
            return self.carry(host, verdict, &judged);
        }
        let source = self
            .budget
            .is_some()
            .then(|| host.source_address())
            .flatten();
        let waits_for = WaitsFor::Keys {
            authorization: authorization.map(Secret::new),
            kid: KidRefetch::Allowed,
            judged,
            source,
        };
        let deadline_ms = now_ms + self.settings.keys_wait_timeout_ms;
        self.park(
            context_id,
            provider,
            deadline_ms,
            waits_for,
            refetch,
            reason,
        );
        Ended::Parked
    }

    /// Verifies a token, charging a failed signature check to the client's address.
    pub(super) fn verify(
        &mut self,
        host: &mut dyn Host,
        authorization: Option<&str>,
        kid: KidRefetch,
        parked_source: Option<String>,
        now_ms: u64,
    ) -> Verdict {
        let mut outside = Surroundings {
            host,
            budget: self.budget.as_ref(),
            source: None,
            parked_source,
            now_ms,
        };
        let verdict = self
            .authn
            .authenticate_with(authorization, now_ms, kid, &mut outside);
        let checked_for = outside.source.take();
        if let Some(budget) = self.budget.as_mut() {
            budget.charge(&verdict, checked_for, now_ms);
        }
        verdict
    }

    /// A bearer verdict, admitted or refused; `AwaitKeys` here means the wait is over: 503.
    pub(super) fn carry(&self, host: &dyn Host, verdict: Verdict, judged: &Judged) -> Ended {
        match verdict {
            Verdict::Allow(identity) => {
                let forward = self.identity_forward(&identity);
                self.admit(host, judged, &identity, None, forward)
            }
            Verdict::Deny(error) => refused(host, error),
            Verdict::AwaitKeys { .. } => refused(host, AuthError::KeysUnavailable),
        }
    }
}

/// Refusals of bad tokens are routine (debug); running out of keys is an outage (warn).
pub(super) fn refused(host: &dyn Host, error: AuthError) -> Ended {
    let status = error.status();
    let severity = if status >= 500 {
        Severity::Warn
    } else {
        Severity::Debug
    };
    host.log(severity, &format!("refused with {status}: {error}"));
    error.into()
}
