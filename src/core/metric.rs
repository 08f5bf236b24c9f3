//! The counters the gateway keeps.

/// Counters the gateway keeps (Envoy shows them as `wasmcustom.wasm_iap_<name>` in its
/// stats, and as `wasm_iap_<name>` at `/stats/prometheus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests that went upstream.
    Allowed,
    /// Requests answered with an error (every 4xx and 5xx; the reasons below add up to it).
    Refused,
    /// No credential at all (`401` without an error code, or a login host's API path).
    DeniedNoCredential,
    /// A bad token (`401 invalid_token` / `invalid_request`).
    DeniedInvalidToken,
    /// A valid caller the rules refuse (`403`).
    DeniedForbidden,
    /// A path no rule can be matched against safely (`400`), or another client error.
    DeniedBadRequest,
    /// Keys or the IdP unavailable (`5xx`).
    DeniedUnavailable,
    /// Requests answered with a redirect (login starts, sign-outs, completed sign-ins).
    Redirected,
    /// Requests parked until keys or endpoints arrive.
    Parked,
    /// Browsers sent to the IdP to sign in.
    LoginsStarted,
    /// Sign-ins that ended in a session.
    SignedIn,
    /// Sign-ins refused at the callback (bad state, IdP error, rejected ID token, ...).
    LoginsFailed,
    /// Sessions refreshed at the token endpoint.
    Refreshed,
    /// Refreshes the IdP refused right after the tokens expired, where the old session went
    /// on (`refresh_race_grace`: another replica may have spent the refresh token first).
    RefreshRefusalsTolerated,
    /// Calls to the cluster store that failed (no answer, refused, garbage).
    StoreFailures,
    /// Sessions revoked here: sign-outs and back-channel logouts taken in.
    Revocations,
    /// Requests whose session was revoked, answered as if they had none (reported on the
    /// tick).
    SessionsRevoked,
    /// Sessions ended because they were unused longer than `idle_timeout`.
    SessionsIdle,
    /// Key fetches started (discovery and JWKS callouts, counted per fetch).
    KeyFetches,
    /// Key fetches that failed.
    KeyFetchFailures,
    /// Bearer tokens found already verified on this worker.
    TokenCacheHits,
    /// Bearer tokens another worker had verified (found in shared data).
    TokenCacheSharedHits,
    /// Bearer tokens that needed a signature check.
    TokenCacheMisses,
    /// Unknown tokens refused with `429` without a check: their address spent its budget.
    Throttled,
}

impl Metric {
    pub(crate) const ALL: [Metric; 24] = [
        Metric::Allowed,
        Metric::Refused,
        Metric::DeniedNoCredential,
        Metric::DeniedInvalidToken,
        Metric::DeniedForbidden,
        Metric::DeniedBadRequest,
        Metric::DeniedUnavailable,
        Metric::Redirected,
        Metric::Parked,
        Metric::LoginsStarted,
        Metric::SignedIn,
        Metric::LoginsFailed,
        Metric::Refreshed,
        Metric::RefreshRefusalsTolerated,
        Metric::StoreFailures,
        Metric::Revocations,
        Metric::SessionsRevoked,
        Metric::SessionsIdle,
        Metric::KeyFetches,
        Metric::KeyFetchFailures,
        Metric::TokenCacheHits,
        Metric::TokenCacheSharedHits,
        Metric::TokenCacheMisses,
        Metric::Throttled,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "wasm_iap_requests_allowed",
            Metric::Refused => "wasm_iap_requests_refused",
            Metric::DeniedNoCredential => "wasm_iap_requests_denied_no_credential",
            Metric::DeniedInvalidToken => "wasm_iap_requests_denied_invalid_token",
            Metric::DeniedForbidden => "wasm_iap_requests_denied_forbidden",
            Metric::DeniedBadRequest => "wasm_iap_requests_denied_bad_request",
            Metric::DeniedUnavailable => "wasm_iap_requests_denied_unavailable",
            Metric::Redirected => "wasm_iap_requests_redirected",
            Metric::Parked => "wasm_iap_requests_parked",
            Metric::LoginsStarted => "wasm_iap_logins_started",
            Metric::SignedIn => "wasm_iap_sign_ins",
            Metric::LoginsFailed => "wasm_iap_logins_failed",
            Metric::Refreshed => "wasm_iap_sessions_refreshed",
            Metric::RefreshRefusalsTolerated => "wasm_iap_refresh_refusals_tolerated",
            Metric::StoreFailures => "wasm_iap_store_failures",
            Metric::Revocations => "wasm_iap_revocations",
            Metric::SessionsRevoked => "wasm_iap_sessions_revoked",
            Metric::SessionsIdle => "wasm_iap_sessions_idle",
            Metric::KeyFetches => "wasm_iap_key_fetches",
            Metric::KeyFetchFailures => "wasm_iap_key_fetch_failures",
            Metric::TokenCacheHits => "wasm_iap_token_cache_hits",
            Metric::TokenCacheSharedHits => "wasm_iap_token_cache_shared_hits",
            Metric::TokenCacheMisses => "wasm_iap_token_cache_misses",
            Metric::Throttled => "wasm_iap_requests_throttled",
        }
    }

    /// The counter's reason, as a decision's record names it: its name without
    /// `wasm_iap_requests_denied_` or `wasm_iap_requests_` (`forbidden`, `allowed`).
    pub(crate) fn reason(self) -> &'static str {
        let name = self.name();
        name.strip_prefix("wasm_iap_requests_denied_")
            .or_else(|| name.strip_prefix("wasm_iap_requests_"))
            .or_else(|| name.strip_prefix("wasm_iap_"))
            .unwrap_or(name)
    }
}
