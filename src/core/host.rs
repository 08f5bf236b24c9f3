//! Everything the core asks of the host: shared data, randomness, the clock, callouts and
//! the log. Implemented once for proxy-wasm
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

pub trait Host: SharedData + Random {
    fn now_ms(&self) -> u64;

    /// Sends a callout; its token, or `None` when it could not be sent (logged). The answer
    /// comes back to whoever called: a request, or the root (key fetches, and token calls
    /// made while settling a parked request).
    fn call(&mut self, call: &Callout) -> Option<u32>;

    fn log(&self, severity: Severity, message: &str);
}
