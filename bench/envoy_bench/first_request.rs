//! Time to first request: a fresh Envoy whose wasm-iap has no keys yet gets them by OIDC
//! discovery and JWKS over HTTP callouts to a key server on loopback; one request with a
//! valid token is sent as soon as the listener accepts a connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::scenarios::{direct_response, ALGORITHMS, AUDIENCE};
use crate::support::envoy::{bootstrap_on, wasm_filter, Envoy, Started};
use crate::support::mint::{claims_with, now_secs, shared_keys};
use crate::support::servers::{free_port, KeyServer};

/// One fresh Envoy's first request.
pub struct FirstRequest {
    /// From the listener accepting a connection to the answer.
    pub from_listener_ms: f64,
    /// From starting the Envoy process to the answer.
    pub from_spawn_ms: f64,
}

/// Sends one request on `stream` and returns the answer's status.
fn exchange(mut stream: TcpStream, token: &str) -> u16 {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!(
        "GET /api/v1/query HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The Envoy that `starting` started.
fn started(starting: Option<std::thread::JoinHandle<Started>>) -> Envoy {
    match starting.map(|s| s.join()) {
        Some(Ok(Started::Running(envoy))) => envoy,
        Some(Ok(Started::Exited(log))) => panic!("Envoy did not start:\n{log}"),
        _ => panic!("starting Envoy failed"),
    }
}

/// `runs` fresh Envoys (one worker each), one after the other.
pub fn measure(runs: u64) -> Vec<FirstRequest> {
    let keys = shared_keys();
    let idp = KeyServer::start(0, keys.jwks_of(&ALGORITHMS));
    let issuer = idp.issuer();
    let token = keys.signer("RS256").sign(&claims_with(
        &issuer,
        AUDIENCE,
        json!({ "exp": now_secs() + 3600 }),
    ));
    let plugin = json!({
        "providers": [{ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp" }]
    });
    let mut measured = Vec::new();
    for run in 1..=runs {
        let port = free_port();
        let config = direct_response(bootstrap_on(port, vec![wasm_filter(&plugin)], 1, idp.port));
        let discoveries = idp.state.lock().unwrap().discovery_fetches;
        let spawned = Instant::now();
        let mut starting = Some(std::thread::spawn(move || Envoy::try_start(&config, 1)));
        let mut envoy = None;
        let (listening, status) = loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                break (Instant::now(), exchange(stream, &token));
            }
            if starting.as_ref().is_some_and(|s| s.is_finished()) {
                envoy = Some(started(starting.take()));
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                // Stop this Envoy before failing, also when its start-up is still under way.
                drop(starting.take().map(|s| s.join()));
                panic!("Envoy's listener on port {port} never accepted");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let answered = Instant::now();
        let _envoy = envoy.unwrap_or_else(|| started(starting));
        assert_eq!(status, 200, "the first request must pass");
        assert!(
            idp.state.lock().unwrap().discovery_fetches > discoveries,
            "the keys came by discovery"
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let first = FirstRequest {
            from_listener_ms: ms(answered - listening),
            from_spawn_ms: ms(answered - spawned),
        };
        eprintln!(
            "first request {run}: {:.1} ms after the listener accepted, {:.1} ms after spawn",
            first.from_listener_ms, first.from_spawn_ms
        );
        measured.push(first);
    }
    measured
}
