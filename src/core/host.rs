//! Everything the core asks of the host: shared data, randomness, the clock, callouts, the
//! log and counters. Implemented once for proxy-wasm
//! (`filter/host.rs`) and once in memory for native tests of several workers.

pub use crate::core::metric::Metric;
use crate::core::random::Random;
use crate::core::reply::Severity;
use crate::core::secret::Secret;
use crate::core::shared_data::SharedData;

/// An HTTP callout through an Envoy cluster: discovery and JWKS fetches, token requests.
#[derive(Clone, Debug)]
pub struct Callout {
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) and headers.
    pub headers: Vec<(&'static str, String)>,
    /// Token requests carry secrets in their body and `Authorization` header: never logged.
    pub body: Option<Secret>,
    pub(crate) timeout_ms: u64,
}

pub trait Host: SharedData + Random {
    fn now_ms(&self) -> u64;

    /// Sends a callout; its token, or `None` when it could not be sent (logged). The answer
    /// comes back to whoever called: a request, or the root (key fetches, and token calls
    /// made while settling a parked request).
    fn call(&mut self, call: &Callout) -> Option<u32>;

    fn log(&self, severity: Severity, message: &str);

    /// The client's address as Envoy sees it (`source.address`: `ip:port`), read only when
    /// a decision needs it.
    fn source_address(&self) -> Option<String>;

    /// Adds `by` to a counter.
    fn add(&mut self, metric: Metric, by: u64);

    /// Adds one to a counter.
    fn count(&mut self, metric: Metric) {
        self.add(metric, 1);
    }
}
