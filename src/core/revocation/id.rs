//! What a revocation names: the SHA-256 of a kind-tagged id (`session:<our sid>`,
//! `idp_session:<iss>\n<IdP sid>`, `user:<iss>\n<sub>`, `logout_jti:<iss>\n<jti>`), so the
//! set and any store it is synced through hold no session id or user name in clear, and
//! ids of different kinds never collide.

use sha2::{Digest, Sha256};

use crate::core::login::session::Session;

pub const ID_BYTES: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevokedId(pub(crate) [u8; ID_BYTES]);

impl RevokedId {
    fn of(tagged: &str) -> RevokedId {
        RevokedId(Sha256::digest(tagged.as_bytes()).into())
    }

    /// One session of ours (its random `sid`, kept across refreshes).
    pub fn session(sid: &str) -> RevokedId {
        RevokedId::of(&format!("session:{sid}"))
    }

    /// The IdP's session `sid` (the ID token's `sid` claim) at issuer `iss`.
    pub fn idp_session(iss: &str, sid: &str) -> RevokedId {
        RevokedId::of(&format!("idp_session:{iss}\n{sid}"))
    }

    /// Every session of the user `sub` at issuer `iss`.
    pub fn user(iss: &str, sub: &str) -> RevokedId {
        RevokedId::of(&format!("user:{iss}\n{sub}"))
    }

    /// A logout token already taken in (its `jti`), so a replay is refused.
    pub fn logout_jti(iss: &str, jti: &str) -> RevokedId {
        RevokedId::of(&format!("logout_jti:{iss}\n{jti}"))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<RevokedId> {
        bytes.try_into().ok().map(RevokedId)
    }

    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// Lower-case hex (a store's key names it so).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Digests are not secret, but the hex is all a reader needs.
impl std::fmt::Debug for RevokedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.hex();
        write!(f, "RevokedId({})", hex.get(..12).unwrap_or_default())
    }
}

/// The ids one session answers to: computed once when a cookie is opened, so checking a
/// request is a few hash-map lookups and no SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIds {
    pub(crate) session: RevokedId,
    pub(crate) idp_session: Option<RevokedId>,
    pub(crate) user: RevokedId,
}

impl SessionIds {
    /// The ids of `session`, signed in at `issuer`.
    pub fn of(session: &Session, issuer: &str) -> SessionIds {
        SessionIds {
            session: RevokedId::session(&session.sid),
            idp_session: session
                .idp_sid
                .as_deref()
                .map(|sid| RevokedId::idp_session(issuer, sid)),
            user: RevokedId::user(issuer, session.subject()),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &RevokedId> {
        std::iter::once(&self.session)
            .chain(self.idp_session.as_ref())
            .chain(std::iter::once(&self.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_never_collide_and_the_hex_is_the_digest() {
        let ids = [
            RevokedId::session("x"),
            RevokedId::idp_session("https://i", "x"),
            RevokedId::user("https://i", "x"),
            RevokedId::logout_jti("https://i", "x"),
            RevokedId::user("https://j", "x"),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let hex = RevokedId::session("x").hex();
        assert_eq!(hex.len(), 64);
        let expected: String = Sha256::digest(b"session:x")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn a_session_has_its_own_id_its_idp_sessions_and_its_users() {
        let mut session = Session {
            sid: "ours".into(),
            user: "alice@example.com".into(),
            sub: Some("alice-id".into()),
            ..Session::default()
        };
        let ids = SessionIds::of(&session, "https://i");
        assert_eq!(ids.session, RevokedId::session("ours"));
        assert_eq!(ids.user, RevokedId::user("https://i", "alice-id"));
        assert_eq!(ids.idp_session, None);
        assert_eq!(ids.iter().count(), 2);
        session.idp_sid = Some("idp-1".into());
        session.sub = None;
        let ids = SessionIds::of(&session, "https://i");
        assert_eq!(
            ids.idp_session,
            Some(RevokedId::idp_session("https://i", "idp-1"))
        );
        assert_eq!(
            ids.user,
            RevokedId::user("https://i", "alice@example.com"),
            "without a sub of its own, the user claim is the sub"
        );
        assert_eq!(ids.iter().count(), 3);
    }
}
