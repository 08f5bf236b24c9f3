//! oauth2-proxy's own endpoints, so an NGINX `auth_request` or an Envoy `ext_authz` can ask
//! this filter instead of an oauth2-proxy: the check (`202`/`200` with the caller's identity
//! as response headers, `401`, `403`), user info, and health probes.

use serde_json::json;
use url::form_urlencoded;

use super::Mode;
use crate::core::config::endpoints::OwnEndpoints;
use crate::core::forward::Forward;
use crate::core::identity::{Identity, IdentityHeaders, OTHER_PROXIES_IDENTITY, PATH_OVERRIDES};
use crate::core::refusal::Refusal;
use crate::core::reply::{self, header_name_safe, header_value_safe, Reply};

/// A forward-auth check: `status` (`202` for `auth_request`, `200` for `ext_authz`) with the
/// identity as response headers, when `narrowing` also allows the caller. `spoofed`: the
/// request's headers of stripped families, named as received, for Envoy to remove
/// (ext_authz leaves the client's headers on the request to the app).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) status: u32,
    pub(crate) narrowing: Narrowing,
    pub(crate) spoofed: Vec<String>,
    /// About a Kubernetes API host: refusals are written as the apiserver's `Status`.
    pub(crate) kubernetes: bool,
}

/// What one endpoint of ours asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OwnEndpoint {
    Ping,
    Ready,
    /// A check or user info: `rules_path` (path and query) is what the rules are found by.
    Answer {
        mode: Mode,
        rules_path: String,
        /// A public route passes too (`ext_authz`: Envoy asks for every request, public
        /// ones included); an `auth_request` check always needs a caller.
        public_passes: bool,
    },
}

/// What an NGINX `auth_request` check (`auth` exactly) answers a caller that passes.
const AUTH_REQUEST_STATUS: u32 = 202;

impl Check {
    /// An NGINX `auth_request` check: NGINX forwards the client's own headers to the app
    /// and cannot remove what the answer names.
    pub(crate) fn is_auth_request(&self) -> bool {
        self.status == AUTH_REQUEST_STATUS
    }
}

/// The endpoint `path_and_query` names, if it is one of ours.
pub(crate) fn own_endpoint(endpoints: &OwnEndpoints, path_and_query: &str) -> Option<OwnEndpoint> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let is = |own: &Option<String>| own.as_deref() == Some(path);
    if is(&endpoints.ping) {
        return Some(OwnEndpoint::Ping);
    }
    if is(&endpoints.ready) {
        return Some(OwnEndpoint::Ready);
    }
    if is(&endpoints.userinfo) {
        return Some(OwnEndpoint::Answer {
            mode: Mode::UserInfo { kubernetes: false },
            rules_path: path.to_string(),
            public_passes: false,
        });
    }
    let auth = endpoints.auth.as_deref()?;
    if path == auth {
        return Some(OwnEndpoint::Answer {
            mode: Mode::Check(Check {
                status: AUTH_REQUEST_STATUS,
                narrowing: Narrowing::from_query(query),
                ..Check::default()
            }),
            rules_path: path.to_string(),
            public_passes: false,
        });
    }
    // Envoy's ext_authz `path_prefix`: the original request's path and query follow. Its
    // query may narrow too (only ever refusing more): `/oauth2/auth/?allowed_groups=` is an
    // `auth-url` with a stray slash, not a way around the narrowing.
    let original = path_and_query.strip_prefix(auth)?;
    let original_query = original.split_once('?').map_or("", |(_, q)| q);
    original.starts_with('/').then(|| OwnEndpoint::Answer {
        mode: Mode::Check(Check {
            status: 200,
            narrowing: Narrowing::from_query(original_query),
            ..Check::default()
        }),
        rules_path: original.to_string(),
        public_passes: true,
    })
}

/// oauth2-proxy's per-Ingress query parameters: each list given must allow the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Narrowing {
    groups: Option<Vec<String>>,
    emails: Option<Vec<String>>,
    email_domains: Option<Vec<String>>,
}

impl Narrowing {
    fn from_query(query: &str) -> Narrowing {
        let mut narrowing = Narrowing::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let list = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let slot = match name.as_ref() {
                "allowed_groups" => &mut narrowing.groups,
                "allowed_emails" => &mut narrowing.emails,
                "allowed_email_domains" => &mut narrowing.email_domains,
                _ => continue,
            };
            // Given twice, both lists count (as oauth2-proxy reads repeated parameters).
            slot.get_or_insert_with(Vec::new).extend(list);
        }
        narrowing
    }

    /// Whether the caller passes every list given; `Err` says which one refused.
    pub(crate) fn allows(&self, identity: &Identity) -> Result<(), &'static str> {
        if let Some(groups) = &self.groups {
            if !groups.iter().any(|g| identity.groups.contains(g)) {
                return Err("not in allowed_groups");
            }
        }
        let email = identity.email.as_deref().map(str::to_ascii_lowercase);
        if let Some(emails) = &self.emails {
            let listed = email
                .as_deref()
                .is_some_and(|e| emails.iter().any(|a| a.eq_ignore_ascii_case(e)));
            if !listed {
                return Err("not in allowed_emails");
            }
        }
        if let Some(domains) = &self.email_domains {
            let domain = email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|p| p.1);
            if !domain.is_some_and(|d| domains.iter().any(|a| domain_matches(d, a))) {
                return Err("not in allowed_email_domains");
            }
        }
        Ok(())
    }
}

/// `example.com` is that domain; `.example.com` and `*.example.com` are its subdomains.
fn domain_matches(domain: &str, allowed: &str) -> bool {
    let allowed = allowed.to_ascii_lowercase();
    match allowed
        .strip_prefix("*.")
        .or_else(|| allowed.strip_prefix('.'))
    {
        Some(parent) => domain.ends_with(&format!(".{parent}")),
        None => domain == allowed,
    }
}

/// Every identity header a check may answer with; with those other proxies' upstreams read,
/// what a check does not set, ext_authz removes from the request.
const ANSWERED_IDENTITY: [&str; 5] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
];

/// Tokens the service hands on (`pass_access_token`, `set_authorization_header`), as the
/// request to the upstream would have carried them.
#[derive(Default)]
pub(crate) struct HandedOn<'a> {
    pub(crate) access_token: Option<&'a str>,
    pub(crate) authorization: Option<&'a str>,
    /// The client's `Authorization` must not reach the app (a session's caller, whose
    /// header nobody checked, or `forward_authorization: false`).
    pub(crate) removes_authorization: bool,
    /// The signed identity assertion: its header and value.
    pub(crate) assertion: Option<(&'a str, &'a str)>,
}

impl<'a> HandedOn<'a> {
    /// What the request to the upstream would have carried.
    pub(crate) fn of(forward: &'a Forward) -> HandedOn<'a> {
        let value = |name: &str| {
            forward
                .set_headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        HandedOn {
            access_token: value("x-auth-request-access-token"),
            authorization: value("authorization"),
            removes_authorization: forward.remove_headers.iter().any(|h| h == "authorization"),
            assertion: forward
                .assertion_header
                .as_deref()
                .and_then(|name| Some((name, value(name)?))),
        }
    }
}

/// `/oauth2/userinfo` for a caller that passed: the identity as JSON.
pub(crate) fn user_info(identity: Option<&Identity>, set_cookies: Vec<String>) -> Reply {
    let body = match identity {
        Some(who) => json!({
            "user": who.user,
            "email": who.email,
            "groups": who.groups,
            "preferredUsername": who.preferred_username,
        }),
        None => json!({}),
    };
    let headers = vec![("content-type".into(), "application/json".into())];
    reply::with_cookies(200, headers, format!("{body}\n"), set_cookies)
}

/// A check's answer to a caller that passed: its status with identity headers.
pub(crate) fn granted(
    check: &Check,
    identity: Option<&Identity>,
    handed_on: &HandedOn,
    set_cookies: Vec<String>,
) -> Reply {
    let mut headers = identity
        // The names `auth-response-headers` expect, whatever goes upstream otherwise.
        .map(|who| who.headers_named(&IdentityHeaders::oauth2_proxy()))
        .unwrap_or_default();
    let tokens = [
        ("x-auth-request-access-token", handed_on.access_token),
        ("authorization", handed_on.authorization),
    ];
    headers.extend(
        tokens
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?.to_string())))
            .filter(|(_, value)| header_value_safe(value)),
    );
    // Answered, so Envoy sets it over any the client sent (and never removes it).
    if let Some((name, value)) = handed_on.assertion {
        headers.push((name.to_string(), value.to_string()));
    }
    // Envoy's ext_authz copies the headers we answer with over the request's, and
    // leaves the rest as the client sent them: a client's own `X-Auth-Request-Groups`
    // would reach the app beside a token without groups. Envoy removes what this
    // header lists (NGINX sends only the headers it is told to, from our answer).
    // What the client sent of a stripped family goes too, in its own spelling
    // (`x_auth_request_groups`, `X-HTTP-Method-Override`), as inline mode strips it.
    let authorization = (handed_on.removes_authorization && handed_on.authorization.is_none())
        .then_some("authorization");
    let mut unset: Vec<String> = Vec::new();
    let names = ANSWERED_IDENTITY
        .into_iter()
        .chain(OTHER_PROXIES_IDENTITY)
        .chain(PATH_OVERRIDES)
        .chain(authorization)
        .chain(check.spoofed.iter().map(String::as_str));
    for name in names {
        let name = name.to_ascii_lowercase();
        let answered = headers.iter().any(|(n, _)| *n == name);
        if !answered && header_name_safe(&name) && !unset.contains(&name) {
            unset.push(name);
        }
    }
    if !unset.is_empty() {
        headers.push(("x-envoy-auth-headers-to-remove".into(), unset.join(",")));
    }
    reply::with_cookies(check.status, headers, String::new(), set_cookies)
}

/// Headers of stripped families that ingress-nginx itself sets on an `auth_request` check.
const SET_BY_NGINX: [&str; 2] = ["x-auth-request-redirect", "x-original-url"];

/// An `auth_request` check of a request carrying headers only the proxy may set (of
/// `spoofed`, those NGINX does not set itself): `400` naming the first, and all their
/// names (NGINX would hand them to the app beside the identity it answered).
pub(crate) fn refused_spoofed<'a>(spoofed: &[&'a str]) -> Option<(Refusal, Vec<&'a str>)> {
    let names: Vec<&str> = spoofed
        .iter()
        .copied()
        .filter(|n| !SET_BY_NGINX.iter().any(|s| n.eq_ignore_ascii_case(s)))
        .collect();
    let first = *names.first()?;
    Some((Refusal::SpoofedHeader(first.to_string()), names))
}

/// `/ping`: the filter runs.
pub(crate) fn ping() -> Reply {
    plain(200, "OK")
}

/// `/ready`: `200` once every issuer's keys are loaded. A cluster store that does not
/// answer is reported, but still `200`: every replica would fail its probe at once, and
/// each goes on on its own meanwhile.
pub(crate) fn ready(keys_loaded: bool, store_degraded: bool) -> Reply {
    match (keys_loaded, store_degraded) {
        (false, _) => plain(503, "keys not loaded yet"),
        (true, false) => plain(200, "OK"),
        (true, true) => plain(
            200,
            "degraded: the cluster store does not answer; this Envoy goes on on its own",
        ),
    }
}

fn plain(status: u32, text: &str) -> Reply {
    let headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
    reply::with_cookies(status, headers, format!("{text}\n"), Vec::new())
}

/// The request an NGINX `auth_request` check is about, as ingress-nginx names it in
/// `X-Original-URL` (`https://host/path?query`) and `X-Original-Method`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OriginalRequest {
    pub(crate) authority: String,
    pub(crate) path_and_query: String,
    pub(crate) method: String,
}

/// Reads the original request; `Err` says what is missing or malformed (the check then
/// fails closed with `400`: a check that cannot say what it is about allows nothing).
pub(crate) fn original_request(
    url: Option<&str>,
    method: Option<&str>,
) -> Result<OriginalRequest, &'static str> {
    let url = url.ok_or("X-Original-URL is missing")?;
    let method = method.ok_or("X-Original-Method is missing")?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("X-Original-Method is not a method");
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("X-Original-URL is not an http(s) URL")?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    // `user@host`, or nothing: no host a service could list.
    if authority.is_empty() || authority.contains(['@', '\\', '#']) {
        return Err("X-Original-URL names no host");
    }
    let path_and_query = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(OriginalRequest {
        authority: authority.to_string(),
        path_and_query,
        method: method.to_string(),
    })
}

#[cfg(test)]
mod original_request_tests {
    use super::*;

    #[test]
    fn ingress_nginx_original_url_and_method_are_read_and_anything_else_fails_closed() {
        let read = original_request(Some("https://app.test/admin/users?x=1"), Some("DELETE"));
        assert_eq!(
            read,
            Ok(OriginalRequest {
                authority: "app.test".into(),
                path_and_query: "/admin/users?x=1".into(),
                method: "DELETE".into(),
            })
        );
        let bare = original_request(Some("http://app.test:8080"), Some("GET"));
        assert_eq!(bare.map(|r| r.path_and_query), Ok("/".to_string()));
        for (url, method) in [
            (None, Some("GET")),
            (Some("https://app.test/"), None),
            (Some("/admin"), Some("GET")),
            (Some("ftp://app.test/"), Some("GET")),
            (Some("https://user@other.test/admin"), Some("GET")),
            (Some("https:///admin"), Some("GET")),
            (Some("https://app.test/"), Some("GET\r\n")),
            (Some("https://app.test/"), Some("")),
        ] {
            assert!(original_request(url, method).is_err(), "{url:?} {method:?}");
        }
    }
}
