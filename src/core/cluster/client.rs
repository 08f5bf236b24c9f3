//! One worker's link to the cluster store: the leases its keys are put with (granted on the
//! tick, never per request), the writes nobody waits for, and whether the store answers.
//! A request that needs the store (a refresh lock) sends its call through `send` and tells
//! `answered` how it went, so one record says whether the store is up.
//!
//! Writes nobody waits for are queued and sent from the root (on its tick, or when a callout
//! of its own is answered): a call made while a request is decided belongs to that request
//! in Envoy, is answered to it, and is cancelled when it ends (a sign-out is answered at
//! once), so its put might never reach the store, nor a failure be tried again.

use std::collections::HashMap;

use crate::core::cluster::etcd::{self, Keys, LeaseId, Range};
use crate::core::cluster::etcd_answer::{self, EtcdError, LeaseAnswer};
use crate::core::cluster::namespace::{Kind, Namespace};
use crate::core::cluster::revocation_sync::{self, SyncedTo};
use crate::core::config::cluster_store::ClusterStore;
use crate::core::host::{Callout, Host, Metric};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::reply::Severity;
use crate::core::revocation::set::Entry;
use crate::core::seal::Sealer;

/// The leases keys are put with, by how long their keys must live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    /// Refresh locks: gone soon after a replica died holding one.
    Lock,
    /// Published refresh results and logout tokens seen: minutes.
    Result,
    /// Revocations and server-side sessions: the longest session lifetime.
    Record,
}

const LEASE_KINDS: [LeaseKind; 3] = [LeaseKind::Lock, LeaseKind::Result, LeaseKind::Record];

impl LeaseKind {
    fn index(self) -> usize {
        match self {
            LeaseKind::Lock => 0,
            LeaseKind::Result => 1,
            LeaseKind::Record => 2,
        }
    }
}

/// One lease: used only while a key put with it still lives as long as its kind must
/// (`keep_secs`), and a new one asked for halfway through the time it can be used.
#[derive(Debug, Default)]
struct LeaseSlot {
    id: Option<LeaseId>,
    /// When etcd lets the lease go, counted from the moment it answered the grant.
    ends_ms: u64,
    renew_at_ms: u64,
    granted_at_ms: u64,
    asked: bool,
}

/// A grant that failed is asked again after this, not on every tick.
const LEASE_RETRY_MS: u64 = 1_000;
/// What etcd answers a put with a lease it does not know (revoked, or an etcd rebuilt or
/// restored from a backup): every lease is asked for again.
const LEASE_NOT_FOUND: &str = "requested lease not found";
/// Writes waiting for the root at most (its tick comes every 100 ms).
const MAX_OUTBOX: usize = 1_000;

/// What a call the client sent itself is for.
#[derive(Clone, Copy, Debug)]
enum Purpose {
    Lease(LeaseKind),
    Write(&'static str),
    /// A revocation put in the store: sent again when it failed.
    Publish(Entry),
    /// A read that only asks whether the store answers again.
    Probe,
    /// A read of the revocations changed since the last one.
    Sync,
}

/// A call the client sent itself, kept to be sent once more when its member did not answer.
#[derive(Debug)]
struct Sent {
    purpose: Purpose,
    call: Callout,
    retried: bool,
}

/// What an answer the client took was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Not a call of the client's.
    NotOurs,
    /// Taken in.
    Done,
    /// A sync's answer: the gateway reads it with the keys (`take_sync`).
    Sync,
}

#[derive(Debug)]
pub(crate) struct StoreClient {
    pub(crate) store: ClusterStore,
    pub(crate) namespace: Namespace,
    ttl_secs: [u64; 3],
    /// How long a key put with each lease must live at least.
    keep_secs: [u64; 3],
    leases: [LeaseSlot; 3],
    calls: HashMap<u32, Sent>,
    /// Writes nobody waits for, sent from the root (`flush`).
    outbox: Vec<(Callout, Purpose)>,
    /// Since when every call failed (`None`: the last one was answered).
    failing_since_ms: Option<u64>,
    /// When a store that failed is asked again whether it answers.
    probe_at_ms: u64,
    /// A probe is on its way (one at a time, however long the store takes to fail).
    probing: bool,
    /// Where the next revocation sync starts, when it is due, and whether one is under way.
    synced_to: SyncedTo,
    sync_at_ms: u64,
    syncing: bool,
    /// Revocations not in the store yet: no lease to put them with, or the put failed.
    unpublished: Vec<Entry>,
}

/// Revocations kept for another try at most (as many as an Envoy's set holds).
const MAX_UNPUBLISHED: usize = 10_000;

/// Lock keys outlive a token call several times over, and a dead holder's by half a minute.
const LOCK_TTL_SECS: u64 = 30;
/// Results stay readable as long as each Envoy keeps them (`RESULT_KEPT_MS`) and more.
const RESULT_TTL_SECS: u64 = 15 * 60;
/// The records' lease is used for this long after its grant (renewed halfway through): every
/// key put with it lives as long as the longest session, which a revocation or a
/// server-side session must.
const RECORD_MARGIN_SECS: u64 = 3600;

impl StoreClient {
    /// A client for `store`; records live `longest_session_secs` and an hour more.
    pub(crate) fn new(store: ClusterStore, longest_session_secs: u64) -> StoreClient {
        StoreClient {
            namespace: Namespace::new(&store.etcd.prefix),
            store,
            ttl_secs: [
                LOCK_TTL_SECS,
                RESULT_TTL_SECS,
                longest_session_secs.saturating_add(RECORD_MARGIN_SECS),
            ],
            keep_secs: [LOCK_TTL_SECS / 3, RESULT_TTL_SECS / 3, longest_session_secs],
            leases: Default::default(),
            calls: HashMap::new(),
            outbox: Vec::new(),
            failing_since_ms: None,
            probe_at_ms: 0,
            probing: false,
            synced_to: SyncedTo::default(),
            sync_at_ms: 0,
            syncing: false,
            unpublished: Vec::new(),
        }
    }

    /// Asks for the leases that are due, and whether a store that failed answers again;
    /// sends the writes queued since the last tick.
    pub(crate) fn tick(&mut self, host: &mut dyn Host) {
        self.flush(host);
        let now_ms = host.now_ms();
        if self.failing_since_ms.is_some() && !self.probing && now_ms >= self.probe_at_ms {
            self.probe_at_ms = now_ms + LEASE_RETRY_MS;
            let prefix = self.namespace.kind_prefix(Kind::Refresh);
            let one = Range {
                keys: Keys::One(prefix.as_bytes()),
                min_mod_revision: 0,
                limit: 1,
            };
            let probe = etcd::range(&self.store.etcd, &one);
            self.probing = self.send_own(host, Purpose::Probe, probe);
        }
        for kind in LEASE_KINDS {
            let slot = &self.leases[kind.index()];
            if slot.asked || now_ms < slot.renew_at_ms {
                continue;
            }
            let call = etcd::grant_lease(&self.store.etcd, self.ttl_secs[kind.index()]);
            self.leases[kind.index()].asked = self.send_own(host, Purpose::Lease(kind), call);
        }
    }

    /// Sends a call whose answer the client takes itself; whether it went out.
    fn send_own(&mut self, host: &mut dyn Host, purpose: Purpose, call: Callout) -> bool {
        let Some(token) = host.call(&call) else {
            return false;
        };
        self.keep_sent(token, purpose, call);
        true
    }

    fn keep_sent(&mut self, token: u32, purpose: Purpose, call: Callout) {
        let sent = Sent {
            purpose,
            call,
            retried: false,
        };
        self.calls.insert(token, sent);
    }

    /// The lease of `kind` to put a key with; `None` before etcd granted one, or once a
    /// key put with it would not live as long as its kind must (the store did not answer
    /// the renewals).
    pub(crate) fn lease(&self, kind: LeaseKind, now_ms: u64) -> Option<LeaseId> {
        let slot = &self.leases[kind.index()];
        let keep_ms = self.keep_secs[kind.index()].saturating_mul(1000);
        slot.id
            .filter(|_| now_ms.saturating_add(keep_ms) < slot.ends_ms)
    }

    /// Sends a call whose answer the caller takes (`answered` then says how it went).
    pub(crate) fn send(&mut self, host: &mut dyn Host, call: &Callout) -> Option<u32> {
        let token = host.call(call);
        if token.is_none() {
            self.failed(host, &EtcdError::NoAnswer, "a call could not be sent");
        }
        token
    }

    /// Queues a write nobody waits for (sent from the root); its answer is only logged when
    /// it failed.
    pub(crate) fn write(&mut self, host: &mut dyn Host, call: Callout, what: &'static str) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push((call, Purpose::Write(what)));
        } else {
            self.failed(host, &"too many writes waiting to be sent", what);
        }
    }

    /// Queues a revocation's put (sent from the root); it is tried again
    /// (`take_unpublished`) when it fails.
    pub(crate) fn publish(&mut self, call: Callout, entry: Entry) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push((call, Purpose::Publish(entry)));
        } else {
            self.keep_unpublished(entry);
        }
    }

    /// Sends the queued writes (from the root only: its tick, or a callout answered to it).
    pub(crate) fn flush(&mut self, host: &mut dyn Host) {
        for (call, purpose) in std::mem::take(&mut self.outbox) {
            match (self.send(host, &call), purpose) {
                (Some(token), purpose) => self.keep_sent(token, purpose, call),
                (None, Purpose::Publish(entry)) => self.keep_unpublished(entry),
                (None, _) => {}
            }
        }
    }

    /// Keeps a revocation for another try, within bounds.
    pub(crate) fn keep_unpublished(&mut self, entry: Entry) {
        if self.unpublished.len() < MAX_UNPUBLISHED {
            self.unpublished.push(entry);
        }
    }

    /// The revocations to try to publish again.
    pub(crate) fn take_unpublished(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.unpublished)
    }

    /// Reads the revocations changed since the last sync, when one is due (each
    /// `sync_interval`) and none is under way.
    pub(crate) fn sync(&mut self, host: &mut dyn Host) {
        let now_ms = host.now_ms();
        if self.syncing || now_ms < self.sync_at_ms {
            return;
        }
        self.sync_at_ms = now_ms + self.store.sync_interval_ms;
        let call = revocation_sync::read_changes(&self.store, &self.namespace, self.synced_to);
        if let Some(token) = self.send(host, &call) {
            self.keep_sent(token, Purpose::Sync, call);
            self.syncing = true;
        }
    }

    /// A sync's answer, read with any of `sealers`: the revocations to merge into the
    /// Envoy's set.
    pub(crate) fn take_sync(
        &mut self,
        host: &mut dyn Host,
        response: &CalloutResponse,
        sealers: &[&Sealer],
    ) -> Vec<Entry> {
        self.syncing = false;
        match revocation_sync::read_answer(response, &self.namespace, sealers) {
            Ok(changes) => {
                self.answered(host, Ok(()));
                if changes.next.0 > self.synced_to.0 {
                    self.synced_to = changes.next;
                }
                if changes.unreadable > 0 {
                    let line = format!(
                        "{} revocations in the cluster store do not open with our keys: left out",
                        changes.unreadable
                    );
                    host.log(Severity::Warn, &line);
                }
                changes.entries
            }
            Err(e) => {
                self.answered(host, Err((&e, "syncing revocations")));
                Vec::new()
            }
        }
    }

    /// Takes the answer to a call the client sent itself.
    pub(crate) fn on_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: &CalloutResponse,
    ) -> Taken {
        let Some(sent) = self.calls.remove(&token) else {
            return Taken::NotOurs;
        };
        if !sent.retried && etcd_answer::unanswered(response) {
            // A member that is down or between leaders: Envoy's balancer sends the second
            // try to another, so one member down is no outage.
            if let Some(token) = host.call(&sent.call) {
                let again = Sent {
                    retried: true,
                    ..sent
                };
                self.calls.insert(token, again);
                return Taken::Done;
            }
        }
        match sent.purpose {
            Purpose::Sync => return Taken::Sync,
            Purpose::Publish(entry) => match etcd_answer::read_put(response) {
                Ok(_) => self.answered(host, Ok(())),
                Err(e) => {
                    self.keep_unpublished(entry);
                    self.answered(host, Err((&e, "publishing a revocation")));
                }
            },
            Purpose::Lease(kind) => match etcd_answer::read_lease(response) {
                Ok(granted) => {
                    self.granted(kind, &granted, host.now_ms());
                    self.answered(host, Ok(()));
                }
                Err(e) => {
                    // The last lease is kept while it may live; asked again in a second.
                    let slot = &mut self.leases[kind.index()];
                    slot.asked = false;
                    slot.renew_at_ms = host.now_ms() + LEASE_RETRY_MS;
                    self.answered(host, Err((&e, "a lease could not be granted")));
                }
            },
            Purpose::Probe => {
                self.probing = false;
                let answer = etcd_answer::read_range(response).map(|_| ());
                self.answered(host, answer.as_ref().map_err(|e| (e, "a probe")).copied());
            }
            Purpose::Write(what) => {
                let written = etcd_answer::read_put(response).map(|_| ()).or_else(|e| {
                    match etcd_answer::read_delete(response) {
                        Ok(_) => Ok(()),
                        Err(_) => Err(e),
                    }
                });
                match written {
                    Ok(()) => self.answered(host, Ok(())),
                    Err(e) => self.answered(host, Err((&e, what))),
                }
            }
        }
        Taken::Done
    }

    /// etcd granted a lease of `kind`: keys are put with it from now on.
    fn granted(&mut self, kind: LeaseKind, granted: &LeaseAnswer, now_ms: u64) {
        let ttl_ms = u64::try_from(granted.ttl_secs)
            .unwrap_or(0)
            .saturating_mul(1000);
        let keep_ms = self.keep_secs[kind.index()].saturating_mul(1000);
        let slot = &mut self.leases[kind.index()];
        slot.asked = false;
        slot.id = Some(granted.id);
        slot.ends_ms = now_ms.saturating_add(ttl_ms);
        slot.granted_at_ms = now_ms;
        // Halfway through the time it can be used (a second at least, should etcd grant
        // less than asked).
        let usable_ms = ttl_ms.saturating_sub(keep_ms);
        slot.renew_at_ms = now_ms.saturating_add((usable_ms / 2).max(LEASE_RETRY_MS));
    }

    /// Records how a call went: the first failure and the recovery are logged, failures in
    /// between only at debug, so an outage cannot flood the log.
    pub(crate) fn answered(
        &mut self,
        host: &mut dyn Host,
        outcome: Result<(), (&EtcdError, &str)>,
    ) {
        match outcome {
            Ok(()) => self.succeeded(host),
            // The store answered, but lost the lease: every lease is granted anew.
            Err((e, what)) if e.lease_not_found() => {
                self.succeeded(host);
                self.leases_lost(host, what);
            }
            Err((e, what)) => self.failed(host, e, what),
        }
    }

    /// etcd does not know a lease this client holds: it lost its data (started again
    /// empty), so none of them is good. Each is asked for again on the next tick.
    fn leases_lost(&mut self, host: &mut dyn Host, what: &str) {
        for slot in &mut self.leases {
            slot.id = None;
            slot.renew_at_ms = 0;
        }
        let line = format!(
            "cluster store: etcd does not know this Envoy's lease ({what}); new leases are \
             asked for"
        );
        host.log(Severity::Warn, &line);
    }

    fn succeeded(&mut self, host: &mut dyn Host) {
        if let Some(since) = self.failing_since_ms.take() {
            let secs = host.now_ms().saturating_sub(since) / 1000;
            let line = format!("cluster store answers again, after {secs} s");
            host.log(Severity::Info, &line);
        }
    }

    /// Records a failed call the caller read itself.
    pub(crate) fn note_failure(&mut self, host: &mut dyn Host, error: &str, what: &str) {
        self.failed(host, &error, what);
    }

    fn failed(&mut self, host: &mut dyn Host, e: &dyn std::fmt::Display, what: &str) {
        host.count(Metric::StoreFailures);
        if e.to_string().contains(LEASE_NOT_FOUND) {
            self.forget_leases(host.now_ms());
        }
        let first = self.failing_since_ms.is_none();
        if first {
            self.failing_since_ms = Some(host.now_ms());
        }
        let severity = if first {
            Severity::Warn
        } else {
            Severity::Debug
        };
        let line = format!(
            "cluster store unavailable ({what}: {e}); each Envoy goes on on its own until it \
             answers"
        );
        host.log(severity, &line);
    }

    /// Leases etcd no longer knows are asked for again on the next tick; one granted within
    /// the last second is kept (so a store that keeps saying so gets a grant a second).
    fn forget_leases(&mut self, now_ms: u64) {
        for slot in &mut self.leases {
            let old = now_ms.saturating_sub(slot.granted_at_ms) >= LEASE_RETRY_MS;
            if slot.id.is_some() && old && !slot.asked {
                slot.id = None;
                slot.renew_at_ms = now_ms;
            }
        }
    }

    /// Whether the last call to the store failed (`/ready` says so).
    pub(crate) fn degraded(&self) -> bool {
        self.failing_since_ms.is_some()
    }
}
