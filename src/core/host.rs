//! Everything the core asks of the host: shared data, randomness, the clock, callouts, the
//! log and counters. Implemented once for proxy-wasm
//! (`filter/host.rs`) and once in memory for native tests of several workers.

use crate::core::random::Random;
use crate::core::reply::Severity;
use crate::core::secret::Secret;
use crate::core::shared_data::SharedData;

/// An HTTP callout through an Envoy cluster: discovery and JWKS fetches, token requests.
#[derive(Debug)]
pub struct Callout {
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) and headers.
    pub headers: Vec<(&'static str, String)>,
    /// Token requests carry secrets in their body and `Authorization` header: never logged.
    pub body: Option<Secret>,
    pub timeout_ms: u64,
}

/// Counters the gateway keeps, one per kind of outcome (Envoy shows them as
/// `wasmcustom.wasm_iap_<name>` in its stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests that went upstream.
    Allowed,
    /// Requests answered with an error (401, 403, 4xx pages, 503).
    Refused,
    /// Requests answered with a redirect (login starts, sign-outs, completed sign-ins).
    Redirected,
    /// Requests parked until keys or endpoints arrive.
    Parked,
    /// Sign-ins that ended in a session.
    SignedIn,
    /// Sessions refreshed at the token endpoint.
    Refreshed,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Allowed,
        Metric::Refused,
        Metric::Redirected,
        Metric::Parked,
        Metric::SignedIn,
        Metric::Refreshed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "wasm_iap_requests_allowed",
            Metric::Refused => "wasm_iap_requests_refused",
            Metric::Redirected => "wasm_iap_requests_redirected",
            Metric::Parked => "wasm_iap_requests_parked",
            Metric::SignedIn => "wasm_iap_sign_ins",
            Metric::Refreshed => "wasm_iap_sessions_refreshed",
        }
    }
}

pub trait Host: SharedData + Random {
    fn now_ms(&self) -> u64;

    /// Sends a callout; its token, or `None` when it could not be sent (logged). The answer
    /// comes back to whoever called: a request, or the root (key fetches, and token calls
    /// made while settling a parked request).
    fn call(&mut self, call: &Callout) -> Option<u32>;

    fn log(&self, severity: Severity, message: &str);

    /// Adds one to a counter.
    fn count(&mut self, metric: Metric);
}
