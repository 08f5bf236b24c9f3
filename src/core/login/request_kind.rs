//! Whether an unauthenticated request comes from a person's browser (send it to log in) or
//! from a script or XHR (answer 401: an HTML login page is useless to it).

/// The request facts the decision reads.
pub struct RequestHints<'a> {
    pub method: &'a str,
    pub accept: Option<&'a str>,
    pub sec_fetch_mode: Option<&'a str>,
    pub x_requested_with: Option<&'a str>,
}

/// Quality of a media type in an `Accept` header, 0 when absent.
fn quality(accept: &str, media_type: &str) -> f32 {
    accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next()?;
            if !name.eq_ignore_ascii_case(media_type) {
                return None;
            }
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some(q)
        })
        .fold(0.0, f32::max)
}

pub fn is_browser_navigation(hints: &RequestHints) -> bool {
    if !matches!(hints.method, "GET" | "HEAD") || hints.x_requested_with.is_some() {
        return false;
    }
    if let Some(mode) = hints.sec_fetch_mode {
        return mode.eq_ignore_ascii_case("navigate");
    }
    let accept = hints.accept.unwrap_or("");
    let html = quality(accept, "text/html").max(quality(accept, "application/xhtml+xml"));
    html > 0.0 && html >= quality(accept, "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_ACCEPT: &str =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

    fn hints<'a>(
        method: &'a str,
        accept: Option<&'a str>,
        mode: Option<&'a str>,
        xrw: Option<&'a str>,
    ) -> RequestHints<'a> {
        RequestHints {
            method,
            accept,
            sec_fetch_mode: mode,
            x_requested_with: xrw,
        }
    }

    #[test]
    fn browser_or_api_table() {
        let cases = [
            (
                "browser navigation",
                hints("GET", Some(CHROME_ACCEPT), Some("navigate"), None),
                true,
            ),
            (
                "old browser without fetch metadata",
                hints("GET", Some(CHROME_ACCEPT), None, None),
                true,
            ),
            (
                "HEAD navigation",
                hints("HEAD", Some("text/html"), Some("navigate"), None),
                true,
            ),
            (
                "fetch() from a page",
                hints("GET", Some("*/*"), Some("cors"), None),
                false,
            ),
            (
                "XHR with jQuery header",
                hints("GET", Some(CHROME_ACCEPT), None, Some("XMLHttpRequest")),
                false,
            ),
            (
                "JSON API call",
                hints("GET", Some("application/json"), None, None),
                false,
            ),
            (
                "JSON preferred over HTML",
                hints("GET", Some("application/json, text/html;q=0.5"), None, None),
                false,
            ),
            ("curl", hints("GET", Some("*/*"), None, None), false),
            ("no Accept at all", hints("GET", None, None, None), false),
            (
                "form POST",
                hints("POST", Some(CHROME_ACCEPT), Some("navigate"), None),
                false,
            ),
            (
                "image load",
                hints("GET", Some("image/avif,*/*;q=0.8"), Some("no-cors"), None),
                false,
            ),
        ];
        for (name, h, browser) in cases {
            assert_eq!(is_browser_navigation(&h), browser, "{name}");
        }
    }
}
