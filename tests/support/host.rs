//! The host, in memory: one worker's view of shared data (shared with its siblings), a
//! counter for randomness, a clock the test moves, token calls recorded instead of sent,
//! and the log kept for assertions.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_iap::core::host::{Callout, Host, Metric};
use wasm_iap::core::random::{NoRandomness, Random};
use wasm_iap::core::reply::Severity;
use wasm_iap::core::shared_data::SharedData;

use super::shared::Worker;

/// A token call the core made: where to, and the form body it sent.
#[derive(Clone, Debug)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub url: String,
    pub body: String,
}

pub struct FakeHost {
    shared: Worker,
    clock: Rc<Cell<u64>>,
    seed: u8,
    next_token: u32,
    pub calls: Vec<Call>,
    pub log: RefCell<Vec<(Severity, String)>>,
    pub counted: Vec<Metric>,
    /// The client address of the requests decided next (`ip:port`).
    pub source: String,
}

impl FakeHost {
    /// The first worker, with the clock at `now_ms`.
    pub fn new(now_ms: u64) -> FakeHost {
        FakeHost {
            shared: Worker::default(),
            clock: Rc::new(Cell::new(now_ms)),
            seed: 1,
            next_token: 1,
            calls: Vec::new(),
            log: RefCell::default(),
            counted: Vec::new(),
            source: "192.0.2.1:40000".into(),
        }
    }

    /// Another worker: same shared data and clock, its own calls and randomness.
    pub fn sibling(&self, seed: u8) -> FakeHost {
        FakeHost {
            shared: self.shared.sibling(),
            clock: Rc::clone(&self.clock),
            seed,
            next_token: 1000 * u32::from(seed),
            calls: Vec::new(),
            log: RefCell::default(),
            counted: Vec::new(),
            source: "192.0.2.1:40000".into(),
        }
    }

    /// Runs `step` (another worker's write) just before this worker's next write.
    pub fn interleave(&self, step: impl FnOnce(&mut super::shared::Store) + 'static) {
        self.shared.interleave(step);
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }

    pub fn count_of(&self, metric: Metric) -> usize {
        self.counted.iter().filter(|m| **m == metric).count()
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log
            .borrow()
            .iter()
            .any(|(_, line)| line.contains(text))
    }
}

impl SharedData for FakeHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.shared.set(key, value, cas)
    }
}

impl Random for FakeHost {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        for b in buf {
            self.seed = self.seed.wrapping_mul(31).wrapping_add(17);
            *b = self.seed;
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.clock.get()
    }

    fn source_address(&self) -> Option<String> {
        Some(self.source.clone())
    }

    fn call(&mut self, call: &Callout) -> Option<u32> {
        self.next_token += 1;
        let header = |name: &str| {
            call.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        self.calls.push(Call {
            token: self.next_token,
            cluster: call.cluster.clone(),
            url: format!(
                "{}://{}{}",
                header(":scheme"),
                header(":authority"),
                header(":path")
            ),
            body: call
                .body
                .as_ref()
                .map(|b| b.expose().to_string())
                .unwrap_or_default(),
        });
        Some(self.next_token)
    }

    fn log(&self, severity: Severity, message: &str) {
        self.log.borrow_mut().push((severity, message.to_string()));
    }

    fn add(&mut self, metric: Metric, by: u64) {
        for _ in 0..by {
            self.counted.push(metric);
        }
    }
}
