//! Tokens already verified on this VM, so a signature is checked once per token rather than
//! once per request (RS256 costs ~1.5 ms inside V8). Cleared whenever keys change.

use std::collections::HashMap;
use std::rc::Rc;

use crate::core::identity::Identity;

/// How long a token without `exp` may be served from the cache.
pub(crate) const NO_EXPIRY_TTL_SECS: u64 = 60;

struct Entry {
    identity: Rc<Identity>,
    valid_until_secs: u64,
}

pub(crate) struct TokenCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub(crate) fn get(&self, token: &str, now_secs: u64) -> Option<Rc<Identity>> {
        self.entries
            .get(token)
            .filter(|e| now_secs < e.valid_until_secs)
            .map(|e| Rc::clone(&e.identity))
    }

    /// `valid_until_secs` is the first second at which the token no longer passes.
    pub(crate) fn insert(
        &mut self,
        token: &str,
        identity: Rc<Identity>,
        valid_until: Option<u64>,
        now_secs: u64,
    ) {
        let valid_until_secs = valid_until.unwrap_or(now_secs.saturating_add(NO_EXPIRY_TTL_SECS));
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now_secs < e.valid_until_secs);
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(
            token.to_string(),
            Entry {
                identity,
                valid_until_secs,
            },
        );
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Rc<Identity> {
        Rc::new(Identity {
            user: "alice".into(),
            email: None,
            preferred_username: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            issuer: String::new(),
            claims: serde_json::Map::new(),
            ..Identity::default()
        })
    }

    #[test]
    fn cached_token_stops_passing_when_it_expires() {
        let mut cache = TokenCache::new(10);
        cache.insert("t", alice(), Some(1_100), 1_000);
        assert!(cache.get("t", 1_099).is_some());
        assert!(cache.get("t", 1_100).is_none());
    }

    #[test]
    fn token_without_expiry_is_cached_briefly() {
        let mut cache = TokenCache::new(10);
        cache.insert("t", alice(), None, 1_000);
        assert!(cache.get("t", 1_000 + NO_EXPIRY_TTL_SECS).is_none());
    }

    #[test]
    fn cache_stays_bounded() {
        let mut cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(&format!("t{i}"), alice(), Some(5_000), 1_000);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get("t9", 1_000).is_some(), "the newest token is kept");
    }
}
