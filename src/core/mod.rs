//! Everything wasm-iap decides, as plain Rust: no proxy-wasm, time and randomness passed in.
pub mod algorithm;
pub mod authn;
pub mod claims;
pub mod config;
pub mod config_reader;
pub mod duration;
pub mod error;
pub mod identity;
pub mod jwks;
pub mod key_fetch;
pub mod keys_record;
pub mod login;
pub mod random;
pub mod request_headers;
pub mod secret;
pub mod token;
pub mod token_cache;
