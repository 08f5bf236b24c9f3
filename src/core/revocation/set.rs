//! The revocation set: for each revoked id, when it was revoked and until when it matters.
//! A session is revoked when any of its ids was revoked at or after it signed in. Merging
//! keeps the later of both times per id, so sets merge in any order to the same result.

use std::collections::HashMap;

use crate::core::revocation::id::{RevokedId, SessionIds, ID_BYTES};

/// One revocation. `until`: when it can be forgotten (every session it revokes has
/// expired by then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: RevokedId,
    /// Unix seconds: sessions signed in at or before it are revoked.
    pub revoked_at: u64,
    /// Unix seconds.
    pub until: u64,
}

/// Bytes of one encoded entry: the id, then both times as little-endian u64.
pub const ENTRY_BYTES: usize = ID_BYTES + 16;
/// The first byte of an encoded set: its format.
const FORMAT: u8 = 1;

impl Entry {
    /// The entry as bytes (for shared data, or a store's value).
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut bytes = [0u8; ENTRY_BYTES];
        let (id, times) = bytes.split_at_mut(ID_BYTES);
        id.copy_from_slice(self.id.as_bytes());
        let (revoked_at, until) = times.split_at_mut(8);
        revoked_at.copy_from_slice(&self.revoked_at.to_le_bytes());
        until.copy_from_slice(&self.until.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        if bytes.len() != ENTRY_BYTES {
            return None;
        }
        let (id, times) = bytes.split_at(ID_BYTES);
        let (revoked_at, until) = times.split_at(8);
        Some(Entry {
            id: RevokedId::from_bytes(id)?,
            revoked_at: u64::from_le_bytes(revoked_at.try_into().ok()?),
            until: u64::from_le_bytes(until.try_into().ok()?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Times {
    revoked_at: u64,
    until: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationSet {
    entries: HashMap<RevokedId, Times>,
}

impl RevocationSet {
    pub fn new() -> RevocationSet {
        RevocationSet::default()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a session with these ids, signed in at `signed_in_at`, is revoked.
    pub fn revokes(&self, ids: &SessionIds, signed_in_at: u64) -> bool {
        !self.entries.is_empty()
            && ids.iter().any(|id| {
                self.entries
                    .get(id)
                    .is_some_and(|t| t.revoked_at >= signed_in_at)
            })
    }

    /// Whether `id` is in the set (a logout token's `jti` seen before).
    pub fn contains(&self, id: &RevokedId) -> bool {
        self.entries.contains_key(id)
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn get(&self, id: &RevokedId) -> Option<Entry> {
        self.entries.get(id).map(|t| Entry {
            id: *id,
            revoked_at: t.revoked_at,
            until: t.until,
        })
    }

    /// Adds `entry`, or takes the later times where the id is in already; whether the set
    /// changed.
    pub fn insert(&mut self, entry: Entry) -> bool {
        let times = Times {
            revoked_at: entry.revoked_at,
            until: entry.until,
        };
        match self.entries.get_mut(&entry.id) {
            None => {
                self.entries.insert(entry.id, times);
                true
            }
            Some(t) => {
                let merged = Times {
                    revoked_at: t.revoked_at.max(times.revoked_at),
                    until: t.until.max(times.until),
                };
                let changed = merged != *t;
                *t = merged;
                changed
            }
        }
    }

    /// Takes in every entry of `other`; whether this set changed.
    pub fn merge(&mut self, other: &RevocationSet) -> bool {
        let mut changed = false;
        for entry in other.entries() {
            changed |= self.insert(entry);
        }
        changed
    }

    /// Forgets entries whose `until` has passed; how many.
    pub fn prune(&mut self, now_secs: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, t| t.until > now_secs);
        before - self.entries.len()
    }

    /// Keeps at most `max` entries, forgetting first those that would be forgotten soonest
    /// anyway (they guard the sessions closest to their end); how many were dropped.
    pub fn bound(&mut self, max: usize) -> usize {
        let over = self.entries.len().saturating_sub(max);
        if over == 0 {
            return 0;
        }
        let mut by_until: Vec<(u64, RevokedId)> =
            self.entries.iter().map(|(id, t)| (t.until, *id)).collect();
        by_until.sort_unstable();
        for (_, id) in by_until.into_iter().take(over) {
            self.entries.remove(&id);
        }
        over
    }

    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().map(|(id, t)| Entry {
            id: *id,
            revoked_at: t.revoked_at,
            until: t.until,
        })
    }

    /// The set as bytes: a format byte, then `ENTRY_BYTES` per entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + self.entries.len() * ENTRY_BYTES);
        bytes.push(FORMAT);
        for entry in self.entries() {
            bytes.extend_from_slice(&entry.encode());
        }
        bytes
    }

    /// A set from `encode`'s bytes; `None` when they are not one (the empty value too).
    pub fn decode(bytes: &[u8]) -> Option<RevocationSet> {
        let (format, body) = bytes.split_first()?;
        if *format != FORMAT || body.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let mut set = RevocationSet::new();
        for chunk in body.chunks_exact(ENTRY_BYTES) {
            set.insert(Entry::decode(chunk)?);
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::login::session::Session;

    const ISS: &str = "https://dex.example.com";

    fn entry(id: RevokedId, revoked_at: u64, until: u64) -> Entry {
        Entry {
            id,
            revoked_at,
            until,
        }
    }

    fn alice(sid: &str, idp_sid: Option<&str>) -> SessionIds {
        let session = Session {
            sid: sid.into(),
            user: "alice-id".into(),
            idp_sid: idp_sid.map(str::to_string),
            ..Session::default()
        };
        SessionIds::of(&session, ISS)
    }

    #[test]
    fn a_session_is_revoked_by_any_of_its_ids_revoked_when_or_after_it_signed_in() {
        let mut set = RevocationSet::new();
        let ids = alice("s1", Some("idp-1"));
        assert!(!set.revokes(&ids, 100), "empty");
        set.insert(entry(RevokedId::session("s2"), 200, 900));
        set.insert(entry(RevokedId::idp_session(ISS, "idp-2"), 200, 900));
        set.insert(entry(
            RevokedId::user("https://other", "alice-id"),
            200,
            900,
        ));
        assert!(
            !set.revokes(&ids, 100),
            "other sessions, IdP sessions, issuers"
        );
        for id in [
            RevokedId::session("s1"),
            RevokedId::idp_session(ISS, "idp-1"),
            RevokedId::user(ISS, "alice-id"),
        ] {
            let mut set = set.clone();
            set.insert(entry(id, 150, 900));
            assert!(set.revokes(&ids, 100), "signed in before: {id:?}");
            assert!(set.revokes(&ids, 150), "in the same second: {id:?}");
            assert!(!set.revokes(&ids, 151), "signed in after: {id:?}");
        }
    }

    #[test]
    fn merging_keeps_the_later_times_in_any_order() {
        let id = RevokedId::user(ISS, "alice-id");
        let other = RevokedId::session("s1");
        let mut a = RevocationSet::new();
        a.insert(entry(id, 100, 500));
        let mut b = RevocationSet::new();
        b.insert(entry(id, 300, 400));
        b.insert(entry(other, 50, 60));
        let mut ab = a.clone();
        assert!(ab.merge(&b));
        let mut ba = b.clone();
        assert!(ba.merge(&a));
        assert_eq!(ab, ba);
        assert_eq!(ab.get(&id), Some(entry(id, 300, 500)));
        assert_eq!(ab.len(), 2);
        assert!(!ab.clone().merge(&ba), "merging again changes nothing");
    }

    #[test]
    fn pruning_forgets_entries_whose_time_has_passed() {
        let mut set = RevocationSet::new();
        set.insert(entry(RevokedId::session("a"), 1, 100));
        set.insert(entry(RevokedId::session("b"), 1, 200));
        assert_eq!(set.prune(99), 0);
        assert_eq!(set.prune(100), 1);
        assert!(!set.contains(&RevokedId::session("a")));
        assert!(set.contains(&RevokedId::session("b")));
    }

    #[test]
    fn past_its_bound_the_set_forgets_what_it_would_forget_soonest() {
        let mut set = RevocationSet::new();
        for i in 0..10u64 {
            set.insert(entry(RevokedId::session(&i.to_string()), 1, 1000 - i));
        }
        assert_eq!(set.bound(20), 0);
        assert_eq!(set.bound(7), 3);
        assert_eq!(set.len(), 7);
        for i in 0..7u64 {
            assert!(set.contains(&RevokedId::session(&i.to_string())), "{i}");
        }
    }

    #[test]
    fn the_encoding_round_trips_and_refuses_anything_else() {
        let mut set = RevocationSet::new();
        set.insert(entry(RevokedId::session("a"), 1, u64::MAX));
        set.insert(entry(
            RevokedId::user(ISS, "b"),
            1_800_000_000,
            1_800_028_800,
        ));
        let bytes = set.encode();
        assert_eq!(bytes.len(), 1 + 2 * ENTRY_BYTES);
        assert_eq!(RevocationSet::decode(&bytes), Some(set.clone()));
        assert_eq!(
            RevocationSet::decode(&RevocationSet::new().encode()),
            Some(RevocationSet::new())
        );
        assert_eq!(RevocationSet::decode(b""), None);
        assert_eq!(RevocationSet::decode(&bytes[..bytes.len() - 1]), None);
        let mut other_format = bytes.clone();
        other_format[0] = 2;
        assert_eq!(RevocationSet::decode(&other_format), None);
        let one = set.entries().next().unwrap();
        assert_eq!(Entry::decode(&one.encode()), Some(one));
        assert_eq!(Entry::decode(&one.encode()[1..]), None);
    }
}
