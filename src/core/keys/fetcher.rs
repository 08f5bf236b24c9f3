//! Keeps every remote issuer's keys fresh for all workers. On each tick a worker takes in the
//! record another worker (or it) published, and fetches when keys are due or a request asked
//! for them, if it wins the issuer's lease in shared data: one worker fetches for all.

use std::collections::HashMap;
use std::rc::Rc;

use url::Url;

use crate::core::config::{KeySource, Locator, ProviderId, RemoteKeys, Settings};
use crate::core::host::{Host, Metric};
use crate::core::keys::error::KeysError;
use crate::core::keys::fetch::{self, CalloutResponse, Stage};
use crate::core::keys::record::{lease_available, lease_value, Discovery, KeysRecord};
use crate::core::reply::Severity;

/// A remote issuer, with the shared-data keys its record and lease live under.
struct RemoteIssuer {
    provider: ProviderId,
    issuer: String,
    record_key: String,
    lease_key: String,
    /// The version of the record this worker took in last.
    record_cas: Option<u32>,
}

/// A fetch this worker has under way.
struct InFlight {
    issuer: usize,
    stage: Stage,
    started_ms: u64,
    /// Found by this fetch's discovery step; `None` when a known `jwks_uri` was used.
    discovery: Option<Discovery>,
}

/// What a fetch found: the JWKS document, the discovery it went through, and its max-age.
type Fetched = (String, Option<Discovery>, Option<u64>);

/// The worker the fetcher keeps keys for: it takes in records, and says which issuers its
/// requests want fetched. The fetcher reports which issuers' records changed; deciding the
/// requests that waited for them is the worker's business.
pub trait KeyTaker {
    fn take_record(&mut self, provider: ProviderId, record: &KeysRecord) -> Result<(), KeysError>;
    fn fetch_wanted(&self, provider: ProviderId) -> bool;
    fn clear_fetch_wanted(&mut self, provider: ProviderId);
}

pub struct KeyFetcher {
    settings: Rc<Settings>,
    issuers: Vec<RemoteIssuer>,
    in_flight: HashMap<u32, InFlight>,
}

impl KeyFetcher {
    pub fn new(settings: Rc<Settings>) -> KeyFetcher {
        let issuers = settings
            .providers
            .iter()
            .enumerate()
            .filter_map(|(provider, p)| match &p.keys {
                KeySource::Remote(remote) => {
                    let source = match &remote.locator {
                        Locator::Discovery(url) | Locator::JwksUri(url) => url.as_str(),
                    };
                    let id = format!("{}|{source}", p.rules.issuer);
                    Some(RemoteIssuer {
                        provider: ProviderId(provider),
                        issuer: p.rules.issuer.clone(),
                        record_key: format!("wasm-iap/keys/{id}"),
                        lease_key: format!("wasm-iap/lease/{id}"),
                        record_cas: None,
                    })
                }
                KeySource::Inline(_) => None,
            })
            .collect();
        KeyFetcher {
            settings,
            issuers,
            in_flight: HashMap::new(),
        }
    }

    fn remote(&self, issuer: usize) -> Option<&RemoteKeys> {
        let provider = self.issuers.get(issuer)?.provider;
        match &self.settings.providers.get(provider.0)?.keys {
            KeySource::Remote(remote) => Some(remote),
            KeySource::Inline(_) => None,
        }
    }

    fn read_record(&self, host: &dyn Host, issuer: usize) -> (KeysRecord, Option<u32>) {
        let Some(remote) = self.issuers.get(issuer) else {
            return (KeysRecord::default(), None);
        };
        let (bytes, cas) = host.get(&remote.record_key);
        let record = bytes
            .and_then(|b| KeysRecord::decode(&b))
            .unwrap_or_default();
        (record, cas)
    }

    /// Takes in a record published since the last look, and decides the requests it settles.
    fn sync(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
        issuer: usize,
        changed: &mut Vec<ProviderId>,
    ) -> KeysRecord {
        let (record, cas) = self.read_record(host, issuer);
        let Some(entry) = self.issuers.get_mut(issuer) else {
            return record;
        };
        if cas == entry.record_cas {
            return record;
        }
        entry.record_cas = cas;
        // A request that still needs a fetch after this record asks again.
        keys.clear_fetch_wanted(entry.provider);
        if let Err(e) = keys.take_record(entry.provider, &record) {
            host.log(
                Severity::Warn,
                &format!("keys for {} not usable: {e}", entry.issuer),
            );
        }
        changed.push(entry.provider);
        record
    }

    /// A tick's first half: takes in what other workers published since the last look, and
    /// says which issuers' records changed (their waiting requests are decided again before
    /// the second half, so a fetch one of them asks for starts in this tick).
    pub(crate) fn take_in(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
    ) -> Vec<ProviderId> {
        let mut changed = Vec::new();
        for issuer in 0..self.issuers.len() {
            self.sync(host, keys, issuer, &mut changed);
        }
        changed
    }

    /// A tick's second half: starts the fetches that are due or wanted (when this worker
    /// wins the lease); returns the issuers whose records changed meanwhile (a fetch that
    /// could not even be sent is recorded as failed at once).
    pub(crate) fn start_fetches(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
    ) -> Vec<ProviderId> {
        let mut changed = Vec::new();
        let now_ms = host.now_ms();
        for issuer in 0..self.issuers.len() {
            let record = self.read_record(host, issuer).0;
            let provider = self.issuers[issuer].provider;
            // A request's wish stands until a fetch starts or new keys arrive: the lease may
            // be held a moment by a worker that just published.
            let wanted = keys.fetch_wanted(provider);
            let fetching = self.in_flight.values().any(|f| f.issuer == issuer);
            if !fetching
                && (wanted || record.refresh_due(now_ms))
                && self.try_start(host, keys, issuer, &record, now_ms, &mut changed)
            {
                keys.clear_fetch_wanted(provider);
            }
        }
        changed
    }

    /// One tick, both halves, without deciding anything in between (tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn tick(&mut self, host: &mut dyn Host, keys: &mut dyn KeyTaker) -> Vec<ProviderId> {
        let mut changed = self.take_in(host, keys);
        changed.extend(self.start_fetches(host, keys));
        changed
    }

    /// Starts a fetch when this worker wins the lease; others see the result in shared data.
    fn try_start(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
        issuer: usize,
        record: &KeysRecord,
        now_ms: u64,
        changed: &mut Vec<ProviderId>,
    ) -> bool {
        let (Some(remote), Some(entry)) = (self.remote(issuer), self.issuers.get(issuer)) else {
            return false;
        };
        let (lease, cas) = host.get(&entry.lease_key);
        if !lease_available(lease.as_deref(), now_ms) {
            return false;
        }
        let deadline = now_ms + 2 * remote.timeout_ms + 1_000;
        if !host.set(&entry.lease_key, &lease_value(deadline), cas) {
            return false; // another worker took it first
        }
        // Another worker may have finished a fetch between our read and our lease.
        if self.read_record(host, issuer).1 != entry.record_cas {
            host.set(&entry.lease_key, &lease_value(0), None);
            return false;
        }
        let (stage, url) = fetch::first_step(remote, record);
        host.count(Metric::KeyFetches);
        self.dispatch(host, keys, issuer, stage, &url, None, now_ms, changed);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
        issuer: usize,
        stage: Stage,
        url: &Url,
        discovery: Option<Discovery>,
        started_ms: u64,
        changed: &mut Vec<ProviderId>,
    ) {
        let Some(remote) = self.remote(issuer) else {
            return;
        };
        let call = fetch::callout(url, remote);
        match host.call(&call) {
            Some(token) => {
                let in_flight = InFlight {
                    issuer,
                    stage,
                    started_ms,
                    discovery,
                };
                self.in_flight.insert(token, in_flight);
            }
            None => {
                let reason = KeysError::Unreachable {
                    cluster: call.cluster,
                    detail: "the callout could not be sent".into(),
                };
                self.finish(host, keys, issuer, Err(reason), started_ms, changed);
            }
        }
    }

    /// A callout's answer; `None` when `token` is not a fetch of this worker's.
    pub fn on_response(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
        token: u32,
        response: &CalloutResponse,
    ) -> Option<Vec<ProviderId>> {
        let call = self.in_flight.remove(&token)?;
        let mut changed = Vec::new();
        let entry = self.issuers.get(call.issuer)?;
        let outcome = match call.stage {
            Stage::Discovery => match fetch::read_discovery(response, &entry.issuer) {
                Ok(discovery) => match Url::parse(&discovery.jwks_uri) {
                    Ok(jwks_uri) => {
                        self.dispatch(
                            host,
                            keys,
                            call.issuer,
                            Stage::Jwks,
                            &jwks_uri,
                            Some(discovery),
                            call.started_ms,
                            &mut changed,
                        );
                        return Some(changed);
                    }
                    Err(_) => Err(KeysError::NotHttpUrl {
                        field: "jwks_uri".into(),
                        value: discovery.jwks_uri,
                    }),
                },
                Err(reason) => Err(reason),
            },
            Stage::Jwks => {
                let algorithms = self
                    .settings
                    .providers
                    .get(entry.provider.0)
                    .map(|p| p.algorithms.clone())
                    .unwrap_or_default();
                fetch::read_jwks(response, &algorithms)
                    .map(|(jwks, max_age)| (jwks, call.discovery, max_age))
            }
        };
        self.finish(
            host,
            keys,
            call.issuer,
            outcome,
            call.started_ms,
            &mut changed,
        );
        Some(changed)
    }

    /// Publishes the outcome for all workers, releases the lease, and takes it in here.
    fn finish(
        &mut self,
        host: &mut dyn Host,
        keys: &mut dyn KeyTaker,
        issuer: usize,
        outcome: Result<Fetched, KeysError>,
        started_ms: u64,
        changed: &mut Vec<ProviderId>,
    ) {
        let now_ms = host.now_ms();
        let (record, _) = self.read_record(host, issuer);
        let refresh_ms = self
            .remote(issuer)
            .map(|r| r.refresh_interval_ms)
            .unwrap_or(600_000);
        let Some(entry) = self.issuers.get(issuer) else {
            return;
        };
        let next = match outcome {
            Ok((jwks, discovery, max_age)) => {
                let next =
                    record.succeeded(jwks, discovery, max_age, refresh_ms, started_ms, now_ms);
                host.log(
                    Severity::Info,
                    &format!(
                        "keys for {} fetched; next refresh in {} s",
                        entry.issuer,
                        next.refresh_at_ms.saturating_sub(now_ms) / 1000
                    ),
                );
                next
            }
            Err(reason) => {
                host.count(Metric::KeyFetchFailures);
                let next = record.failed(started_ms, now_ms);
                let kept = if record.jwks.is_some() {
                    "keeping the last good keys"
                } else {
                    "no keys yet"
                };
                host.log(
                    Severity::Warn,
                    &format!(
                        "fetching keys for {} failed: {reason}; {kept}; retry in {} s",
                        entry.issuer,
                        next.refresh_at_ms.saturating_sub(now_ms) / 1000
                    ),
                );
                next
            }
        };
        let (record_key, lease_key) = (entry.record_key.clone(), entry.lease_key.clone());
        host.set(&record_key, &next.encode(), None);
        host.set(&lease_key, &lease_value(0), None);
        self.sync(host, keys, issuer, changed);
    }
}
