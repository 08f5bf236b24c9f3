//! Browser sign-in: the OIDC authorization-code flow with PKCE, state and nonce, and the
//! session kept in sealed cookies.
pub mod backchannel;
pub mod choice;
pub(crate) mod endpoints;
pub(crate) mod error;
pub mod flow;
pub(crate) mod handles;
pub(crate) mod hints;
pub mod idle;
pub(crate) mod login_cookie;
pub mod oidc;
pub(crate) mod opened;
pub mod redirect;
pub mod refresh;
pub mod refresh_slots;
pub mod refreshed;
pub mod request_kind;
pub mod session;
pub mod sign_in;
pub(crate) mod sign_out;
pub(crate) mod start;
pub(crate) mod step;
