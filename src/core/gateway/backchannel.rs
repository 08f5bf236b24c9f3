//! Step 7, a login host's back-channel logout endpoint (OIDC Back-Channel Logout 1.0): a
//! form POST whose body the adapter reads first (bounded), then the logout token is checked
//! and what it names is revoked on every worker; and revoking, for sign-out too.

use std::rc::Rc;

use serde_json::Value;

use super::{Decision, Ended, Gateway, Way};
use crate::core::bearer::token;
use crate::core::config::idp::Idp;
use crate::core::config::login::LoginService;
use crate::core::config::ServiceId;
use crate::core::host::{Host, Metric};
use crate::core::login::backchannel::{self, Refused, MAX_BODY_BYTES};
use crate::core::mode::Mode;
use crate::core::reply::{Reply, Severity};
use crate::core::request_headers::RequestHeaders;
use crate::core::revocation::shared::NotAdded;
use crate::core::revocation::Entry;

/// A request's body, as the adapter read it.
#[derive(Clone, Copy, Debug)]
pub enum RequestBody<'a> {
    Whole(&'a [u8]),
    /// Larger than asked for.
    TooLarge,
    /// The upstream answered before the body was whole (the host hands no more of it).
    Overtaken,
}

impl Gateway {
    /// A request to the back-channel logout path: a form POST of reasonable size has its
    /// body read (`on_request_body` continues), anything else is answered now.
    pub(super) fn backchannel_logout(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        id: ServiceId,
        headers: &RequestHeaders,
    ) -> Ended {
        let client_id = self
            .settings
            .login
            .get(id.0)
            .map_or("", |s| s.idps.first().client_id.as_str());
        if headers.text(":method") != Some("POST") {
            return Ended::Answer(backchannel::not_post());
        }
        if !backchannel::is_form(headers.text("content-type")) {
            let reply = Refused::NotAForm.reply(client_id);
            return Ended::Answer(logged(host, reply));
        }
        let length = headers
            .text("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok());
        if length.is_some_and(|l| l > MAX_BODY_BYTES as u64) {
            return Ended::Answer(backchannel::too_large());
        }
        self.in_flight.wait(context_id, super::Waiting::Body(id));
        Ended::ReadBody(MAX_BODY_BYTES)
    }

    /// The body of a request whose decision was `ReadBody`. Answers the back-channel
    /// logout it carries.
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        body: RequestBody,
    ) -> Decision {
        let way = Way {
            mode: Mode::Upstream,
            browser: false,
            settled: None,
            pages: Rc::clone(&self.settings.pages),
            request_id: None,
            policy: None,
        };
        let reply = match (self.in_flight.take_body(context_id), body) {
            (Some(id), RequestBody::Whole(body)) => self.take_logout(host, id, body),
            (Some(_), RequestBody::TooLarge) => backchannel::too_large(),
            (Some(id), RequestBody::Overtaken) => {
                let client_id =
                    (self.settings.login.get(id.0)).map_or("", |s| &s.idps.first().client_id);
                logged(host, Refused::BodyCut.reply(client_id))
            }
            (None, _) => {
                host.log(
                    Severity::Error,
                    "a request body came that nothing asked for",
                );
                Refused::NotAForm.reply("")
            }
        };
        self.exit(host, &way, Ended::Answer(reply))
    }

    /// Checks the logout token in `body` as the spec says and revokes what it names; the
    /// answer (`200`, or `400` with why, logged).
    fn take_logout(&mut self, host: &mut dyn Host, id: ServiceId, body: &[u8]) -> Reply {
        let settings = Rc::clone(&self.settings);
        let Some(service) = settings.login.get(id.0) else {
            return Refused::NotAForm.reply("");
        };
        let now_ms = host.now_ms();
        let now_secs = now_ms / 1000;
        let idp = logout_idp(service, body, settings.max_token_bytes);
        let skew = settings
            .providers
            .get(idp.provider.0)
            .map_or(0, |p| p.rules.clock_skew_secs);
        // Every session a revocation at this moment can name has expired by then.
        let longest = settings
            .login
            .iter()
            .map(|s| s.session_lifetime_secs)
            .max()
            .unwrap_or(0);
        let order = backchannel::logout_token(body)
            .and_then(|token| {
                self.authn
                    .verify_logout_token(idp.provider, &token, &idp.client_id, now_ms)
                    .map_err(Refused::Token)
            })
            .and_then(|claims| {
                let until = now_secs.saturating_add(longest);
                backchannel::order(&claims, &idp.issuer, now_secs, skew, until)
            });
        let order = match order {
            Ok(order) => order,
            Err(refused) => return logged(host, refused.reply(&idp.client_id)),
        };
        match self.revocations.add_once(host, order.jti, &[order.revoke]) {
            Ok(new) => {
                self.publish_revocations(host, &new);
                host.count(Metric::Revocations);
                let what = if order.whole_user {
                    "every session of the user"
                } else {
                    "the IdP session"
                };
                let line = format!("back-channel logout for {}: {what} revoked", idp.client_id);
                host.log(Severity::Info, &line);
                backchannel::done()
            }
            Err(NotAdded::Replayed) => logged(host, Refused::Replayed.reply(&idp.client_id)),
            Err(NotAdded::NotStored) => logged(host, Refused::NotStored.reply(&idp.client_id)),
        }
    }

    /// Revokes `entries` on every worker of this Envoy (sign-out); a failure is logged
    /// where it happens, and the browser's cookies are cleared either way.
    pub(super) fn revoke(
        &mut self,
        host: &mut dyn Host,
        service: &LoginService,
        entries: &[Entry],
        why: &str,
    ) {
        let new = self.revocations.add(host, entries).unwrap_or_default();
        self.publish_revocations(host, &new);
        if !new.is_empty() {
            host.count(Metric::Revocations);
            let line = format!(
                "{why} from {}: session revoked",
                service.idps.first().client_id
            );
            host.log(Severity::Debug, &line);
        }
    }
}

/// The IdP a logout token names (its `iss`, and its `aud` where IdPs share an issuer), read
/// before its signature is checked: only to pick whose keys, issuer and client check it.
/// A token naming none is checked as the first IdP's, and refused.
fn logout_idp<'a>(service: &'a LoginService, body: &[u8], max_bytes: usize) -> &'a Idp {
    let token = backchannel::logout_token(body).ok();
    let parsed = token
        .as_deref()
        .and_then(|t| token::parse_signed(t, max_bytes).ok());
    let claims = parsed.as_ref().map(|t| &t.claims);
    let iss = claims.and_then(|c| c.get("iss")).and_then(Value::as_str);
    let aud = claims.and_then(|c| c.get("aud"));
    let names = |client_id: &str| match aud {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    let of_issuer = || {
        service
            .idps
            .iter()
            .filter(|(_, idp)| Some(idp.issuer.as_str()) == iss)
    };
    let found = of_issuer()
        .find(|(_, idp)| names(&idp.client_id))
        .or_else(|| of_issuer().next());
    found.map_or(service.idps.first(), |(_, idp)| idp)
}

/// Logs why a back-channel logout was refused.
fn logged(host: &mut dyn Host, reply: Reply) -> Reply {
    if let Some(note) = &reply.reason {
        host.log(note.severity, &note.text);
    }
    reply
}
