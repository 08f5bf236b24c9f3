//! Loopback servers around Envoy: an upstream that echoes what reached it, and a key server
//! playing the IdP's discovery and JWKS endpoints, which a test can change, break or stop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Map, Value};

/// A request as the test servers see it.
pub struct Incoming {
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body, decoded lossily.
    pub body: String,
}

type Handler = dyn Fn(&Incoming) -> (u16, Vec<(String, String)>, String) + Send + Sync;

/// A plain HTTP/1.1 server on loopback: a thread per connection, one request per
/// connection (`Connection: close`), so parallel tests never wait on each other.
/// Stopped and joined on drop.
pub struct Served {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub port: u16,
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Incoming> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    // Lines are read as bytes and decoded lossily: a header value that is not UTF-8 (which
    // Envoy passes on as HTTP allows) must still get an answer, with U+FFFD in the echo.
    let read_line = |reader: &mut BufReader<std::net::TcpStream>| -> Option<(usize, String)> {
        let mut raw = Vec::new();
        let n = reader.read_until(b'\n', &mut raw).ok()?;
        Some((n, String::from_utf8_lossy(&raw).into_owned()))
    };
    let (_, line) = read_line(&mut reader)?;
    let mut parts = line.split_whitespace();
    let (method, url) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let (n, header) = read_line(&mut reader)?;
        if n == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Incoming {
        method,
        url,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(stream: &mut std::net::TcpStream, handler: &Handler) {
    use std::io::Write;
    let Some(request) = read_request(stream) else {
        return;
    };
    let (status, headers, body) = handler(&request);
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
}

impl Served {
    /// Serves on `port` (0: any free port), answering each request with `handle`'s
    /// (status, headers, body).
    pub fn start<F>(port: u16, handle: F) -> Served
    where
        F: Fn(&Incoming) -> (u16, Vec<(String, String)>, String) + Send + Sync + 'static,
    {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handler: Arc<Handler> = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let handler = Arc::clone(&handler);
                        std::thread::spawn(move || respond(&mut stream, handler.as_ref()));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        });
        Served {
            stop,
            thread: Some(thread),
            port,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers every request with 200 and a JSON echo of its method, path and headers.
pub struct Upstream {
    pub served: Served,
    pub hits: Arc<AtomicUsize>,
    /// Every request that reached it, as `METHOD path-and-query`, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// The header names of every request that reached it, in order.
    pub header_names: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let header_names = Arc::new(Mutex::new(Vec::new()));
        let names_recorder = Arc::clone(&header_names);
        let served = Served::start(0, move |request| {
            counter.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut seen) = recorder.lock() {
                seen.push(format!("{} {}", request.method, request.url));
            }
            if let Ok(mut names) = names_recorder.lock() {
                names.push(
                    request
                        .headers
                        .iter()
                        .map(|(n, _)| n.to_ascii_lowercase())
                        .collect(),
                );
            }
            let mut headers = Map::new();
            for (name, value) in &request.headers {
                let entry = headers.entry(name.clone()).or_insert_with(|| json!([]));
                if let Some(list) = entry.as_array_mut() {
                    list.push(json!(value));
                }
            }
            let body = json!({ "method": request.method, "path": request.url, "headers": headers });
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                body.to_string(),
            )
        });
        Upstream {
            served,
            hits,
            seen,
            header_names,
        }
    }

    /// The requests that reached it so far (`METHOD path-and-query`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn port(&self) -> u16 {
        self.served.port
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// What the key server answers for its JWKS.
#[derive(Clone)]
pub enum JwksAnswer {
    Keys(Value),
    Garbage,
    Status(u16),
}

pub struct KeyServerState {
    pub issuer: String,
    pub jwks: JwksAnswer,
    pub cache_control: Option<String>,
    pub jwks_fetches: usize,
    pub discovery_fetches: usize,
}

/// Discovery at `/.well-known/openid-configuration`, keys at `/jwks`.
pub struct KeyServer {
    pub state: Arc<Mutex<KeyServerState>>,
    served: Option<Served>,
    pub port: u16,
}

impl KeyServer {
    pub fn issuer_for(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Serves on `port` (0: any free port) with the given JWKS.
    pub fn start(port: u16, jwks: Value) -> KeyServer {
        let state = Arc::new(Mutex::new(KeyServerState {
            issuer: String::new(),
            jwks: JwksAnswer::Keys(jwks),
            cache_control: None,
            jwks_fetches: 0,
            discovery_fetches: 0,
        }));
        let mut server = KeyServer {
            state,
            served: None,
            port,
        };
        server.resume();
        server
    }

    /// Stops answering: connections are refused, as when the IdP is down.
    pub fn stop(&mut self) {
        self.served = None;
    }

    /// Answers again on the same port.
    pub fn resume(&mut self) {
        let state = Arc::clone(&self.state);
        let served = Served::start(self.port, move |request| {
            let mut state = state.lock().expect("state");
            let json_type = ("content-type".to_string(), "application/json".to_string());
            match request.url.as_str() {
                "/.well-known/openid-configuration" => {
                    state.discovery_fetches += 1;
                    let doc = json!({ "issuer": state.issuer, "jwks_uri": format!("{}/jwks", state.issuer) });
                    (200, vec![json_type], doc.to_string())
                }
                "/jwks" => {
                    state.jwks_fetches += 1;
                    let mut headers = vec![json_type];
                    if let Some(cc) = &state.cache_control {
                        headers.push(("cache-control".into(), cc.clone()));
                    }
                    match &state.jwks {
                        JwksAnswer::Keys(keys) => (200, headers, keys.to_string()),
                        JwksAnswer::Garbage => (200, headers, "<html>oops</html>".into()),
                        JwksAnswer::Status(code) => (*code, headers, "{}".into()),
                    }
                }
                _ => (404, vec![], "not found".into()),
            }
        });
        self.port = served.port;
        self.state.lock().expect("state").issuer = KeyServer::issuer_for(self.port);
        self.served = Some(served);
    }

    pub fn issuer(&self) -> String {
        KeyServer::issuer_for(self.port)
    }

    pub fn set_jwks(&self, answer: JwksAnswer) {
        self.state.lock().expect("state").jwks = answer;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().expect("state").jwks_fetches
    }
}

/// A loopback port that nothing listens on (yet), for a server whose port must be known
/// before it starts (Envoy's listener, named in redirect URLs). It is taken below the OS's
/// ephemeral range, so no server binding port 0 meanwhile (an Envoy's admin, an upstream)
/// and no outgoing connection can be handed it before its server binds it; the OS still
/// says it is free (it binds), and it is never one handed out before in this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, high) = below_ephemeral_range();
    let mut candidate = seed_in(low, high);
    for _ in 0..10_000 {
        candidate = if candidate + 1 >= high {
            low
        } else {
            candidate + 1
        };
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.contains(&candidate) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            handed_out.push(candidate);
            return candidate;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Ports between 10000 and the start of the OS's ephemeral range (32768 by default).
fn below_ephemeral_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        start > 12_000,
        "ephemeral ports start at {start}: too low to stay below"
    );
    (10_000, start)
}

/// Where this process starts looking: apart from where other test processes look.
fn seed_in(low: u16, high: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = (std::process::id() as u64).wrapping_mul(7919) ^ u64::from(nanos);
    low + (mixed % u64::from(high - low)) as u16
}
