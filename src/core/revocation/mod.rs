//! Revoked sessions: a sign-out, an IdP's back-channel logout, or all of a user's sessions.
//!
//! - `id`: what an entry names (SHA-256 of a kind-tagged id), and the ids a session has;
//! - `set`: the set itself (pure): entries with when they were revoked and until when they
//!   matter, the check of a session, merging, pruning and a compact encoding;
//! - `shared`: the set of one Envoy in shared data, CAS-merged by whoever revokes, and this
//!   worker's copy, read again on its tick only when the shared version changed, so checking
//!   a request costs no host call.
pub mod id;
pub mod set;
pub mod shared;

pub use id::{RevokedId, SessionIds};
pub use set::Entry;
#[cfg(any(test, feature = "testing"))]
pub use set::RevocationSet;
pub use shared::Revocations;
