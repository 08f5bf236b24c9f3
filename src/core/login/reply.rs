//! Answers the filter gives itself during login: redirects, error pages, 401 for APIs.

use crate::core::error::AuthError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
    }
}

fn with_cookies(
    mut headers: Vec<(String, String)>,
    set_cookies: Vec<String>,
) -> Vec<(String, String)> {
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
        headers: with_cookies(vec![("location".into(), location.into())], set_cookies),
        body: String::new(),
    }
}

/// A terminal HTML page: never redirects on its own, so a failure cannot loop.
pub fn page(status: u32, title: &str, message: &str, set_cookies: Vec<String>) -> Reply {
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{title}</title>\
         <h1>{title}</h1><p>{}</p><p><a href=\"/\">Start again</a></p>\n",
        escape(message)
    );
    Reply {
        status,
        headers: with_cookies(
            vec![("content-type".into(), "text/html; charset=utf-8".into())],
            set_cookies,
        ),
        body,
    }
}

/// The bearer layer's 401 (or 503), with cookies to clear.
pub fn refused(error: &AuthError, set_cookies: Vec<String>) -> Reply {
    let rejection = error.rejection();
    let headers = rejection
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    Reply {
        status: rejection.status,
        headers: with_cookies(headers, set_cookies),
        body: rejection.body,
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

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
    }
}
