//! Raw HTTP/1.1 over a plain socket: requests built byte by byte (so a test can send `\xff`,
//! NUL, CR or LF where an HTTP client library would refuse), responses kept as bytes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A request as bytes. `bytes()` adds `Host` (unless set) and `Connection: close`.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn new(method: &str, target: impl AsRef<[u8]>) -> RawRequest {
        RawRequest {
            method: method.as_bytes().to_vec(),
            target: target.as_ref().to_vec(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(target: impl AsRef<[u8]>) -> RawRequest {
        RawRequest::new("GET", target)
    }

    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> RawRequest {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn host(self, host: impl AsRef<[u8]>) -> RawRequest {
        self.header("Host", host)
    }

    pub fn bearer(self, token: &str) -> RawRequest {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// What a browser sends for a top-level navigation.
    pub fn navigation(self) -> RawRequest {
        self.header(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("Sec-Fetch-Mode", "navigate")
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.has_header("host") {
            out.extend_from_slice(b"Host: 127.0.0.1\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as it came off the wire.
#[derive(Clone, Debug, Default)]
pub struct RawResponse {
    pub status: u16,
    pub status_line: Vec<u8>,
    /// Every line between the status line and the blank line, as sent.
    pub header_lines: Vec<Vec<u8>>,
    /// Header lines split at the first `:`; names lower-cased, values trimmed.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Status, headers and the start of the body, printable, for failure messages.
    pub fn summary(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.status_line).into_owned();
        for line in &self.header_lines {
            text.push_str("\n  ");
            text.push_str(&format!("{:?}", String::from_utf8_lossy(line)));
        }
        let body = self.body_text();
        let cut: String = body.chars().take(300).collect();
        text.push_str(&format!("\n  body ({} bytes): {cut:?}", self.body.len()));
        text
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; stops at the last chunk or where the data ends.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Parses a whole response; `None` when not even a status line arrived.
pub fn parse(raw: &[u8]) -> Option<RawResponse> {
    let head_end = find(raw, b"\r\n\r\n")?;
    let head = &raw[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next()?.to_vec();
    let status = String::from_utf8_lossy(&status_line)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let header_lines: Vec<Vec<u8>> = lines.map(<[u8]>::to_vec).collect();
    let headers = header_lines
        .iter()
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(colon) => (
                String::from_utf8_lossy(&line[..colon])
                    .trim()
                    .to_ascii_lowercase(),
                line[colon + 1..].trim_ascii().to_vec(),
            ),
            None => (
                String::from_utf8_lossy(line).to_ascii_lowercase(),
                Vec::new(),
            ),
        })
        .collect::<Vec<_>>();
    let rest = &raw[head_end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n == "transfer-encoding"
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        status_line,
        header_lines,
        headers,
        body,
    })
}

/// Whether `raw` holds a complete response (headers, and the body its framing announces).
fn complete(raw: &[u8]) -> bool {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let rest = &raw[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return find(rest, b"0\r\n\r\n").is_some_and(|i| i == 0 || rest[..i].ends_with(b"\r\n"));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(length) => rest.len() >= length,
        None => false, // read until the server closes
    }
}

/// Sends `request` to 127.0.0.1:`port` and reads the answer until the server closes, the
/// framing says it is complete, or `limit` passes. `Err` when no response came at all
/// (the text says why and what arrived).
pub fn send_bytes(port: u16, request: &[u8], limit: Duration) -> Result<RawResponse, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_write_timeout(Some(limit));
    // A server may answer (431) and close before a large request is written: that is an
    // answer, not a failure of the test, so a failed write still goes on to read.
    let write_error = stream.write_all(request).err();
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if complete(&raw) {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break, // reset: keep what arrived
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    parse(&raw).ok_or_else(|| {
        format!(
            "no HTTP response within {limit:?} (write error: {write_error:?}); got {} bytes: {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })
}

pub fn send(port: u16, request: &RawRequest) -> Result<RawResponse, String> {
    send_bytes(port, &request.bytes(), Duration::from_secs(15))
}
