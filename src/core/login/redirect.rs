//! Where a browser may be sent after login or sign-out: a path on this host, or a URL on an
//! allowed host. Everything else is refused, so the filter is never an open redirect.

use percent_encoding::CONTROLS;
use url::Url;

use crate::core::config::login::LoginService;

/// Hosts an `rd` may name: the service's own (not `*`) and `allowed_redirect_hosts`.
pub(crate) fn redirect_hosts(service: &LoginService) -> Vec<String> {
    service
        .hosts
        .iter()
        .filter(|h| *h != "*")
        .chain(&service.allowed_redirect_hosts)
        .cloned()
        .collect()
}

/// `target` when it is safe to redirect to from `host`, else `None`.
pub fn safe_target(target: &str, allowed_hosts: &[String]) -> Option<String> {
    if target.is_empty() || target.len() > 4096 {
        return None;
    }
    // Browsers drop tabs and line breaks and read "\\" as "/", turning "/\\evil" or
    // "/%09/evil" into another host. A space is harmless in a path, but not unencoded.
    let decoded = percent_decode(target);
    let rewritten_by_browsers = |s: &str| s.chars().any(|c| c.is_control() || c == '\\');
    if target.chars().any(char::is_whitespace)
        || rewritten_by_browsers(target)
        || rewritten_by_browsers(&decoded)
    {
        return None;
    }
    if let Some(rest) = target.strip_prefix('/') {
        // "//evil" and "/%2F/evil" are protocol-relative URLs to another host.
        let decoded_rest = decoded.strip_prefix('/').unwrap_or(&decoded);
        if rest.starts_with('/') || decoded_rest.starts_with('/') {
            return None;
        }
        // A `Location` is ASCII: anything else is sent percent-encoded, as browsers would.
        return Some(percent_encoding::utf8_percent_encode(target, CONTROLS).to_string());
    }
    let url = Url::parse(target).ok()?;
    let host = url.host_str()?;
    let allowed = matches!(url.scheme(), "https" | "http")
        && url.username().is_empty()
        && url.password().is_none()
        && allowed_hosts.iter().any(|h| host_matches(host, h));
    allowed.then(|| url.to_string())
}

/// `example.com` matches itself; `.example.com` matches its subdomains too.
fn host_matches(host: &str, allowed: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let allowed = allowed.to_ascii_lowercase();
    match allowed.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => host == allowed,
    }
}

/// Every `%XX` decoded, and nothing else changed (`&`, `+` and `=` are just characters).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirect_attacks_are_refused() {
        let allowed = vec![
            "grafana.example.com".to_string(),
            ".apps.example.com".to_string(),
        ];
        let attacks = [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%2Fevil.com",
            "/%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/ /evil.com",
            "https:evil.com",
            "https://evil.com",
            "https://grafana.example.com@evil.com/",
            "https://user:pw@grafana.example.com/",
            "https://evil.com\\@grafana.example.com/",
            "https://grafana.example.com.evil.com/",
            "https://apps.example.com.evil.com/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://grafana.example.com/",
            "evil.com",
            "%2F%2Fevil.com",
            "/\r\nSet-Cookie: x=y",
            "/%0D%0ASet-Cookie:%20x=y",
            "/%0a/evil.com",
            "/&%5C",
            "/a&%0D%0ASet-Cookie:x",
            "/&%09",
            "",
        ];
        for attack in attacks {
            assert_eq!(
                safe_target(attack, &allowed),
                None,
                "{attack:?} must be refused"
            );
        }
    }

    #[test]
    fn paths_and_allowed_hosts_pass() {
        let allowed = vec![
            "grafana.example.com".to_string(),
            ".apps.example.com".to_string(),
        ];
        for (target, expected) in [
            ("/graph?g0.expr=up&g0.tab=1", "/graph?g0.expr=up&g0.tab=1"),
            ("/", "/"),
            ("/a/b%20c", "/a/b%20c"),
            ("/caf\u{e9}/\u{fffd}", "/caf%C3%A9/%EF%BF%BD"),
            (
                "https://grafana.example.com/d/abc",
                "https://grafana.example.com/d/abc",
            ),
            (
                "https://team.apps.example.com/x",
                "https://team.apps.example.com/x",
            ),
        ] {
            assert_eq!(
                safe_target(target, &allowed).as_deref(),
                Some(expected),
                "{target:?}"
            );
        }
    }
}
