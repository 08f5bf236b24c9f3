//! One refresh per session generation across all workers. The first request that finds the
//! session's tokens expired takes a lease in a shared-data slot and refreshes; the others go
//! on with the still-valid old session meanwhile, and later ones carrying the old cookie adopt
//! the published result, or learn that the IdP ended the session.

use crate::core::config::login::LoginService;
use crate::core::login::refresh_slots::{self, Generation, Plan, Slot};
use crate::core::login::session::Session;
use crate::core::random::Random;
use crate::core::shared_data::SharedData;

const PURPOSE: &str = "session";

/// A slot this worker holds while it refreshes one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub generation: Generation,
}

/// What a request whose session needs refreshing does.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Refresh now (call the token endpoint); publish the outcome under the lease.
    Refresh(Lease),
    /// Another worker refreshed this generation: go on with its session (and store it).
    Adopt(Session),
    /// The IdP refused this generation's refresh: the session is over.
    Ended,
    /// A refresh is under way elsewhere, the ring is crowded, or another worker won the
    /// lease: go on with the old session, which is still valid.
    KeepOld,
}

/// Writes every slot of `client_id` that does not exist yet (blank), so that taking a lease
/// is always a compare-and-swap: shared data cannot "create if absent". Live entries are
/// left as they are.
pub fn init_slots(shared: &mut dyn SharedData, client_id: &str) {
    for key in refresh_slots::all_slot_keys(client_id) {
        if shared.get(&key).0.is_none() {
            shared.set(&key, b"", None);
        }
    }
}

fn open(service: &LoginService, sealed: &str) -> Option<Session> {
    let plain = service.sealer.open(PURPOSE, sealed)?;
    serde_json::from_slice(&plain).ok()
}

/// Decides, for a request carrying `session` whose tokens expired, who refreshes; `marker`
/// (random) tells this worker's lease from another's.
pub fn claim(
    shared: &mut dyn SharedData,
    service: &LoginService,
    session: &Session,
    now_ms: u64,
    marker: &str,
) -> Claim {
    let generation = Generation::new(&service.client_id, &session.sid, session.refresh_at);
    let keys = generation.slot_keys(&service.client_id);
    let values: Vec<(Option<Vec<u8>>, Option<u32>)> = keys.iter().map(|k| shared.get(k)).collect();
    let slots: Vec<Slot> = values
        .iter()
        .map(|(v, _)| refresh_slots::read(v.as_deref(), &generation, now_ms))
        .collect();
    let index = match refresh_slots::plan(&slots) {
        Plan::Adopt(sealed) => {
            return open(service, sealed).map_or(Claim::KeepOld, Claim::Adopt);
        }
        Plan::Ended => return Claim::Ended,
        Plan::KeepOld => return Claim::KeepOld,
        Plan::Lease(index) => index,
    };
    // Every slot was written at start (`init_slots`): the lease is a compare-and-swap
    // against the version read, so of two workers racing for it exactly one wins.
    let (Some(key), Some((_, Some(cas)))) = (keys.get(index), values.get(index)) else {
        return Claim::KeepOld;
    };
    let deadline_ms = now_ms + 2 * service.timeout_ms + 1000;
    if !shared.set(key, &generation.lease(deadline_ms, marker), Some(*cas)) {
        return Claim::KeepOld;
    }
    Claim::Refresh(Lease {
        key: key.clone(),
        generation,
    })
}

/// A renewed session sealed for publishing (`None` when there is no randomness).
pub fn seal(service: &LoginService, renewed: &Session, random: &mut dyn Random) -> Option<String> {
    let plain = serde_json::to_vec(renewed).ok()?;
    service.sealer.seal(PURPOSE, &plain, random)
}

/// Publishes a renewed session (sealed by `seal`) for the requests still carrying the old
/// cookie; returns whether it was published (without a sealed session the slot is freed).
pub fn publish_renewed(
    shared: &mut dyn SharedData,
    lease: &Lease,
    sealed: Option<&str>,
    now_ms: u64,
) -> bool {
    match sealed {
        Some(sealed) => shared.set(&lease.key, &lease.generation.done(now_ms, sealed), None),
        None => {
            release(shared, lease);
            false
        }
    }
}

/// The IdP refused the refresh: every request with this generation's cookie learns it.
pub fn publish_ended(shared: &mut dyn SharedData, lease: &Lease, now_ms: u64) {
    shared.set(&lease.key, &lease.generation.ended(now_ms), None);
}

/// The refresh could not be made (IdP unreachable): free the slot, so a later request tries.
pub fn release(shared: &mut dyn SharedData, lease: &Lease) {
    shared.set(&lease.key, b"", None);
}

/// The session another worker published for this lease's generation, if any (a refresh that
/// lost a race with an earlier one finds the winner's result here).
pub fn renewed_elsewhere(
    shared: &dyn SharedData,
    lease: &Lease,
    service: &LoginService,
    now_ms: u64,
) -> Option<Session> {
    let (value, _) = shared.get(&lease.key);
    match refresh_slots::read(value.as_deref(), &lease.generation, now_ms) {
        Slot::Done(sealed) => open(service, sealed),
        _ => None,
    }
}

/// Blanks a published result once its grace period is over, unless the slot was taken over
/// by another generation since.
pub fn forget(shared: &mut dyn SharedData, lease: &Lease) {
    let (value, cas) = shared.get(&lease.key);
    if value.is_some_and(|v| lease.generation.owns(&v)) {
        shared.set(&lease.key, b"", cas);
    }
}
