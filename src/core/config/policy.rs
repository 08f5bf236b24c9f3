//! Reads a service's authorization: oauth2-proxy's shorthands for the whole service
//! (`allowed_emails`, `email_domains`, `allowed_groups`) and its `routes`.

use std::rc::Rc;

use regex_lite::Regex;
use serde_json::Value;

use crate::core::config::assertion::read_service_assertion;
use crate::core::config::kubernetes::Impersonation;
use crate::core::config::pages::{read_pages, Branding};
use crate::core::config::provider::{read_provider_list, Provider};
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::policy::access::{Access, Criterion, Rule};
use crate::core::policy::path::normalize;
use crate::core::policy::route::{Action, PathMatch, Route, ServicePolicy, Unauthenticated};
use crate::core::reply::header_value_safe;

/// Reads the policy fields of a service object.
/// A service's rules, and its Kubernetes API mode (`impersonate`) when it has one.
pub(crate) fn read_policy(
    reader: &mut ObjectReader,
    problems: &mut Problems,
) -> (ServicePolicy, Option<Rc<Impersonation>>) {
    let emails = reader.string_list("allowed_emails", problems);
    let domains_path = reader.field_path("email_domains");
    let domains = reader.string_list("email_domains", problems);
    for (i, domain) in domains.iter().flatten().enumerate() {
        check_domain(&format!("{domains_path}[{i}]"), domain, problems);
    }
    let groups = reader.string_list("allowed_groups", problems);
    let default = service_access(emails, domains, groups);
    let routes = read_routes(reader, problems);
    let impersonation = read_impersonation(reader, problems);
    let forward_normalized_path = reader.bool("forward_normalized_path", false, problems);
    let assertion = read_service_assertion(reader, problems, impersonation.is_some());
    let policy = ServicePolicy {
        routes,
        default,
        forward_normalized_path,
        assertion,
    };
    (policy, impersonation.map(Rc::new))
}

/// `impersonate: {"user_prefix": "oidc:", "group_prefix": "oidc:", "extra_claims": {...}}`.
fn read_impersonation(reader: &mut ObjectReader, problems: &mut Problems) -> Option<Impersonation> {
    let path = reader.field_path("impersonate");
    let value = reader.value("impersonate")?;
    let mut r = ObjectReader::new(&path, value, problems);
    let mut prefix = |name: &'static str| {
        let field = r.field_path(name);
        let text = r.string(name, problems).unwrap_or_default();
        if !header_value_safe(&text) || text.contains(',') {
            problems.add(
                &field,
                "must be text a header value can carry, without commas",
            );
        }
        text
    };
    let user_prefix = prefix("user_prefix");
    let group_prefix = prefix("group_prefix");
    // Without a prefix the IdP names users and groups in the cluster's own namespace: any
    // group RBAC binds (kubeadm:cluster-admins, a team's admin group) is one claim away.
    if !r.bool("allow_unprefixed", false, problems) {
        for (name, value) in [
            ("user_prefix", &user_prefix),
            ("group_prefix", &group_prefix),
        ] {
            if value.is_empty() {
                problems.add(
                    &r.field_path(name),
                    "must not be empty (e.g. \"oidc:\"): IdP names would be the cluster's own, \
                     such as kubeadm:cluster-admins; set allow_unprefixed: true only when the \
                     IdP alone decides every user and group name",
                );
            }
        }
    }
    let extra_path = r.field_path("extra_claims");
    let mut extra_claims = Vec::new();
    if let Some(extra) = r.value("extra_claims") {
        match extra.as_object() {
            Some(map) => {
                for (key, claim) in map {
                    let field = format!("{extra_path}.{key}");
                    if !Impersonation::extra_key_ok(key) {
                        problems.add(&field, "must be a lowercase header-name token");
                    }
                    match claim.as_str() {
                        Some(claim) if !claim.is_empty() => {
                            extra_claims.push((key.clone(), claim.to_string()));
                        }
                        _ => problems.add(&field, "must name a claim"),
                    }
                }
            }
            None => problems.add(&extra_path, "must map extra keys to claim names"),
        }
    }
    r.finish(problems);
    Some(Impersonation {
        user_prefix,
        group_prefix,
        extra_claims,
    })
}

/// oauth2-proxy's logic: the email (listed, or at an allowed domain) and, when groups are
/// set, membership of one of them; with neither, any signed-in user.
fn service_access(
    emails: Option<Vec<String>>,
    domains: Option<Vec<String>>,
    groups: Option<Vec<String>>,
) -> Access {
    let groups = groups.map(Criterion::Groups);
    let with_groups =
        |first: Criterion| Rule(std::iter::once(first).chain(groups.clone()).collect());
    let mut allow = Vec::new();
    if let Some(emails) = emails {
        allow.push(with_groups(Criterion::Emails(emails)));
    }
    if let Some(domains) = domains {
        // `*` is oauth2-proxy's "any address".
        let criterion = if domains.iter().any(|d| d == "*") {
            Criterion::Authenticated
        } else {
            Criterion::EmailDomains(domains)
        };
        allow.push(with_groups(criterion));
    }
    if allow.is_empty() {
        allow.push(with_groups(Criterion::Authenticated));
    }
    Access {
        allow,
        deny: Vec::new(),
    }
}

fn check_domain(path: &str, domain: &str, problems: &mut Problems) {
    let name = domain.strip_prefix('.').unwrap_or(domain);
    let plain = domain == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !plain {
        problems.add(
            path,
            format!(
                "\"{domain}\" is not a domain (example.com, .example.com for subdomains, or *)"
            ),
        );
    }
}

fn read_routes(reader: &mut ObjectReader, problems: &mut Problems) -> Vec<Route> {
    let path = reader.field_path("routes");
    let Some(value) = reader.value("routes") else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.add(&path, "must be a list of routes");
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| read_route(&format!("{path}[{i}]"), item, problems))
        .collect()
}

fn read_route(path: &str, value: &Value, problems: &mut Problems) -> Option<Route> {
    let before = problems.0.len();
    let mut r = ObjectReader::new(path, value, problems);
    let path_match = read_path_match(&mut r, problems);
    let methods = r
        .string_list("methods", problems)
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let hosts = r.string_list("hosts", problems).unwrap_or_default();
    let public = r.bool("public", false, problems);
    let allow = read_rules(&mut r, "allow", problems);
    let deny = read_rules(&mut r, "deny", problems);
    let choice_path = r.field_path("unauthenticated");
    let choice = r.string("unauthenticated", problems);
    let unauthenticated = match choice.as_deref() {
        None | Some("auto") => Unauthenticated::Auto,
        Some("login") => Unauthenticated::Login,
        Some("deny") => Unauthenticated::Deny,
        Some(other) => {
            problems.add(
                &choice_path,
                format!("\"{other}\" is not one of auto, login, deny"),
            );
            Unauthenticated::Auto
        }
    };
    if public && (allow.is_some() || deny.is_some() || choice.is_some()) {
        problems.add(
            path,
            "a public route needs no credential: it cannot have allow, deny or unauthenticated",
        );
    }
    r.finish(problems);
    let action = if public {
        Action::Public
    } else if allow.is_none() && deny.is_none() {
        Action::Protected(None)
    } else {
        Action::Protected(Some(Access {
            allow: allow.unwrap_or_default(),
            deny: deny.unwrap_or_default(),
        }))
    };
    (problems.0.len() == before).then_some(Route {
        path: path_match?,
        methods,
        hosts,
        action,
        unauthenticated,
    })
}

/// `path`, `path_prefix` or `path_regex` (at most one; none covers every path). Literal
/// paths must already be normalised, or they could never match.
fn read_path_match(r: &mut ObjectReader, problems: &mut Problems) -> Option<PathMatch> {
    let exact = r.string("path", problems).map(|p| ("path", p));
    let prefix = r
        .string("path_prefix", problems)
        .map(|p| ("path_prefix", p));
    let regex = r.string("path_regex", problems).map(|p| ("path_regex", p));
    let given: Vec<(&str, String)> = [exact, prefix, regex].into_iter().flatten().collect();
    let [(field, text)] = given.as_slice() else {
        if given.len() > 1 {
            problems.add(
                &r.field_path("path"),
                "give at most one of path, path_prefix and path_regex",
            );
            return None;
        }
        return Some(PathMatch::Any);
    };
    let field_path = r.field_path(field);
    if *field == "path_regex" {
        return match Regex::new(&format!("^(?:{text})$")) {
            Ok(regex) => Some(PathMatch::Regex(regex)),
            Err(e) => {
                problems.add(
                    &field_path,
                    format!("is not a valid regular expression: {e}"),
                );
                None
            }
        };
    }
    match normalize(text) {
        Ok(normalised) if normalised == *text => {}
        Ok(normalised) => {
            problems.add(
                &field_path,
                format!("\"{text}\" is matched against normalised paths: write \"{normalised}\""),
            );
            return None;
        }
        Err(e) => {
            problems.add(&field_path, format!("\"{text}\": {e}"));
            return None;
        }
    }
    Some(if *field == "path" {
        PathMatch::Exact(text.clone())
    } else {
        PathMatch::Prefix(text.clone())
    })
}

/// A list of rules; each rule is an object whose criteria must all hold.
fn read_rules(
    r: &mut ObjectReader,
    name: &'static str,
    problems: &mut Problems,
) -> Option<Vec<Rule>> {
    let path = r.field_path(name);
    let value = r.value(name)?;
    let Some(items) = value.as_array() else {
        problems.add(&path, "must be a list of rules (objects)");
        return None;
    };
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| read_rule(&format!("{path}[{i}]"), item, problems))
            .collect(),
    )
}

fn read_rule(path: &str, value: &Value, problems: &mut Problems) -> Option<Rule> {
    let mut r = ObjectReader::new(path, value, problems);
    let mut criteria = Vec::new();
    if r.bool("authenticated", false, problems) {
        criteria.push(Criterion::Authenticated);
    }
    if let Some(emails) = r.string_list("emails", problems) {
        criteria.push(Criterion::Emails(emails));
    }
    let domains_path = r.field_path("email_domains");
    if let Some(domains) = r.string_list("email_domains", problems) {
        for (i, domain) in domains.iter().enumerate() {
            check_domain(&format!("{domains_path}[{i}]"), domain, problems);
        }
        criteria.push(Criterion::EmailDomains(domains));
    }
    if let Some(groups) = r.string_list("groups", problems) {
        criteria.push(Criterion::Groups(groups));
    }
    if let Some(scopes) = r.string_list("scopes", problems) {
        criteria.push(Criterion::Scopes(scopes));
    }
    if let Some(issuers) = r.string_list("issuers", problems) {
        criteria.push(Criterion::Issuers(issuers));
    }
    let claims_path = r.field_path("claims");
    match r.value("claims") {
        None => {}
        Some(Value::Object(claims)) => {
            for (name, accepted) in claims {
                let values = match accepted {
                    Value::String(s) => Some(vec![s.clone()]),
                    Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => None,
                };
                match values {
                    Some(values) if !name.is_empty() => criteria.push(Criterion::Claim {
                        name: name.clone(),
                        values,
                    }),
                    _ => problems.add(
                        &format!("{claims_path}.{name}"),
                        "must be a string or a list of strings",
                    ),
                }
            }
        }
        Some(_) => problems.add(&claims_path, "must map claim names to accepted values"),
    }
    r.finish(problems);
    if criteria.is_empty() {
        problems.add(path, "a rule needs at least one criterion");
        return None;
    }
    Some(Rule(criteria))
}

/// A service without browser login: hosts whose callers bring bearer tokens.
#[derive(Debug)]
pub struct ApiService {
    pub(crate) hosts: Vec<String>,
    pub policy: ServicePolicy,
    /// Kubernetes API mode: ask the upstream to act as the caller (`Impersonate-*`).
    pub impersonation: Option<Rc<Impersonation>>,
    /// Issuers whose tokens this service accepts (`providers`; the only one when one is
    /// configured).
    pub(crate) accepted_issuers: Vec<String>,
    /// How its pages are branded: its own `pages` over the top-level block.
    pub(crate) pages: Rc<Branding>,
}

impl ApiService {
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn serves(&self, host: &str) -> bool {
        crate::core::hostname::host_listed(&self.hosts, host)
    }
}

/// Reads the `services` list.
pub(crate) fn read_api_services(
    value: Option<&Value>,
    providers: &[Provider],
    problems: &mut Problems,
) -> Vec<ApiService> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.add("services", "must be a list of services");
        return Vec::new();
    };
    let mut services = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut r = ObjectReader::new(&format!("services[{i}]"), item, problems);
        let hosts = r.string_list("hosts", problems).unwrap_or_default();
        if hosts.is_empty() {
            problems.add(&r.field_path("hosts"), "must list at least one host");
        }
        let (policy, impersonation) = read_policy(&mut r, problems);
        let providers_path = r.field_path("providers");
        let accepted_issuers = match read_provider_list(&mut r, providers, problems) {
            Some(listed) => listed,
            // One provider: nothing to choose between.
            None if providers.len() <= 1 => {
                providers.iter().map(|p| p.rules.issuer.clone()).collect()
            }
            None => {
                problems.add(
                    &providers_path,
                    "is required when more than one provider is configured: name the issuers whose tokens this service accepts",
                );
                Vec::new()
            }
        };
        let pages = Rc::new(read_pages(
            &r.field_path("pages"),
            r.value("pages"),
            problems,
        ));
        r.finish(problems);
        services.push(ApiService {
            hosts,
            policy,
            impersonation,
            accepted_issuers,
            pages,
        });
    }
    services
}
