//! Store values sealed with a login service's cookie keys, bound to the key they are
//! stored under: whoever can read the store learns nothing, and whoever can write it can
//! neither forge a value nor move a sealed one to another key (another session, another
//! kind) and have it open there.

use crate::core::random::Random;
use crate::core::seal::Sealer;

fn purpose(key: &str) -> String {
    format!("cluster-store {key}")
}

/// `plain` sealed for `key`, as the bytes to store; `None` without randomness.
pub fn seal_value(
    sealer: &Sealer,
    key: &str,
    plain: &[u8],
    random: &mut dyn Random,
) -> Option<Vec<u8>> {
    sealer
        .seal(&purpose(key), plain, random)
        .map(String::into_bytes)
}

/// The value stored under `key`, opened; `None` for anything sealed for another key, by
/// other keys, tampered or garbage.
pub fn open_value(sealer: &Sealer, key: &str, stored: &[u8]) -> Option<Vec<u8>> {
    let sealed = std::str::from_utf8(stored).ok()?;
    sealer.open(&purpose(key), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::namespace::{Kind, Namespace};
    use crate::core::random::Seeded;
    use crate::core::secret::Secret;

    fn sealer(secret: char, service: &str) -> Sealer {
        let secrets = [Secret::new(secret.to_string().repeat(32))];
        Sealer::new(&secrets, "https://dex.example.com", service).unwrap()
    }

    #[test]
    fn a_value_opens_under_its_own_key_only() {
        let ns = Namespace::new("/wasm-iap");
        let s = sealer('a', "prometheus");
        let key = ns.key(Kind::Sessions, b"handle-1");
        let stored = seal_value(&s, &key, b"tokens and claims", &mut Seeded(1)).unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("tokens"));
        assert_eq!(
            open_value(&s, &key, &stored).as_deref(),
            Some(&b"tokens and claims"[..])
        );
        let other_session = ns.key(Kind::Sessions, b"handle-2");
        assert_eq!(open_value(&s, &other_session, &stored), None);
        let other_kind = ns.key(Kind::Refresh, b"handle-1");
        assert_eq!(open_value(&s, &other_kind, &stored), None);
        let other_prefix = Namespace::new("/other").key(Kind::Sessions, b"handle-1");
        assert_eq!(open_value(&s, &other_prefix, &stored), None);
    }

    #[test]
    fn only_the_services_keys_open_it_and_nothing_forged_does() {
        let key = Namespace::new("/wasm-iap").key(Kind::Sessions, b"h");
        let stored = seal_value(&sealer('a', "prometheus"), &key, b"v", &mut Seeded(2)).unwrap();
        assert_eq!(open_value(&sealer('b', "prometheus"), &key, &stored), None);
        assert_eq!(open_value(&sealer('a', "grafana"), &key, &stored), None);
        let s = sealer('a', "prometheus");
        let mut tampered = stored.clone();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        for forged in [&tampered[..], b"", b"{\"user\":\"admin\"}", b"\xff\xfe"] {
            assert_eq!(open_value(&s, &key, forged), None);
        }
    }
}
