//! The few host operations the filter performs, as small functions that never panic on
//! a host error: they log it and go on, so the request still gets a definite answer.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls::{self, get_property};
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

use crate::core::access_log;
use crate::core::host::{Callout, Host, Metric};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::keys::fetch::MAX_DOCUMENT_BYTES;
use crate::core::log_text;
use crate::core::random::{NoRandomness, Random};
use crate::core::reply::{header_name_safe, header_value_safe, Reply, Severity};
use crate::core::request_headers::{self, RequestHeaders};
use crate::core::shared_data::SharedData;

use super::abi;

/// The host's log level for a core severity.
pub(crate) fn level(severity: Severity) -> LogLevel {
    match severity {
        Severity::Debug => LogLevel::Debug,
        Severity::Info => LogLevel::Info,
        Severity::Warn => LogLevel::Warn,
        Severity::Error => LogLevel::Error,
    }
}

/// Envoy prefixes each line with the plugin name already. Every line leaves here, so here
/// nothing a client, an IdP or a config sent can break a line or forge one (parts were
/// escaped where they were written; this catches any that were not). A line below the
/// host's log level is not sent: the host would drop it, after a call for nothing.
pub(crate) fn log(level: LogLevel, message: &str) {
    if (level as u32) < LOG_LEVEL.with(Cell::get) {
        return;
    }
    let _ = counted!(Log, hostcalls::log(level, &log_text::one_line(message)));
}

thread_local! {
    /// The host's log level as last asked (0, trace: every line, until asked).
    static LOG_LEVEL: Cell<u32> = const { Cell::new(0) };
}

/// Asks the host for its log level, which an operator may change at run time: at configure
/// time and on every tick, instead of a call per line.
pub(crate) fn refresh_log_level() {
    LOG_LEVEL.with(|level| level.set(abi::log_level().unwrap_or(0)));
}

pub(crate) fn now_ms() -> u64 {
    counted!(Clock, hostcalls::get_current_time())
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn report<E: std::fmt::Debug>(what: &str, result: Result<(), E>) {
    if let Err(status) = result {
        log(LogLevel::Error, &format!("{what} failed: {status:?}"));
    }
}

/// Whether the core may set this request header to `value`: a safe name, or `:path` (the
/// path the rules judged, `forward_normalized_path`) with an origin-form value.
fn settable(name: &str, value: &str) -> bool {
    let name_ok = header_name_safe(name) || (name == ":path" && value.starts_with('/'));
    name_ok && header_value_safe(value)
}

/// Sets a request header; a value that could split the header (control characters) is
/// never written, whatever the core decided, and the header is removed instead.
pub(crate) fn set_request_header(name: &str, value: &str) {
    if !settable(name, value) {
        log(
            LogLevel::Error,
            &format!("refusing to write unsafe request header {name:?}; removing it"),
        );
        remove_request_header(name);
        return;
    }
    report(
        "setting a request header",
        abi::replace_header(MapType::HttpRequestHeaders, name, value),
    );
}

/// Adds a request header beside any of the same name; an unsafe one is never written.
pub(crate) fn add_request_header(name: &str, value: &str) {
    if !header_name_safe(name) || !header_value_safe(value) {
        log(
            LogLevel::Error,
            &format!("refusing to add unsafe request header {name:?}"),
        );
        return;
    }
    report(
        "adding a request header",
        abi::add_header(MapType::HttpRequestHeaders, name, value),
    );
}

/// The request headers of the current (or effective) context, as bytes: decoded by the
/// core, which never assumes UTF-8.
pub(crate) fn request_headers() -> RequestHeaders {
    let bytes = match abi::header_map(MapType::HttpRequestHeaders) {
        Ok(bytes) => bytes,
        Err(status) => {
            log(
                LogLevel::Error,
                &format!("reading request headers failed: {status:?}"),
            );
            return RequestHeaders::default();
        }
    };
    RequestHeaders::decode(bytes).unwrap_or_else(|| {
        log(
            LogLevel::Error,
            "request headers from the host do not decode",
        );
        RequestHeaders::default()
    })
}

pub(crate) fn remove_request_header(name: &str) {
    report(
        "removing a request header",
        abi::remove_header(MapType::HttpRequestHeaders, name),
    );
}

pub(crate) fn resume_request() {
    report("resuming a request", abi::resume_request());
}

/// Makes a paused request's context the one later host calls act on.
pub(crate) fn switch_to(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
}

pub(crate) fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    abi::shared_data(key)
}

/// Writes shared data; with `cas`, only when nobody wrote since it was read.
pub(crate) fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    abi::set_shared_data(key, value, cas).is_ok()
}

pub(crate) fn dispatch(
    cluster: &str,
    headers: &[(&'static str, String)],
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, Status> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    counted!(Other, hostcalls::dispatch_http_call)(
        cluster,
        headers,
        body,
        vec![],
        Duration::from_millis(timeout_ms),
    )
}

/// A callout's response, as delivered to `on_http_call_response`.
pub(crate) struct CallResponse {
    /// `None` when the call failed or timed out.
    pub(crate) status: Option<u32>,
    pub(crate) cache_control: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl CallResponse {
    /// As the core reads a callout's answer.
    pub(crate) fn as_core(&self) -> CalloutResponse<'_> {
        CalloutResponse {
            status: self.status,
            cache_control: self.cache_control.as_deref(),
            body: &self.body,
        }
    }
}

/// Reads a callout's response without trusting it: headers as bytes (a non-UTF-8 value is
/// as if absent), and never more body than any document of ours may have, so a 10 MB answer
/// costs no 10 MB copy (the core refuses a body over the limit).
pub(crate) fn call_response(body_size: usize) -> CallResponse {
    let header = |name: &str| {
        abi::header_value(MapType::HttpCallResponseHeaders, name)
            .and_then(|v| String::from_utf8(v).ok())
    };
    let wanted = body_size.min(MAX_DOCUMENT_BYTES + 1);
    CallResponse {
        status: header(":status").and_then(|s| s.parse().ok()),
        cache_control: header("cache-control"),
        body: abi::buffer(BufferType::HttpCallResponseBody, wanted).unwrap_or_default(),
    }
}

/// The request's body as buffered so far, up to `size` bytes (as bytes: never assumed
/// to be text).
pub(crate) fn request_body(size: usize) -> Vec<u8> {
    abi::buffer(BufferType::HttpRequestBody, size).unwrap_or_default()
}

pub(crate) fn add_response_header(name: &str, value: &str) {
    if !header_name_safe(name) || !header_value_safe(value) {
        log(
            LogLevel::Error,
            &format!("refusing to write unsafe response header {name:?}"),
        );
        return;
    }
    report(
        "adding a response header",
        abi::add_header(MapType::HttpResponseHeaders, name, value),
    );
}

/// The plugin configuration, as bytes.
pub(crate) fn plugin_configuration() -> Vec<u8> {
    abi::buffer(BufferType::PluginConfiguration, usize::MAX).unwrap_or_default()
}

pub(crate) fn set_tick_period(period: Duration) {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    report("setting the tick period", abi::set_tick_period(millis));
}

/// Leaves a decision's record where Envoy's access log prints it (`core::access_log`).
pub(crate) fn write_access_log(record: &str) {
    report(
        "writing the decision for the access log",
        abi::set_property(access_log::PROPERTY, record.as_bytes()),
    );
}

/// A local answer, written only when every header is safe (else a plain 500); its
/// decision's record first.
pub(crate) fn send_reply(reply: Reply) {
    if let Some(record) = &reply.access_log {
        write_access_log(record);
    }
    let reply = reply.checked().unwrap_or_else(|refused| {
        if let Some(note) = &refused.reason {
            log(level(note.severity), &note.text);
        }
        refused
    });
    let headers: Vec<(&str, &[u8])> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    report(
        "sending a local response",
        abi::send_local_response(
            reply.status,
            reply.details(),
            &request_headers::serialize(&headers),
            reply.body.as_bytes(),
        ),
    );
}

thread_local! {
    /// This VM's counter ids, by `Metric::ALL` order (each worker thread has its own VM).
    static COUNTERS: std::cell::RefCell<Vec<Option<u32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Defines the gateway's counters; once per VM, at configure time.
pub(crate) fn define_counters() {
    let ids = Metric::ALL
        .iter()
        .map(|m| abi::define_counter(m.name()))
        .collect();
    COUNTERS.with(|c| *c.borrow_mut() = ids);
}

/// The host as the core sees it: shared data, randomness (WASI `random_get`), the clock,
/// callouts, the log and counters.
pub(crate) struct ProxyHost;

impl SharedData for ProxyHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_data(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        set_shared_data(key, value, cas)
    }
}

impl Random for ProxyHost {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        counted!(Other, getrandom::fill(buf)).map_err(|_| {
            log(LogLevel::Critical, "no randomness from the host");
            NoRandomness
        })
    }
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn call(&mut self, call: &Callout) -> Option<u32> {
        let body = call.body.as_ref().map(|b| b.expose().as_bytes());
        match dispatch(&call.cluster, &call.headers, body, call.timeout_ms) {
            Ok(token) => Some(token),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("cannot call cluster \"{}\": {status:?}", call.cluster),
                );
                None
            }
        }
    }

    fn log(&self, severity: Severity, message: &str) {
        log(level(severity), message);
    }

    fn source_address(&self) -> Option<String> {
        let bytes = counted!(Property, get_property(vec!["source", "address"])).ok()??;
        String::from_utf8(bytes).ok()
    }

    fn add(&mut self, metric: Metric, by: u64) {
        let at = Metric::ALL.iter().position(|m| *m == metric);
        let id = COUNTERS.with(|c| at.and_then(|at| c.borrow().get(at).copied().flatten()));
        if let Some(id) = id {
            let _ = abi::increment(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}
