//! A minimal OpenID provider on loopback whose every endpoint can be told to misbehave:
//! discovery, JWKS and the token endpoint each answer correctly or with a chosen fault
//! (late, reset, closed, 5xx, garbage, huge, deeply nested, wrongly typed, ...).
//!
//! The token endpoint mints ID tokens from the shared test keys: the `code` a test sends to
//! the callback is the login's `nonce` (read from the authorization redirect), so a test can
//! complete a real login through Envoy without a browser or a real IdP.
//! Stopped on drop; connection threads that are still sleeping end with the test binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use super::mint::{now_secs, shared_keys};

/// How one endpoint answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The right answer.
    Correct,
    /// The right answer, after this delay (longer than the callout timeout).
    Late(Duration),
    /// The connection is reset (RST) once the request arrived, without an answer.
    Reset,
    /// The connection is closed (FIN) without an answer.
    Close,
    /// This status with a short JSON error body.
    Status(u16),
    /// 200 with binary garbage as the body.
    Garbage,
    /// 200 with a JSON body of this many bytes (one enormous string).
    Huge(usize),
    /// 200 with a JSON body whose value is nested this many levels deep.
    DeepJson(usize),
    /// 200 with JSON whose fields have the wrong types.
    WrongTypes,
    /// Not HTTP at all: bytes, then close.
    NotHttp,
    /// The right body, with a `Cache-Control` header value that is not UTF-8: an odd but
    /// usable answer.
    NonUtf8Header,
    /// A `Cache-Control` header value that is not UTF-8, and a body that is not JSON.
    NonUtf8HeaderGarbage,
}

impl Fault {
    /// The kinds a test goes through, each with a readable name.
    pub fn all_faults() -> Vec<(&'static str, Fault)> {
        vec![
            (
                "answer after the callout timeout",
                Fault::Late(Duration::from_secs(2)),
            ),
            ("connection reset without an answer", Fault::Reset),
            ("connection closed without an answer", Fault::Close),
            ("HTTP 500", Fault::Status(500)),
            ("HTTP 404", Fault::Status(404)),
            ("binary garbage", Fault::Garbage),
            ("10 MB body", Fault::Huge(10 * 1024 * 1024)),
            ("JSON nested 10,000 levels deep", Fault::DeepJson(10_000)),
            ("fields of the wrong types", Fault::WrongTypes),
            ("bytes that are not HTTP", Fault::NotHttp),
            (
                "a Cache-Control header that is not UTF-8, and garbage",
                Fault::NonUtf8HeaderGarbage,
            ),
        ]
    }
}

pub struct FaultState {
    pub issuer: String,
    pub client_id: String,
    pub discovery: Fault,
    pub jwks: Fault,
    pub token: Fault,
    /// The JWKS served when `jwks` is `Correct`.
    pub keys: Value,
    pub jwks_cache_control: Option<String>,
    /// Who logs in: `sub` and `email` of minted ID tokens.
    pub user: (String, String),
    pub discovery_hits: usize,
    pub jwks_hits: usize,
    pub token_hits: usize,
    /// Form bodies the token endpoint received.
    pub token_requests: Vec<String>,
}

pub struct FaultIdp {
    pub state: Arc<Mutex<FaultState>>,
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Request {
    path: String,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).ok()?;
    let line = String::from_utf8_lossy(&line).into_owned();
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = Vec::new();
        if reader.read_until(b'\n', &mut header).ok()? == 0 {
            break;
        }
        let header = String::from_utf8_lossy(&header).into_owned();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { path, body })
}

fn response(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn deep(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

#[derive(Clone, Copy)]
enum Endpoint {
    Discovery,
    Jwks,
    Token,
}

/// What goes on the wire for `fault` at `endpoint` (nothing for a reset or close).
fn answer(state: &FaultState, endpoint: Endpoint, fault: &Fault, request: &Request) -> Vec<u8> {
    let json_type: (&str, &[u8]) = ("content-type", b"application/json");
    let correct = correct_body(state, endpoint, request);
    match fault {
        Fault::Correct | Fault::Late(_) => {
            let cache_control = state.jwks_cache_control.clone().unwrap_or_default();
            let mut headers = vec![json_type];
            if matches!(endpoint, Endpoint::Jwks) && !cache_control.is_empty() {
                headers.push(("cache-control", cache_control.as_bytes()));
            }
            response(200, &headers, correct.as_bytes())
        }
        Fault::Status(status) => response(
            *status,
            &[json_type],
            br#"{"error":"server_error","error_description":"the fault server says no"}"#,
        ),
        Fault::Garbage => {
            let mut body = b"\x89PNG\r\n\x1a\n\x00\xff\xfe{\"keys\":[".to_vec();
            body.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            response(200, &[json_type], &body)
        }
        Fault::Huge(size) => {
            let field = match endpoint {
                Endpoint::Discovery => "jwks_uri",
                Endpoint::Jwks => "keys",
                Endpoint::Token => "id_token",
            };
            let mut body = format!("{{\"issuer\":\"{}\",\"{field}\":\"", state.issuer).into_bytes();
            body.resize(size.saturating_sub(2).max(body.len()), b'A');
            body.extend_from_slice(b"\"}");
            response(200, &[json_type], &body)
        }
        Fault::DeepJson(levels) => {
            let body = match endpoint {
                Endpoint::Discovery => format!(
                    "{{\"issuer\":\"{}\",\"jwks_uri\":{}}}",
                    state.issuer,
                    deep(*levels)
                ),
                Endpoint::Jwks => format!("{{\"keys\":[{}]}}", deep(*levels)),
                Endpoint::Token => format!("{{\"id_token\":{},\"expires_in\":60}}", deep(*levels)),
            };
            response(200, &[json_type], body.as_bytes())
        }
        Fault::WrongTypes => {
            let body = match endpoint {
                Endpoint::Discovery => json!({
                    "issuer": state.issuer,
                    "jwks_uri": 12,
                    "authorization_endpoint": {"url": "x"},
                    "token_endpoint": true,
                    "end_session_endpoint": [],
                }),
                Endpoint::Jwks => json!({
                    "keys": [1, "key", null, {"kty": 7, "kid": [], "n": {}, "e": false, "alg": 3}]
                }),
                Endpoint::Token => json!({
                    "id_token": 12345,
                    "refresh_token": [],
                    "expires_in": "soon",
                    "token_type": {},
                }),
            };
            response(200, &[json_type], body.to_string().as_bytes())
        }
        Fault::NotHttp => b"\x00\xff\xfeSSH-2.0-garbage\r\n\r\n\x00\x01\x02".to_vec(),
        Fault::NonUtf8Header => response(
            200,
            &[
                json_type,
                ("cache-control", b"max-age=60, \xff\xfe\xc3\x28"),
            ],
            correct.as_bytes(),
        ),
        Fault::NonUtf8HeaderGarbage => response(
            200,
            &[
                json_type,
                ("cache-control", b"max-age=60, \xff\xfe\xc3\x28"),
            ],
            b"\xff\xfe not JSON",
        ),
        Fault::Reset | Fault::Close => Vec::new(),
    }
}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn correct_body(state: &FaultState, endpoint: Endpoint, request: &Request) -> String {
    let issuer = &state.issuer;
    match endpoint {
        Endpoint::Discovery => json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "end_session_endpoint": format!("{issuer}/session/end"),
        })
        .to_string(),
        Endpoint::Jwks => state.keys.to_string(),
        Endpoint::Token => {
            let nonce = form_value(&request.body, "code").unwrap_or_default();
            let now = now_secs();
            let id_token = shared_keys().signer("RS256").sign(&json!({
                "iss": issuer,
                "aud": state.client_id,
                "azp": state.client_id,
                "sub": state.user.0,
                "email": state.user.1,
                "nonce": nonce,
                "iat": now,
                "nbf": now,
                "exp": now + 300,
            }));
            json!({
                "access_token": "opaque-access-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            })
            .to_string()
        }
    }
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path.split('?').next().unwrap_or_default() {
        "/.well-known/openid-configuration" => Some(Endpoint::Discovery),
        "/jwks" => Some(Endpoint::Jwks),
        "/token" => Some(Endpoint::Token),
        _ => None,
    }
}

fn fault_of(state: &FaultState, endpoint: Option<Endpoint>) -> Fault {
    match endpoint {
        Some(Endpoint::Discovery) => state.discovery.clone(),
        Some(Endpoint::Jwks) => state.jwks.clone(),
        Some(Endpoint::Token) => state.token.clone(),
        None => Fault::Status(404),
    }
}

fn count(state: &mut FaultState, endpoint: Option<Endpoint>) {
    match endpoint {
        Some(Endpoint::Discovery) => state.discovery_hits += 1,
        Some(Endpoint::Jwks) => state.jwks_hits += 1,
        Some(Endpoint::Token) => state.token_hits += 1,
        None => {}
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<FaultState>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // Peek first: a reset must happen while the request is still unread, because closing a
    // socket with unread data in its receive buffer is what makes the kernel send RST.
    let mut peeked = vec![0u8; 8192];
    let Ok(n) = stream.peek(&mut peeked) else {
        return;
    };
    let first_line = String::from_utf8_lossy(&peeked[..n]).into_owned();
    let endpoint = first_line.split_whitespace().nth(1).and_then(endpoint_of);
    let early = {
        let Ok(state) = state.lock() else { return };
        fault_of(&state, endpoint)
    };
    if early == Fault::Reset {
        if let Ok(mut state) = state.lock() {
            count(&mut state, endpoint);
        }
        drop(stream); // unread request bytes: RST
        return;
    }
    let Some(request) = read_request(&stream) else {
        return;
    };
    let endpoint = endpoint_of(&request.path);
    let (fault, bytes) = {
        let Ok(mut state) = state.lock() else { return };
        count(&mut state, endpoint);
        if matches!(endpoint, Some(Endpoint::Token)) {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            state.token_requests.push(body);
        }
        let fault = fault_of(&state, endpoint);
        let bytes = match endpoint {
            Some(endpoint) => answer(&state, endpoint, &fault, &request),
            None => response(404, &[], b"not found"),
        };
        (fault, bytes)
    };
    match fault {
        Fault::Late(delay) => std::thread::sleep(delay),
        Fault::Reset | Fault::Close => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        _ => {}
    }
    let _ = stream.write_all(&bytes);
    let _ = stream.flush();
}

impl FaultIdp {
    /// Serves on a free loopback port; every endpoint answers correctly until told otherwise.
    pub fn start(client_id: &str) -> FaultIdp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(FaultState {
            issuer: format!("http://127.0.0.1:{port}"),
            client_id: client_id.to_string(),
            discovery: Fault::Correct,
            jwks: Fault::Correct,
            token: Fault::Correct,
            keys: shared_keys().jwks(),
            jwks_cache_control: None,
            user: ("alice-id".into(), "alice@example.com".into()),
            discovery_hits: 0,
            jwks_hits: 0,
            token_hits: 0,
            token_requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, shared) = (Arc::clone(&stop), Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let state = Arc::clone(&shared);
                        std::thread::spawn(move || serve(stream, &state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FaultIdp {
            state,
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn with<T>(&self, f: impl FnOnce(&mut FaultState) -> T) -> T {
        f(&mut self.state.lock().expect("fault state"))
    }

    pub fn set_discovery(&self, fault: Fault) {
        self.with(|s| s.discovery = fault);
    }

    pub fn set_jwks(&self, fault: Fault) {
        self.with(|s| s.jwks = fault);
    }

    pub fn set_token(&self, fault: Fault) {
        self.with(|s| s.token = fault);
    }

    pub fn discovery_hits(&self) -> usize {
        self.with(|s| s.discovery_hits)
    }

    pub fn jwks_hits(&self) -> usize {
        self.with(|s| s.jwks_hits)
    }

    pub fn token_hits(&self) -> usize {
        self.with(|s| s.token_hits)
    }
}

impl Drop for FaultIdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
