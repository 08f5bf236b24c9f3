//! Signed identity assertions: a short-lived JWT the upstream can verify against the
//! gateway's JWKS, instead of trusting plain identity headers (Pomerium's
//! `X-Pomerium-Jwt-Assertion`, Google IAP's `x-goog-iap-jwt-assertion`).
//! - `keys`: the gateway's signing keys (ES256, EdDSA) and the JWKS;
//! - `claims`: what an assertion says, and the derived `sid`;
//! - `cache`: one worker's assertions, reused for half their lifetime;
//! - `Assertions` (here): the signer the gateway asks.

pub(crate) mod cache;
pub mod claims;
pub mod keys;

use crate::core::config::assertion::{AssertionSettings, ServiceAssertion};
use crate::core::identity::Identity;
use cache::{AssertionCache, CacheKey, Caller};

/// One worker's signer: the keys from the configuration, and what it signed.
#[derive(Default)]
pub struct Assertions {
    cache: AssertionCache,
    /// When the cache was last pruned (unix seconds).
    pruned_at_secs: u64,
}

/// The request an assertion is for.
pub(crate) struct Asked<'a> {
    pub(crate) service: (bool, usize),
    pub(crate) audience: &'a str,
    pub(crate) identity: &'a Identity,
    /// A session's own id; `None` for a bearer token.
    pub(crate) session_sid: Option<&'a str>,
}

impl Assertions {
    /// The assertion for `asked`, signed with the first key, or the one kept from less
    /// than half its lifetime ago. `Err` says why none could be signed.
    pub(crate) fn assertion(
        &mut self,
        settings: &AssertionSettings,
        service: &ServiceAssertion,
        asked: &Asked,
        now_secs: u64,
    ) -> Result<String, String> {
        let key = CacheKey {
            service: asked.service,
            audience: asked.audience.to_string(),
            caller: match asked.session_sid {
                Some(sid) => Caller::Session(sid.to_string()),
                None => Caller::of_token(asked.identity),
            },
        };
        if let Some(token) = self.cache.get(&key, asked.identity, now_secs) {
            return Ok(token.to_string());
        }
        let signer = settings.signing_key();
        let claims = claims::claims(
            &settings.issuer,
            asked.audience,
            asked.identity,
            asked.session_sid,
            now_secs,
            service.lifetime_secs,
        );
        let token = signer.sign(claims)?;
        let renew_at_secs = now_secs + service.lifetime_secs / 2;
        self.cache
            .insert(key, asked.identity, token.clone(), renew_at_secs, now_secs);
        Ok(token)
    }

    /// On the tick, at most once a second: what would not be reused goes.
    pub(crate) fn tick(&mut self, now_secs: u64) {
        if now_secs != self.pruned_at_secs {
            self.pruned_at_secs = now_secs;
            self.cache.prune(now_secs);
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// Assertions signed so far, and kept now.
    pub fn counts(&self) -> (u64, usize) {
        (self.cache.signed(), self.cache.len())
    }
}
