//! A scripted browser for the HTTP tier: a cookie jar (host, path and Max-Age honoured, ports
//! shared as browsers do), redirects followed by hand, and the IdP's login form filled in.

use super::http::{self, Response};

#[derive(Clone, Debug)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub http_only: bool,
}

#[derive(Default)]
pub struct Browser {
    pub jar: Vec<Cookie>,
    /// Every response seen, in order: (url, status).
    pub history: Vec<(String, u16)>,
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

impl Browser {
    pub fn cookie(&self, name: &str) -> Option<&Cookie> {
        self.jar.iter().find(|c| c.name == name)
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.jar.iter().map(|c| c.name.clone()).collect()
    }

    /// The `Cookie` header this browser sends to `url`.
    pub fn cookie_header(&self, url: &str) -> Option<String> {
        let path = path_of(url).split('?').next().unwrap_or("/");
        let sent: Vec<String> = self
            .jar
            .iter()
            .filter(|c| path.starts_with(&c.path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!sent.is_empty()).then(|| sent.join("; "))
    }

    pub fn store(&mut self, response: &Response) {
        for (name, value) in &response.headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let mut parts = value.split(';').map(str::trim);
            let Some((cookie_name, cookie_value)) = parts.next().and_then(|p| p.split_once('='))
            else {
                continue;
            };
            let mut cookie = Cookie {
                name: cookie_name.into(),
                value: cookie_value.into(),
                path: "/".into(),
                http_only: false,
            };
            let mut delete = false;
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" => cookie.path = val.into(),
                    "max-age" => delete = val.trim() == "0" || val.starts_with('-'),
                    "expires" => delete |= val.contains("1970"),
                    "httponly" => cookie.http_only = true,
                    _ => {}
                }
            }
            self.jar
                .retain(|c| !(c.name == cookie.name && c.path == cookie.path));
            if !delete {
                self.jar.push(cookie);
            }
        }
    }

    /// One request with the jar's cookies and a browser's navigation headers.
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Response {
        let cookie = self.cookie_header(url);
        let mut headers: Vec<(&str, &str)> = vec![
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("sec-fetch-mode", "navigate"),
        ];
        if let Some(cookie) = &cookie {
            headers.push(("cookie", cookie));
        }
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        headers.extend_from_slice(extra);
        let response = http::request(method, url, &headers, body);
        self.store(&response);
        self.history.push((url.to_string(), response.status));
        response
    }

    /// Navigates, following redirects (a POST answered 302/303 becomes a GET), up to 20 hops.
    pub fn navigate(&mut self, method: &str, url: &str, body: Option<&str>) -> (String, Response) {
        let (mut method, mut url, mut body) = (
            method.to_string(),
            url.to_string(),
            body.map(str::to_string),
        );
        for _ in 0..20 {
            let response = self.request(&method, &url, body.as_deref(), &[]);
            let Some(location) = response
                .header("location")
                .filter(|_| (300..400).contains(&response.status))
            else {
                return (url, response);
            };
            url = absolute(&url, location);
            method = "GET".into();
            body = None;
        }
        panic!("redirect loop: {:#?}", self.history);
    }

    pub fn get(&mut self, url: &str) -> (String, Response) {
        self.navigate("GET", url, None)
    }

    /// Fills in the IdP's forms (login, then consent) until it sends the browser away.
    pub fn log_in_at_idp(&mut self, mut at: (String, Response), user: &str) -> (String, Response) {
        for _ in 0..4 {
            let (url, page) = &at;
            let Some(action) = attribute_after(&page.body, "<form", "action") else {
                return at;
            };
            let prompt =
                attribute_after(&page.body, "name=\"prompt\"", "value").unwrap_or_default();
            let form = if page.body.contains("name=\"login\"") {
                format!("prompt={prompt}&login={}&password=demo", urlencode(user))
            } else {
                format!("prompt={prompt}")
            };
            let target = absolute(url, &action);
            at = self.navigate("POST", &target, Some(&form));
        }
        at
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The value of `attribute="..."` after the first `marker` in `html`.
pub fn attribute_after(html: &str, marker: &str, attribute: &str) -> Option<String> {
    let start = html.find(marker)?;
    let rest = &html[start..];
    let key = format!("{attribute}=\"");
    let from = rest.find(&key)? + key.len();
    let to = rest[from..].find('"')? + from;
    Some(rest[from..to].replace("&amp;", "&"))
}

pub fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.to_string())
}
