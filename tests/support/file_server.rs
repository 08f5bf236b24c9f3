//! A loopback HTTP server handing out one file's bytes as they are (binary-safe, unlike the
//! text servers of `servers.rs`), as a web server or artifact store would: the remote source
//! Envoy fetches a Wasm module from. Counts the fetches; stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct FileServer {
    stop: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    pub port: u16,
}

/// Reads the request head (no body is expected) and answers with `bytes`.
fn answer(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let Ok(reading) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
        line.clear();
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

impl FileServer {
    /// Serves `bytes` at every path of a free loopback port.
    pub fn start(bytes: Vec<u8>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (stopping, counting) = (Arc::clone(&stop), Arc::clone(&fetches));
        let bytes = Arc::new(bytes);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counting.fetch_add(1, Ordering::SeqCst);
                        let bytes = Arc::clone(&bytes);
                        std::thread::spawn(move || answer(stream, &bytes));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FileServer {
            stop,
            fetches,
            thread: Some(thread),
            port,
        }
    }

    /// Connections accepted so far (one per fetch: every answer closes its connection).
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
