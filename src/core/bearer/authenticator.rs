//! The bearer-token decision for one request: allow with an identity, deny with a reason,
//! or wait for an issuer's keys.

use std::rc::Rc;

use jwt_simple::prelude::{Duration, UnixTimeStamp, VerificationOptions};
use serde_json::{Map, Value};

use subtle::ConstantTimeEq;

use crate::core::bearer::cache::{TokenCache, NO_EXPIRY_TTL_SECS};
use crate::core::bearer::claims::ClaimRules;
use crate::core::bearer::error::AuthError;
use crate::core::bearer::shared_cache::{digest_of, generation_of, SharedTokenCache};
use crate::core::bearer::token::{self, UnverifiedToken};
use crate::core::config::{KeySource, Provider, ProviderId, Settings};
use crate::core::identity::{ClaimNames, Identity};
use crate::core::keys::error::KeysError;
use crate::core::keys::jwks::KeySet;
use crate::core::keys::record::{Discovery, KeysRecord};
#[cfg(any(test, feature = "testing"))]
use crate::core::shared_data::NothingShared;
use crate::core::shared_data::SharedData;

const TOKEN_CACHE_CAPACITY: usize = 2048;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(Rc<Identity>),
    Deny(AuthError),
    /// The issuer's keys are missing, or lack the token's `kid`: wait for a fetch, and start
    /// one when `refetch` says the rate limit allows it.
    AwaitKeys {
        provider: ProviderId,
        refetch: bool,
        reason: WaitReason,
    },
}

/// Whether a token whose `kid` is unknown may wait for a refetch of the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KidRefetch {
    Allowed,
    /// The request already waited for one: the verdict is final.
    AlreadyWaited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// No keys were loaded yet for the issuer.
    NoKeys,
    /// Keys are loaded but none has the token's `kid`: a rotation, perhaps.
    UnknownKid,
}

/// What a verified ID token says about the person who logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub identity: Identity,
    pub(crate) expires_at: Option<u64>,
    /// `sid`: the IdP's session, which a back-channel logout names.
    pub(crate) sid: Option<String>,
    /// `sub`: the user, as a back-channel logout names them.
    pub(crate) sub: Option<String>,
}

/// One issuer's keys (and discovered endpoints) as this VM knows them.
#[derive(Default)]
struct KeyState {
    keys: Option<Rc<KeySet>>,
    jwks: Option<String>,
    attempted_at_ms: u64,
    discovery: Option<Discovery>,
}

/// What a bearer check may use beyond this VM: shared data (tokens other workers
/// verified), and a say in whether an unknown token's signature is checked at all.
pub(crate) trait Outside: SharedData {
    fn may_verify(&mut self) -> bool;
}

#[cfg(any(test, feature = "testing"))]
impl Outside for NothingShared {
    fn may_verify(&mut self) -> bool {
        true
    }
}

pub struct Authenticator {
    settings: Rc<Settings>,
    keys: Vec<KeyState>,
    cache: TokenCache,
    /// Tokens verified by any worker, in shared data.
    shared: SharedTokenCache,
    /// The configuration and keys this VM verifies with: shared entries made under another
    /// are not used.
    generation: u64,
    /// Cache lookups since the root last reported them.
    lookups: Lookups,
}

/// Token-cache lookups: found in this VM, found in shared data, and neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lookups {
    pub(crate) hits: u64,
    pub(crate) shared_hits: u64,
    pub(crate) misses: u64,
}

/// The token from an `Authorization: Bearer` header (RFC 6750 §2.1; scheme case-insensitive).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).filter(|v| !v.is_empty());
    let value = value.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    match token.trim() {
        "" => Err(AuthError::MissingToken),
        token => Ok(token),
    }
}

impl Authenticator {
    pub fn new(settings: Rc<Settings>) -> Self {
        let keys = settings
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Inline(keys) => KeyState {
                    keys: Some(Rc::clone(keys)),
                    ..KeyState::default()
                },
                KeySource::Remote(_) => KeyState::default(),
            })
            .collect();
        let mut authn = Authenticator {
            shared: SharedTokenCache::new(settings.shared_token_cache_bytes),
            settings,
            keys,
            cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
            generation: 0,
            lookups: Lookups::default(),
        };
        authn.generation = authn.current_generation();
        authn
    }

    /// The configuration and every provider's keys as this VM has them.
    fn current_generation(&self) -> u64 {
        let jwks: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.jwks.as_deref().unwrap_or("inline"))
            .collect();
        generation_of(&self.settings.fingerprint, &jwks)
    }

    /// Token-cache lookups since the last call (counted per tick, not per request).
    pub(crate) fn take_lookups(&mut self) -> Lookups {
        std::mem::take(&mut self.lookups)
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The settings as a shared handle, for callers that also borrow the authenticator.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn settings_rc(&self) -> Rc<Settings> {
        Rc::clone(&self.settings)
    }

    /// Takes in keys another fetch has published; returns whether they changed. Verified
    /// tokens are forgotten then, so a key removed at the IdP stops working at once.
    pub fn install_record(
        &mut self,
        provider: ProviderId,
        record: &KeysRecord,
    ) -> Result<bool, KeysError> {
        let (Some(state), Some(settings)) = (
            self.keys.get_mut(provider.0),
            self.settings.providers.get(provider.0),
        ) else {
            return Err(KeysError::UnknownProvider);
        };
        state.attempted_at_ms = record.attempted_at_ms;
        state.discovery.clone_from(&record.discovery);
        let Some(jwks) = record
            .jwks
            .as_ref()
            .filter(|j| state.jwks.as_ref() != Some(*j))
        else {
            return Ok(false);
        };
        let keys = KeySet::parse(jwks, &settings.algorithms)?;
        state.keys = Some(Rc::new(keys));
        state.jwks = Some(jwks.clone());
        self.cache.clear();
        self.generation = self.current_generation();
        Ok(true)
    }

    /// Whether every issuer's keys are here (`/ready`).
    pub(crate) fn all_keys_loaded(&self) -> bool {
        self.keys.iter().all(|state| state.keys.is_some())
    }

    /// The issuer's endpoints, as its discovery document gave them.
    pub(crate) fn discovery(&self, provider: ProviderId) -> Option<&Discovery> {
        self.keys.get(provider.0)?.discovery.as_ref()
    }

    /// Decides on a request's `Authorization` header, on this VM alone (tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn authenticate(
        &mut self,
        authorization: Option<&str>,
        now_ms: u64,
        kid_refetch: KidRefetch,
    ) -> Verdict {
        self.authenticate_with(authorization, now_ms, kid_refetch, &mut NothingShared)
    }

    /// Decides on a request's `Authorization` header. `kid_refetch` says whether an unknown
    /// `kid` may still make the request wait for a refetch, or whether it already did (then
    /// the verdict is final). Tokens are looked up in this VM's cache, then in `outside`'s
    /// shared data; only a token found in neither, that passed every cheap check, costs a
    /// signature check, and only when `outside` allows it (else `429`).
    pub(crate) fn authenticate_with(
        &mut self,
        authorization: Option<&str>,
        now_ms: u64,
        kid_refetch: KidRefetch,
        outside: &mut dyn Outside,
    ) -> Verdict {
        let now_secs = now_ms / 1000;
        let compact = match bearer_token(authorization) {
            Ok(token) => token,
            Err(e) => return Verdict::Deny(e),
        };
        if let Some(identity) = self.cache.get(compact, now_secs) {
            self.lookups.hits += 1;
            return Verdict::Allow(identity);
        }
        let digest = self.shared.is_on().then(|| digest_of(compact));
        let found = digest.and_then(|d| self.shared.get(outside, &d, self.generation, now_secs));
        if let Some((identity, valid_until)) = found {
            self.lookups.shared_hits += 1;
            let identity = Rc::new(identity);
            self.cache
                .insert(compact, Rc::clone(&identity), Some(valid_until), now_secs);
            return Verdict::Allow(identity);
        }
        self.lookups.misses += 1;
        match self.verify(compact, now_ms, kid_refetch, &mut || outside.may_verify()) {
            Ok((identity, valid_until)) => {
                let valid_until =
                    valid_until.unwrap_or(now_secs.saturating_add(NO_EXPIRY_TTL_SECS));
                if let Some(digest) = &digest {
                    let generation = self.generation;
                    self.shared.put(
                        outside,
                        digest,
                        generation,
                        &identity,
                        valid_until,
                        now_secs,
                    );
                }
                let identity = Rc::new(identity);
                self.cache
                    .insert(compact, Rc::clone(&identity), Some(valid_until), now_secs);
                Verdict::Allow(identity)
            }
            Err(verdict) => verdict,
        }
    }

    fn verify(
        &self,
        compact: &str,
        now_ms: u64,
        kid_refetch: KidRefetch,
        may_verify: &mut dyn FnMut() -> bool,
    ) -> Result<(Identity, Option<u64>), Verdict> {
        let token = token::parse(compact, self.settings.max_token_bytes).map_err(Verdict::Deny)?;
        let (index, provider) = self.provider_for(&token).map_err(Verdict::Deny)?;
        let checks = (index, &provider.rules, kid_refetch);
        let expiry = self.check_signed(&token, checks, now_ms, may_verify)?;
        let identity = Identity::from_claims(&token.claims, &self.claim_names(provider))
            .map_err(Verdict::Deny)?;
        let valid_until = expiry.map(|exp| exp.saturating_add(provider.rules.clock_skew_secs));
        Ok((identity, valid_until))
    }

    /// Claims under `rules`, the algorithm, the key and the signature of a parsed token from
    /// provider `index`; returns its expiry.
    fn check_signed(
        &self,
        token: &UnverifiedToken,
        (index, rules, kid_refetch): (ProviderId, &ClaimRules, KidRefetch),
        now_ms: u64,
        may_verify: &mut dyn FnMut() -> bool,
    ) -> Result<Option<u64>, Verdict> {
        let deny = Verdict::Deny;
        let now_secs = now_ms / 1000;
        let (Some(provider), Some(state)) =
            (self.settings.providers.get(index.0), self.keys.get(index.0))
        else {
            return Err(deny(AuthError::UntrustedIssuer));
        };
        let expiry =
            crate::core::bearer::claims::check(&token.claims, rules, now_secs).map_err(deny)?;
        if !provider.algorithms.contains(&token.alg) {
            return Err(deny(AuthError::AlgorithmNotAccepted {
                alg: token.alg.name().into(),
            }));
        }
        if let Some(verdict) = self.missing_key(token, index, now_ms, kid_refetch) {
            return Err(verdict);
        }
        let Some(keys) = &state.keys else {
            return Err(deny(AuthError::KeysUnavailable));
        };
        if !may_verify() {
            return Err(deny(AuthError::Throttled));
        }
        let mut candidates = keys.candidates(token.alg, token.kid.as_deref());
        let options = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now_secs)),
            time_tolerance: Some(Duration::from_secs(rules.clock_skew_secs)),
            max_token_length: Some(self.settings.max_token_bytes),
            ..VerificationOptions::default()
        };
        if !candidates.any(|key| key.verify_signature(token.compact, options.clone())) {
            return Err(deny(AuthError::BadSignature));
        }
        Ok(expiry)
    }

    /// Why no key of provider `index` can check `token`: keys not loaded yet or the `kid`
    /// unknown (wait, refetching when the rate limit allows), or no key fits (deny).
    /// `None` when a candidate key exists.
    fn missing_key(
        &self,
        token: &UnverifiedToken,
        index: ProviderId,
        now_ms: u64,
        kid_refetch: KidRefetch,
    ) -> Option<Verdict> {
        let state = self.keys.get(index.0)?;
        let may_refetch = self.may_refetch(index, now_ms);
        let Some(keys) = &state.keys else {
            return Some(Verdict::AwaitKeys {
                provider: index,
                refetch: may_refetch,
                reason: WaitReason::NoKeys,
            });
        };
        let kid = token.kid.as_deref();
        if keys.candidates(token.alg, kid).next().is_some() {
            return None;
        }
        Some(match kid {
            Some(kid) if keys.has_kid(kid) => {
                Verdict::Deny(AuthError::KeyDoesNotFitAlgorithm { kid: kid.into() })
            }
            _ if may_refetch && kid_refetch == KidRefetch::Allowed && kid.is_some() => {
                Verdict::AwaitKeys {
                    provider: index,
                    refetch: true,
                    reason: WaitReason::UnknownKid,
                }
            }
            _ => Verdict::Deny(AuthError::UnknownKey {
                kid: kid.map(str::to_string),
            }),
        })
    }

    /// When the last fetch of provider `index`'s keys was attempted (0: never).
    pub(crate) fn attempted_at_ms(&self, index: ProviderId) -> u64 {
        self.keys
            .get(index.0)
            .map_or(0, |state| state.attempted_at_ms)
    }

    /// Whether the rate limit (`jwks_min_refetch_interval`) lets a request of provider
    /// `index` ask for its keys to be fetched again now; never for inline keys.
    pub fn may_refetch(&self, index: ProviderId, now_ms: u64) -> bool {
        let (Some(provider), Some(state)) =
            (self.settings.providers.get(index.0), self.keys.get(index.0))
        else {
            return false;
        };
        match &provider.keys {
            KeySource::Remote(remote) => {
                now_ms.saturating_sub(state.attempted_at_ms) >= remote.min_refetch_interval_ms
            }
            KeySource::Inline(_) => false,
        }
    }

    /// Whether an ID token of provider `index` is signed with a key this VM does not have
    /// (no keys yet, or a rotation at the IdP). The caller waits for a fetch (asking for one
    /// as soon as the rate limit allows) before verifying, so a sign-in does not fail until
    /// the next periodic refresh. Inline keys never change: nothing to wait for.
    pub fn id_token_awaits_keys(&self, index: ProviderId, id_token: &str) -> bool {
        let remote = self
            .settings
            .providers
            .get(index.0)
            .is_some_and(|p| matches!(p.keys, KeySource::Remote(_)));
        let Ok(token) = token::parse(id_token, self.settings.max_token_bytes) else {
            return false;
        };
        let Some(state) = self.keys.get(index.0).filter(|_| remote) else {
            return false;
        };
        let Some(keys) = &state.keys else {
            return true;
        };
        let kid = token.kid.as_deref();
        keys.candidates(token.alg, kid).next().is_none()
            && kid.is_some_and(|kid| !keys.has_kid(kid))
    }

    /// Verifies an ID token from provider `index` for `client_id` (OIDC Core §3.1.3.7):
    /// signature and claims as for bearer tokens, `aud` holding the client, `azp` naming it
    /// when present or when there are several audiences, and `nonce` matching the login's.
    pub fn verify_id_token(
        &self,
        index: ProviderId,
        id_token: &str,
        client_id: &str,
        nonce: Option<&str>,
        now_ms: u64,
    ) -> Result<IdTokenClaims, AuthError> {
        let provider = self
            .settings
            .providers
            .get(index.0)
            .ok_or(AuthError::UntrustedIssuer)?;
        let token = token::parse(id_token, self.settings.max_token_bytes)?;
        let rules = ClaimRules {
            audiences: vec![client_id.to_string()],
            require_expiry: true,
            require_issued_at: true,
            ..provider.rules.clone()
        };
        let expiry = self
            .check_signed(
                &token,
                (index, &rules, KidRefetch::AlreadyWaited),
                now_ms,
                &mut || true,
            )
            .map_err(|verdict| match verdict {
                Verdict::Deny(e) => e,
                _ => AuthError::KeysUnavailable,
            })?;
        let claim = |name: &str| token.claims.get(name).and_then(serde_json::Value::as_str);
        let several_audiences = token
            .claims
            .get("aud")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claim("azp") {
            Some(azp) if azp != client_id => return Err(AuthError::WrongAuthorizedParty),
            None if several_audiences => return Err(AuthError::WrongAuthorizedParty),
            _ => {}
        }
        if let Some(expected) = nonce {
            let matches =
                claim("nonce").is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected.as_bytes())));
            if !matches {
                return Err(AuthError::WrongNonce);
            }
        }
        let identity = Identity::from_claims(&token.claims, &self.claim_names(provider))?;
        Ok(IdTokenClaims {
            identity,
            expires_at: expiry,
            sid: claim("sid").map(str::to_string),
            sub: claim("sub").map(str::to_string),
        })
    }

    /// Verifies a back-channel logout token from provider `index` for `client_id` (OIDC
    /// Back-Channel Logout §2.6): signed as an ID token is (never `none` or HMAC, a key of
    /// the issuer's), `iss`, `aud` holding the client, `iat` present and not in the future,
    /// `exp` when present. Returns its claims for the logout's own rules.
    pub fn verify_logout_token(
        &self,
        index: ProviderId,
        logout_token: &str,
        client_id: &str,
        now_ms: u64,
    ) -> Result<Map<String, Value>, AuthError> {
        let provider = self
            .settings
            .providers
            .get(index.0)
            .ok_or(AuthError::UntrustedIssuer)?;
        let token = token::parse_signed(logout_token, self.settings.max_token_bytes)?;
        let rules = ClaimRules {
            audiences: vec![client_id.to_string()],
            require_expiry: false,
            require_issued_at: true,
            ..provider.rules.clone()
        };
        let checks = (index, &rules, KidRefetch::AlreadyWaited);
        match self.check_signed(&token, checks, now_ms, &mut || true) {
            Ok(_) => Ok(token.claims),
            Err(Verdict::Deny(e)) => Err(e),
            Err(_) => Err(AuthError::KeysUnavailable),
        }
    }

    fn claim_names<'a>(&'a self, provider: &'a Provider) -> ClaimNames<'a> {
        ClaimNames {
            user: &provider.user_claim,
            groups: &provider.groups_claim,
            email: provider.email_verification,
            kept: &self.settings.kept_claims,
        }
    }

    fn provider_for(&self, token: &UnverifiedToken) -> Result<(ProviderId, &Provider), AuthError> {
        let issuer = token
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::MissingClaim {
                claim: "iss".into(),
            })?;
        self.settings
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.rules.issuer == issuer)
            .map(|(i, p)| (ProviderId(i), p))
            .ok_or(AuthError::UntrustedIssuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_table() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer   abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("")), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("Bearer")), Err(AuthError::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic YWxpY2U6cHc=")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(bearer_token(Some("Bearerabc")), Err(AuthError::NotBearer));
    }
}
