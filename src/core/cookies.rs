//! Reading the `Cookie` header (RFC 6265 §5.4) and writing `Set-Cookie` headers.

/// `SameSite` attribute of our cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(text: &str) -> Option<SameSite> {
        match text.to_ascii_lowercase().as_str() {
            "strict" => Some(SameSite::Strict),
            "lax" => Some(SameSite::Lax),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Attributes shared by the cookies of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAttributes {
    pub domain: Option<String>,
    pub path: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// The `name=value` pairs of a `Cookie` header, in order; pairs without `=` are skipped.
pub fn parse(header: &str) -> Vec<(&str, &str)> {
    header
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

/// The `Cookie` header without the cookies `ours` claims; `None` when nothing is left.
pub fn without(header: &str, ours: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !ours(pair.split_once('=').map_or(*pair, |(n, _)| n.trim())))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// A `Set-Cookie` value; `max_age_secs` of 0 deletes the cookie.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    attributes: &CookieAttributes,
    path: Option<&str>,
    max_age_secs: u64,
) -> String {
    let mut header = format!(
        "{name}={value}; Path={}; Max-Age={max_age_secs}; HttpOnly; SameSite={}",
        path.unwrap_or(&attributes.path),
        attributes.same_site.name()
    );
    if attributes.secure || attributes.same_site == SameSite::None {
        header.push_str("; Secure");
    }
    if let Some(domain) = &attributes.domain {
        header.push_str("; Domain=");
        header.push_str(domain);
    }
    header
}

pub(crate) fn delete_cookie(
    name: &str,
    attributes: &CookieAttributes,
    path: Option<&str>,
) -> String {
    set_cookie(name, "", attributes, path, 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The defaults a service gets: host-only, `/`, `Secure`, `SameSite=Lax`.
    pub(crate) fn attributes() -> CookieAttributes {
        CookieAttributes {
            domain: None,
            path: "/".into(),
            secure: true,
            same_site: SameSite::Lax,
        }
    }

    #[test]
    fn cookie_header_is_parsed_like_a_browser_sends_it() {
        assert_eq!(
            parse(r#"a=1; _wasm_iap=abc=def;b="quoted" ; junk; =noname; c="#),
            vec![
                ("a", "1"),
                ("_wasm_iap", "abc=def"),
                ("b", "quoted"),
                ("c", "")
            ]
        );
    }

    #[test]
    fn our_cookies_are_removed_and_the_rest_kept() {
        let ours = |name: &str| name.starts_with("_wasm_iap");
        assert_eq!(
            without(
                "grafana_session=x; _wasm_iap=s; _wasm_iap_1=t; theme=dark",
                ours
            )
            .as_deref(),
            Some("grafana_session=x; theme=dark")
        );
        assert_eq!(without("_wasm_iap=s", ours), None);
    }

    #[test]
    fn set_cookie_carries_the_configured_attributes() {
        let mut attrs = attributes();
        attrs.domain = Some(".example.com".into());
        assert_eq!(
            set_cookie("_wasm_iap", "v", &attrs, None, 3600),
            "_wasm_iap=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure; Domain=.example.com"
        );
        attrs.secure = false;
        attrs.same_site = SameSite::None;
        assert!(delete_cookie("x", &attrs, Some("/cb")).contains("Path=/cb; Max-Age=0"));
        assert!(
            delete_cookie("x", &attrs, None).ends_with("Secure; Domain=.example.com"),
            "SameSite=None requires Secure"
        );
    }
}
