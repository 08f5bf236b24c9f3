//! The paths the filter answers itself on every host, as oauth2-proxy does: the
//! forward-auth check, user info and health probes. `""` turns one off.

use serde_json::Value;

use crate::core::config::reader::{ObjectReader, Problems};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnEndpoints {
    /// Forward-auth for NGINX `auth_request` (exactly this path: `202`) and Envoy
    /// `ext_authz` (`path_prefix` set to it, the original path after it: `200`).
    pub(crate) auth: Option<String>,
    pub(crate) userinfo: Option<String>,
    /// Always `200`: the filter runs.
    pub(crate) ping: Option<String>,
    /// `200` once every issuer's keys are loaded, else `503`.
    pub(crate) ready: Option<String>,
    /// An `auth_request` check (`202` form) refuses with `400` a request that carries a
    /// method override or a header of a stripped identity family: NGINX forwards the
    /// client's headers to the app, and nothing can remove them there.
    pub(crate) refuse_spoofed_headers: bool,
    /// An `auth_request` check is judged by the request in `X-Original-URL` and
    /// `X-Original-Method` (ingress-nginx sets both, over any the client sent). Off: the
    /// check's own host, with every restricting route of its service.
    pub(crate) trust_original_url: bool,
}

impl Default for OwnEndpoints {
    fn default() -> Self {
        OwnEndpoints {
            auth: Some("/oauth2/auth".into()),
            userinfo: Some("/oauth2/userinfo".into()),
            ping: Some("/ping".into()),
            ready: Some("/ready".into()),
            refuse_spoofed_headers: true,
            trust_original_url: false,
        }
    }
}

/// Reads `endpoints: {"auth": ..., "userinfo": ..., "ping": ..., "ready": ...,
/// "refuse_spoofed_headers": true, "trust_original_url": false}`.
pub(crate) fn read_endpoints(value: Option<&Value>, problems: &mut Problems) -> OwnEndpoints {
    let defaults = OwnEndpoints::default();
    let Some(value) = value else {
        return defaults;
    };
    let mut reader = ObjectReader::new("endpoints", value, problems);
    let mut path = |name: &'static str, default: Option<String>| {
        let field = reader.field_path(name);
        match reader.string(name, problems) {
            None => default,
            Some(text) if text.is_empty() => None,
            Some(text) if is_plain_path(&text) => Some(text),
            Some(text) => {
                problems.add(
                    &field,
                    format!("\"{text}\" is not a path like /oauth2/auth (or \"\" for off)"),
                );
                None
            }
        }
    };
    let endpoints = OwnEndpoints {
        auth: path("auth", defaults.auth),
        userinfo: path("userinfo", defaults.userinfo),
        ping: path("ping", defaults.ping),
        ready: path("ready", defaults.ready),
        refuse_spoofed_headers: reader.bool(
            "refuse_spoofed_headers",
            defaults.refuse_spoofed_headers,
            problems,
        ),
        trust_original_url: reader.bool(
            "trust_original_url",
            defaults.trust_original_url,
            problems,
        ),
    };
    reader.finish(problems);
    endpoints
}

/// `/` and then path characters only: no query, no trailing `/`, nothing to normalise.
pub(crate) fn is_plain_path(text: &str) -> bool {
    text.len() > 1
        && text.starts_with('/')
        && !text.ends_with('/')
        && !text.contains("//")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
}
