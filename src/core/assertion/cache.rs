//! One worker's signed assertions, reused until less than half their lifetime remains:
//! a signature per identity per interval, not per request. Bounded; pruned on the tick.

use std::collections::HashMap;

use crate::core::identity::Identity;

/// Whose assertion: the service, the audience, and the caller (a session's id, or for a
/// token what its assertion says: the user, and a digest of email and groups, so tokens
/// of one user with other groups do not take turns replacing each other).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub(crate) service: (bool, usize),
    pub(crate) audience: String,
    pub(crate) caller: Caller,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    Session(String),
    Token { user: String, says: u64 },
}

impl Caller {
    pub(crate) fn of_token(identity: &Identity) -> Caller {
        use std::hash::{Hash, Hasher};
        // Only picks the slot: an entry is reused only when it says exactly the same.
        let mut digest = std::hash::DefaultHasher::new();
        identity.email.hash(&mut digest);
        identity.groups.hash(&mut digest);
        Caller::Token {
            user: identity.user.clone(),
            says: digest.finish(),
        }
    }
}

struct Entry {
    /// What the assertion says of the caller: reused only for the same.
    user: String,
    email: Option<String>,
    groups: Vec<String>,
    token: String,
    /// Reused while the clock is before this (half its lifetime).
    renew_at_secs: u64,
}

impl Entry {
    fn says(&self, identity: &Identity) -> bool {
        self.user == identity.user && self.email == identity.email && self.groups == identity.groups
    }
}

/// Assertions kept at most per worker: a few MB even with large group lists.
pub(crate) const MAX_ASSERTIONS: usize = 4096;

#[derive(Default)]
pub(crate) struct AssertionCache {
    entries: HashMap<CacheKey, Entry>,
    /// Assertions signed (for tests and the bench's proof that signing is not per request).
    signed: u64,
}

impl AssertionCache {
    /// The assertion kept for `key` when it still says `identity` and has more than half
    /// its lifetime left.
    pub(crate) fn get(&self, key: &CacheKey, identity: &Identity, now_secs: u64) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|e| now_secs < e.renew_at_secs && e.says(identity))
            .map(|e| e.token.as_str())
    }

    pub(crate) fn insert(
        &mut self,
        key: CacheKey,
        identity: &Identity,
        token: String,
        renew_at_secs: u64,
        now_secs: u64,
    ) {
        self.signed += 1;
        if self.entries.len() >= MAX_ASSERTIONS && !self.entries.contains_key(&key) {
            self.prune(now_secs);
            if self.entries.len() >= MAX_ASSERTIONS {
                // Full of live ones: the rest are signed per request until the tick.
                return;
            }
        }
        let entry = Entry {
            user: identity.user.clone(),
            email: identity.email.clone(),
            groups: identity.groups.clone(),
            token,
            renew_at_secs,
        };
        self.entries.insert(key, entry);
    }

    /// Drops what would not be reused any more.
    pub(crate) fn prune(&mut self, now_secs: u64) {
        self.entries.retain(|_, e| now_secs < e.renew_at_secs);
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn signed(&self) -> u64 {
        self.signed
    }
}
