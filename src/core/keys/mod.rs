//! An issuer's signing keys: accepted algorithms, the JWKS, the record shared by all
//! workers, fetching them (discovery and JWKS callouts), and keeping them fresh.
pub mod algorithm;
pub(crate) mod error;
pub mod fetch;
pub mod fetcher;
pub mod jwks;
pub mod record;
pub mod rsa_verify;
