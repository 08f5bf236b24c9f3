//! Carries out the core's decision on the current (or effective) request.

use proxy_wasm::types::Action;

use super::host;
use crate::core::gateway::{Decision, Forward, Pending};
use crate::core::request_headers::RequestHeaders;

/// What is left for the request's own context to hold after a decision.
pub enum Held {
    Nothing,
    /// Cookies for the response of a forwarded request.
    ResponseCookies(Vec<String>),
    /// A token call under way: its answer comes back to this context.
    Calling(Box<Pending>),
}

/// Applies `decision`; `Action::Continue` when the request goes upstream.
pub fn carry_out(decision: Decision) -> (Action, Held) {
    match decision {
        Decision::Forward(forward) => {
            let cookies = edit(forward);
            (Action::Continue, Held::ResponseCookies(cookies))
        }
        Decision::Respond(reply) => {
            host::send_reply(reply);
            (Action::Pause, Held::Nothing)
        }
        Decision::Calling(pending) => (Action::Pause, Held::Calling(pending)),
        Decision::Parked => (Action::Pause, Held::Nothing),
    }
}

/// Applies `decision` to the request whose headers were `sent`, leaving out the removal of
/// headers it does not carry: each is a host call (and clears Envoy's route cache) that
/// changes nothing.
pub fn carry_out_sent(decision: Decision, sent: &RequestHeaders) -> (Action, Held) {
    let decision = match decision {
        Decision::Forward(mut forward) => {
            forward
                .remove_headers
                .retain(|name| sent.get(name).is_some());
            Decision::Forward(forward)
        }
        other => other,
    };
    carry_out(decision)
}

/// The header edits of a forwarded request; returns the cookies for its response.
fn edit(forward: Forward) -> Vec<String> {
    for name in &forward.remove_headers {
        host::remove_request_header(name);
    }
    for (name, value) in &forward.set_headers {
        host::set_request_header(name, value);
    }
    for (name, value) in &forward.add_headers {
        host::add_request_header(name, value);
    }
    forward.response_cookies
}

/// Carries out a decision on a paused request (a parked one, or one that waited for a token
/// call): a forwarded request is resumed.
pub fn carry_out_paused(decision: Decision) -> Held {
    let (action, held) = carry_out(decision);
    if matches!(action, Action::Continue) {
        host::resume_request();
    }
    held
}
