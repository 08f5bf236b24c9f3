//! Who may pass, per host, path and method (authorization): the path rules match against,
//! normalised so that no encoding trick opens another path (`path`); a service's routes
//! (`route`); the allow/deny rules over what is known of the caller (`access`); and the
//! gate that finds a request's rules and checks its caller (`gate`). It builds no replies.
pub(crate) mod access;
pub mod gate;
pub mod path;
pub(crate) mod route;
