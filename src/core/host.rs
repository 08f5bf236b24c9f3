//! Everything the core asks of the host while deciding requests: shared data, randomness,
//! the clock, token-endpoint callouts and the log. Implemented once for proxy-wasm
//! (`filter/host.rs`) and once in memory for native tests of several workers.

use crate::core::login::oidc::TokenRequest;
use crate::core::random::Random;
use crate::core::reply::Severity;
use crate::core::shared_data::SharedData;

pub trait Host: SharedData + Random {
    fn now_ms(&self) -> u64;

    /// Sends `request` through Envoy cluster `cluster`; the callout's token, or `None` when
    /// it could not be sent. The answer comes back to whoever called (a request, or the
    /// root when a parked request was settled).
    fn call(&mut self, cluster: &str, request: &TokenRequest, timeout_ms: u64) -> Option<u32>;

    fn log(&self, severity: Severity, message: &str);
}
