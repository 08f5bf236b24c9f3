//! The few host operations the filter performs, as small functions that never panic on
//! a host error: they log it and go on, so the request still gets a definite answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

use crate::core::login::reply::Reply;
use crate::core::random::Random;

/// Envoy prefixes each line with the plugin name already.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn report(what: &str, result: Result<(), Status>) {
    if let Err(status) = result {
        log(LogLevel::Error, &format!("{what} failed: {status:?}"));
    }
}

pub fn set_request_header(name: &str, value: &str) {
    report(
        "setting a request header",
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)),
    );
}

/// The request headers of the current (or effective) context.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn remove_request_header(name: &str) {
    report(
        "removing a request header",
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None),
    );
}

pub fn resume_request() {
    report("resuming a request", hostcalls::resume_http_request());
}

/// Makes a paused request's context the one later host calls act on.
pub fn switch_to(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes shared data; with `cas`, only when nobody wrote since it was read.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}

pub fn dispatch(
    cluster: &str,
    headers: &[(&'static str, String)],
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, Status> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        body,
        vec![],
        Duration::from_millis(timeout_ms),
    )
}

/// A callout's response, as delivered to `on_http_call_response`.
pub struct CallResponse {
    /// `None` when the call failed or timed out.
    pub status: Option<u32>,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

pub fn call_response(body_size: usize) -> CallResponse {
    let header = |name: &str| {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    };
    CallResponse {
        status: header(":status").and_then(|s| s.parse().ok()),
        cache_control: header("cache-control"),
        body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

pub fn add_response_header(name: &str, value: &str) {
    report(
        "adding a response header",
        hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value),
    );
}

/// A local answer built by the login flow.
pub fn send_reply(reply: &Reply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    report(
        "sending a local response",
        hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes())),
    );
}

/// The host's randomness; a failure is remembered so the caller can refuse to go on
/// with predictable values.
#[derive(Default)]
pub struct HostRandom {
    pub failed: bool,
}

impl Random for HostRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if getrandom::fill(buf).is_err() {
            self.failed = true;
        }
    }
}
