//! Where the workers agree on one refresh per session generation: a fixed ring of shared-data
//! slots (Envoy cannot delete shared-data keys), so refreshes over months never grow shared
//! memory. A generation hashes to a slot and probes a few after it; every entry carries its
//! generation's tag and an expiry, after which any worker may reuse the slot.

use sha2::{Digest, Sha256};

/// Slots per client: with `PROBES`, hundreds of sessions may refresh in the same ten
/// minutes without crowding each other out.
pub const SLOTS: u64 = 4096;
pub(crate) const PROBES: u64 = 4;
/// How long a published result stays readable for requests still carrying the old cookie.
pub const RESULT_KEPT_MS: u64 = 10 * 60 * 1000;

fn slot_key(client_id: &str, slot: u64) -> String {
    format!("wasm-iap/refresh/{client_id}/{slot}")
}

/// Every slot of a client. Each VM writes the absent ones (blank) at start, so that taking
/// a lease is always a compare-and-swap: shared data has no "create if absent".
pub(crate) fn all_slot_keys(client_id: &str) -> impl Iterator<Item = String> + '_ {
    (0..SLOTS).map(move |slot| slot_key(client_id, slot))
}

/// One session generation (a session id and the token expiry it refreshes at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    tag: String,
    first_slot: u64,
}

impl Generation {
    pub fn new(client_id: &str, sid: &str, refresh_at: u64) -> Generation {
        let digest = Sha256::digest(format!("{client_id}\n{sid}\n{refresh_at}").as_bytes());
        let tag: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[16..24]);
        Generation {
            tag,
            first_slot: u64::from_le_bytes(head) % SLOTS,
        }
    }

    /// What names the generation (a hash of the service, session id and expiry): the same
    /// on every replica that sees the same cookie.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// The shared-data keys this generation may use, in probing order.
    pub fn slot_keys(&self, client_id: &str) -> Vec<String> {
        (0..PROBES)
            .map(|p| {
                format!(
                    "wasm-iap/refresh/{client_id}/{}",
                    (self.first_slot + p) % SLOTS
                )
            })
            .collect()
    }

    pub(crate) fn lease(&self, deadline_ms: u64, marker: &str) -> Vec<u8> {
        format!("{} {deadline_ms} lease {marker}", self.tag).into_bytes()
    }

    pub(crate) fn done(&self, now_ms: u64, sealed_session: &str) -> Vec<u8> {
        let until = now_ms.saturating_add(RESULT_KEPT_MS);
        format!("{} {until} done {sealed_session}", self.tag).into_bytes()
    }

    pub(crate) fn ended(&self, now_ms: u64) -> Vec<u8> {
        let until = now_ms.saturating_add(RESULT_KEPT_MS);
        format!("{} {until} ended", self.tag).into_bytes()
    }

    /// Whether `value` is the lease with `marker` of this generation: the one a worker
    /// took, still unexpired or not.
    pub(crate) fn is_lease(&self, value: &[u8], marker: &str) -> bool {
        let Ok(text) = std::str::from_utf8(value) else {
            return false;
        };
        let mut parts = text.splitn(4, ' ');
        parts.next() == Some(self.tag.as_str())
            && parts.next().is_some()
            && parts.next() == Some("lease")
            && parts.next() == Some(marker)
    }

    /// Whether a slot still holds an entry of this generation (so blanking it is ours to do).
    pub fn owns(&self, value: &[u8]) -> bool {
        value.starts_with(self.tag.as_bytes()) && value.get(self.tag.len()) == Some(&b' ')
    }
}

/// What a slot holds, as seen by one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Empty, expired, or unreadable: free to take.
    Free,
    /// A live entry of another generation: leave it alone.
    Foreign,
    /// Ours: a worker refreshes now.
    Leased,
    /// Ours: the refreshed session, sealed.
    Done(&'a str),
    /// Ours: the IdP refused the refresh; the session is over.
    Ended,
}

pub fn read<'a>(value: Option<&'a [u8]>, generation: &Generation, now_ms: u64) -> Slot<'a> {
    let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
        return Slot::Free;
    };
    let mut parts = text.splitn(4, ' ');
    let (Some(tag), Some(until), Some(kind)) = (parts.next(), parts.next(), parts.next()) else {
        return Slot::Free;
    };
    let Ok(until) = until.parse::<u64>() else {
        return Slot::Free;
    };
    if now_ms >= until {
        return Slot::Free;
    }
    if tag != generation.tag {
        return Slot::Foreign;
    }
    match (kind, parts.next()) {
        ("lease", _) => Slot::Leased,
        ("done", Some(sealed)) => Slot::Done(sealed),
        ("ended", _) => Slot::Ended,
        _ => Slot::Free,
    }
}

/// What a request whose session needs refreshing does, given the probed slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan<'a> {
    /// Another worker refreshed this generation: use its result.
    Adopt(&'a str),
    /// The IdP refused this generation's refresh: the session is over.
    Ended,
    /// A refresh is under way elsewhere, or every slot is busy: go on with the old session.
    KeepOld,
    /// Take slot `index` (of the probed keys) with a lease, then refresh.
    Lease(usize),
}

pub(crate) fn plan<'a>(slots: &[Slot<'a>]) -> Plan<'a> {
    for slot in slots {
        match slot {
            Slot::Done(sealed) => return Plan::Adopt(sealed),
            Slot::Ended => return Plan::Ended,
            Slot::Leased => return Plan::KeepOld,
            Slot::Free | Slot::Foreign => {}
        }
    }
    slots
        .iter()
        .position(|s| *s == Slot::Free)
        .map_or(Plan::KeepOld, Plan::Lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn generation(refresh_at: u64) -> Generation {
        Generation::new("grafana", "sid-1", refresh_at)
    }

    #[test]
    fn keys_stay_within_a_fixed_ring_however_many_generations() {
        let mut keys = std::collections::HashSet::new();
        for refresh_at in 0..20_000 {
            keys.extend(generation(refresh_at).slot_keys("grafana"));
        }
        assert!(keys.len() as u64 <= SLOTS, "{}", keys.len());
        let all: std::collections::HashSet<String> = all_slot_keys("grafana").collect();
        assert!(
            keys.is_subset(&all),
            "every probed slot is one written at start"
        );
    }

    #[test]
    fn a_generation_reads_its_own_entries_and_leaves_others_alone() {
        let mine = generation(1);
        let other = generation(2);
        let lease = mine.lease(NOW + 5_000, "m");
        let done = mine.done(NOW, "sealed.value");
        let ended = mine.ended(NOW);
        assert_eq!(read(Some(&lease), &mine, NOW), Slot::Leased);
        assert_eq!(read(Some(&done), &mine, NOW), Slot::Done("sealed.value"));
        assert_eq!(read(Some(&ended), &mine, NOW), Slot::Ended);
        assert_eq!(read(Some(&done), &other, NOW), Slot::Foreign);
        assert!(mine.owns(&done) && !other.owns(&done));
        assert_eq!(
            read(Some(&lease), &mine, NOW + 5_000),
            Slot::Free,
            "lease ran out"
        );
        assert_eq!(
            read(Some(&done), &other, NOW + RESULT_KEPT_MS),
            Slot::Free,
            "expired results are reusable by anyone"
        );
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"tag",
            b"tag notanumber done x",
            b"t 9 what",
        ] {
            assert_eq!(read(Some(junk), &mine, NOW), Slot::Free, "{junk:?}");
        }
        assert_eq!(read(None, &mine, NOW), Slot::Free);
    }

    #[test]
    fn the_plan_prefers_a_published_result_and_never_takes_a_busy_slot() {
        use Slot::*;
        assert_eq!(plan(&[Foreign, Done("s"), Free, Free]), Plan::Adopt("s"));
        assert_eq!(plan(&[Free, Ended, Free, Free]), Plan::Ended);
        assert_eq!(plan(&[Free, Leased, Free, Free]), Plan::KeepOld);
        assert_eq!(plan(&[Foreign, Foreign, Free, Free]), Plan::Lease(2));
        assert_eq!(
            plan(&[Foreign, Foreign, Foreign, Foreign]),
            Plan::KeepOld,
            "a crowded ring delays a refresh, never overwrites another session's"
        );
    }
}
