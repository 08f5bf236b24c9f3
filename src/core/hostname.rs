//! Host names as services list them: an authority without its port and trailing dot,
//! and whether a list of hosts names it.

/// The host an `:authority` names, without its port and a trailing dot (`a.example.` is
/// `a.example` to DNS and to a catch-all virtual host), so no spelling of a name escapes the
/// service that serves it. `None` when it is neither a host name nor an IP literal.
pub(crate) fn host_name(authority: &str) -> Option<&str> {
    let host = strip_port(authority);
    let host = host.strip_suffix('.').unwrap_or(host);
    let well_formed = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => {
            !ip.is_empty()
                && ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        // Every label non-empty: `a.test..` and `.a.test` are no names.
        None => host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        }),
    };
    well_formed.then_some(host)
}

/// Whether `authority` is one of `hosts` (`*`: any), compared as `host_name` reads it.
pub(crate) fn host_listed(hosts: &[String], authority: &str) -> bool {
    let name = host_name(authority);
    hosts
        .iter()
        .any(|h| h == "*" || name.is_some_and(|n| h.eq_ignore_ascii_case(n)))
}

pub fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.ends_with(']')
                && port.bytes().all(|b| b.is_ascii_digit())
                && !name.contains(':') =>
        {
            name
        }
        Some((name, port)) if name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}
