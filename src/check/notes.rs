//! Settings the reader accepts but SECURITY.md and docs/configuration.md warn about: each
//! note names the field and what an attacker gains from it. Read from the JSON itself, so a
//! default (which is safe) never notes anything.

use serde_json::Value;
use url::Url;

/// One unsafe setting: the field's path and why it is unsafe.
pub(crate) type Note = (String, String);

/// Notes for a configuration the reader accepted.
pub(crate) fn notes(config: &Value) -> Vec<Note> {
    let mut out = Vec::new();
    for (i, provider) in list(config, "providers") {
        let at = format!("providers[{i}]");
        plain_http(provider, &at, &["issuer", "jwks_uri"], &mut out);
        if provider["require_expiry"] == Value::Bool(false) {
            out.push((
                format!("{at}.require_expiry"),
                "false: a token without exp is valid forever; a leaked one cannot be contained"
                    .into(),
            ));
        }
        if provider["email_verified"] == "when_present" {
            out.push((format!("{at}.email_verified"), "\"when_present\": a token without email_verified counts its email as verified; use it only for IdPs that verify every email (SECURITY.md: unverified emails are never identity)".into()));
        }
    }
    let endpoints = &config["endpoints"];
    if endpoints["refuse_spoofed_headers"] == Value::Bool(false) {
        out.push(("endpoints.refuse_spoofed_headers".into(), "false: an NGINX auth_request check passes requests carrying identity headers, which NGINX hands to the app unremoved (SECURITY.md, class 2)".into()));
    }
    if endpoints["trust_original_url"] == Value::Bool(true) {
        out.push(("endpoints.trust_original_url".into(), "true: checks believe X-Original-URL and X-Original-Method; safe only if NGINX sets both in every auth location (SECURITY.md, class 2)".into()));
    }
    let login = list(config, "login");
    let services = list(config, "services");
    if login.is_empty() && services.is_empty() {
        out.push(("services".into(), "no login and no services: any valid token of any provider passes on every host (SECURITY.md: only with no services at all)".into()));
    }
    for (i, service) in &login {
        login_notes(service, &format!("login[{i}]"), &mut out);
    }
    for (kind, entries) in [("login", &login), ("services", &services)] {
        for (i, service) in entries.iter() {
            service_notes(service, &format!("{kind}[{i}]"), &mut out);
        }
    }
    out
}

fn login_notes(service: &Value, at: &str, out: &mut Vec<Note>) {
    if service["cookie_secure"] == Value::Bool(false) {
        out.push((format!("{at}.cookie_secure"), "false: the session cookie travels over plain HTTP, where anyone on the path can take the session; only for plain-HTTP test setups".into()));
    }
    for field in ["pass_access_token", "set_authorization_header"] {
        if service[field] == Value::Bool(true) {
            out.push((format!("{at}.{field}"), "true: the upstream gets the user's token and can call the IdP's other clients as the user; only for upstreams that need it".into()));
        }
    }
    let idps = match service["idps"].as_array() {
        Some(idps) => idps
            .iter()
            .enumerate()
            .map(|(j, idp)| (format!("{at}.idps[{j}]"), idp))
            .collect(),
        None => vec![(at.to_string(), service)],
    };
    for (idp_at, idp) in idps {
        let fields = [
            "authorization_endpoint",
            "token_endpoint",
            "end_session_endpoint",
        ];
        plain_http(idp, &idp_at, &fields, out);
    }
    plain_http(service, at, &["redirect_url"], out);
    let hosts = service["allowed_redirect_hosts"]
        .as_array()
        .into_iter()
        .flatten();
    for (k, host) in hosts.enumerate() {
        let host = host.as_str().unwrap_or_default();
        if host
            .strip_prefix('.')
            .is_some_and(|rest| !rest.trim_end_matches('.').contains('.'))
        {
            out.push((format!("{at}.allowed_redirect_hosts[{k}]"), format!("\"{host}\" lets rd= send browsers to any host under a top-level domain: an open redirect")));
        }
    }
}

fn service_notes(service: &Value, at: &str, out: &mut Vec<Note>) {
    let hosts = service["hosts"].as_array().into_iter().flatten();
    if hosts.clone().any(|h| h == "*") {
        out.push((format!("{at}.hosts"), "\"*\": this service takes every host no other lists, so a request for a host you did not mean to serve gets its rules (SECURITY.md, class 3: list exact hosts)".into()));
    }
    if service["impersonate"]["allow_unprefixed"] == Value::Bool(true) {
        out.push((format!("{at}.impersonate.allow_unprefixed"), "true: IdP names are the cluster's own, so a group claim such as kubeadm:cluster-admins is one IdP edit away (SECURITY.md, class 10)".into()));
    }
    for (r, route) in list(service, "routes") {
        if route["public"] == Value::Bool(true) && covers_every_path(route) {
            out.push((format!("{at}.routes[{r}]"), "a public route matching every path: the service is open to anyone without signing in".into()));
        }
    }
}

/// A route with no path, `path_prefix: "/"`, or a regex that matches every path (as the
/// reader compiles it, anchored: tried on paths of every shape, not by its spelling, so
/// `/.*?`, `[^?]*` or `(/.*)?` count as well as `.*`).
fn covers_every_path(route: &Value) -> bool {
    let path = route["path"].as_str();
    let prefix = route["path_prefix"].as_str();
    let regex = route["path_regex"].as_str();
    match (path, prefix, regex) {
        (None, None, None) => true,
        (None, Some("/"), None) => true,
        (None, None, Some(r)) => regex_lite::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| {
            [
                "/",
                "/admin",
                "/api/v1/namespaces/kube-system/secrets",
                "/a/b/c.json",
                "/-/healthy",
                "/%2F..%2F",
                "/x y/\u{e9}",
            ]
            .iter()
            .all(|probe| re.is_match(probe))
        }),
        _ => false,
    }
}

/// `http://` URLs off the loopback address: tokens, codes and keys in clear on the network
/// (SECURITY.md trusts the network path to the IdP only over TLS).
fn plain_http(object: &Value, at: &str, fields: &[&str], out: &mut Vec<Note>) {
    for field in fields {
        let Some(url) = object[field].as_str().and_then(|t| Url::parse(t).ok()) else {
            continue;
        };
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() == "http" && !loopback {
            out.push((format!("{at}.{field}"), format!("\"{url}\" is plain HTTP off the loopback address: tokens, codes or keys cross the network in clear (use https, and TLS on the callout cluster)")));
        }
    }
}

/// The entries of a list field with their index (none when absent or not a list).
fn list<'a>(object: &'a Value, field: &str) -> Vec<(usize, &'a Value)> {
    object[field]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(config: Value) -> Vec<String> {
        notes(&config).into_iter().map(|(path, _)| path).collect()
    }

    const SAFE_PROVIDER: &str = "https://dex.example.com";

    #[test]
    fn a_safe_configuration_has_no_notes() {
        let config = json!({
            "providers": [{"issuer": SAFE_PROVIDER, "jwks_uri": "http://127.0.0.1:9/k"}],
            "login": [{"hosts": ["a.example.com"], "cookie_secure": true,
                       "allowed_redirect_hosts": [".example.com"],
                       "routes": [{"path": "/healthz", "public": true}]}]
        });
        assert_eq!(paths(config), Vec::<String>::new());
    }

    #[test]
    fn each_unsafe_setting_is_noted_at_its_path() {
        let config = json!({
            "providers": [{"issuer": "http://dex.example.com", "require_expiry": false, "email_verified": "when_present"}],
            "endpoints": {"refuse_spoofed_headers": false, "trust_original_url": true},
            "login": [{"hosts": ["*"], "cookie_secure": false, "pass_access_token": true,
                       "set_authorization_header": true, "token_endpoint": "http://idp.example/t",
                       "allowed_redirect_hosts": [".com"],
                       "routes": [{"path_prefix": "/", "public": true}]}],
            "services": [{"hosts": ["k"], "impersonate": {"allow_unprefixed": true},
                          "routes": [{"public": true}]}]
        });
        assert_eq!(
            paths(config),
            [
                "providers[0].issuer",
                "providers[0].require_expiry",
                "providers[0].email_verified",
                "endpoints.refuse_spoofed_headers",
                "endpoints.trust_original_url",
                "login[0].cookie_secure",
                "login[0].pass_access_token",
                "login[0].set_authorization_header",
                "login[0].token_endpoint",
                "login[0].allowed_redirect_hosts[0]",
                "login[0].hosts",
                "login[0].routes[0]",
                "services[0].impersonate.allow_unprefixed",
                "services[0].routes[0]",
            ]
        );
    }

    #[test]
    fn bearer_only_on_every_host_is_noted() {
        assert_eq!(
            paths(json!({"providers": [{"issuer": SAFE_PROVIDER}]})),
            ["services"]
        );
    }
}
