//! Steps 6, 9 and 10: a public route, the rules' verdict on a known caller, and the
//! answer the mode gives an admitted one; the identity a token or a session hands on.

use std::ops::ControlFlow;

use super::{Ended, Gateway, Judged};
use crate::core::cookies;
use crate::core::forward::Forward;
use crate::core::host::Host;
use crate::core::identity::Identity;
use crate::core::login::flow::Forwarding;
use crate::core::mode::Admitted;
use crate::core::refusal::{Forbidden, Refusal, Refused};
use crate::core::reply::{header_value_safe, Severity};
use crate::core::request_headers::RequestHeaders;

impl Gateway {
    /// Step 6: A public route: no caller; on a login host our cookies stay ours.
    pub(super) fn public_route(
        &self,
        headers: &RequestHeaders,
        judged: &Judged,
    ) -> ControlFlow<Ended> {
        if !judged.gate.public {
            return ControlFlow::Continue(());
        }
        let mut forward = Forward::default();
        let login = judged.gate.login();
        let service = login.and_then(|id| self.settings.login.get(id.0));
        if let (Some(service), Some(cookie)) = (service, headers.text("cookie")) {
            match cookies::without(cookie, |n| service.is_our_cookie(n)) {
                Some(kept) if kept != cookie => forward.set_headers.push(("cookie".into(), kept)),
                Some(_) => {}
                None => forward.remove_headers.push("cookie".into()),
            }
        }
        ControlFlow::Break(answered(judged, None, forward))
    }

    /// Step 9: The caller is known; the rules say whether `forward` happens or a refusal (with
    /// any cookies `forward` would have set, such as a renewed session).
    pub(super) fn admit(
        &self,
        host: &dyn Host,
        judged: &Judged,
        identity: &Identity,
        session_sid: Option<&str>,
        mut forward: Forward,
    ) -> Ended {
        let checked = judged
            .gate
            .check(&self.settings, identity)
            .and_then(|()| narrowed(judged, identity));
        match checked {
            Ok(()) => {
                if let Err(ended) =
                    self.assert_identity(host, judged, identity, session_sid, &mut forward)
                {
                    return ended;
                }
                answered(judged, Some(identity), forward)
            }
            Err((refusal, line)) => {
                host.log(Severity::Info, &line);
                Ended::Refuse(Refused {
                    refusal,
                    set_cookies: forward.response_cookies,
                })
            }
        }
    }

    /// The identity headers for the upstream, and the client's `Authorization` unless it
    /// is forwarded.
    pub(super) fn identity_forward(&self, identity: &Identity) -> Forward {
        let set_headers = identity.headers(&self.settings.identity_headers);
        let remove_headers = if self.settings.forward_authorization {
            Vec::new()
        } else {
            vec!["authorization".to_string()]
        };
        Forward {
            set_headers,
            remove_headers,
            ..Forward::default()
        }
    }

    /// A session's request, when the rules let it pass: its identity (and the tokens the
    /// service passes on), never an unchecked `Authorization` beside it, and our cookies
    /// out of the upstream's sight.
    pub(super) fn session_forward(
        &self,
        host: &dyn Host,
        judged: &Judged,
        forwarding: Forwarding,
    ) -> Ended {
        let mut forward = self.identity_forward(&forwarding.identity);
        let bearer = forwarding
            .id_token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()))
            .filter(|v| header_value_safe(v));
        match bearer {
            Some(value) => {
                forward.remove_headers.retain(|h| h != "authorization");
                forward.set_headers.push(("authorization".into(), value));
            }
            None if !forward.remove_headers.iter().any(|h| h == "authorization") => {
                forward.remove_headers.push("authorization".into());
            }
            None => {}
        }
        if let Some(token) = forwarding
            .access_token
            .as_ref()
            .filter(|t| header_value_safe(t.expose()))
        {
            forward.set_headers.push((
                "x-auth-request-access-token".into(),
                token.expose().to_string(),
            ));
        }
        match forwarding.cookie_header {
            Some(value) => forward.set_headers.push(("cookie".into(), value)),
            None => forward.remove_headers.push("cookie".into()),
        }
        forward.response_cookies = forwarding.set_cookies;
        let sid = Some(forwarding.session_sid.expose());
        self.admit(host, judged, &forwarding.identity, sid, forward)
    }
}

/// A check's own narrowing (`allowed_groups` and the like in its query).
fn narrowed(judged: &Judged, identity: &Identity) -> Result<(), (Refusal, String)> {
    judged.mode.allows(identity).map_err(|why| {
        let gate = &judged.gate;
        let line = format!(
            "403 for user {} on {}{}: {why}",
            identity.reference(),
            gate.host,
            gate.path
        );
        let forbidden = Forbidden::of(identity, Vec::new(), None);
        (Refusal::Forbidden(Box::new(forbidden)), line)
    })
}

/// Step 10: An admitted request (`identity` is `None` on a public route), as the mode answers it.
fn answered(judged: &Judged, identity: Option<&Identity>, forward: Forward) -> Ended {
    let judged_path = judged.gate.forward_path.clone();
    match judged.mode.admitted(identity, forward, judged_path) {
        Ok(Admitted::Forward(forward)) => Ended::Forward(forward),
        Ok(Admitted::Answer(reply)) => Ended::Answer(reply),
        Err(refusal) => refusal.into(),
    }
}
