//! Bench only (feature `host-call-count`): counts the host calls each request makes, by
//! kind, and logs them at info when the request is done ("host calls: header_reads=1 ..."),
//! so the bench can show what each path costs in crossings. Without the feature `counted!`
//! is its call and nothing else: the shipped build is byte for byte the same.

/// `counted!(Kind, call)`: the host call `call`, counted as one of `Kind`.
#[cfg(not(feature = "host-call-count"))]
macro_rules! counted {
    ($kind:ident, $call:expr) => {
        $call
    };
}

#[cfg(feature = "host-call-count")]
macro_rules! counted {
    ($kind:ident, $call:expr) => {{
        $crate::filter::host_calls::add($crate::filter::host_calls::Kind::$kind);
        $call
    }};
}

#[cfg(feature = "host-call-count")]
pub(crate) use counting::*;

#[cfg(feature = "host-call-count")]
mod counting {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::fmt::Write as _;

    use proxy_wasm::types::LogLevel;

    /// What a host call does, as the bench reports it.
    #[derive(Clone, Copy)]
    pub(crate) enum Kind {
        HeaderRead,
        /// Replacing, adding or removing a header.
        HeaderWrite,
        Clock,
        /// Defining or incrementing a counter.
        Counter,
        /// Reading or writing shared data.
        SharedData,
        Log,
        Property,
        /// Local replies, resuming, switching context, callouts, buffers, ticks, randomness.
        Other,
    }

    const NAMES: [&str; 8] = [
        "header_reads",
        "header_writes",
        "clock",
        "counters",
        "shared_data",
        "logs",
        "properties",
        "other",
    ];

    thread_local! {
        /// The context whose callback is running: its calls are counted for it.
        static CURRENT: Cell<u32> = const { Cell::new(0) };
        static COUNTS: RefCell<HashMap<u32, [u32; 8]>> = RefCell::new(HashMap::new());
    }

    /// A callback of `context_id` starts.
    pub(crate) fn enter(context_id: u32) {
        CURRENT.with(|c| c.set(context_id));
    }

    /// A callout's answer to `context_id` arrives: the SDK made it the effective context
    /// first (`proxy_set_effective_context`), a call made on its behalf.
    pub(crate) fn enter_answered(context_id: u32) {
        enter(context_id);
        add(Kind::Other);
    }

    pub(crate) fn add(kind: Kind) {
        let context_id = CURRENT.with(Cell::get);
        COUNTS.with(|counts| {
            if let Ok(mut counts) = counts.try_borrow_mut() {
                counts.entry(context_id).or_default()[kind as usize] += 1;
            }
        });
    }

    /// Logs what `context_id` called so far (`what`: "host calls" for a request) and
    /// forgets it; the log line itself is not counted.
    pub(crate) fn report(context_id: u32, what: &str) {
        let counts = COUNTS
            .with(|counts| {
                counts
                    .try_borrow_mut()
                    .ok()
                    .and_then(|mut counts| counts.remove(&context_id))
            })
            .unwrap_or_default();
        let mut line = format!("{what}:");
        for (name, count) in NAMES.iter().zip(counts) {
            let _ = write!(line, " {name}={count}");
        }
        let _ = write!(line, " total={}", counts.iter().sum::<u32>());
        let _ = proxy_wasm::hostcalls::log(LogLevel::Info, &line);
    }
}
