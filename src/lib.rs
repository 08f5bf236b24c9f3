//! wasm-iap: an identity-aware proxy as a Proxy-Wasm HTTP filter.
//!
//! `core` holds every decision and knows nothing of the host; `filter` is the thin
//! proxy-wasm adapter, compiled only for Wasm. The core is public only with the `testing`
//! feature, for the test tiers' beds: the shipped module exports nothing but the ABI.
// Natively nothing in the crate calls the core (the adapter is Wasm-only), so its
// `pub(crate)` items would all read as unused there; the Wasm build still reports whatever
// nothing uses.
#[cfg(feature = "testing")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]
pub mod core;
#[cfg(not(feature = "testing"))]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]
mod core;

#[cfg(target_arch = "wasm32")]
mod filter;

/// `wasm-iap check` (src/bin/wasm-iap.rs): native only, never in the .wasm.
#[cfg(not(target_arch = "wasm32"))]
pub mod check;
