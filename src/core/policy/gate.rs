//! Which rules a request answers to: found once from its host, normalised path and method,
//! and kept while the request waits for keys or a refresh; then the check of the caller.

use crate::core::bearer::error::AuthError;
use crate::core::config::assertion::ServiceAssertion;
use crate::core::config::{ServiceId, Settings};
use crate::core::hostname::host_name;
use crate::core::identity::Identity;
use crate::core::log_text::Escaped;
use crate::core::policy::access::Verdict;
use crate::core::policy::path::normalize;
use crate::core::policy::route::{Matched, ServicePolicy, Unauthenticated};
use crate::core::refusal::{Forbidden, Refusal};
use crate::core::reply::header_value_safe;

/// Whose rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PolicyOf {
    /// No service is configured at all (bearer validation only): any valid token passes.
    /// Once any service is, a host none lists never gets here (`Gate::find` refuses it).
    Open,
    Login(ServiceId),
    /// An entry of `services` (bearer tokens only).
    Api(usize),
}

#[derive(Clone, Debug)]
pub struct Gate {
    pub(crate) policy: PolicyOf,
    /// The routes that matched, if any.
    pub(crate) route: Matched,
    /// A public route: no credential needed.
    pub(crate) public: bool,
    /// A person's browser asked: refusals are pages.
    pub(crate) browser: bool,
    /// For log lines: the host and the normalised path (query left out).
    pub(crate) host: String,
    pub(crate) path: String,
    /// The `:path` to forward (`forward_normalized_path`): the normalised path and the
    /// query, so that the upstream serves the path the rules were asked about.
    pub(crate) forward_path: Option<String>,
}

/// The request as the gate reads it.
pub struct Target<'a> {
    pub authority: &'a str,
    pub path_and_query: &'a str,
    pub method: &'a str,
    pub browser: bool,
}

/// Whose rules a host answers to: a service listing the name itself comes first (login
/// services, then `services`), then one listing `*`; a host under none is `Open`.
pub(crate) fn policy_for(settings: &Settings, authority: &str) -> PolicyOf {
    let name = host_name(authority);
    let named =
        |hosts: &[String]| name.is_some_and(|n| hosts.iter().any(|h| h.eq_ignore_ascii_case(n)));
    let any = |hosts: &[String]| hosts.iter().any(|h| h == "*");
    let login = |listed: &dyn Fn(&[String]) -> bool| {
        settings
            .login
            .iter()
            .position(|s| listed(&s.hosts))
            .map(|i| PolicyOf::Login(ServiceId(i)))
    };
    let api = |listed: &dyn Fn(&[String]) -> bool| {
        settings
            .services
            .iter()
            .position(|s| listed(&s.hosts))
            .map(PolicyOf::Api)
    };
    login(&named)
        .or_else(|| api(&named))
        .or_else(|| login(&any))
        .or_else(|| api(&any))
        .unwrap_or(PolicyOf::Open)
}

impl Gate {
    /// The rules for `target`; `Err` with a `400` when a service's path cannot be matched
    /// safely (an encoded `/`, `\` or NUL, a broken escape), `403` for a host no service
    /// lists (in every mode: NGINX passes a `403` on; a `421` would become its `500`).
    pub fn find(settings: &Settings, target: &Target) -> Result<Gate, Refusal> {
        // A name no service could list (`[login.test]`, `a.test:80:80`) must not fall to
        // the hosts under no service: refused wherever services have rules.
        if settings.has_services() && host_name(target.authority).is_none() {
            return Err(Refusal::BadRequest("the Host is not a host name".into()));
        }
        let policy = policy_for(settings, target.authority);
        // `Host: 127.0.0.1`, `GET http://other.test/`, `http://app.test@other.test/`: a host
        // no service lists would skip every service's rules (and impersonation).
        if settings.has_services() && policy == PolicyOf::Open {
            return Err(Refusal::UnlistedHost);
        }
        let mut gate = Gate {
            policy,
            route: Matched::default(),
            public: false,
            browser: target.browser,
            host: target.authority.to_string(),
            path: String::new(),
            forward_path: None,
        };
        let Some(rules) = gate.rules(settings) else {
            gate.path = target
                .path_and_query
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string();
            return Ok(gate);
        };
        let path =
            normalize(target.path_and_query).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let (raw, query) = match target.path_and_query.split_once('?') {
            Some((raw, query)) => (raw, Some(query)),
            None => (target.path_and_query, None),
        };
        gate.route = rules.route(&path, raw, target.method, target.authority);
        // The sign-in endpoints of a login host are ours, whatever a route says.
        let own = gate
            .login()
            .and_then(|id| settings.login.get(id.0))
            .is_some_and(|s| {
                [
                    &s.callback_path,
                    &s.sign_out_path,
                    &s.start_path,
                    &s.backchannel_logout_path,
                ]
                .iter()
                .any(|own| own.as_str() == raw)
            });
        gate.public = !own && rules.opens(&gate.route);
        if rules.forward_normalized_path {
            let judged = match query {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            };
            if !header_value_safe(&judged) {
                return Err(Refusal::BadRequest("the query cannot be forwarded".into()));
            }
            gate.forward_path = Some(judged);
        }
        gate.path = path;
        Ok(gate)
    }

    /// Host and path, for log lines: both the client's, so escaped.
    pub(crate) fn place(&self) -> String {
        format!("{}{}", Escaped(&self.host), Escaped(&self.path))
    }

    /// The login service, when the host has one.
    pub(crate) fn login(&self) -> Option<ServiceId> {
        match self.policy {
            PolicyOf::Login(id) => Some(id),
            _ => None,
        }
    }

    /// The service's signed identity assertion, when it asks for one.
    pub(crate) fn assertion<'a>(&self, settings: &'a Settings) -> Option<&'a ServiceAssertion> {
        self.rules(settings)?.assertion.as_deref()
    }

    fn rules<'a>(&self, settings: &'a Settings) -> Option<&'a ServicePolicy> {
        match self.policy {
            PolicyOf::Open => None,
            PolicyOf::Login(id) => settings.login.get(id.0).map(|s| &s.policy),
            PolicyOf::Api(i) => settings.services.get(i).map(|s| &s.policy),
        }
    }

    /// Whether the service takes identities of `issuer` (`providers`; a login service its
    /// own issuer too); a host under no service has no list.
    fn accepts_issuer(&self, settings: &Settings, issuer: &str) -> bool {
        let accepted = match self.policy {
            PolicyOf::Open => return true,
            PolicyOf::Login(id) => settings.login.get(id.0).map(|s| &s.accepted_issuers),
            PolicyOf::Api(i) => settings.services.get(i).map(|s| &s.accepted_issuers),
        };
        accepted.is_some_and(|list| list.iter().any(|i| i == issuer))
    }

    /// Every restricting route of the service holds, whatever the path: for a check that
    /// does not say which request it is about.
    pub(crate) fn require_every_route(&mut self, settings: &Settings) {
        if let Some(rules) = self.rules(settings) {
            self.route = rules.every_restriction();
            self.public = false;
        }
    }

    /// What a request without a credential gets on this route (login hosts).
    pub fn unauthenticated(&self, settings: &Settings) -> Unauthenticated {
        self.rules(settings)
            .map_or(Unauthenticated::Auto, |r| r.unauthenticated(&self.route))
    }

    /// Whether `identity` may pass; `Err` with the refusal and the log line.
    pub(crate) fn check(
        &self,
        settings: &Settings,
        identity: &Identity,
    ) -> Result<(), (Refusal, String)> {
        let Some(rules) = self.rules(settings) else {
            return Ok(());
        };
        // Before any rule: every path to here (cached, shared, resumed, session, refreshed)
        // passes this one check.
        if !self.accepts_issuer(settings, &identity.issuer) {
            let line = format!(
                "401 for user {} on {}: issuer {} is not accepted here",
                identity.reference(),
                self.place(),
                Escaped(&identity.issuer)
            );
            return Err((Refusal::Token(AuthError::IssuerNotAccepted), line));
        }
        let subject = identity.subject();
        let Some(missing_scopes) =
            rules
                .accesses(&self.route)
                .find_map(|access| match access.decide(&subject) {
                    Verdict::Forbidden { missing_scopes } => Some(missing_scopes),
                    Verdict::Allow => None,
                })
        else {
            return Ok(());
        };
        let why = if missing_scopes.is_empty() {
            "no rule allows the caller".to_string()
        } else {
            format!("missing scopes {}", missing_scopes.join(" "))
        };
        let line = format!(
            "403 for user {} on {}: {why}",
            identity.reference(),
            self.place()
        );
        let login = self.login().and_then(|id| settings.login.get(id.0));
        let sign_out = login.map(|s| s.sign_out_path.as_str());
        let mut forbidden = Forbidden::of(identity, missing_scopes, sign_out);
        if let Some(login) = login {
            forbidden = forbidden.switching_at(&login.start_path, &self.path);
        }
        Err((Refusal::Forbidden(Box::new(forbidden)), line))
    }
}
