//! `impersonate` of a service: Kubernetes API mode's settings (what it does is
//! `core::mode::kubernetes`).

use crate::core::reply::header_name_safe;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub(crate) user_prefix: String,
    pub group_prefix: String,
    /// `(extra key, claim)`: `Impersonate-Extra-<key>` from a claim (dotted for nested).
    pub(crate) extra_claims: Vec<(String, String)>,
}

impl Impersonation {
    /// Whether an extra key can be a header name's tail (Kubernetes lowercases them).
    pub(crate) fn extra_key_ok(key: &str) -> bool {
        !key.is_empty() && key == key.to_ascii_lowercase() && header_name_safe(key)
    }
}
