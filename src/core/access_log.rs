//! The decision record Envoy's access log prints: one value per decided request, which the
//! adapter writes as filter state (one host call), printed by
//! `%FILTER_STATE(wasm.wasm_iap.decision:PLAIN)%`:
//!
//! `decision=deny reason=forbidden service="app.example.com" user="alice"`
//!
//! `decision` is `allow`, `redirect`, `challenge` (`401`: sign in or bring a valid token) or
//! `deny`; `reason` names the counter the request was counted in, exactly
//! (`wasm_iap_requests_<reason>`, `wasm_iap_requests_denied_<reason>`); `service` is the
//! first host its service lists, and `user` the caller's user (the value of the user
//! header), each only when known. Quoted values are escaped (`log_text::Quoted`): printable
//! ASCII, no quote of theirs ends the field, so a user name cannot forge a field or a line.

use std::fmt::Write as _;

use crate::core::host::Metric;
use crate::core::log_text::Quoted;

/// The property the adapter sets; Envoy keeps it as filter state `wasm.wasm_iap.decision`.
pub const PROPERTY: &str = "wasm_iap.decision";

/// The record of a request counted as `metric`, for `service` and `user` when known.
pub(crate) fn record(metric: Metric, service: Option<&str>, user: Option<&str>) -> String {
    let mut line = format!("decision={} reason={}", decision(metric), metric.reason());
    // Writing to a String cannot fail.
    if let Some(service) = service {
        let _ = write!(line, " service={}", Quoted(service));
    }
    if let Some(user) = user {
        let _ = write!(line, " user={}", Quoted(user));
    }
    line
}

fn decision(metric: Metric) -> &'static str {
    match metric {
        Metric::Allowed => "allow",
        Metric::Redirected => "redirect",
        Metric::DeniedNoCredential | Metric::DeniedInvalidToken => "challenge",
        _ => "deny",
    }
}
