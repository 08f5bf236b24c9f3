//! Sessions this VM has already opened, by their exact sealed text: a browser sends the same
//! cookie on every request, and opening it (AES-GCM in software, then JSON) costs 10-100 us
//! inside V8, so each value is opened once. Bounded in bytes; expiry is checked per request.

use std::collections::HashMap;
use std::rc::Rc;

use crate::core::identity::Identity;
use crate::core::login::session::Session;
use crate::core::revocation::SessionIds;

/// What a sealed value held, with the identity rules and headers read from it, and the
/// ids a revocation may name it by (hashed once here, not on every request).
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) session: Session,
    pub(crate) identity: Rc<Identity>,
    pub(crate) ids: SessionIds,
}

impl Opened {
    /// `session`, signed in at `issuer`.
    pub(crate) fn new(session: Session, issuer: &str) -> Opened {
        let identity = Rc::new(session.identity(issuer));
        let ids = SessionIds::of(&session, issuer);
        Opened {
            session,
            identity,
            ids,
        }
    }
}

/// The last bytes of a sealed value (they hold the AES-GCM tag) and its length: a cheap key.
/// Two values sharing it are told apart by comparing the whole text.
type Tail = ([u8; TAIL_BYTES], usize);
const TAIL_BYTES: usize = 24;

struct Entry {
    sealed: Box<str>,
    opened: Rc<Opened>,
    cost: usize,
}

pub(crate) struct OpenedSessions {
    entries: HashMap<Tail, Entry>,
    bytes: usize,
    max_bytes: usize,
}

/// Bytes a value and what it opened to take, roughly: the text, and its plaintext twice
/// (the session and the identity built from it).
fn cost_of(sealed: &str) -> usize {
    sealed.len().saturating_mul(3).saturating_add(256)
}

fn tail_of(sealed: &str) -> Tail {
    let bytes = sealed.as_bytes();
    let mut tail = [0u8; TAIL_BYTES];
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let end = bytes.get(start..).unwrap_or_default();
    if let Some(slot) = tail.get_mut(..end.len()) {
        slot.copy_from_slice(end);
    }
    (tail, bytes.len())
}

impl OpenedSessions {
    pub(crate) fn new(max_bytes: usize) -> Self {
        OpenedSessions {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The session `sealed` opens to, opening it with `open` only when this exact text was
    /// not seen before; `None` when it does not open. Sessions past `expires_at` are `None`.
    pub(crate) fn get_or_open(
        &mut self,
        sealed: &str,
        now_secs: u64,
        open: impl FnOnce(&str) -> Option<Opened>,
    ) -> Option<Rc<Opened>> {
        let tail = tail_of(sealed);
        let known = self
            .entries
            .get(&tail)
            .filter(|e| *e.sealed == *sealed)
            .map(|e| Rc::clone(&e.opened));
        let opened = match known {
            Some(opened) => opened,
            None => {
                let opened = Rc::new(open(sealed)?);
                self.insert(tail, sealed, Rc::clone(&opened), now_secs);
                opened
            }
        };
        (now_secs < opened.session.expires_at).then_some(opened)
    }

    fn insert(&mut self, tail: Tail, sealed: &str, opened: Rc<Opened>, now_secs: u64) {
        let cost = cost_of(sealed);
        if cost > self.max_bytes / 4 {
            return;
        }
        if self.bytes.saturating_add(cost) > self.max_bytes {
            self.entries
                .retain(|_, e| now_secs < e.opened.session.expires_at);
            self.bytes = self.entries.values().map(|e| e.cost).sum();
        }
        if self.bytes.saturating_add(cost) > self.max_bytes {
            self.entries.clear();
            self.bytes = 0;
        }
        let entry = Entry {
            sealed: sealed.into(),
            opened,
            cost,
        };
        if let Some(old) = self.entries.insert(tail, entry) {
            self.bytes = self.bytes.saturating_sub(old.cost);
        }
        self.bytes = self.bytes.saturating_add(cost);
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(user: &str, expires_at: u64) -> Option<Opened> {
        let session = Session {
            user: user.into(),
            expires_at,
            ..Session::default()
        };
        Some(Opened::new(session, "https://issuer"))
    }

    #[test]
    fn a_value_is_opened_once_and_then_served_until_it_expires() {
        let mut cache = OpenedSessions::new(1 << 20);
        let mut opens = 0;
        for now in [100, 101, 150] {
            let got = cache.get_or_open("sealed-alice", now, |_| {
                opens += 1;
                opened("alice", 200)
            });
            assert_eq!(
                got.map(|o| o.session.user.clone()).as_deref(),
                Some("alice")
            );
        }
        assert_eq!(opens, 1);
        assert!(cache.get_or_open("sealed-alice", 200, |_| None).is_none());
    }

    #[test]
    fn values_sharing_a_tail_are_told_apart_by_their_whole_text() {
        let mut cache = OpenedSessions::new(1 << 20);
        let tail = "x".repeat(TAIL_BYTES);
        let alice = format!("A{tail}");
        let mallory = format!("M{tail}");
        cache.get_or_open(&alice, 1, |_| opened("alice", 10));
        let got = cache.get_or_open(&mallory, 1, |_| None);
        assert!(
            got.is_none(),
            "a different value must be opened itself, and fails"
        );
        let got = cache.get_or_open(&mallory, 1, |_| opened("mallory", 10));
        assert_eq!(
            got.map(|o| o.session.user.clone()).as_deref(),
            Some("mallory")
        );
    }

    #[test]
    fn a_value_that_does_not_open_is_not_remembered() {
        let mut cache = OpenedSessions::new(1 << 20);
        assert!(cache.get_or_open("garbage", 1, |_| None).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let max = 64 * 1024;
        let mut cache = OpenedSessions::new(max);
        for i in 0..1_000 {
            let sealed = format!("{i:0>500}");
            cache.get_or_open(&sealed, 1, |_| opened("u", 10));
            assert!(cache.bytes() <= max, "{} > {max}", cache.bytes());
        }
        assert!(!cache.is_empty());
        let huge = "h".repeat(max);
        cache.get_or_open(&huge, 1, |_| opened("u", 10));
        assert!(cache.bytes() <= max, "a value over a quarter is not kept");
    }
}
