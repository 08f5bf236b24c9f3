//! An issuer's signing keys: accepted algorithms, the JWKS, the record shared by all
//! workers, and fetching them (discovery and JWKS callouts).
pub mod algorithm;
pub mod error;
pub mod fetch;
pub mod jwks;
pub mod record;
