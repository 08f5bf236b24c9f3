//! What all worker VMs share about one issuer's keys, and when to fetch them again.
//! Stored in proxy-wasm shared data as JSON; one VM fetches, every VM reads.

use serde::{Deserialize, Serialize};

/// Refresh bounds for `Cache-Control: max-age`, so an IdP cannot make us hammer it or
/// keep keys for days.
pub(crate) const MIN_REFRESH_MS: u64 = 30_000;
pub(crate) const MAX_REFRESH_MS: u64 = 24 * 3_600_000;
/// After failures, retry after 1 s, 2 s, 4 s, ... up to this.
pub(crate) const MAX_BACKOFF_MS: u64 = 60_000;

/// What OIDC discovery told us about the issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    pub jwks_uri: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysRecord {
    /// The last JWKS document that held usable keys; kept when later fetches fail.
    pub jwks: Option<String>,
    /// The last discovery document's findings; kept when later fetches fail.
    pub discovery: Option<Discovery>,
    /// Set after a failure: the next fetch starts with discovery again, in case it moved.
    pub rediscover: bool,
    pub fetched_at_ms: u64,
    /// When the last fetch, good or bad, started: unknown-`kid` refetches are rate-limited on it.
    pub attempted_at_ms: u64,
    pub refresh_at_ms: u64,
    pub failures: u32,
}

impl KeysRecord {
    pub fn decode(bytes: &[u8]) -> Option<KeysRecord> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn refresh_due(&self, now_ms: u64) -> bool {
        now_ms >= self.refresh_at_ms
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn may_refetch(&self, now_ms: u64, min_interval_ms: u64) -> bool {
        now_ms.saturating_sub(self.attempted_at_ms) >= min_interval_ms
    }

    pub(crate) fn succeeded(
        &self,
        jwks: String,
        discovery: Option<Discovery>,
        max_age_secs: Option<u64>,
        default_refresh_ms: u64,
        started_ms: u64,
        now_ms: u64,
    ) -> KeysRecord {
        let refresh_ms = max_age_secs
            .map(|secs| {
                secs.saturating_mul(1000)
                    .clamp(MIN_REFRESH_MS, MAX_REFRESH_MS)
            })
            .unwrap_or(default_refresh_ms);
        KeysRecord {
            jwks: Some(jwks),
            discovery: discovery.or_else(|| self.discovery.clone()),
            rediscover: false,
            fetched_at_ms: now_ms,
            attempted_at_ms: started_ms,
            refresh_at_ms: now_ms.saturating_add(refresh_ms),
            failures: 0,
        }
    }

    /// Keeps the last good keys and endpoints; the next try starts with discovery again.
    pub(crate) fn failed(&self, started_ms: u64, now_ms: u64) -> KeysRecord {
        let failures = self.failures.saturating_add(1);
        let backoff = 1000u64
            .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
            .min(MAX_BACKOFF_MS);
        KeysRecord {
            rediscover: true,
            attempted_at_ms: started_ms,
            refresh_at_ms: now_ms.saturating_add(backoff),
            failures,
            ..self.clone()
        }
    }
}

/// `max-age` from a `Cache-Control` header value.
pub fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// A fetch lease in shared data: the value is the deadline in milliseconds. A VM may
/// fetch when no lease exists or the last one has run out (its holder died or hung).
pub fn lease_available(lease: Option<&[u8]>, now_ms: u64) -> bool {
    let deadline = lease
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    now_ms >= deadline
}

pub fn lease_value(deadline_ms: u64) -> Vec<u8> {
    deadline_ms.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("public, max-age=3600"), Some(3600));
        assert_eq!(max_age("Max-Age = 90 , must-revalidate"), Some(90));
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn refresh_honours_max_age_within_bounds() {
        let record = KeysRecord::default();
        let at = |max_age| {
            record
                .succeeded("{}".into(), None, max_age, 600_000, 0, 1_000)
                .refresh_at_ms
        };
        assert_eq!(at(Some(3600)), 1_000 + 3_600_000);
        assert_eq!(
            at(Some(0)),
            1_000 + MIN_REFRESH_MS,
            "max-age=0 must not make us fetch constantly"
        );
        assert_eq!(
            at(Some(10_000_000)),
            1_000 + MAX_REFRESH_MS,
            "keys are not kept for months"
        );
        assert_eq!(
            at(None),
            1_000 + 600_000,
            "the configured interval applies without max-age"
        );
    }

    #[test]
    fn failures_keep_the_last_good_keys_and_back_off() {
        let discovery = Discovery {
            jwks_uri: "u".into(),
            ..Discovery::default()
        };
        let good = KeysRecord::default().succeeded(
            "JWKS".into(),
            Some(discovery.clone()),
            None,
            600_000,
            0,
            0,
        );
        let once = good.failed(10, 10);
        assert_eq!(once.jwks.as_deref(), Some("JWKS"));
        assert_eq!(
            once.discovery,
            Some(discovery),
            "endpoints stay known for logins"
        );
        assert!(once.rediscover);
        assert_eq!(once.refresh_at_ms, 10 + 1_000);
        let thrice = once.failed(20, 20).failed(30, 30);
        assert_eq!(thrice.refresh_at_ms, 30 + 4_000);
        let many = (0..40).fold(thrice, |r, i| r.failed(i, 1_000));
        assert_eq!(many.refresh_at_ms, 1_000 + MAX_BACKOFF_MS);
        let recovered = many.succeeded("NEW".into(), None, None, 600_000, 2_000, 2_000);
        assert_eq!(recovered.failures, 0);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited_on_the_last_attempt() {
        let record = KeysRecord {
            attempted_at_ms: 10_000,
            ..KeysRecord::default()
        };
        assert!(!record.may_refetch(15_000, 10_000));
        assert!(record.may_refetch(20_000, 10_000));
    }

    #[test]
    fn lease_is_free_when_absent_expired_or_garbage() {
        assert!(lease_available(None, 5));
        assert!(lease_available(Some(b"4"), 5));
        assert!(!lease_available(Some(&lease_value(6)), 5));
        assert!(lease_available(Some(b"garbage"), 5));
    }

    #[test]
    fn record_survives_shared_data_round_trip() {
        let discovery = Discovery {
            jwks_uri: "https://i/k".into(),
            token_endpoint: Some("https://i/t".into()),
            ..Discovery::default()
        };
        let record = KeysRecord::default().succeeded(
            "{\"keys\":[]}".into(),
            Some(discovery),
            Some(60),
            1,
            2,
            3,
        );
        assert_eq!(KeysRecord::decode(&record.encode()), Some(record));
        assert_eq!(KeysRecord::decode(b"not json"), None);
    }
}
