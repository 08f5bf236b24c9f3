//! Step 7, `idle_timeout`: a session whose activity is due to be recorded is stored again
//! (a new cookie, or the cluster store under its handle, written from the root: one write
//! per session every tenth of the idle timeout at most, per worker that serves it); one
//! unused too long ended, and is logged and counted before the request goes on without it.

use std::ops::ControlFlow;

use super::session::At;
use super::{Ended, Gateway};
use crate::core::cookies;
use crate::core::host::{Host, Metric};
use crate::core::login::flow::{self, Step};
use crate::core::login::session::Session;
use crate::core::login::sign_in;
use crate::core::reply::Severity;
use crate::core::request_headers::RequestHeaders;

impl Gateway {
    /// Forwards with `recorded` (the session with its activity now) and stores it.
    pub(super) fn record_activity(
        &mut self,
        host: &mut dyn Host,
        at: &At,
        recorded: &Session,
    ) -> Ended {
        let (service, cookie_header) = (at.service, at.cookie_header.as_deref());
        if self.store_renewed(host, at.id, service, recorded, cookie_header, true) {
            let forwarding = flow::forward(service, cookie_header, recorded, Vec::new());
            return self.session_forward(host, at.judged, forwarding);
        }
        let request_cookies = cookie_header.map(cookies::parse).unwrap_or_default();
        let mut stored = recorded.clone();
        let now_secs = host.now_ms() / 1000;
        // No randomness to seal with: forward anyway, the next request records it.
        let set_cookies =
            sign_in::store_session(service, &mut stored, &request_cookies, now_secs, host)
                .unwrap_or_default();
        let forwarding = flow::forward(service, cookie_header, recorded, set_cookies);
        self.session_forward(host, at.judged, forwarding)
    }

    /// A session unused for `idle_secs` ended: logged and counted, then `then` (as for a
    /// request without a session: sign in again, its cookies cleared).
    pub(super) fn session_idle(
        &mut self,
        host: &mut dyn Host,
        headers: &RequestHeaders,
        at: &At,
        (sid, idle_secs): (&str, u64),
        then: Step,
    ) -> ControlFlow<Ended> {
        let line = format!(
            "session {sid}… of {} ended: unused for {idle_secs} s (idle_timeout {} s)",
            at.service.idps.first().client_id,
            at.service.idle_timeout_secs.unwrap_or_default()
        );
        host.log(Severity::Info, &line);
        host.count(Metric::SessionsIdle);
        self.take_step(host, headers, at, then)
    }
}
