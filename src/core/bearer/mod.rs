//! Bearer tokens: parsing, registered claims, the authenticator that decides, its cache of
//! verified tokens, and why a token is refused.
pub mod authenticator;
pub(crate) mod budget;
pub(crate) mod cache;
pub mod claims;
pub mod error;
pub(crate) mod shared_cache;
pub mod token;
