//! The revocation set of one Envoy: one shared-data key every worker reads, written only by
//! compare-and-swap merges (a worker that revokes, or a sync from elsewhere), and a second,
//! tiny key whose version changes after every write. Each worker keeps a copy of the set:
//! checking a request is a lookup in it, and the tick reads the set again only when the
//! version changed.

use crate::core::host::Host;
use crate::core::reply::Severity;
use crate::core::revocation::id::SessionIds;
use crate::core::revocation::set::{Entry, RevocationSet};
use crate::core::shared_data::SharedData;

pub(crate) const SET_KEY: &str = "wasm-iap/revoked/set";
pub(crate) const VERSION_KEY: &str = "wasm-iap/revoked/version";
/// Entries kept at most (48 bytes each): past it, those forgotten soonest anyway go first.
pub const MAX_ENTRIES: usize = 10_000;
/// Compare-and-swap attempts before a write gives up (other workers kept writing first).
const MAX_TRIES: usize = 8;

/// Why entries were not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAdded {
    /// The entry that may be added only once (a logout token's `jti`) is there already.
    Replayed,
    /// Shared data could not be written.
    NotStored,
}

#[derive(Default)]
pub struct Revocations {
    /// This worker's copy of the shared set.
    set: RevocationSet,
    /// The version of the shared set the copy was read at.
    seen_version: Option<u32>,
    /// Requests refused because their session was revoked, since the last tick.
    refused: u64,
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Writes an empty set when there is none, so every later write is a compare-and-swap
    /// (shared data cannot "create if absent"); each worker does it at start.
    pub fn prepare(shared: &mut dyn SharedData) {
        if shared.get(SET_KEY).0.is_none() {
            shared.set(SET_KEY, &RevocationSet::new().encode(), None);
        }
    }

    /// This worker's copy.
    #[cfg(any(test, feature = "testing"))]
    pub fn set(&self) -> &RevocationSet {
        &self.set
    }

    /// Whether a session with `ids`, signed in at `signed_in_at`, is revoked (counted when
    /// it is; `take_refused` reports the count on the tick).
    pub fn refuses(&mut self, ids: &SessionIds, signed_in_at: u64) -> bool {
        let revoked = self.set.revokes(ids, signed_in_at);
        if revoked {
            self.refused += 1;
        }
        revoked
    }

    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// On the tick: reads the shared set again when its version changed since the last
    /// read; whether this worker's copy changed.
    pub fn take_in(&mut self, host: &mut dyn Host) -> bool {
        let (_, version) = host.get(VERSION_KEY);
        if version == self.seen_version {
            return false;
        }
        self.seen_version = version;
        let Some(mut shared) = read(host) else {
            return false;
        };
        shared.prune(host.now_ms() / 1000);
        let changed = shared != self.set;
        self.set = shared;
        changed
    }

    /// Revokes `entries` on every worker of this Envoy: merged into the shared set (by
    /// compare-and-swap) and into this worker's copy at once. Returns the entries that were
    /// new or later than what the set had: for revocations made here, what a fleet layer
    /// publishes further; entries synced from elsewhere are merged the same way.
    pub fn add(&mut self, host: &mut dyn Host, entries: &[Entry]) -> Result<Vec<Entry>, NotAdded> {
        self.write(host, None, entries)
    }

    /// As `add`, but only when `once` (a logout token's `jti`) is not in the set yet; then
    /// `once` is added with them, in the same write, so two workers taking the same token
    /// at the same moment cannot both take it in.
    pub fn add_once(
        &mut self,
        host: &mut dyn Host,
        once: Entry,
        entries: &[Entry],
    ) -> Result<Vec<Entry>, NotAdded> {
        if self.set.contains(&once.id) {
            return Err(NotAdded::Replayed);
        }
        self.write(host, Some(once), entries)
    }

    fn write(
        &mut self,
        host: &mut dyn Host,
        once: Option<Entry>,
        entries: &[Entry],
    ) -> Result<Vec<Entry>, NotAdded> {
        let now_secs = host.now_ms() / 1000;
        for _ in 0..MAX_TRIES {
            let (value, cas) = host.get(SET_KEY);
            let mut shared = match value.as_deref().map(RevocationSet::decode) {
                Some(Some(set)) => set,
                Some(None) => {
                    host.log(
                        Severity::Warn,
                        "the shared revocation set does not decode: it is written anew",
                    );
                    RevocationSet::new()
                }
                None => RevocationSet::new(),
            };
            if once.is_some_and(|once| shared.contains(&once.id)) {
                self.set.merge(&shared);
                return Err(NotAdded::Replayed);
            }
            let new: Vec<Entry> = once
                .iter()
                .chain(entries)
                .copied()
                .filter(|entry| shared.insert(*entry))
                .collect();
            if new.is_empty() {
                self.set.merge(&shared);
                return Ok(new);
            }
            shared.prune(now_secs);
            let dropped = shared.bound(MAX_ENTRIES);
            if host.set(SET_KEY, &shared.encode(), cas) {
                if dropped > 0 {
                    host.log(
                        Severity::Warn,
                        &format!("the revocation set is full ({MAX_ENTRIES} entries): {dropped} that would have been forgotten soonest were dropped"),
                    );
                }
                bump_version(host);
                self.set = shared;
                return Ok(new);
            }
        }
        host.log(
            Severity::Warn,
            "a revocation could not be written to shared data: other workers kept writing first",
        );
        Err(NotAdded::NotStored)
    }
}

/// The shared set; `None` (logged) when it is missing or does not decode.
fn read(host: &mut dyn Host) -> Option<RevocationSet> {
    let (value, _) = host.get(SET_KEY);
    let set = value.as_deref().and_then(RevocationSet::decode);
    if set.is_none() && value.is_some() {
        host.log(
            Severity::Warn,
            "the shared revocation set does not decode: the last copy stays in use",
        );
    }
    set
}

/// Tells every worker the set changed: any write changes the key's version.
fn bump_version(shared: &mut dyn SharedData) {
    let (value, _) = shared.get(VERSION_KEY);
    let count = value
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_le_bytes);
    shared.set(VERSION_KEY, &count.wrapping_add(1).to_le_bytes(), None);
}
