//! Loopback servers around Envoy: an upstream that echoes what reached it, and a key server
//! playing the IdP's discovery and JWKS endpoints, which a test can change, break or stop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Map, Value};

/// A tiny_http server on a thread; stopped and joined on drop.
pub struct Served {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub port: u16,
}

impl Served {
    fn start<F>(port: u16, handle: F) -> Served
    where
        F: Fn(&mut tiny_http::Request) -> (u16, Vec<(String, String)>, String) + Send + 'static,
    {
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("bind loopback"));
        let port = server.server_addr().to_ip().expect("ip address").port();
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            for mut request in serving.incoming_requests() {
                let (status, headers, body) = handle(&mut request);
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                for (name, value) in headers {
                    if let Ok(header) =
                        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                    {
                        response.add_header(header);
                    }
                }
                let _ = request.respond(response);
            }
        });
        Served {
            server,
            thread: Some(thread),
            port,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers every request with 200 and a JSON echo of its method, path and headers.
pub struct Upstream {
    pub served: Served,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let served = Served::start(0, move |request| {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut headers = Map::new();
            for h in request.headers() {
                let name = h.field.as_str().as_str().to_ascii_lowercase();
                let entry = headers.entry(name).or_insert_with(|| json!([]));
                if let Some(list) = entry.as_array_mut() {
                    list.push(json!(h.value.as_str()));
                }
            }
            let body = json!({ "method": request.method().as_str(), "path": request.url(), "headers": headers });
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                body.to_string(),
            )
        });
        Upstream { served, hits }
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
            match request.url() {
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

/// A loopback port that nothing listens on (yet).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
