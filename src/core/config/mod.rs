//! The plugin configuration: parsed, validated and compiled once, in `on_configure`.
pub mod assertion;
pub mod cluster_store;
pub mod duration;
pub(crate) mod endpoints;
pub(crate) mod idle_timeout;
pub mod idp;
pub(crate) mod ids;
pub(crate) mod kubernetes;
pub mod login;
pub(crate) mod oidc_client;
pub(crate) mod pages;
pub(crate) mod policy;
pub(crate) mod provider;
pub(crate) mod reader;
pub(crate) mod start_hints;

use std::rc::Rc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::bearer::budget::BudgetLimits;
use crate::core::config::assertion::{read_assertion, AssertionSettings};
use crate::core::config::cluster_store::{read_cluster_store, ClusterStore};
use crate::core::config::endpoints::{read_endpoints, OwnEndpoints};
pub use crate::core::config::ids::{ProviderId, ServiceId};
use crate::core::config::login::{read_service, EnvLookup, LoginService, SessionStore};
use crate::core::config::pages::{read_pages, Branding};
use crate::core::config::policy::{read_api_services, ApiService};
use crate::core::config::provider::read_provider;
pub(crate) use crate::core::config::provider::{KeySource, Locator, Provider, RemoteKeys};
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::hostname::host_name;
use crate::core::identity::{IdentityHeaders, StrippedHeaders};
use crate::core::policy::route::Action;
use crate::core::reply::{header_name_safe, RESERVED_HEADERS};

pub(crate) const DEFAULT_USER_HEADER: &str = "x-auth-request-user";
pub(crate) const DEFAULT_EMAIL_HEADER: &str = "x-auth-request-email";
pub(crate) const DEFAULT_GROUPS_HEADER: &str = "x-auth-request-groups";
pub(crate) const DEFAULT_PREFERRED_USERNAME_HEADER: &str = "x-auth-request-preferred-username";

#[derive(Debug)]
pub struct Settings {
    pub providers: Vec<Provider>,
    pub max_token_bytes: usize,
    pub(crate) keys_wait_timeout_ms: u64,
    pub identity_headers: IdentityHeaders,
    /// Request headers no client may send: identity families and `strip_request_headers`.
    pub stripped_headers: StrippedHeaders,
    pub(crate) forward_authorization: bool,
    /// Browser sign-in, per protected host; empty when only bearer tokens are accepted.
    pub login: Vec<LoginService>,
    /// Hosts without browser login that have rules of their own; a host under no service
    /// admits any valid token.
    pub services: Vec<ApiService>,
    /// Top-level claims identities keep, because rules or claim headers read them.
    pub kept_claims: Vec<String>,
    /// Bytes of shared data for tokens verified by any worker (0: each VM on its own).
    pub(crate) shared_token_cache_bytes: usize,
    /// Paths the filter answers on every host (forward-auth, user info, probes).
    pub(crate) endpoints: OwnEndpoints,
    /// Failed signature checks one client address may cause (`None`: no limit).
    pub(crate) signature_check_budget: Option<BudgetLimits>,
    /// The etcd cluster a fleet of replicas shares; `None`: each Envoy on its own.
    pub cluster_store: Option<ClusterStore>,
    /// The gateway's keys for signed identity assertions (`identity_assertion`).
    pub identity_assertion: Option<Rc<AssertionSettings>>,
    /// How the pages a person sees are branded where no service is known (an unlisted
    /// host); each service has its own, over this one.
    pub(crate) pages: Rc<Branding>,
    /// Whether each decision leaves its record for Envoy's access log (`core::access_log`).
    pub(crate) access_log: bool,
    /// SHA-256 of the configuration text: entries in shared data name the configuration
    /// they were made under.
    pub(crate) fingerprint: [u8; 32],
}

/// Default shared verified-token cache: tens of thousands of typical tokens.
pub(crate) const DEFAULT_SHARED_TOKEN_CACHE_BYTES: u64 = 16 << 20;

impl Settings {
    /// Whether any host has rules of its own (login services or `services`).
    pub(crate) fn has_services(&self) -> bool {
        !self.login.is_empty() || !self.services.is_empty()
    }

    /// How often provider `index`'s keys may be refetched on demand (0 for inline keys).
    pub(crate) fn min_refetch_interval_ms(&self, provider: ProviderId) -> u64 {
        match self.providers.get(provider.0).map(|p| &p.keys) {
            Some(KeySource::Remote(remote)) => remote.min_refetch_interval_ms,
            _ => 0,
        }
    }

    /// Parses the plugin configuration; on failure, every problem found, each with its path.
    #[cfg(any(test, feature = "testing"))]
    pub fn parse(text: &str) -> Result<Settings, Vec<String>> {
        Settings::parse_with_env(text, &|_| None)
    }

    /// As `parse`, with secrets given as `{"env": "NAME"}` read through `env`.
    pub fn parse_with_env(text: &str, env: EnvLookup) -> Result<Settings, Vec<String>> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| vec![format!("configuration is not valid JSON: {e}")])?;
        let mut problems = Problems::default();
        let mut settings = read_settings(&value, env, &mut problems);
        settings.fingerprint = Sha256::digest(text.as_bytes()).into();
        if problems.0.is_empty() {
            Ok(settings)
        } else {
            Err(problems.0)
        }
    }
}

/// `providers`: a non-empty list, each issuer once.
fn read_providers(value: Option<&Value>, problems: &mut Problems) -> Vec<Provider> {
    let providers = match value.and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .filter_map(|(i, p)| read_provider(&format!("providers[{i}]"), p, problems))
            .collect(),
        _ => {
            problems.add("providers", "must be a non-empty list");
            Vec::new()
        }
    };
    check_unique_issuers(&providers, problems);
    providers
}

/// Every login service keeps the groups any rule names: what a session too large for its
/// cookies still carries.
fn keep_rule_groups(login: &mut [LoginService], services: &[ApiService]) {
    let rule_groups: Vec<String> = login
        .iter()
        .map(|s| &s.policy)
        .chain(services.iter().map(|s| &s.policy))
        .flat_map(|p| p.group_names())
        .map(str::to_string)
        .collect();
    for service in login {
        service.kept_groups = rule_groups.clone();
    }
}

fn read_shared_cache_bytes(top: &mut ObjectReader, problems: &mut Problems) -> u64 {
    match top.value("shared_token_cache_bytes") {
        None => DEFAULT_SHARED_TOKEN_CACHE_BYTES,
        Some(v) => reader::whole_number(v).unwrap_or_else(|| {
            problems.add(
                &top.field_path("shared_token_cache_bytes"),
                "must be a whole number of bytes (0 turns the shared cache off)",
            );
            0
        }),
    }
}

fn read_settings(value: &Value, env: EnvLookup, problems: &mut Problems) -> Settings {
    let mut top = ObjectReader::new("", value, problems);
    let providers = read_providers(top.value("providers"), problems);
    let max_token_bytes = top.positive_integer("max_token_size", 16_384, problems) as usize;
    let keys_wait_timeout_ms = top.duration_millis("keys_wait_timeout", 5_000, problems);
    let mut identity_headers = read_identity_headers(top.value("identity_headers"), problems);
    identity_headers.pass_user_headers = top.bool("pass_user_headers", false, problems);
    identity_headers.claim_headers = read_claim_headers(&mut top, problems);
    let forward_authorization = top.bool("forward_authorization", true, problems);
    let mut strip = read_strip(&mut top, problems);
    let identity_assertion = read_assertion(top.value("identity_assertion"), env, problems);
    let mut login = read_login(top.value("login"), &providers, env, problems);
    let mut services = read_api_services(top.value("services"), &providers, problems);
    let pages = Rc::new(read_pages("pages", top.value("pages"), problems));
    brand_services(&pages, &mut login, &mut services);
    check_assertions(&top, &login, &services, &identity_headers, problems);
    strip.extend(assertion::stripped_names(
        all_policies(&login, &services).map(|p| p.assertion.as_ref()),
    ));
    let stripped_headers = StrippedHeaders::new(&identity_headers, &strip);
    check_hosts_unique(&login, &services, problems);
    login::check_cookie_scopes(&login, problems);
    check_route_hosts(&login, &services, problems);
    let kept_claims = kept_claims(&login, &services, &identity_headers);
    keep_rule_groups(&mut login, &services);
    let shared_token_cache_bytes = read_shared_cache_bytes(&mut top, problems);
    let signature_check_budget = read_budget(&mut top, problems);
    let endpoints = read_endpoints(top.value("endpoints"), problems);
    assertion::check_jwks_path(identity_assertion.as_deref(), &endpoints, &login, problems);
    let access_log = top.bool("access_log", true, problems);
    let cluster_store_value = top.value("cluster_store");
    let cluster_store = read_cluster_store(cluster_store_value, problems);
    // One that is there but wrong has its own problems: it is not missing too.
    if cluster_store_value.is_none() {
        check_no_cluster_sessions(&login, problems);
    }
    top.finish(problems);
    Settings {
        shared_token_cache_bytes: usize::try_from(shared_token_cache_bytes).unwrap_or(usize::MAX),
        signature_check_budget,
        endpoints,
        cluster_store,
        identity_assertion,
        access_log,
        fingerprint: [0; 32],
        pages,
        providers,
        max_token_bytes,
        keys_wait_timeout_ms,
        stripped_headers,
        identity_headers,
        forward_authorization,
        login,
        services,
        kept_claims,
    }
}

/// Login services' and `services`' rules, in that order.
fn all_policies<'a>(
    login: &'a [LoginService],
    services: &'a [ApiService],
) -> impl Iterator<Item = &'a crate::core::policy::route::ServicePolicy> {
    login
        .iter()
        .map(|s| &s.policy)
        .chain(services.iter().map(|s| &s.policy))
}

/// Services asking for an assertion need the top-level keys (`config::assertion`).
fn check_assertions(
    top: &ObjectReader,
    login: &[LoginService],
    services: &[ApiService],
    headers: &IdentityHeaders,
    problems: &mut Problems,
) {
    let configured = top.has("identity_assertion");
    let asked = login
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("login[{i}]"), s.policy.assertion.as_ref()))
        .chain(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("services[{i}]"), s.policy.assertion.as_ref())),
        );
    let names = [
        headers.user.as_str(),
        headers.email.as_str(),
        headers.groups.as_str(),
        headers.preferred_username.as_str(),
    ];
    assertion::check_services(configured, asked, &names, problems);
}

/// Each service's own `pages` fields over the top-level ones.
fn brand_services(top: &Branding, login: &mut [LoginService], services: &mut [ApiService]) {
    let pages = login
        .iter_mut()
        .map(|s| &mut s.pages)
        .chain(services.iter_mut().map(|s| &mut s.pages));
    for own in pages {
        *own = Rc::new(own.over(top));
    }
}

/// `strip_request_headers`: header names, or prefixes ending in `*`.
fn read_strip(top: &mut ObjectReader, problems: &mut Problems) -> Vec<String> {
    let strip_path = top.field_path("strip_request_headers");
    let strip = top
        .string_list("strip_request_headers", problems)
        .unwrap_or_default();
    for (i, entry) in strip.iter().enumerate() {
        let name = entry.strip_suffix('*').unwrap_or(entry);
        if !header_name_safe(name) {
            problems.add(
                &format!("{strip_path}[{i}]"),
                format!("\"{entry}\" is not a header name (or a prefix ending in *)"),
            );
        }
    }
    strip
}

/// Server-side sessions live in the cluster store: without one they have nowhere to go.
fn check_no_cluster_sessions(login: &[LoginService], problems: &mut Problems) {
    for (i, service) in login.iter().enumerate() {
        if service.session_store != SessionStore::Cookie {
            problems.add(
                &format!("login[{i}].session_store"),
                "\"cluster\" needs a cluster_store",
            );
        }
    }
}

/// `signature_check_budget: {"per_second": n, "burst": m}`.
fn read_budget(top: &mut ObjectReader, problems: &mut Problems) -> Option<BudgetLimits> {
    let path = top.field_path("signature_check_budget");
    let value = top.value("signature_check_budget")?;
    let mut budget = ObjectReader::new(&path, value, problems);
    let limits = BudgetLimits {
        per_second: budget.positive_integer("per_second", 10, problems),
        burst: budget.positive_integer("burst", 50, problems),
    };
    budget.finish(problems);
    Some(limits)
}

/// A host served twice would have two policies, and which one applies would be luck.
fn check_hosts_unique(login: &[LoginService], services: &[ApiService], problems: &mut Problems) {
    let mut seen: Vec<String> = Vec::new();
    let hosts = login
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.hosts
                .iter()
                .map(move |h| (format!("login[{i}].hosts"), h))
        })
        .chain(services.iter().enumerate().flat_map(|(i, s)| {
            s.hosts
                .iter()
                .map(move |h| (format!("services[{i}].hosts"), h))
        }));
    for (path, host) in hosts {
        // A port, a trailing dot or a pattern would never match: the service's rules would
        // be silently off.
        if host != "*" && host_name(host) != Some(host.as_str()) {
            problems.add(
                &path,
                format!("\"{host}\" is not a host name (no port, no trailing dot, no patterns; \"*\" for any)"),
            );
        }
        let host = host.to_ascii_lowercase();
        if seen.contains(&host) {
            problems.add(
                &path,
                format!("\"{host}\" is served by an earlier service too"),
            );
        } else {
            seen.push(host);
        }
    }
}

/// A route's `hosts` must be hosts of its service: a typo would make the route match
/// nothing, and its requests fall to the service's looser rules.
fn check_route_hosts(login: &[LoginService], services: &[ApiService], problems: &mut Problems) {
    let each = login
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("login[{i}]"), &s.hosts, &s.policy))
        .chain(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("services[{i}]"), &s.hosts, &s.policy)),
        );
    for (path, hosts, policy) in each {
        if hosts.iter().any(|h| h == "*") {
            continue;
        }
        for (r, route) in policy.routes.iter().enumerate() {
            for (k, host) in route.hosts.iter().enumerate() {
                if host != "*" && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                    problems.add(
                        &format!("{path}.routes[{r}].hosts[{k}]"),
                        format!("\"{host}\" is not one of the service's hosts"),
                    );
                }
            }
        }
    }
}

/// The top-level claims rules and claim headers read: what identities and sessions keep.
fn kept_claims(
    login: &[LoginService],
    services: &[ApiService],
    headers: &IdentityHeaders,
) -> Vec<String> {
    let policies = login
        .iter()
        .map(|s| &s.policy)
        .chain(services.iter().map(|s| &s.policy));
    let mut kept: Vec<String> = Vec::new();
    let from_rules = policies.flat_map(|p| {
        p.routes
            .iter()
            .filter_map(|r| match &r.action {
                Action::Protected(Some(access)) => Some(access),
                _ => None,
            })
            .chain(std::iter::once(&p.default))
            .flat_map(|a| a.claim_names())
    });
    let from_headers = headers
        .claim_headers
        .iter()
        .map(|(_, claim)| claim.as_str());
    let from_impersonation = login
        .iter()
        .map(|s| &s.impersonation)
        .chain(services.iter().map(|s| &s.impersonation))
        .filter_map(Option::as_ref)
        .flat_map(|i| i.extra_claims.iter().map(|(_, claim)| claim.as_str()));
    // A dotted name is a claim of that name, or a path into its first part's object.
    for name in from_rules.chain(from_headers).chain(from_impersonation) {
        for kept_name in [Some(name), name.split('.').next()].into_iter().flatten() {
            if !kept.iter().any(|k| k == kept_name) {
                kept.push(kept_name.to_string());
            }
        }
    }
    kept
}

/// `claim_headers`: header name to claim name (dotted for nested claims).
fn read_claim_headers(top: &mut ObjectReader, problems: &mut Problems) -> Vec<(String, String)> {
    let path = top.field_path("claim_headers");
    let Some(value) = top.value("claim_headers") else {
        return Vec::new();
    };
    let Some(map) = value.as_object() else {
        problems.add(&path, "must map header names to claim names");
        return Vec::new();
    };
    let mut headers = Vec::new();
    for (header, claim) in map {
        let field = format!("{path}.{header}");
        match claim.as_str() {
            Some(claim) if !claim.is_empty() => {
                if check_header_name(&field, header, problems) {
                    headers.push((header.to_ascii_lowercase(), claim.to_string()));
                }
            }
            _ => problems.add(&field, "must be a claim name"),
        }
    }
    headers
}

/// Whether `name` may carry identity: a header name nothing else gives a meaning.
fn check_header_name(path: &str, name: &str, problems: &mut Problems) -> bool {
    if !header_name_safe(name) {
        problems.add(path, format!("\"{name}\" is not a valid header name"));
        return false;
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        problems.add(
            path,
            format!("\"{name}\" is a header the filter or HTTP itself uses"),
        );
        return false;
    }
    true
}

fn read_login(
    value: Option<&Value>,
    providers: &[Provider],
    env: EnvLookup,
    problems: &mut Problems,
) -> Vec<LoginService> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(entries) = value.as_array() else {
        problems.add("login", "must be a list of services");
        return Vec::new();
    };
    let mut services = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("login[{i}]");
        let Some(service) = read_service(&path, entry, providers, env, problems) else {
            continue;
        };
        for (_, idp) in service.idps.iter() {
            let discovers = providers
                .get(idp.provider.0)
                .is_some_and(|p| matches!(&p.keys, KeySource::Remote(r) if matches!(r.locator, Locator::Discovery(_))));
            if !discovers && !idp.overrides_login_endpoints() {
                problems.add(&path, "the provider does not use discovery: set authorization_endpoint and token_endpoint");
            }
        }
        services.push(service);
    }
    services
}

fn check_unique_issuers(providers: &[Provider], problems: &mut Problems) {
    for (i, p) in providers.iter().enumerate() {
        if providers[..i]
            .iter()
            .any(|q| q.rules.issuer == p.rules.issuer)
        {
            problems.add(&format!("providers[{i}].issuer"), "appears twice");
        }
    }
}

fn read_identity_headers(value: Option<&Value>, problems: &mut Problems) -> IdentityHeaders {
    let empty = Value::Object(serde_json::Map::new());
    let mut reader = ObjectReader::new("identity_headers", value.unwrap_or(&empty), problems);
    let mut header = |name: &'static str, default: &str, problems: &mut Problems| {
        let path = reader.field_path(name);
        let chosen = reader
            .string(name, problems)
            .unwrap_or_else(|| default.into());
        check_header_name(&path, &chosen, problems);
        chosen.to_ascii_lowercase()
    };
    let user = header("user", DEFAULT_USER_HEADER, problems);
    let email = header("email", DEFAULT_EMAIL_HEADER, problems);
    let groups = header("groups", DEFAULT_GROUPS_HEADER, problems);
    let preferred_username = header(
        "preferred_username",
        DEFAULT_PREFERRED_USERNAME_HEADER,
        problems,
    );
    reader.finish(problems);
    IdentityHeaders {
        user,
        email,
        groups,
        preferred_username,
        pass_user_headers: false,
        claim_headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"providers":[{"issuer":"https://dex.example.com","audiences":["prometheus"],"cluster":"outbound|443||dex.example.com"}]}"#;

    #[test]
    fn minimal_config_gets_sensible_defaults() {
        let settings = Settings::parse(MINIMAL).map_err(|e| e.join("; "));
        let Ok(settings) = settings else {
            panic!("{settings:?}")
        };
        assert_eq!(settings.max_token_bytes, 16_384);
        assert_eq!(settings.keys_wait_timeout_ms, 5_000);
        assert!(settings.forward_authorization);
        assert_eq!(settings.identity_headers.user, "x-auth-request-user");
        let provider = &settings.providers[0];
        assert_eq!(provider.rules.clock_skew_secs, 60);
        assert!(provider.rules.require_expiry);
        assert_eq!(provider.user_claim, "sub");
        assert_eq!(provider.algorithms.len(), 9);
        let KeySource::Remote(remote) = &provider.keys else {
            panic!("expected remote keys")
        };
        assert_eq!(
            remote.locator,
            Locator::Discovery(
                url::Url::parse("https://dex.example.com/.well-known/openid-configuration")
                    .unwrap()
            )
        );
        assert_eq!(
            (remote.timeout_ms, remote.refresh_interval_ms),
            (5_000, 600_000)
        );
    }

    fn problems_of(config: &str) -> Vec<String> {
        Settings::parse(config).err().unwrap_or_default()
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let config = r#"{
            "providers": [{
                "issuer": "dex.example.com",
                "audiences": [],
                "algorithms": ["RS256", "HS256"],
                "clock_skew": "60",
                "colour": "blue"
            }],
            "max_token_size": -1,
            "identity_headers": {"user": "bad header"},
            "extra": 1
        }"#;
        let problems = problems_of(config);
        let expected = [
            "providers[0].issuer: \"dex.example.com\" is not a URL",
            "providers[0].audiences: must list at least one accepted audience",
            "providers[0].algorithms[1]: \"HS256\" is not one of",
            "providers[0].clock_skew: \"60\" has no unit",
            "providers[0].colour: unknown field",
            "max_token_size: must be a whole number above 0",
            "identity_headers.user: \"bad header\" is not a valid header name",
            "extra: unknown field",
        ];
        for fragment in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(fragment)),
                "missing {fragment:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn invalid_config_fixtures_each_name_their_error() {
        let cases = [
            ("not JSON", "{", "configuration is not valid JSON"),
            ("no providers", "{}", "providers: must be a non-empty list"),
            (
                "empty providers",
                r#"{"providers":[]}"#,
                "providers: must be a non-empty list",
            ),
            (
                "no issuer",
                r#"{"providers":[{"audiences":["a"],"cluster":"c"}]}"#,
                "providers[0].issuer: is required",
            ),
            (
                "no cluster for remote keys",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"]}]}"#,
                "providers[0].cluster: is required",
            ),
            (
                "discovery off without keys",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"discovery":false,"cluster":"c"}]}"#,
                "providers[0].discovery: is off",
            ),
            (
                "ftp jwks_uri",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"jwks_uri":"ftp://i/k","cluster":"c"}]}"#,
                "providers[0].jwks_uri: \"ftp://i/k\" is not an http(s) URL",
            ),
            (
                "inline JWKS without keys",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"jwks":{"keys":[]}}]}"#,
                "providers[0].jwks: JWKS holds no usable signing key",
            ),
            (
                "inline JWKS not a set",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"jwks":"[]"}]}"#,
                "providers[0].jwks: JWKS has no \"keys\" array",
            ),
            (
                "duplicate issuers",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"cluster":"c"},{"issuer":"https://i","audiences":["b"],"cluster":"c"}]}"#,
                "providers[1].issuer: appears twice",
            ),
            (
                "timeout zero",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"cluster":"c","timeout":"0s"}]}"#,
                "providers[0].timeout: must be above 0",
            ),
            (
                "wrong type",
                r#"{"providers":[{"issuer":"https://i","audiences":"a","cluster":"c"}]}"#,
                "providers[0].audiences: must be a list of strings",
            ),
            (
                "identity header named like one the filter edits",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"cluster":"c"}],"identity_headers":{"user":"Authorization"}}"#,
                "identity_headers.user: \"Authorization\" is a header the filter or HTTP itself uses",
            ),
            (
                "bool as string",
                r#"{"providers":[{"issuer":"https://i","audiences":["a"],"cluster":"c"}],"forward_authorization":"no"}"#,
                "forward_authorization: must be true or false",
            ),
        ];
        for (name, config, expected) in cases {
            let problems = problems_of(config);
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "case {name}: expected {expected:?} in {problems:#?}"
            );
        }
    }
}
