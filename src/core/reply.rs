//! Answers the filter gives itself: redirects, pages and refusals, checked before they are
//! written.

use crate::core::config::pages::Branding;
use crate::core::metric::Metric;
use crate::core::page::{self as layout, Page};

#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Why the filter answered so, for the log line; never sent.
    pub(crate) reason: Option<LogNote>,
    /// A page a person sees, as written before it was branded: the exit writes it again
    /// with the branding of the request's service (`branded`).
    pub(crate) page: Option<Box<Page>>,
    /// The decision's record for Envoy's access log (`core::access_log`), when it keeps one.
    pub access_log: Option<String>,
    /// The counter the answer was counted in: Envoy's `%RESPONSE_CODE_DETAILS%` prints its
    /// name (`details`).
    pub(crate) counted: Option<Metric>,
}

/// A log line about an answer, and how loud it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogNote {
    pub(crate) severity: Severity,
    pub(crate) text: String,
}

/// Anyone can send bad callbacks: what a client caused is `Debug`, so it cannot flood the
/// log; what the IdP or the setup caused is `Info` or `Warn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warn,
    Error,
}

/// `Set-Cookie` values hold sealed sessions: printed as their names only.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| match n.as_str() {
                "set-cookie" => (n.as_str(), v.split('=').next().unwrap_or_default()),
                _ => (n.as_str(), v.as_str()),
            })
            .collect();
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("reason", &self.reason)
            .field("access_log", &self.access_log)
            .field("counted", &self.counted)
            .finish_non_exhaustive()
    }
}

/// A header name we may write: an RFC 9110 token.
pub fn header_name_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value we may write: no control character at all (Envoy passes CR/LF on), so
/// nothing a client or an IdP sent can end a header or start another.
pub fn header_value_safe(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

impl Reply {
    /// This reply if every header is safe to write; otherwise (`Err`) a plain 500 to send
    /// instead, so a bug that lets input into a header can never split the response.
    pub fn checked(self) -> Result<Reply, Reply> {
        let unsafe_header = self
            .headers
            .iter()
            .find(|(n, v)| !header_name_safe(n) || !header_value_safe(v));
        match unsafe_header {
            None => Ok(self),
            Some((name, _)) => {
                let mut refused = page(
                    500,
                    "Request failed",
                    "The answer to this request could not be written safely.",
                    vec![],
                );
                refused.reason = Some(LogNote {
                    severity: Severity::Error,
                    text: format!("refused to write unsafe header {name:?}"),
                });
                // The decision stands; only its answer could not be written.
                refused.access_log = self.access_log.clone();
                refused.counted = self.counted;
                Err(refused)
            }
        }
    }

    /// What Envoy's `%RESPONSE_CODE_DETAILS%` prints for it: the name of the counter it was
    /// counted in (`wasm_iap_requests_denied_forbidden`), or nothing.
    pub fn details(&self) -> &'static str {
        self.counted.map_or("", Metric::name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
    }
}

/// A reply with these headers and body, never cached, with `set_cookies`.
pub(crate) fn with_cookies(
    status: u32,
    headers: Vec<(String, String)>,
    body: String,
    set_cookies: Vec<String>,
) -> Reply {
    Reply {
        status,
        headers: no_store(headers, set_cookies),
        body,
        reason: None,
        page: None,
        access_log: None,
        counted: None,
    }
}

fn no_store(mut headers: Vec<(String, String)>, set_cookies: Vec<String>) -> Vec<(String, String)> {
    headers.push(("cache-control".into(), "no-store".into()));
    headers.extend(
        set_cookies
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c)),
    );
    headers
}

pub fn redirect(location: &str, set_cookies: Vec<String>) -> Reply {
    Reply {
        status: 302,
        headers: no_store(vec![("location".into(), location.into())], set_cookies),
        body: String::new(),
        reason: None,
        page: None,
        access_log: None,
        counted: None,
    }
}

/// A terminal HTML page: never redirects on its own, so a failure cannot loop.
pub(crate) fn page(status: u32, title: &str, message: &str, set_cookies: Vec<String>) -> Reply {
    page_with_links(status, title, message, &[("/", "Start again")], set_cookies)
}

/// A page as `page`, with these links (`href`, text) as the ways forward, the first the
/// main one.
pub(crate) fn page_with_links(
    status: u32,
    title: &str,
    message: &str,
    links: &[(&str, &str)],
    set_cookies: Vec<String>,
) -> Reply {
    let page = Page {
        title: title.into(),
        paragraphs: vec![message.into()],
        links: links
            .iter()
            .map(|(href, text)| (href.to_string(), text.to_string()))
            .collect(),
        forbidden: false,
    };
    from_page(status, page, set_cookies)
}

/// `page` as a reply, written with our own look until the exit brands it.
pub(crate) fn from_page(status: u32, page: Page, set_cookies: Vec<String>) -> Reply {
    let reply = Reply {
        status,
        headers: no_store(
            vec![("content-type".into(), "text/html; charset=utf-8".into())],
            set_cookies,
        ),
        body: String::new(),
        reason: None,
        access_log: None,
        counted: None,
        page: Some(Box::new(page)),
    };
    reply.branded(&Branding::default(), None)
}

impl Reply {
    /// What this answer, given by the filter itself, counts as, besides `Refused` for
    /// every error.
    pub(crate) fn metric(&self) -> Metric {
        match self.status {
            300..=399 => Metric::Redirected,
            401 if self
                .header("www-authenticate")
                .is_some_and(|c| c.contains("error=")) =>
            {
                Metric::DeniedInvalidToken
            }
            401 => Metric::DeniedNoCredential,
            403 => Metric::DeniedForbidden,
            429 => Metric::Throttled,
            500..=599 => Metric::DeniedUnavailable,
            _ => Metric::DeniedBadRequest,
        }
    }

    /// A page written again with `branding` and the request's id (nothing else changes);
    /// any other reply as it is.
    pub(crate) fn branded(mut self, branding: &Branding, request_id: Option<&str>) -> Reply {
        let Some(page) = self.page.as_deref() else {
            return self;
        };
        self.body = layout::render(self.status, page, branding, request_id);
        let policy = layout::content_security_policy(branding);
        self.headers.retain(|(n, _)| n != CSP);
        self.headers.push((CSP.into(), policy));
        self
    }
}

const CSP: &str = "content-security-policy";

/// Headers no configured header (identity, assertion) may be named after: the filter edits
/// them itself (its check answers name what Envoy removes), or HTTP gives them a meaning.
pub(crate) const RESERVED_HEADERS: [&str; 10] = [
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "x-envoy-auth-headers-to-remove",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape_what_the_idp_sent() {
        let reply = page(
            403,
            "Sign-in refused",
            "error=<script>alert(1)</script>",
            vec![],
        );
        assert!(!reply.body.contains("<script>") && reply.body.contains("&lt;script&gt;"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert!(reply
            .header("content-security-policy")
            .is_some_and(|csp| csp.starts_with("default-src 'none'")));
    }

    #[test]
    fn a_printed_reply_never_shows_a_sealed_session() {
        let reply = redirect("/", vec!["_wasm_iap=SEALEDVALUE; Path=/".into()]);
        let printed = format!("{reply:?}");
        assert!(
            printed.contains("_wasm_iap") && !printed.contains("SEALEDVALUE"),
            "{printed}"
        );
    }

    #[test]
    fn a_reply_with_an_injected_header_is_never_written() {
        for (name, value) in [
            ("location", "/\r\nset-cookie: a=b"),
            ("set-cookie", "a=b\nx"),
            ("x\r\ny", "v"),
            ("location", "/\u{0}"),
        ] {
            let reply = redirect("/", vec![]);
            let mut bad = reply.clone();
            bad.headers.push((name.into(), value.into()));
            assert_eq!(reply.clone().checked(), Ok(reply));
            let checked = bad.checked().expect_err("refused");
            assert_eq!(checked.status, 500, "{name:?}: {value:?}");
            assert!(checked
                .headers
                .iter()
                .all(|(n, v)| header_name_safe(n) && header_value_safe(v)));
        }
    }
}
