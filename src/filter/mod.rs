//! The proxy-wasm adapter: registers the root context and logs panics before the VM dies.
#[macro_use]
mod host_calls;
mod abi;
mod apply;
#[cfg(feature = "crash-probe")]
mod crash_probe;
mod host;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("panic, the VM will stop: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
