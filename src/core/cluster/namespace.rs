//! Where things live in the store: `<prefix>/<kind>/<SHA-256 of the id, hex>`. The id
//! (a session handle, a user, a `jti`) is only ever stored hashed, so whoever can list the
//! keys learns no session id or user name, and no id can break out of its kind.

use sha2::{Digest, Sha256};

/// One sub-namespace per kind of entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Refresh locks and the sessions their winners published.
    Refresh,
    /// Revoked sessions and users.
    Revoked,
    /// Server-side sessions.
    Sessions,
    /// Back-channel logout tokens already seen (`jti` replay).
    Jti,
}

impl Kind {
    fn segment(self) -> &'static str {
        match self {
            Kind::Refresh => "refresh",
            Kind::Revoked => "revoked",
            Kind::Sessions => "sessions",
            Kind::Jti => "jti",
        }
    }
}

/// The keys under one configured prefix (`cluster_store.etcd.prefix`, checked to start
/// with `/` and not end with one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

/// SHA-256 of `id`, as 64 lower-case hex digits.
pub fn hash_id(id: &[u8]) -> String {
    Sha256::digest(id)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        Namespace {
            prefix: prefix.to_string(),
        }
    }

    /// Every key of `kind` starts with this (`/wasm-iap/revoked/`): what a sync ranges over.
    pub fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}/{}/", self.prefix, kind.segment())
    }

    /// The key of `id` among the entries of `kind`.
    pub fn key(&self, kind: Kind, id: &[u8]) -> String {
        format!("{}{}", self.kind_prefix(kind), hash_id(id))
    }

    /// The hashed id a key of `kind` names (compare with `hash_id`); `None` for a key of
    /// another kind or prefix, or one that is not a hash (written by someone else).
    pub fn hashed_id<'a>(&self, kind: Kind, key: &'a [u8]) -> Option<&'a str> {
        let rest = key.strip_prefix(self.kind_prefix(kind).as_bytes())?;
        let hex = std::str::from_utf8(rest).ok()?;
        let is_hash = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_hash.then_some(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_kind_and_only_a_hash_of_the_id() {
        let ns = Namespace::new("/wasm-iap");
        let key = ns.key(Kind::Sessions, b"alice@example.com");
        assert_eq!(
            key,
            "/wasm-iap/sessions/ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
        );
        assert!(!key.contains("alice"));
        assert_eq!(ns.kind_prefix(Kind::Refresh), "/wasm-iap/refresh/");
        assert!(ns
            .key(Kind::Refresh, b"s")
            .starts_with("/wasm-iap/refresh/"));
        assert!(ns
            .key(Kind::Revoked, b"s")
            .starts_with("/wasm-iap/revoked/"));
        assert!(ns.key(Kind::Jti, b"s").starts_with("/wasm-iap/jti/"));
    }

    #[test]
    fn no_id_leaves_its_kind_or_prefix() {
        let ns = Namespace::new("/wasm-iap");
        for id in [&b"../revoked/x"[..], b"/", b"", b"\xff\x00\n"] {
            let key = ns.key(Kind::Sessions, id);
            assert_eq!(
                ns.hashed_id(Kind::Sessions, key.as_bytes()).map(str::len),
                Some(64)
            );
            assert_eq!(key.len(), "/wasm-iap/sessions/".len() + 64);
        }
        let other = Namespace::new("/wasm-iap-staging");
        let key = other.key(Kind::Revoked, b"s");
        assert!(!key.starts_with(&ns.kind_prefix(Kind::Revoked)));
    }

    #[test]
    fn a_synced_key_gives_back_the_hash_it_was_made_with() {
        let ns = Namespace::new("/team/iap");
        let key = ns.key(Kind::Revoked, b"session-handle");
        assert_eq!(
            ns.hashed_id(Kind::Revoked, key.as_bytes()),
            Some(hash_id(b"session-handle").as_str())
        );
        assert_eq!(ns.hashed_id(Kind::Sessions, key.as_bytes()), None);
        for foreign in [
            &b"/team/iap/revoked/"[..],
            b"/team/iap/revoked/alice",
            b"/team/iap/revoked/FF8D9819FC0E12BF0D24892E45987E249A28DCE836A85CAD60E28EAAA8C6D976",
            b"/other/revoked/ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976",
        ] {
            assert_eq!(ns.hashed_id(Kind::Revoked, foreign), None);
        }
    }
}
