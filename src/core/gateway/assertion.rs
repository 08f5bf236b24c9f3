//! Steps 3 and 10 for signed identity assertions: the JWKS answered on every host without
//! credentials, and the assertion an admitted caller's request carries upstream (inline)
//! or in a check's answer (`ext_authz`, `auth_request`).

use super::{Ended, Gateway, Judged};
use crate::core::assertion::Asked;
use crate::core::forward::Forward;
use crate::core::host::Host;
use crate::core::hostname::host_name;
use crate::core::identity::Identity;
use crate::core::mode::Mode;
use crate::core::policy::gate::PolicyOf;
use crate::core::reply::{Reply, Severity};

/// How long clients may keep the JWKS: rotation waits this long after publishing a key.
const JWKS_MAX_AGE_SECS: u64 = 300;

impl Gateway {
    /// Step 3: the public keys at `jwks_path`, for `GET` and `HEAD`, on any host.
    pub(super) fn jwks(&self, path: &str, method: &str) -> Option<Ended> {
        let settings = self.settings.identity_assertion.as_ref()?;
        let path = path.split('?').next().unwrap_or_default();
        if path != settings.jwks_path || !matches!(method, "GET" | "HEAD") {
            return None;
        }
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            (
                "cache-control".into(),
                format!("public, max-age={JWKS_MAX_AGE_SECS}"),
            ),
        ];
        Some(Ended::Answer(Reply {
            status: 200,
            headers,
            body: settings.jwks.clone(),
            reason: None,
            page: None,
        }))
    }

    /// Step 10: when the service asks for one, the caller's signed assertion in `forward`
    /// (a check copies it into its answer). `Err`: none could be signed, and a request the
    /// upstream expects to carry one does not go without it.
    pub(super) fn assert_identity(
        &self,
        host: &dyn Host,
        judged: &Judged,
        identity: &Identity,
        session_sid: Option<&str>,
        forward: &mut Forward,
    ) -> Result<(), Ended> {
        let Some(service) = judged.gate.assertion(&self.settings) else {
            return Ok(());
        };
        // User info answers the caller itself: nothing goes upstream.
        if matches!(judged.mode, Mode::UserInfo { .. }) {
            return Ok(());
        }
        let Some(settings) = self.settings.identity_assertion.as_ref() else {
            return Ok(());
        };
        let service_slot = match judged.gate.policy {
            PolicyOf::Login(id) => (true, id.0),
            PolicyOf::Api(i) => (false, i),
            PolicyOf::Open => return Ok(()),
        };
        let host_audience;
        let audience = match &service.audience {
            Some(audience) => audience.as_str(),
            None => {
                host_audience = host_name(&judged.gate.host)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                host_audience.as_str()
            }
        };
        let asked = Asked {
            service: service_slot,
            audience,
            identity,
            session_sid,
        };
        let now_secs = host.now_ms() / 1000;
        let signed = match self.assertions.try_borrow_mut() {
            Ok(mut assertions) => assertions.assertion(settings, service, &asked, now_secs),
            // Never re-entered; were it, a fresh signature is still right.
            Err(_) => crate::core::assertion::Assertions::default()
                .assertion(settings, service, &asked, now_secs),
        };
        match signed {
            Ok(token) => {
                forward.set_headers.push((service.header.clone(), token));
                forward.assertion_header = Some(service.header.clone());
                Ok(())
            }
            Err(why) => {
                host.log(
                    Severity::Error,
                    &format!("no identity assertion could be signed: {why}"),
                );
                Err(Ended::Answer(Reply {
                    status: 500,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: "The identity assertion could not be signed.\n".into(),
                    reason: None,
                    page: None,
                }))
            }
        }
    }
}
