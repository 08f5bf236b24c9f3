//! Verified tokens every worker sees, in shared data: a token is verified once per Envoy,
//! not once per worker VM (an RS256 check costs far more than reading a bucket).
//!
//! Tokens are named by a SHA-256 digest and spread over a fixed number of buckets of at
//! most `BUCKET_BYTES`, so the whole cache never takes more than the configured bytes. A
//! bucket keeps its newest entries. Every entry carries the generation (configuration and
//! keys) it was verified under: after a key rotation or a new configuration, older entries
//! are simply not found.

use sha2::{Digest, Sha256};

use crate::core::identity::Identity;
use crate::core::shared_data::SharedData;

/// Most bytes one bucket holds: an entry with hundreds of groups still fits alone.
pub(crate) const BUCKET_BYTES: usize = 8192;
const KEY_PREFIX: &str = "wasm-iap/verified-tokens/";
const FORMAT: u8 = 1;
const DIGEST_BYTES: usize = 16;
/// digest, generation, valid until, identity length.
const ENTRY_HEAD: usize = DIGEST_BYTES + 8 + 8 + 4;

/// A token's name in the cache: the first half of its SHA-256 (collisions would need a
/// 2^128 search; the generation check comes on top).
pub(crate) type TokenDigest = [u8; DIGEST_BYTES];

pub(crate) fn digest_of(token: &str) -> TokenDigest {
    let full = Sha256::digest(token.as_bytes());
    let mut digest = [0u8; DIGEST_BYTES];
    for (d, f) in digest.iter_mut().zip(full.iter()) {
        *d = *f;
    }
    digest
}

/// Names this build's verification rules: bump the suffix when they change within a version.
const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), "/rules-1");

/// Which build, configuration and keys (each provider's JWKS document) an entry was
/// verified under.
pub(crate) fn generation_of(config_fingerprint: &[u8], jwks: &[&str]) -> u64 {
    // Another build of the filter under the same vm_id must not trust what this one verified.
    let mut hash = Sha256::new()
        .chain_update(BUILD.as_bytes())
        .chain_update(config_fingerprint);
    for document in jwks {
        hash.update((document.len() as u64).to_le_bytes());
        hash.update(document.as_bytes());
    }
    let full = hash.finalize();
    let mut first = [0u8; 8];
    for (d, f) in first.iter_mut().zip(full.iter()) {
        *d = *f;
    }
    u64::from_le_bytes(first)
}

struct Entry<'a> {
    digest: TokenDigest,
    generation: u64,
    valid_until_secs: u64,
    identity: &'a [u8],
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
    *bytes = rest;
    Some(head)
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn next_entry<'a>(rest: &mut &'a [u8]) -> Option<Entry<'a>> {
    let digest = take(rest, DIGEST_BYTES)?.try_into().ok()?;
    let generation = u64_of(take(rest, 8)?)?;
    let valid_until_secs = u64_of(take(rest, 8)?)?;
    let len = u32::from_le_bytes(take(rest, 4)?.try_into().ok()?);
    let identity = take(rest, usize::try_from(len).ok()?)?;
    Some(Entry {
        digest,
        generation,
        valid_until_secs,
        identity,
    })
}

/// A bucket's entries, oldest first, borrowed from it; a bucket that does not decode is
/// empty.
fn decode(bucket: &[u8]) -> Vec<Entry<'_>> {
    let Some((&FORMAT, mut rest)) = bucket.split_first() else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    while !rest.is_empty() {
        match next_entry(&mut rest) {
            Some(entry) => entries.push(entry),
            None => return Vec::new(),
        }
    }
    entries
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| ENTRY_HEAD + e.identity.len()).sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(FORMAT);
    for e in entries {
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&e.generation.to_le_bytes());
        out.extend_from_slice(&e.valid_until_secs.to_le_bytes());
        out.extend_from_slice(&(e.identity.len() as u32).to_le_bytes());
        out.extend_from_slice(e.identity);
    }
    out
}

/// The verified-token cache over shared data, `buckets` buckets (0: off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedTokenCache {
    buckets: u32,
}

impl SharedTokenCache {
    /// A cache of at most `max_bytes` (bucket contents; Envoy adds a little per key).
    pub(crate) fn new(max_bytes: usize) -> Self {
        let buckets = (max_bytes / BUCKET_BYTES).min(u32::MAX as usize) as u32;
        SharedTokenCache { buckets }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.buckets > 0
    }

    fn key(&self, digest: &TokenDigest) -> Option<String> {
        let word: [u8; 4] = digest.get(..4)?.try_into().ok()?;
        let bucket = u32::from_le_bytes(word).checked_rem(self.buckets)?;
        Some(format!("{KEY_PREFIX}{bucket}"))
    }

    /// The identity verified for `digest` under `generation`, and until when it passes.
    pub(crate) fn get(
        &self,
        store: &dyn SharedData,
        digest: &TokenDigest,
        generation: u64,
        now_secs: u64,
    ) -> Option<(Identity, u64)> {
        let (bucket, _) = store.get(&self.key(digest)?);
        let bucket = bucket?;
        let entry = decode(&bucket).into_iter().rev().find(|e| {
            e.digest == *digest && e.generation == generation && now_secs < e.valid_until_secs
        })?;
        let identity = serde_json::from_slice(entry.identity).ok()?;
        Some((identity, entry.valid_until_secs))
    }

    /// Records a verified token; a bucket full of newer entries, or another worker writing
    /// it at the same moment, only means the token is not shared this time.
    pub(crate) fn put(
        &self,
        store: &mut dyn SharedData,
        digest: &TokenDigest,
        generation: u64,
        identity: &Identity,
        valid_until_secs: u64,
        now_secs: u64,
    ) {
        let Some(key) = self.key(digest) else {
            return;
        };
        let Ok(identity) = serde_json::to_vec(identity) else {
            return;
        };
        if 1 + ENTRY_HEAD + identity.len() > BUCKET_BYTES {
            return;
        }
        let (bucket, cas) = store.get(&key);
        let bucket = bucket.unwrap_or_default();
        let mut entries: Vec<Entry> = decode(&bucket)
            .into_iter()
            .filter(|e| e.digest != *digest && now_secs < e.valid_until_secs)
            .collect();
        entries.push(Entry {
            digest: *digest,
            generation,
            valid_until_secs,
            identity: &identity,
        });
        let mut size: usize = 1 + entries
            .iter()
            .map(|e| ENTRY_HEAD + e.identity.len())
            .sum::<usize>();
        let mut oldest = 0;
        while size > BUCKET_BYTES {
            let Some(e) = entries.get(oldest) else {
                return;
            };
            size -= ENTRY_HEAD + e.identity.len();
            oldest += 1;
        }
        store.set(
            &key,
            &encode(entries.get(oldest..).unwrap_or_default()),
            cas,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Store(HashMap<String, (Vec<u8>, u32)>);

    impl SharedData for Store {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.0.get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let current = self.0.get(key).map(|(_, c)| *c);
            if cas.is_some() && current.is_some() && cas != current {
                return false;
            }
            let next = current.unwrap_or(0) + 1;
            self.0.insert(key.into(), (value.to_vec(), next));
            true
        }
    }

    fn someone(user: &str, groups: usize) -> Identity {
        Identity {
            user: user.into(),
            groups: (0..groups).map(|i| format!("group-{i}")).collect(),
            issuer: "https://issuer".into(),
            ..Identity::default()
        }
    }

    #[test]
    fn a_token_verified_on_one_worker_is_found_by_the_others_until_it_expires() {
        let cache = SharedTokenCache::new(1 << 20);
        let mut store = Store::default();
        let digest = digest_of("token-a");
        cache.put(&mut store, &digest, 7, &someone("alice", 3), 200, 100);
        let found = cache.get(&store, &digest, 7, 150);
        assert_eq!(found, Some((someone("alice", 3), 200)));
        assert_eq!(cache.get(&store, &digest, 7, 200), None, "expired");
        assert_eq!(
            cache.get(&store, &digest, 8, 150),
            None,
            "another generation of keys or configuration"
        );
        assert_eq!(cache.get(&store, &digest_of("token-b"), 7, 150), None);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bytes() {
        let max = 64 * BUCKET_BYTES;
        let cache = SharedTokenCache::new(max);
        let mut store = Store::default();
        for i in 0..5_000 {
            let digest = digest_of(&format!("token-{i}"));
            cache.put(
                &mut store,
                &digest,
                1,
                &someone(&format!("u{i}"), i % 40),
                10_000,
                1,
            );
        }
        let held: usize = store.0.values().map(|(v, _)| v.len()).sum();
        assert!(store.0.len() <= 64, "{} buckets", store.0.len());
        assert!(held <= max, "{held} > {max}");
        let newest = digest_of("token-4999");
        assert!(
            cache.get(&store, &newest, 1, 2).is_some(),
            "the newest is kept"
        );
    }

    #[test]
    fn an_identity_too_large_for_a_bucket_is_not_shared_and_evicts_nothing() {
        let cache = SharedTokenCache::new(4 * BUCKET_BYTES);
        let mut store = Store::default();
        let small = digest_of("small");
        cache.put(&mut store, &small, 1, &someone("alice", 1), 100, 1);
        let huge = digest_of("huge");
        cache.put(&mut store, &huge, 1, &someone("bob", 2_000), 100, 1);
        assert!(cache.get(&store, &huge, 1, 2).is_none());
        assert!(cache.get(&store, &small, 1, 2).is_some());
    }

    #[test]
    fn garbage_in_a_bucket_is_an_empty_bucket() {
        let cache = SharedTokenCache::new(BUCKET_BYTES);
        let mut store = Store::default();
        let digest = digest_of("t");
        cache.put(&mut store, &digest, 1, &someone("alice", 0), 100, 1);
        let key = cache.key(&digest).unwrap();
        let mut bytes = store.0[&key].0.clone();
        bytes.truncate(bytes.len() - 3);
        store.0.insert(key.clone(), (bytes, 9));
        assert_eq!(cache.get(&store, &digest, 1, 2), None);
        cache.put(&mut store, &digest, 1, &someone("alice", 0), 100, 1);
        assert!(
            cache.get(&store, &digest, 1, 2).is_some(),
            "rewritten whole"
        );
    }

    #[test]
    fn off_when_no_bytes_are_given() {
        let cache = SharedTokenCache::new(0);
        let mut store = Store::default();
        assert!(!cache.is_on());
        let digest = digest_of("t");
        cache.put(&mut store, &digest, 1, &someone("alice", 0), 100, 1);
        assert!(store.0.is_empty());
        assert_eq!(cache.get(&store, &digest, 1, 2), None);
    }
}
