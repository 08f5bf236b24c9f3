//! The Proxy-Wasm host calls the filter makes, called directly rather than through the SDK:
//! the SDK `unwrap`s UTF-8 in its map getters and `panic!`s on any status it does not expect,
//! and either traps the VM. Here every call returns the host's status instead. (Logging, the
//! clock and `dispatch_http_call`, which registers the callout with the SDK's dispatcher,
//! still go through the SDK.)

use proxy_wasm::types::{BufferType, MapType, MetricType, Status, StreamType};

extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

const OK: u32 = Status::Ok as u32;

/// The host's status when it is not `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostStatus(pub(crate) u32);

fn checked(status: u32) -> Result<(), HostStatus> {
    if status == OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` points to `size` bytes the host allocated for us and no one else holds.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A whole header map in the host's serialization (empty when the host has none).
pub(crate) fn header_map(map: MapType) -> Result<Vec<u8>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into our two locals.
    checked(counted!(HeaderRead, unsafe {
        proxy_get_header_map_pairs(map as u32, &mut data, &mut size)
    }))?;
    Ok(take(data, size).unwrap_or_default())
}

/// One header's value as bytes; `None` when absent or when the host cannot say.
pub(crate) fn header_value(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: `name` outlives the call; the host writes into our two locals.
    let status = counted!(HeaderRead, unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    });
    checked(status).ok()?;
    take(data, size)
}

pub(crate) fn replace_header(map: MapType, name: &str, value: &str) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call; the host copies them.
    checked(counted!(HeaderWrite, unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    }))
}

pub(crate) fn add_header(map: MapType, name: &str, value: &str) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call; the host copies them.
    checked(counted!(HeaderWrite, unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    }))
}

pub(crate) fn remove_header(map: MapType, name: &str) -> Result<(), HostStatus> {
    // SAFETY: `name` outlives the call.
    checked(counted!(HeaderWrite, unsafe {
        proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
    }))
}

/// A local response; `details` is what Envoy's `%RESPONSE_CODE_DETAILS%` prints (empty: none),
/// `headers` in the host's map serialization.
pub(crate) fn send_local_response(
    status: u32,
    details: &str,
    headers: &[u8],
    body: &[u8],
) -> Result<(), HostStatus> {
    // SAFETY: every slice outlives the call; the host copies them. -1: not a gRPC answer.
    checked(counted!(Other, unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    }))
}

/// Lets a paused request go on.
pub(crate) fn resume_request() -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    checked(counted!(Other, unsafe {
        proxy_continue_stream(StreamType::HttpRequest as u32)
    }))
}

/// Makes `context_id` the context later calls act on (fails when it is gone).
pub(crate) fn set_effective_context(context_id: u32) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    checked(counted!(Other, unsafe {
        proxy_set_effective_context(context_id)
    }))
}

/// Up to `max_size` bytes of a buffer (a callout's body, the plugin configuration).
pub(crate) fn buffer(buffer: BufferType, max_size: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into our two locals.
    let status = counted!(Other, unsafe {
        proxy_get_buffer_bytes(buffer as u32, 0, max_size, &mut data, &mut size)
    });
    checked(status).ok()?;
    take(data, size)
}

/// A shared-data value and its CAS token (`None`, `None` when absent or unreadable).
pub(crate) fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: `key` outlives the call; the host writes into our three locals.
    let status = counted!(SharedData, unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    });
    if checked(status).is_err() {
        return (None, None);
    }
    (take(data, size), (cas != 0).then_some(cas))
}

/// Writes shared data; with `cas`, only when nobody wrote since it was read.
pub(crate) fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call; the host copies them.
    checked(counted!(SharedData, unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    }))
}

/// Sets a property of the current (or effective) request: `path` is one part (the SDK
/// joins parts with NUL); Envoy keeps it as filter state `wasm.<path>`.
pub(crate) fn set_property(path: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: both slices outlive the call; the host copies them.
    checked(counted!(Property, unsafe {
        proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
    }))
}

pub(crate) fn set_tick_period(period_ms: u32) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    checked(counted!(Other, unsafe {
        proxy_set_tick_period_milliseconds(period_ms)
    }))
}

/// Defines a counter; its id.
pub(crate) fn define_counter(name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    // SAFETY: `name` outlives the call; the host writes the id into our local.
    let status = counted!(Counter, unsafe {
        proxy_define_metric(
            MetricType::Counter as u32,
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    });
    checked(status).ok().map(|_| id)
}

pub(crate) fn increment(metric_id: u32, by: i64) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    checked(counted!(Counter, unsafe {
        proxy_increment_metric(metric_id, by)
    }))
}

/// The lowest level the host writes to its log (`LogLevel` as a number: 0 trace .. 5
/// critical); `None` when it cannot say.
pub(crate) fn log_level() -> Option<u32> {
    let mut level: u32 = 0;
    // SAFETY: the host writes the level into our local.
    let status = counted!(Log, unsafe { proxy_get_log_level(&mut level) });
    checked(status).ok().map(|_| level)
}
