//! Who may pass, per host, path and method (authorization). So far: the path rules match
//! against, normalised so that no encoding trick opens another path (`path`), and the
//! allow/deny rules over what is known of the caller (`access`).
pub mod access;
pub mod path;
