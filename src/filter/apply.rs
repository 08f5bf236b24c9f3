//! Carries out what the core's worker said to do with the current (or effective) request.

use proxy_wasm::types::Action;

use super::host;
use crate::core::forward::Forward;
use crate::core::request_headers::RequestHeaders;
use crate::core::worker::Act;

/// Carries out `act` on a request whose headers are being decided now; `Action::Continue`
/// when it goes upstream.
pub(crate) fn carry_out(act: Act) -> Action {
    match act {
        Act::Forward(forward) => {
            edit(&forward);
            Action::Continue
        }
        Act::Respond(reply) => {
            host::send_reply(reply);
            Action::Pause
        }
        Act::Pause | Act::ReadBody(_) => Action::Pause,
    }
}

/// `carry_out` for the request whose headers were `sent`, leaving out the removal of headers
/// it does not carry: each is a host call (and clears Envoy's route cache) that changes
/// nothing.
pub(crate) fn carry_out_sent(act: Act, sent: &RequestHeaders) -> Action {
    let act = match act {
        Act::Forward(mut forward) => {
            forward
                .remove_headers
                .retain(|name| sent.get(name).is_some());
            Act::Forward(forward)
        }
        other => other,
    };
    carry_out(act)
}

/// Carries out `act` on a paused request (a parked one, or one that waited for a token
/// call): a forwarded request is resumed.
pub(crate) fn carry_out_paused(act: Act) {
    if matches!(carry_out(act), Action::Continue) {
        host::resume_request();
    }
}

/// The header edits of a forwarded request, and its decision's record.
fn edit(forward: &Forward) {
    if let Some(record) = &forward.access_log {
        host::write_access_log(record);
    }
    for name in &forward.remove_headers {
        host::remove_request_header(name);
    }
    for (name, value) in &forward.set_headers {
        host::set_request_header(name, value);
    }
    for (name, value) in &forward.add_headers {
        host::add_request_header(name, value);
    }
}
