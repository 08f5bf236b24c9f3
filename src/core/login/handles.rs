//! Server-side sessions this worker has read from the cluster store, by handle: a browser's
//! requests find the session here, so only the first requests of a session on a worker
//! (and one every 30 s after) wait for the store. Entries are short-lived because another
//! replica may renew or end the session; the fleet's refresh lock outlives them by far, so
//! a worker never refreshes with a refresh token another replica spent long ago.

use std::collections::HashMap;
use std::rc::Rc;

use crate::core::login::opened::Opened;

/// How long a session read from the store is used before it is read again.
const SESSION_KEPT_MS: u64 = 30_000;
/// A handle the store does not know (signed out, expired, forged) is asked again after this.
const ABSENT_KEPT_MS: u64 = 5_000;
/// A store that did not answer is asked again for the handle after this.
const UNREACHABLE_KEPT_MS: u64 = 1_000;
/// Handles kept at most per worker and service.
const MAX_HANDLES: usize = 20_000;

/// What the store said of a handle.
#[derive(Clone, Debug)]
pub(crate) enum Stored {
    Session(Rc<Opened>),
    /// No session under this handle.
    Absent,
    /// The store did not answer.
    Unreachable,
}

#[derive(Debug)]
struct Entry {
    known: Stored,
    until_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Handles {
    entries: HashMap<String, Entry>,
}

impl Handles {
    /// What is known of `handle` and still fresh.
    pub(crate) fn get(&self, handle: &str, now_ms: u64) -> Option<&Stored> {
        let entry = self.entries.get(handle)?;
        (now_ms < entry.until_ms).then_some(&entry.known)
    }

    /// Takes in what the store said of `handle` (a read's answer, or a session this worker
    /// wrote or renewed).
    pub(crate) fn learn(&mut self, handle: &str, known: Stored, now_ms: u64) {
        let kept_ms = match known {
            Stored::Session(_) => SESSION_KEPT_MS,
            Stored::Absent => ABSENT_KEPT_MS,
            Stored::Unreachable => UNREACHABLE_KEPT_MS,
        };
        if self.entries.len() >= MAX_HANDLES {
            self.entries.retain(|_, e| now_ms < e.until_ms);
            if self.entries.len() >= MAX_HANDLES {
                self.entries.clear();
            }
        }
        let until_ms = now_ms.saturating_add(kept_ms);
        self.entries
            .insert(handle.to_string(), Entry { known, until_ms });
    }

    /// Forgets `handle` (signed out here).
    pub(crate) fn forget(&mut self, handle: &str) {
        self.entries.remove(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::login::session::Session;

    fn opened() -> Stored {
        let session = Session::default();
        Stored::Session(Rc::new(Opened::new(session, "https://issuer")))
    }

    #[test]
    fn what_the_store_said_is_used_for_a_while_then_read_again() {
        let mut handles = Handles::default();
        handles.learn("h", opened(), 1_000);
        assert!(matches!(handles.get("h", 30_999), Some(Stored::Session(_))));
        assert!(handles.get("h", 31_000).is_none(), "read again after 30 s");
        handles.learn("gone", Stored::Absent, 1_000);
        assert!(handles.get("gone", 6_000).is_none());
        handles.learn("down", Stored::Unreachable, 1_000);
        assert!(matches!(
            handles.get("down", 1_500),
            Some(Stored::Unreachable)
        ));
        assert!(handles.get("down", 2_000).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut handles = Handles::default();
        for i in 0..(MAX_HANDLES + 10) {
            handles.learn(&format!("h{i}"), Stored::Absent, 1);
        }
        assert!(handles.entries.len() <= MAX_HANDLES);
    }
}
