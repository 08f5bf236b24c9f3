//! Browser sign-in: the OIDC authorization-code flow with PKCE, state and nonce, and the
//! session kept in sealed cookies.
pub mod endpoints;
pub mod error;
pub mod flow;
pub mod login_cookie;
pub mod oidc;
pub mod opened;
pub mod redirect;
pub mod refresh;
pub mod refresh_slots;
pub mod refreshed;
pub mod request_kind;
pub mod session;
pub mod sign_in;
pub mod sign_out;
pub mod start;
pub mod step;
