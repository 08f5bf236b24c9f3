//! The root context of one VM: takes the configuration, keeps the issuers' keys fresh and
//! settles parked requests on `on_tick`, and hands callout answers to the core.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::apply;
use super::host::{self, ProxyHost};
use super::http::{Request, SharedGateway};
use crate::core::config::Settings;
use crate::core::gateway::{Decision, Gateway};
use crate::core::keys::fetch::CalloutResponse;
use crate::core::keys::fetcher::KeyFetcher;

const TICK: Duration = Duration::from_millis(100);
/// Ticks come quickly just after start, so the first keys are fetched, and seen by every
/// worker, within milliseconds of Envoy taking traffic; then at the steady pace.
const STARTUP_TICK: Duration = Duration::from_millis(5);
const STARTUP_TICKS: u32 = 400;

pub struct Root {
    context_id: u32,
    gateway: SharedGateway,
    fetcher: Option<KeyFetcher>,
    startup_ticks_left: u32,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            gateway: SharedGateway::default(),
            fetcher: None,
            startup_ticks_left: 0,
        }
    }

    /// Runs `step` with the gateway and the fetcher, and carries out what it decided.
    fn with_core(
        &mut self,
        step: impl FnOnce(&mut KeyFetcher, &mut Gateway) -> Vec<(u32, Decision)>,
    ) {
        let decided = match (self.fetcher.as_mut(), self.gateway.try_borrow_mut()) {
            (Some(fetcher), Ok(mut slot)) => match slot.as_mut() {
                Some(gateway) => step(fetcher, gateway),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.carry_out_settled(decided);
    }

    /// Carries out decisions on parked requests, each in its own context.
    fn carry_out_settled(&self, decided: Vec<(u32, Decision)>) {
        if decided.is_empty() {
            return;
        }
        for (context_id, decision) in decided {
            if host::switch_to(context_id) {
                // A token call the decision made answers to the root: nothing is held.
                let _ = apply::carry_out_paused(decision);
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
        let response = CalloutResponse {
            status: answer.status,
            cache_control: answer.cache_control.as_deref(),
            body: &answer.body,
        };
        self.with_core(|fetcher, gateway| {
            // A key fetch, or else a token call made while settling a parked request.
            fetcher
                .on_response(&mut ProxyHost, gateway, token_id, &response)
                .unwrap_or_else(|| {
                    gateway
                        .on_settled_call_response(
                            &mut ProxyHost,
                            token_id,
                            response.status,
                            response.body,
                        )
                        .into_iter()
                        .collect()
                })
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
        let gateway = Gateway::new(Rc::clone(&settings));
        gateway.prepare(&mut ProxyHost);
        host::define_counters();
        if let Ok(mut slot) = self.gateway.try_borrow_mut() {
            *slot = Some(gateway);
        }
        self.fetcher = Some(KeyFetcher::new(settings));
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
        self.with_core(|fetcher, gateway| {
            let mut decided = fetcher.tick(&mut ProxyHost, gateway);
            gateway.tick(&mut ProxyHost);
            decided.extend(gateway.settle(&mut ProxyHost, None));
            decided
        });
        #[cfg(feature = "host-call-count")]
        super::host_calls::report(self.context_id, "host calls on tick");
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(context_id, Rc::clone(&self.gateway))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
