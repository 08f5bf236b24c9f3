//! A plain HTTP client for tests: every status is an answer, not an error.

use std::time::Duration;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Every value of header `name` the echoing upstream says it received, in order.
    pub fn echoed_header(&self, name: &str) -> Option<Vec<String>> {
        let values = self.json()["headers"][name].as_array()?.clone();
        Some(
            values
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }
}

/// Names under `.localhost` are loopback (RFC 6761), as browsers resolve them; the system
/// resolver here does not know them, so name-based virtual hosts (`prometheus.localhost`)
/// are reached on 127.0.0.1 with their own `Host` header.
fn resolve(netloc: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    if let Some((name, port)) = netloc.rsplit_once(':') {
        if name.to_ascii_lowercase().ends_with(".localhost") {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))]);
            }
        }
    }
    netloc.to_socket_addrs().map(Iterator::collect)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .resolver(resolve)
        .build()
}

fn convert(response: ureq::Response) -> Response {
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .flat_map(|name| {
            response
                .all(&name)
                .into_iter()
                .map(move |v| (name.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    // What arrived before a read error counts: ureq cannot read the trailers that end a
    // chunked answer (etcd's errors, `Grpc-Trailer-Content-Type`), though the body is whole.
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(
        &mut std::io::Read::take(response.into_reader(), 10 << 20),
        &mut bytes,
    );
    let body = String::from_utf8(bytes).unwrap_or_default();
    Response {
        status,
        headers,
        body,
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    request_within(method, url, headers, body, Duration::from_secs(20))
}

/// As `request`, giving up after `timeout` (status 0, the error in the body), as Envoy gives
/// up on a callout.
pub fn request_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Response {
    let mut req = agent(timeout).request(method, url);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(body) => req.send_string(body),
        None => req.call(),
    };
    match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => convert(response),
        Err(e) => Response {
            status: 0,
            headers: vec![],
            body: e.to_string(),
        },
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", url, headers, None)
}

pub fn bearer(url: &str, token: &str) -> Response {
    get(url, &[("authorization", &format!("Bearer {token}"))])
}
