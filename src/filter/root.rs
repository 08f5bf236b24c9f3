//! The root context of one VM: takes the configuration, and calls the worker's door for the
//! tick and for the callouts it sent (key fetches, refreshes).

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::apply;
use super::host::{self, ProxyHost};
use super::http::{Request, SharedWorker};
use crate::core::config::Settings;
use crate::core::worker::{Act, Worker};

const TICK: Duration = Duration::from_millis(100);
/// Ticks come quickly just after start, so the first keys are fetched, and seen by every
/// worker, within milliseconds of Envoy taking traffic; then at the steady pace.
const STARTUP_TICK: Duration = Duration::from_millis(5);
const STARTUP_TICKS: u32 = 400;

pub(crate) struct Root {
    context_id: u32,
    worker: SharedWorker,
    startup_ticks_left: u32,
}

impl Root {
    pub(crate) fn new(context_id: u32) -> Self {
        Root {
            context_id,
            worker: SharedWorker::default(),
            startup_ticks_left: 0,
        }
    }

    /// Runs `door` with the worker, and carries out what it decided, each in its context.
    fn through(&mut self, door: impl FnOnce(&mut Worker) -> Vec<(u32, Act)>) {
        let decided = match self.worker.try_borrow_mut() {
            Ok(mut slot) => slot.as_mut().map(door).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if decided.is_empty() {
            return;
        }
        for (context_id, act) in decided {
            if host::switch_to(context_id) {
                apply::carry_out_paused(act);
            }
        }
        host::switch_to(self.context_id);
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter_answered(self.context_id);
        let answer = host::call_response(body_size);
        let response = answer.as_core();
        self.through(|worker| {
            worker.on_callout_response(&mut ProxyHost, None, token_id, &response)
        });
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        host::refresh_log_level();
        let text = host::plugin_configuration();
        let text = String::from_utf8_lossy(&text);
        let env = |name: &str| std::env::var(name).ok();
        let settings = match Settings::parse_with_env(&text, &env) {
            Ok(settings) => Rc::new(settings),
            Err(problems) => {
                for problem in &problems {
                    host::log(
                        LogLevel::Critical,
                        &format!("configuration rejected: {problem}"),
                    );
                }
                return false;
            }
        };
        let worker = Worker::new(&mut ProxyHost, settings);
        host::define_counters();
        if let Ok(mut slot) = self.worker.try_borrow_mut() {
            *slot = Some(worker);
        }
        self.startup_ticks_left = STARTUP_TICKS;
        host::set_tick_period(STARTUP_TICK);
        true
    }

    fn on_tick(&mut self) {
        #[cfg(feature = "host-call-count")]
        super::host_calls::enter(self.context_id);
        host::refresh_log_level();
        if self.startup_ticks_left > 0 {
            self.startup_ticks_left -= 1;
            if self.startup_ticks_left == 0 {
                host::set_tick_period(TICK);
            }
        }
        self.through(|worker| worker.on_tick(&mut ProxyHost));
        #[cfg(feature = "host-call-count")]
        super::host_calls::report(self.context_id, "host calls on tick");
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(context_id, Rc::clone(&self.worker))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
