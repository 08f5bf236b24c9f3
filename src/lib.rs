//! wasm-iap: an identity-aware proxy as a Proxy-Wasm HTTP filter.
//!
//! `core` holds every decision and knows nothing of the host; `filter` is the thin
//! proxy-wasm adapter, compiled only for Wasm.
pub mod core;

#[cfg(target_arch = "wasm32")]
mod filter;
