//! The root context of one VM: takes the configuration, and keeps every remote issuer's keys
//! fresh from `on_tick`, one VM fetching for all through a lease in shared data.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::apply;
use super::host;
use super::host::ProxyHost;
use super::http::Request;
use super::http::SharedGateway;
use crate::core::config::{KeySource, Locator, ProviderId, RemoteKeys, Settings};
use crate::core::gateway::Decision;
use crate::core::gateway::Gateway;
use crate::core::keys::error::KeysError;
use crate::core::keys::fetch::{self, CalloutResponse, Stage};
use crate::core::keys::record::{lease_available, lease_value, Discovery, KeysRecord};

const TICK: Duration = Duration::from_millis(100);

/// A remote issuer, with the shared-data keys its record and lease live under.
struct RemoteIssuer {
    provider: ProviderId,
    issuer: String,
    record_key: String,
    lease_key: String,
    record_cas: Option<u32>,
}

/// A callout this VM has under way.
struct InFlight {
    issuer: usize,
    stage: Stage,
    started_ms: u64,
    /// Found by this fetch's discovery step; `None` when a known `jwks_uri` was used.
    discovery: Option<Discovery>,
}

pub struct Root {
    context_id: u32,
    gateway: SharedGateway,
    settings: Option<Rc<Settings>>,
    issuers: Vec<RemoteIssuer>,
    in_flight: HashMap<u32, InFlight>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            gateway: SharedGateway::default(),
            settings: None,
            issuers: Vec::new(),
            in_flight: HashMap::new(),
        }
    }

    fn remote(&self, issuer: usize) -> Option<&RemoteKeys> {
        let provider = self.issuers.get(issuer)?.provider;
        match &self.settings.as_ref()?.providers.get(provider.0)?.keys {
            KeySource::Remote(remote) => Some(remote),
            KeySource::Inline(_) => None,
        }
    }

    fn read_record(&self, issuer: usize) -> (KeysRecord, Option<u32>) {
        let Some(remote) = self.issuers.get(issuer) else {
            return (KeysRecord::default(), None);
        };
        let (bytes, cas) = host::shared_data(&remote.record_key);
        (
            bytes
                .and_then(|b| KeysRecord::decode(&b))
                .unwrap_or_default(),
            cas,
        )
    }

    /// Takes in a record another VM (or this one) published, and settles waiting requests.
    fn sync_record(&mut self, issuer: usize) -> KeysRecord {
        let (record, cas) = self.read_record(issuer);
        let Some(entry) = self.issuers.get_mut(issuer) else {
            return record;
        };
        if cas == entry.record_cas {
            return record;
        }
        entry.record_cas = cas;
        let (provider, name) = (entry.provider, entry.issuer.clone());
        self.clear_fetch_wanted(provider); // waiting requests ask again if they still need one
        let decided = match self.gateway.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(gateway) => {
                    if let Err(e) = gateway.authn.install_record(provider, &record) {
                        host::log(LogLevel::Warn, &format!("keys for {name} not usable: {e}"));
                    }
                    gateway.settle(&mut ProxyHost, Some(provider))
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        self.carry_out_settled(decided);
        record
    }

    /// Carries out decisions on parked requests, each in its own context.
    fn carry_out_settled(&self, decided: Vec<(u32, Decision)>) {
        for (context_id, decision) in decided {
            if host::switch_to(context_id) {
                // A token call the decision made answers to the root: nothing is held.
                let _ = apply::carry_out_paused(decision);
            }
        }
        host::switch_to(self.context_id);
    }

    /// A request's wish for a fetch stands until this VM starts one or new keys arrive:
    /// the lease may be held for a moment by a VM that just published.
    fn fetch_wanted(&self, provider: ProviderId) -> bool {
        self.gateway
            .try_borrow()
            .ok()
            .and_then(|slot| slot.as_ref().map(|g| g.fetch_wanted(provider)))
            .unwrap_or(false)
    }

    fn clear_fetch_wanted(&self, provider: ProviderId) {
        if let Ok(mut slot) = self.gateway.try_borrow_mut() {
            if let Some(gateway) = slot.as_mut() {
                gateway.clear_fetch_wanted(provider);
            }
        }
    }

    fn fetching(&self, issuer: usize) -> bool {
        self.in_flight.values().any(|f| f.issuer == issuer)
    }

    /// Starts a fetch when this VM wins the lease; others see the result in shared data.
    /// Returns whether this VM started the fetch.
    fn try_start_fetch(&mut self, issuer: usize, record: &KeysRecord, now_ms: u64) -> bool {
        let (Some(remote), Some(entry)) = (self.remote(issuer), self.issuers.get(issuer)) else {
            return false;
        };
        let (lease, cas) = host::shared_data(&entry.lease_key);
        if !lease_available(lease.as_deref(), now_ms) {
            return false;
        }
        let deadline = now_ms + 2 * remote.timeout_ms + 1_000;
        if !host::set_shared_data(&entry.lease_key, &lease_value(deadline), cas) {
            return false; // another VM took it first
        }
        // Another VM may have finished a fetch between our read and our lease.
        if self.read_record(issuer).1 != entry.record_cas {
            host::set_shared_data(&entry.lease_key, &lease_value(0), None);
            return false;
        }
        let (stage, url) = fetch::first_step(remote, record);
        self.dispatch(issuer, stage, &url, None, now_ms, now_ms);
        true
    }

    fn dispatch(
        &mut self,
        issuer: usize,
        stage: Stage,
        url: &url::Url,
        discovery: Option<Discovery>,
        started_ms: u64,
        now_ms: u64,
    ) {
        let Some(remote) = self.remote(issuer) else {
            return;
        };
        let call = fetch::callout(url, remote);
        match host::dispatch(&call.cluster, &call.headers, None, call.timeout_ms) {
            Ok(token) => {
                self.in_flight.insert(
                    token,
                    InFlight {
                        issuer,
                        stage,
                        started_ms,
                        discovery,
                    },
                );
            }
            Err(status) => {
                let reason = KeysError::Unreachable {
                    cluster: call.cluster.clone(),
                    detail: format!("{status:?}"),
                };
                self.finish_fetch(issuer, Err(reason), started_ms, now_ms);
            }
        }
    }

    /// Publishes the outcome for all VMs, releases the lease, and applies it here at once.
    fn finish_fetch(
        &mut self,
        issuer: usize,
        outcome: Result<(String, Option<Discovery>, Option<u64>), KeysError>,
        started_ms: u64,
        now_ms: u64,
    ) {
        let (record, _) = self.read_record(issuer);
        let Some(entry) = self.issuers.get(issuer) else {
            return;
        };
        let refresh_ms = self
            .remote(issuer)
            .map(|r| r.refresh_interval_ms)
            .unwrap_or(600_000);
        let next = match outcome {
            Ok((jwks, discovery, max_age)) => {
                let next =
                    record.succeeded(jwks, discovery, max_age, refresh_ms, started_ms, now_ms);
                host::log(
                    LogLevel::Info,
                    &format!(
                        "keys for {} fetched; next refresh in {} s",
                        entry.issuer,
                        (next.refresh_at_ms - now_ms) / 1000
                    ),
                );
                next
            }
            Err(reason) => {
                let next = record.failed(started_ms, now_ms);
                let kept = if record.jwks.is_some() {
                    "keeping the last good keys"
                } else {
                    "no keys yet"
                };
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "fetching keys for {} failed: {reason}; {kept}; retry in {} s",
                        entry.issuer,
                        (next.refresh_at_ms - now_ms) / 1000
                    ),
                );
                next
            }
        };
        host::set_shared_data(&entry.record_key, &next.encode(), None);
        host::set_shared_data(&entry.lease_key, &lease_value(0), None);
        self.sync_record(issuer);
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(call) = self.in_flight.remove(&token_id) else {
            // A token call made while settling a parked request.
            let response = host::call_response(body_size);
            let decided = match self.gateway.try_borrow_mut() {
                Ok(mut slot) => slot.as_mut().and_then(|gateway| {
                    gateway.on_settled_call_response(
                        &mut ProxyHost,
                        token_id,
                        response.status,
                        &response.body,
                    )
                }),
                Err(_) => None,
            };
            self.carry_out_settled(decided.into_iter().collect());
            return;
        };
        let now_ms = host::now_ms();
        let reply = host::call_response(body_size);
        let response = CalloutResponse {
            status: reply.status,
            cache_control: reply.cache_control.as_deref(),
            body: &reply.body,
        };
        let Some(entry) = self.issuers.get(call.issuer) else {
            return;
        };
        let outcome = match call.stage {
            Stage::Discovery => match fetch::read_discovery(&response, &entry.issuer) {
                Ok(discovery) => match url::Url::parse(&discovery.jwks_uri) {
                    Ok(jwks_uri) => {
                        return self.dispatch(
                            call.issuer,
                            Stage::Jwks,
                            &jwks_uri,
                            Some(discovery),
                            call.started_ms,
                            now_ms,
                        )
                    }
                    Err(_) => Err(KeysError::NotHttpUrl {
                        field: "jwks_uri".into(),
                        value: discovery.jwks_uri.clone(),
                    }),
                },
                Err(reason) => Err(reason),
            },
            Stage::Jwks => {
                let algorithms = self
                    .settings
                    .as_ref()
                    .and_then(|s| s.providers.get(entry.provider.0))
                    .map(|p| p.algorithms.clone())
                    .unwrap_or_default();
                fetch::read_jwks(&response, &algorithms)
                    .map(|(jwks, max_age)| (jwks, call.discovery, max_age))
            }
        };
        self.finish_fetch(call.issuer, outcome, call.started_ms, now_ms);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = host::plugin_configuration();
        let text = String::from_utf8_lossy(&text);
        let env = |name: &str| std::env::var(name).ok();
        let settings = match Settings::parse_with_env(&text, &env) {
            Ok(settings) => Rc::new(settings),
            Err(problems) => {
                for problem in &problems {
                    host::log(
                        LogLevel::Critical,
                        &format!("configuration rejected: {problem}"),
                    );
                }
                return false;
            }
        };
        self.issuers = settings
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
        let gateway = Gateway::new(Rc::clone(&settings));
        gateway.prepare(&mut ProxyHost);
        if let Ok(mut slot) = self.gateway.try_borrow_mut() {
            *slot = Some(gateway);
        }
        self.settings = Some(settings);
        host::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        let now_ms = host::now_ms();
        for issuer in 0..self.issuers.len() {
            let record = self.sync_record(issuer);
            let provider = self.issuers[issuer].provider;
            let wanted = self.fetch_wanted(provider);
            if !self.fetching(issuer)
                && (wanted || record.refresh_due(now_ms))
                && self.try_start_fetch(issuer, &record, now_ms)
            {
                self.clear_fetch_wanted(provider);
            }
        }
        let decided = match self.gateway.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(gateway) => {
                    gateway.tick(&mut ProxyHost);
                    gateway.settle(&mut ProxyHost, None)
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        self.carry_out_settled(decided);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(context_id, Rc::clone(&self.gateway))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
