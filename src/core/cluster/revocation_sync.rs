//! Revocations across the fleet: each one made here is put in the store under
//! `<prefix>/revoked/<hash of its id>` (sealed, on the long lease); each worker reads what
//! changed since its last read every `sync_interval`, oldest first and a page at a time, and
//! merges it into its Envoy's set. No request waits for the store: checking a session stays
//! a lookup in the worker's copy of the set.

use crate::core::cluster::etcd::{self, Keys, LeaseId, Range};
use crate::core::cluster::etcd_answer::{self, EtcdError};
use crate::core::cluster::namespace::{Kind, Namespace};
use crate::core::cluster::sealed_value::{open_value, seal_value};
use crate::core::config::cluster_store::ClusterStore;
use crate::core::host::Callout;
use crate::core::keys::fetch::CalloutResponse;
use crate::core::random::Random;
use crate::core::revocation::set::Entry;
use crate::core::seal::Sealer;

/// Entries read at most per sync: a page well within what a callout's answer may hold.
const PAGE: u64 = 500;

/// Where the next sync starts: the first revision it has not seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncedTo(pub(crate) i64);

/// The call that puts `entry` in the store; `None` without randomness.
pub(crate) fn publish(
    store: &ClusterStore,
    namespace: &Namespace,
    sealer: &Sealer,
    entry: &Entry,
    lease: LeaseId,
    random: &mut dyn Random,
) -> Option<Callout> {
    let key = namespace.key(Kind::Revoked, entry.id.as_bytes());
    let sealed = seal_value(sealer, &key, &entry.encode(), random)?;
    Some(etcd::put(&store.etcd, key.as_bytes(), &sealed, Some(lease)))
}

/// The call that reads what changed since `from`.
pub(crate) fn read_changes(store: &ClusterStore, namespace: &Namespace, from: SyncedTo) -> Callout {
    let prefix = namespace.kind_prefix(Kind::Revoked);
    let range = Range {
        keys: Keys::Prefix(prefix.as_bytes()),
        min_mod_revision: from.0,
        limit: PAGE,
    };
    etcd::range(&store.etcd, &range)
}

/// The revocations a sync read, and where the next one starts. Values that do not open
/// with any of `sealers` (written by someone without the keys, or moved to another key) are
/// left out and counted.
pub(crate) struct Changes {
    pub(crate) entries: Vec<Entry>,
    pub(crate) next: SyncedTo,
    pub(crate) unreadable: usize,
}

pub(crate) fn read_answer(
    response: &CalloutResponse,
    namespace: &Namespace,
    sealers: &[&Sealer],
) -> Result<Changes, EtcdError> {
    let answer = etcd_answer::read_range(response)?;
    let mut entries = Vec::new();
    let mut unreadable = 0;
    for kv in &answer.kvs {
        let entry = std::str::from_utf8(&kv.key)
            .ok()
            .filter(|key| namespace.hashed_id(Kind::Revoked, key.as_bytes()).is_some())
            .and_then(|key| sealers.iter().find_map(|s| open_value(s, key, &kv.value)))
            .and_then(|plain| Entry::decode(&plain))
            .filter(|entry| namespace.key(Kind::Revoked, entry.id.as_bytes()).as_bytes() == kv.key);
        match entry {
            Some(entry) => entries.push(entry),
            None => unreadable += 1,
        }
    }
    // After a full page, the next read starts after its newest change; else after the
    // store's revision, so nothing older is read twice.
    let last = answer
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or(0);
    let next = if answer.more {
        last.saturating_add(1)
    } else {
        answer.revision.saturating_add(1)
    };
    Ok(Changes {
        entries,
        next: SyncedTo(next),
        unreadable,
    })
}
