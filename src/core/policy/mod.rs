//! Who may pass, per host, path and method (authorization). First piece: the path rules
//! are matched against, normalised so that no encoding trick opens another path.
pub mod path;
