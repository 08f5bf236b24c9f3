//! Server-side sessions (`session_store: "cluster"`): the browser's cookie holds only a
//! sealed handle (a few hundred bytes, whatever the session holds), and the session lives in
//! the store under the handle's hashed key, sealed with the service's cookie keys and bound
//! to that key. Whoever reads the store learns nothing; whoever writes it can neither forge
//! a session nor move one to another handle.

use serde::{Deserialize, Serialize};

use crate::core::cluster::namespace::{Kind, Namespace};
use crate::core::cluster::sealed_value::{open_value, seal_value};
use crate::core::login::session::Session;
use crate::core::random::Random;
use crate::core::seal::Sealer;

const HANDLE_PURPOSE: &str = "session handle";
/// Random bytes in a handle: as many as an AES-256 key, never guessed.
const HANDLE_BYTES: usize = 32;

/// A new handle, or `None` without randomness.
pub fn new_handle(random: &mut dyn Random) -> Option<String> {
    random.token(HANDLE_BYTES)
}

/// The cookie value that carries `handle`.
pub fn seal_handle(sealer: &Sealer, handle: &str, random: &mut dyn Random) -> Option<String> {
    sealer.seal(HANDLE_PURPOSE, handle.as_bytes(), random)
}

/// The handle a cookie value carries; `None` for anything not sealed as one by this service.
pub fn open_handle(sealer: &Sealer, cookie_value: &str) -> Option<String> {
    let plain = sealer.open(HANDLE_PURPOSE, cookie_value)?;
    String::from_utf8(plain).ok()
}

/// Where the session of `handle` is stored.
pub fn key(namespace: &Namespace, handle: &str) -> String {
    namespace.key(Kind::Sessions, handle.as_bytes())
}

/// A session as stored: with the issuer whose ID token started it.
#[derive(Serialize)]
struct Storing<'a> {
    iss: &'a str,
    #[serde(flatten)]
    session: &'a Session,
}

#[derive(Deserialize)]
struct Stored {
    iss: String,
    #[serde(flatten)]
    session: Session,
}

/// `session` sealed to be stored under `key`.
pub fn seal_session(
    sealer: &Sealer,
    key: &str,
    session: &Session,
    random: &mut dyn Random,
) -> Option<Vec<u8>> {
    let storing = Storing {
        iss: sealer.issuer(),
        session,
    };
    let plain = serde_json::to_vec(&storing).ok()?;
    seal_value(sealer, key, &plain, random)
}

/// The session stored under `key`; `None` for anything this service did not store there.
pub fn open_session(sealer: &Sealer, key: &str, stored: &[u8]) -> Option<Session> {
    let plain = open_value(sealer, key, stored)?;
    let stored: Stored = serde_json::from_slice(&plain).ok()?;
    (stored.iss == sealer.issuer()).then_some(stored.session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::random::Seeded;
    use crate::core::secret::Secret;

    fn sealer(service: &str) -> Sealer {
        let secrets = [Secret::new("s".repeat(32))];
        Sealer::new(&secrets, "https://dex.example.com", service).unwrap()
    }

    fn session(groups: usize) -> Session {
        Session {
            sid: "sid-1".into(),
            user: "alice".into(),
            groups: (0..groups)
                .map(|i| format!("github:org:team-{i}"))
                .collect(),
            expires_at: 2_000_000_000,
            refresh_token: Some(Secret::new("rt")),
            id_token: Some(Secret::new("x".repeat(3000))),
            ..Session::default()
        }
    }

    #[test]
    fn a_handle_cookie_stays_small_however_large_the_session_and_opens_only_here() {
        let (grafana, prometheus) = (sealer("grafana"), sealer("prometheus"));
        let mut random = Seeded(7);
        let handle = new_handle(&mut random).unwrap();
        let cookie = seal_handle(&grafana, &handle, &mut random).unwrap();
        assert!(cookie.len() < 200, "{}", cookie.len());
        assert_eq!(open_handle(&grafana, &cookie), Some(handle.clone()));
        assert_eq!(open_handle(&prometheus, &cookie), None);
        let namespace = Namespace::new("/wasm-iap");
        let key = key(&namespace, &handle);
        let stored = seal_session(&grafana, &key, &session(300), &mut random).unwrap();
        assert_eq!(open_session(&grafana, &key, &stored), Some(session(300)));
        assert_eq!(open_session(&prometheus, &key, &stored), None);
        let other = self::key(&namespace, "another-handle");
        assert_eq!(
            open_session(&grafana, &other, &stored),
            None,
            "moved to another handle"
        );
        let text = String::from_utf8_lossy(&stored);
        assert!(
            !text.contains("alice") && !text.contains("team-1"),
            "sealed"
        );
    }
}
