//! Bearer tokens: parsing, registered claims, the authenticator that decides, its cache of
//! verified tokens, and why a token is refused.
pub mod authenticator;
pub mod budget;
pub mod cache;
pub mod claims;
pub mod error;
pub mod shared_cache;
pub mod token;
