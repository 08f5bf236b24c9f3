#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties over configurations, not only requests: random services, routes, providers and
//! modes (inline, Envoy `ext_authz`, NGINX `auth_request`, Kubernetes), and random requests built
//! from the spellings attackers use. Whatever the filter lets through, a small evaluator written
//! from the rules in docs/ (not from the filter's code) must also let through:
//! - nothing reaches the upstream on a restricted route unless the evaluator, over the canonical
//!   path, says the rule holds;
//! - no header of a stripped family reaches the upstream, in any mode;
//! - a host no service lists never passes;
//! - a session never opens for another issuer or service;
//! - in Kubernetes mode nothing goes on without `Impersonate-User`.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{json, Value};
use support::mint::{self, claims_with, shared_keys};
use support::native_bed::{login_service, Bed};
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::login::session::Session;

const CORP: &str = "https://corp.example";
const SIGNUP: &str = "https://signup.example";
const AUDIENCE: &str = "apps";
const HOSTS: [&str; 3] = ["app.test", "admin.test", "kube.test"];
const LOGIN_HOSTS: [&str; 2] = ["login-a.test", "login-b.test"];
const GROUPS: [&str; 3] = ["admins", "banned", "users"];

/// Families no client may send upstream, in the spellings clients try.
const SPOOFED: [&str; 16] = [
    "x-auth-request-groups",
    "x_auth_request_groups",
    "X-Auth-Request-User",
    "impersonate-user",
    "Impersonate_Group",
    "x-remote-user",
    "x-pomerium-jwt-assertion",
    "x-http-method-override",
    "X_HTTP_Method_Override",
    "x-method-override",
    "x-http-method",
    "x-webauth-user",
    "remote-user",
    "x-forwarded-user",
    "x-forwarded-groups",
    "x-user",
];

fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// docs/configuration.md's stripped families, written out here rather than taken from the filter.
fn is_stripped_family(name: &str) -> bool {
    let name = folded(name);
    [
        "x-auth-request-",
        "impersonate-",
        "x-remote-",
        "x-pomerium-",
        "x-webauth-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "remote-user",
            "x-user",
            "x-email",
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
            "x-forwarded-preferred-username",
        ]
        .contains(&name.as_str())
}

// ---------------------------------------------------------------- configurations

#[derive(Clone, Debug)]
enum Rules {
    Public,
    AllowGroup(&'static str),
    DenyGroup(&'static str),
    AllowRole(&'static str),
    DenyRole(&'static str),
    /// No `allow`/`deny`: the service's rules.
    Inherit,
}

#[derive(Clone, Debug)]
struct RouteSpec {
    prefix: bool,
    path: &'static str,
    methods: Option<Vec<&'static str>>,
    rules: Rules,
}

#[derive(Clone, Debug)]
struct ServiceSpec {
    hosts: Vec<&'static str>,
    providers: Vec<&'static str>,
    allowed_group: Option<&'static str>,
    routes: Vec<RouteSpec>,
    kubernetes: bool,
}

#[derive(Clone, Debug)]
struct ConfigSpec {
    two_providers: bool,
    services: Vec<ServiceSpec>,
    /// Two login services with the same client, cookie name and secret, one per issuer.
    logins: bool,
    /// `auth_request` checks judge ingress-nginx's `X-Original-URL` and `-Method`.
    trust_original_url: bool,
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    let paths = prop::sample::select(vec!["/admin", "/public", "/api/users", "/healthz", "/"]);
    let methods = prop::option::weighted(
        0.3,
        prop::sample::subsequence(vec!["GET", "POST", "DELETE"], 1..=2),
    );
    let rules = prop_oneof![
        Just(Rules::Public),
        prop::sample::select(GROUPS.to_vec()).prop_map(Rules::AllowGroup),
        prop::sample::select(GROUPS.to_vec()).prop_map(Rules::DenyGroup),
        Just(Rules::AllowRole("admin")),
        Just(Rules::DenyRole("admin")),
        Just(Rules::Inherit),
    ];
    (any::<bool>(), paths, methods, rules).prop_map(|(prefix, path, methods, rules)| RouteSpec {
        prefix,
        path,
        methods,
        rules,
    })
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    let host_sets = prop::sample::subsequence(HOSTS.to_vec(), 0..=3).prop_flat_map(|hosts| {
        // Split the chosen hosts over one or two services; sometimes one claims `*`.
        let n = hosts.len();
        (Just(hosts), 0..=n, any::<bool>())
    });
    (
        any::<bool>(),
        host_sets,
        prop::collection::vec(
            (
                prop::collection::vec(route_spec(), 0..4),
                prop::option::weighted(0.3, prop::sample::select(GROUPS.to_vec())),
                prop::sample::subsequence(vec![CORP, SIGNUP], 1..=2),
                prop::bool::weighted(0.25),
            ),
            2,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(two_providers, (hosts, split, star), parts, logins, trust_original_url)| {
                let mut groups: Vec<Vec<&'static str>> =
                    vec![hosts[..split].to_vec(), hosts[split..].to_vec()];
                if star {
                    groups[1].push("*");
                }
                let services = groups
                    .into_iter()
                    .zip(parts)
                    .filter(|(hosts, _)| !hosts.is_empty())
                    .map(
                        |(hosts, (routes, allowed_group, providers, kubernetes))| ServiceSpec {
                            hosts,
                            providers: if two_providers { providers } else { vec![CORP] },
                            allowed_group,
                            routes,
                            kubernetes,
                        },
                    )
                    .collect();
                ConfigSpec {
                    two_providers,
                    services,
                    logins,
                    trust_original_url,
                }
            },
        )
}

fn provider_json(issuer: &str) -> Value {
    json!({ "issuer": issuer, "audiences": [AUDIENCE], "jwks": shared_keys().jwks_of(&["ES256"]) })
}

fn route_json(route: &RouteSpec) -> Value {
    let mut entry = json!({});
    entry[if route.prefix { "path_prefix" } else { "path" }] = json!(route.path);
    if let Some(methods) = &route.methods {
        entry["methods"] = json!(methods);
    }
    match route.rules {
        Rules::Public => entry["public"] = json!(true),
        Rules::AllowGroup(g) => entry["allow"] = json!([{ "groups": [g] }]),
        Rules::DenyGroup(g) => {
            entry["allow"] = json!([{ "authenticated": true }]);
            entry["deny"] = json!([{ "groups": [g] }]);
        }
        Rules::AllowRole(r) => {
            entry["allow"] = json!([{ "claims": { "realm_access.roles": [r] } }])
        }
        Rules::DenyRole(r) => {
            entry["allow"] = json!([{ "authenticated": true }]);
            entry["deny"] = json!([{ "claims": { "realm_access.roles": [r] } }]);
        }
        Rules::Inherit => {}
    }
    entry
}

fn service_json(service: &ServiceSpec) -> Value {
    let mut entry = json!({
        "hosts": service.hosts,
        "providers": service.providers,
        "routes": service.routes.iter().map(route_json).collect::<Vec<_>>(),
    });
    if let Some(group) = service.allowed_group {
        entry["allowed_groups"] = json!([group]);
    }
    if service.kubernetes {
        entry["impersonate"] = json!({ "user_prefix": "oidc:", "group_prefix": "oidc:" });
    }
    entry
}

/// Both login services: one client id, cookie name and cookie secret, another issuer each.
fn login_json(index: usize) -> Value {
    let issuer = [CORP, SIGNUP][index];
    let mut entry = login_service(LOGIN_HOSTS[index], "grafana", "_iap", json!({}));
    entry["issuer"] = json!(issuer);
    entry["cookie_secrets"] = json!(["one-secret-for-both-0123456789abcdef"]);
    entry["authorization_endpoint"] = json!(format!("{issuer}/auth"));
    entry["token_endpoint"] = json!(format!("{issuer}/token"));
    entry
}

fn config_json(spec: &ConfigSpec) -> Value {
    let mut providers = vec![provider_json(CORP)];
    if spec.two_providers || spec.logins {
        providers.push(provider_json(SIGNUP));
    }
    let mut config = json!({
        "providers": providers,
        "services": spec.services.iter().map(service_json).collect::<Vec<_>>(),
    });
    if spec.logins {
        config["login"] = json!([login_json(0), login_json(1)]);
    }
    config["endpoints"] = json!({ "trust_original_url": spec.trust_original_url });
    config
}

// ---------------------------------------------------------------- requests

#[derive(Clone, Debug)]
enum Mode {
    Inline,
    /// Envoy `ext_authz` with `path_prefix: /oauth2/auth`.
    ExtAuthz,
    /// NGINX `auth_request`: `/oauth2/auth`, the client's headers beside it.
    AuthRequest,
}

#[derive(Clone, Debug)]
enum Credential {
    None,
    Token {
        issuer: &'static str,
        groups: Vec<&'static str>,
        nested_roles: Vec<&'static str>,
        /// A top-level `"realm_access.roles"` key, spelt to shadow the nested claim.
        literal_roles: Option<Vec<&'static str>>,
    },
    /// A session sealed by login service `sealed_by`.
    Session {
        sealed_by: usize,
        groups: Vec<&'static str>,
    },
}

#[derive(Clone, Debug)]
struct RequestSpec {
    mode: Mode,
    authority: String,
    path: String,
    method: &'static str,
    credential: Credential,
    spoofed: Vec<&'static str>,
}

/// A path segment as attackers spell it: a format suffix, trailing dots or spaces, escapes,
/// `;` parameters, another case.
fn spelt(base: &'static str) -> impl Strategy<Value = String> {
    let decoration = prop::sample::select(vec![
        "", "", "", ".json", ".", "..", "%2e", "%20", ";x", ";.json", ".xml.", "%2E/", "/",
    ]);
    (decoration, any::<bool>(), any::<bool>()).prop_map(move |(decoration, upper, escape)| {
        let mut segment = base.to_string();
        if escape {
            // Escape the last letter: `publi%63`.
            if let Some(last) = segment.pop() {
                segment.push_str(&format!("%{:02x}", last as u32));
            }
        }
        if upper {
            segment = segment.to_uppercase();
        }
        format!("{segment}{decoration}")
    })
}

fn path() -> impl Strategy<Value = String> {
    let first = prop_oneof![
        spelt("admin"),
        spelt("public"),
        spelt("healthz"),
        spelt("api").prop_map(|api| format!("{api}/users")),
        Just("api".to_string()).prop_flat_map(|_| spelt("users").prop_map(|u| format!("api/{u}"))),
        Just("other".to_string()),
    ];
    let tail = prop::sample::select(vec!["", "", "/x", "/admin/users"]);
    let query = prop::sample::select(vec!["", "", "?a=1", "?/public/"]);
    (first, tail, query).prop_map(|(first, tail, query)| format!("/{first}{tail}{query}"))
}

fn authority() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "app.test",
        "admin.test",
        "kube.test",
        "login-a.test",
        "login-b.test",
        "unlisted.test",
        "127.0.0.1",
        "APP.TEST.",
        "app.test:8443",
        "kube.test.",
    ])
    .prop_map(str::to_string)
}

fn credential() -> impl Strategy<Value = Credential> {
    let groups = || prop::sample::subsequence(GROUPS.to_vec(), 0..=2);
    let roles = || prop::sample::subsequence(vec!["admin", "viewer"], 0..=2);
    prop_oneof![
        1 => Just(Credential::None),
        4 => (
            prop::sample::select(vec![CORP, SIGNUP]),
            groups(),
            roles(),
            prop::option::weighted(0.3, roles()),
        )
            .prop_map(|(issuer, groups, nested_roles, literal_roles)| Credential::Token {
                issuer,
                groups,
                nested_roles,
                literal_roles,
            }),
        2 => (0..2usize, groups())
            .prop_map(|(sealed_by, groups)| Credential::Session { sealed_by, groups }),
    ]
}

fn request_spec() -> impl Strategy<Value = RequestSpec> {
    (
        prop::sample::select(vec![
            Mode::Inline,
            Mode::Inline,
            Mode::ExtAuthz,
            Mode::AuthRequest,
        ]),
        authority(),
        path(),
        prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD"]),
        credential(),
        prop::sample::subsequence(SPOOFED.to_vec(), 0..=3),
    )
        .prop_map(
            |(mode, authority, path, method, credential, spoofed)| RequestSpec {
                mode,
                authority,
                path,
                method,
                credential,
                spoofed,
            },
        )
}

// ---------------------------------------------------------------- the evaluator

/// The host name a service would list: no port, no trailing dot, lower case.
fn listed_name(authority: &str) -> String {
    let name = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A segment as the loosest upstream reads it: decoded, lower case, without `;` parameters,
/// a format suffix, trailing dots or spaces.
fn loose_segment(segment: &str) -> String {
    let decoded = percent_decoded(segment).to_ascii_lowercase();
    let name = decoded.split(';').next().unwrap_or_default();
    let name = name.split('.').next().unwrap_or_default();
    name.trim_end_matches([' ', '.']).to_string()
}

fn loose_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(loose_segment)
        .filter(|s| !s.is_empty())
        .collect()
}

fn raw_path(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or_default()
}

fn method_matches(route: &RouteSpec, method: &str) -> bool {
    route.methods.as_ref().is_none_or(|methods| {
        methods
            .iter()
            .any(|m| *m == method || (*m == "GET" && method == "HEAD"))
    })
}

/// A public route opens only for the raw path exactly under it.
fn opens_strictly(route: &RouteSpec, raw: &str) -> bool {
    if route.prefix {
        route.path == "/"
            || raw == route.path
            || raw
                .strip_prefix(route.path)
                .is_some_and(|rest| rest.starts_with('/'))
    } else {
        raw == route.path
    }
}

/// A restricting route covers every loose spelling of its path.
fn restricts_loosely(route: &RouteSpec, raw: &str) -> bool {
    let path = loose_segments(raw);
    let rule = loose_segments(route.path);
    if route.prefix {
        path.len() >= rule.len() && path[..rule.len()] == rule[..]
    } else {
        path == rule
    }
}

#[derive(Clone, Debug, Default)]
struct Caller {
    issuer: &'static str,
    groups: Vec<&'static str>,
    nested_roles: Vec<&'static str>,
    literal_roles: Option<Vec<&'static str>>,
}

impl Caller {
    fn role_readings(&self) -> Vec<&Vec<&'static str>> {
        let mut readings = vec![&self.nested_roles];
        readings.extend(self.literal_roles.as_ref());
        readings
    }

    /// A deny holds on any reading; an allow needs every reading.
    fn allowed_role(&self, role: &str) -> bool {
        self.role_readings().iter().all(|r| r.contains(&role))
    }

    fn denied_role(&self, role: &str) -> bool {
        self.role_readings().iter().any(|r| r.contains(&role))
    }
}

/// Whether a caller may pass `rules`, with the service's group as the fallback.
fn rules_hold(rules: &Rules, service: &ServiceSpec, caller: &Caller) -> bool {
    match rules {
        Rules::Public => true,
        Rules::AllowGroup(g) => caller.groups.contains(g),
        Rules::DenyGroup(g) => !caller.groups.contains(g),
        Rules::AllowRole(r) => caller.allowed_role(r),
        Rules::DenyRole(r) => !caller.denied_role(r),
        Rules::Inherit => service
            .allowed_group
            .is_none_or(|g| caller.groups.contains(&g)),
    }
}

/// What the evaluator allows: `None` when the request may not pass at all; `Some(public)`.
fn may_pass(config: &ConfigSpec, request: &RequestSpec, caller: Option<&Caller>) -> Option<bool> {
    let name = listed_name(&request.authority);
    if config.services.is_empty() && !config.logins {
        // Pure bearer validation: any valid token from a configured provider.
        return caller.map(|_| false);
    }
    if LOGIN_HOSTS.contains(&name.as_str()) && config.logins {
        let index = LOGIN_HOSTS.iter().position(|h| *h == name)?;
        let caller = caller?;
        // A login service accepts its own issuer.
        return (caller.issuer == [CORP, SIGNUP][index]).then_some(false);
    }
    let service = config
        .services
        .iter()
        .find(|s| s.hosts.contains(&name.as_str()))
        .or_else(|| config.services.iter().find(|s| s.hosts.contains(&"*")))?;
    let raw = raw_path(&request.path);
    let method = request.method;
    let mut rules = &Rules::Inherit;
    for route in &service.routes {
        if !method_matches(route, method) {
            continue;
        }
        if matches!(route.rules, Rules::Public) {
            if opens_strictly(route, raw) {
                return Some(true);
            }
        } else if restricts_loosely(route, raw) {
            rules = &route.rules;
            break;
        }
    }
    let caller = caller?;
    let accepted = service.providers.contains(&caller.issuer);
    (accepted && rules_hold(rules, service, caller)).then_some(false)
}

// ---------------------------------------------------------------- running it

fn token_for(caller: &Caller) -> String {
    thread_local! {
        static MINTED: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    }
    let mut changes =
        json!({ "groups": caller.groups, "realm_access": { "roles": caller.nested_roles } });
    if let Some(literal) = &caller.literal_roles {
        changes["realm_access.roles"] = json!(literal);
    }
    let key = format!("{}{changes}", caller.issuer);
    MINTED.with(|minted| {
        minted
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                shared_keys()
                    .signer("ES256")
                    .sign(&claims_with(caller.issuer, AUDIENCE, changes))
            })
            .clone()
    })
}

fn session_of(groups: &[&str]) -> Session {
    let now = mint::now_secs();
    Session {
        sid: "sid-alice".into(),
        user: "alice-id".into(),
        email: Some("alice@example.com".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        expires_at: now + 3600,
        refresh_at: now + 600,
        ..Session::default()
    }
}

/// The caller as the evaluator knows them: a session counts only on the host of the service
/// that sealed it, with that service's issuer.
fn caller_of(config: &ConfigSpec, request: &RequestSpec) -> Option<Caller> {
    match &request.credential {
        Credential::None => None,
        Credential::Token {
            issuer,
            groups,
            nested_roles,
            literal_roles,
        } => Some(Caller {
            issuer,
            groups: groups.clone(),
            nested_roles: nested_roles.clone(),
            literal_roles: literal_roles.clone(),
        }),
        Credential::Session { sealed_by, groups } => {
            let on = listed_name(&request.authority);
            (config.logins && LOGIN_HOSTS[*sealed_by] == on).then(|| Caller {
                issuer: [CORP, SIGNUP][*sealed_by],
                groups: groups.clone(),
                ..Caller::default()
            })
        }
    }
}

fn check(config: &ConfigSpec, request: &RequestSpec) -> Result<(), TestCaseError> {
    let config_json = config_json(config);
    let mut bed = Bed::new(&config_json);
    let mut headers: Vec<(String, String)> = vec![("accept".into(), "application/json".into())];
    match &request.credential {
        Credential::None => {}
        Credential::Token { .. } => {
            let caller = caller_of(config, request).unwrap_or_default();
            headers.push((
                "authorization".into(),
                format!("Bearer {}", token_for(&caller)),
            ));
        }
        Credential::Session { sealed_by, groups } => {
            if config.logins {
                let cookie = bed.session_cookie(*sealed_by, &session_of(groups));
                headers.push(("cookie".into(), cookie));
            }
        }
    }
    for name in &request.spoofed {
        headers.push((name.to_string(), "admins".into()));
    }
    let path = match request.mode {
        Mode::Inline => request.path.clone(),
        Mode::ExtAuthz => format!("/oauth2/auth{}", request.path),
        Mode::AuthRequest => "/oauth2/auth".to_string(),
    };
    let trusted = matches!(request.mode, Mode::AuthRequest) && config.trust_original_url;
    let (method, authority) = if trusted {
        // NGINX asks with GET on its auth host; the request is in X-Original-*.
        let url = format!("https://{}{}", request.authority, request.path);
        headers.push(("x-original-url".into(), url));
        headers.push(("x-original-method".into(), request.method.into()));
        ("GET", "auth.test")
    } else {
        (request.method, request.authority.as_str())
    };
    let extra: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sent = bed.send(method, authority, &path, &extra);
    let caller = caller_of(config, request);
    let mut evaluated = request.clone();
    if matches!(request.mode, Mode::AuthRequest) && !trusted {
        // NGINX asks for the location's rules without the app's path: the service's own.
        evaluated.path = "/oauth2/auth".into();
    }
    let allowed = may_pass(config, &evaluated, caller.as_ref());
    let spoofed_sent: Vec<&str> = request
        .spoofed
        .iter()
        .copied()
        .filter(|n| is_stripped_family(n))
        .collect();
    let on_login_host =
        config.logins && LOGIN_HOSTS.contains(&listed_name(&request.authority).as_str());
    let kubernetes = !on_login_host
        && config
            .services
            .iter()
            .find(|s| s.hosts.contains(&listed_name(&request.authority).as_str()))
            .or_else(|| config.services.iter().find(|s| s.hosts.contains(&"*")))
            .is_some_and(|s| s.kubernetes);
    match (&request.mode, sent.decision) {
        (Mode::Inline, Decision::Forward(forward)) => {
            prop_assert!(
                allowed.is_some(),
                "forwarded what the rules refuse: {request:?}"
            );
            let removed: Vec<String> = sent
                .strip
                .iter()
                .chain(&forward.remove_headers)
                .map(|n| folded(n))
                .collect();
            for name in &spoofed_sent {
                let set_by_us = forward
                    .set_headers
                    .iter()
                    .any(|(n, _)| folded(n) == folded(name));
                prop_assert!(
                    removed.contains(&folded(name)) || set_by_us,
                    "{name} reached the upstream: {request:?}"
                );
            }
            if kubernetes {
                let impersonated = forward
                    .set_headers
                    .iter()
                    .chain(&forward.add_headers)
                    .any(|(n, _)| n.eq_ignore_ascii_case("impersonate-user"));
                prop_assert!(
                    impersonated,
                    "went to the apiserver as the proxy: {request:?}"
                );
                let authorization_kept = !removed.contains(&"authorization".to_string())
                    && headers.iter().any(|(n, _)| n == "authorization");
                prop_assert!(
                    !authorization_kept,
                    "the client's token reached the apiserver"
                );
            }
        }
        (Mode::ExtAuthz | Mode::AuthRequest, Decision::Respond(reply)) if reply.status < 300 => {
            prop_assert!(
                allowed.is_some(),
                "a check granted what the rules refuse: {request:?}"
            );
            if matches!(request.mode, Mode::AuthRequest) && !trusted {
                prop_assert!(
                    spoofed_sent.is_empty(),
                    "auth_request granted a request carrying {spoofed_sent:?}"
                );
            } else {
                let listed: Vec<String> = reply
                    .header("x-envoy-auth-headers-to-remove")
                    .unwrap_or_default()
                    .split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect();
                for name in &spoofed_sent {
                    // Envoy overwrites a header the answer sets (`allowed_upstream_headers`).
                    let overwritten = reply.header(&name.to_ascii_lowercase()).is_some();
                    prop_assert!(
                        listed.contains(&name.to_ascii_lowercase()) || overwritten,
                        "ext_authz did not name {name} for removal: {request:?}"
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_configuration_lets_a_request_past_what_the_rules_say(
        config in config_spec(),
        request in request_spec(),
    ) {
        check(&config, &request)?;
    }
}
