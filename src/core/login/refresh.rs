//! One refresh per session generation across all workers. The first request that finds the
//! session's tokens expired takes a lease in a shared-data slot and refreshes; the others go
//! on with the still-valid old session meanwhile, and later ones carrying the old cookie adopt
//! the published result, or learn that the IdP ended the session.

use crate::core::config::login::LoginService;
use crate::core::login::refresh_slots::{self, Generation, Plan, Slot};
use crate::core::login::session::{self, Session};
use crate::core::random::Random;
use crate::core::shared_data::SharedData;

/// A slot this worker holds while it refreshes one generation; `marker` tells its lease
/// from one another worker took after this one ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub(crate) key: String,
    pub(crate) generation: Generation,
    marker: String,
}

/// A free slot a request may lease to refresh: taking it needs a random marker, asked for
/// only now (`take`).
#[derive(Debug, PartialEq, Eq)]
pub struct Candidate {
    key: String,
    cas: u32,
    generation: Generation,
}

/// What a request whose session needs refreshing does.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// A slot is free: `take` it, then refresh (call the token endpoint) and publish the
    /// outcome under the lease.
    Free(Candidate),
    /// Another worker refreshed this generation: go on with its session (and store it).
    Adopt(Box<Session>),
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

/// A published session opens as a cookie does: for this service and its issuer only.
pub(crate) fn open(service: &LoginService, sealed: &str) -> Option<Session> {
    session::open_for(service, sealed)
}

/// Decides, for a request carrying `session` whose tokens expired, who refreshes.
pub fn claim(
    shared: &dyn SharedData,
    service: &LoginService,
    session: &Session,
    now_ms: u64,
) -> Claim {
    let client_id = &service.idp(session.idp).client_id;
    let generation = Generation::new(client_id, &session.sid, session.refresh_at);
    let keys = generation.slot_keys(client_id);
    let values: Vec<(Option<Vec<u8>>, Option<u32>)> = keys.iter().map(|k| shared.get(k)).collect();
    let slots: Vec<Slot> = values
        .iter()
        .map(|(v, _)| refresh_slots::read(v.as_deref(), &generation, now_ms))
        .collect();
    let index = match refresh_slots::plan(&slots) {
        Plan::Adopt(sealed) => {
            return open(service, sealed).map_or(Claim::KeepOld, |s| Claim::Adopt(Box::new(s)));
        }
        Plan::Ended => return Claim::Ended,
        Plan::KeepOld => return Claim::KeepOld,
        Plan::Lease(index) => index,
    };
    // Every slot was written at start (`init_slots`): the lease is a compare-and-swap
    // against the version read, so of two workers racing for it exactly one wins.
    match (keys.get(index), values.get(index)) {
        (Some(key), Some((_, Some(cas)))) => Claim::Free(Candidate {
            key: key.clone(),
            cas: *cas,
            generation,
        }),
        _ => Claim::KeepOld,
    }
}

/// Takes a free slot until the token call can have timed out twice; `None` when another
/// worker wrote it first (go on with the old session).
pub fn take(
    shared: &mut dyn SharedData,
    candidate: Candidate,
    service: &LoginService,
    now_ms: u64,
    marker: String,
) -> Option<Lease> {
    let deadline_ms = now_ms + 2 * service.longest_token_timeout_ms() + 1000;
    let value = candidate.generation.lease(deadline_ms, &marker);
    shared
        .set(&candidate.key, &value, Some(candidate.cas))
        .then_some(Lease {
            key: candidate.key,
            generation: candidate.generation,
            marker,
        })
}

/// Keeps the lease until `until_ms` (a refreshed ID token waiting for keys must not let
/// another worker spend the same refresh token); `false` when it is no longer ours.
pub fn extend(shared: &mut dyn SharedData, lease: &Lease, until_ms: u64) -> bool {
    let (value, cas) = shared.get(&lease.key);
    if !value.is_some_and(|v| lease.generation.is_lease(&v, &lease.marker)) {
        return false;
    }
    let extended = lease.generation.lease(until_ms, &lease.marker);
    shared.set(&lease.key, &extended, cas)
}

/// Writes the outcome into the slot only while it still holds this lease: a worker whose
/// lease ran out never overwrites what another worker (or session) put there since.
fn write_if_ours(shared: &mut dyn SharedData, lease: &Lease, value: &[u8]) -> bool {
    let (current, cas) = shared.get(&lease.key);
    current.is_some_and(|v| lease.generation.is_lease(&v, &lease.marker))
        && shared.set(&lease.key, value, cas)
}

/// A renewed session sealed for publishing (`None` when there is no randomness).
pub fn seal(service: &LoginService, renewed: &Session, random: &mut dyn Random) -> Option<String> {
    session::seal(renewed, &service.idp(renewed.idp).sealer, random)
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
        Some(sealed) => write_if_ours(shared, lease, &lease.generation.done(now_ms, sealed)),
        None => {
            release(shared, lease);
            false
        }
    }
}

/// The IdP refused the refresh: every request with this generation's cookie learns it.
pub fn publish_ended(shared: &mut dyn SharedData, lease: &Lease, now_ms: u64) {
    write_if_ours(shared, lease, &lease.generation.ended(now_ms));
}

/// The refresh could not be made (IdP unreachable): free the slot, so a later request tries.
pub fn release(shared: &mut dyn SharedData, lease: &Lease) {
    write_if_ours(shared, lease, b"");
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
