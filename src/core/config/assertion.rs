//! `identity_assertion`: the gateway's signing keys (top level) and, per service, whether
//! and how its upstream gets a signed assertion of the caller (`core::assertion` signs).

use std::rc::Rc;

use serde_json::Value;

use crate::core::assertion::keys::{jwks_document, Algorithm, SigningKey};
use crate::core::config::endpoints::{is_plain_path, OwnEndpoints};
use crate::core::config::login::LoginService;
use crate::core::config::login::{read_secret, EnvLookup};
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::reply::{header_name_safe, header_value_safe, RESERVED_HEADERS};

pub(crate) const DEFAULT_ISSUER: &str = "wasm-iap";
pub(crate) const DEFAULT_JWKS_PATH: &str = "/.well-known/wasm-iap/jwks.json";
/// Our own header name: stripped from every client request, configured or not.
pub const DEFAULT_HEADER: &str = "x-wasm-iap-jwt-assertion";
const DEFAULT_LIFETIME_MS: u64 = 5 * 60_000;
const MIN_LIFETIME_MS: u64 = 30_000;
const MAX_LIFETIME_MS: u64 = 3_600_000;
const MAX_KEYS: usize = 2;

/// The top-level block: who signs, with which keys, and where the public ones are served.
#[derive(Debug)]
pub struct AssertionSettings {
    pub(crate) issuer: String,
    pub(crate) jwks_path: String,
    /// The first key: it signs. The others are only published (rotation: the next key
    /// before it signs, or the last one after).
    signer: SigningKey,
    /// The JWKS served at `jwks_path`, built once: every key.
    pub(crate) jwks: String,
}

impl AssertionSettings {
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signer
    }
}

/// A service's `identity_assertion`: `true`, or `{"header", "audience", "lifetime"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAssertion {
    /// Lower case.
    pub(crate) header: String,
    /// `None`: the request's host as the service lists it (lower case, no port).
    pub(crate) audience: Option<String>,
    pub(crate) lifetime_secs: u64,
}

/// Reads the top-level `identity_assertion`; `None` when absent or wrong (problems noted).
pub(crate) fn read_assertion(
    value: Option<&Value>,
    env: EnvLookup,
    problems: &mut Problems,
) -> Option<Rc<AssertionSettings>> {
    let value = value?;
    let before = problems.0.len();
    let mut r = ObjectReader::new("identity_assertion", value, problems);
    let issuer_path = r.field_path("issuer");
    let issuer = r
        .string("issuer", problems)
        .unwrap_or_else(|| DEFAULT_ISSUER.into());
    if issuer.is_empty() || !header_value_safe(&issuer) {
        problems.add(&issuer_path, "must be printable text, not empty");
    }
    let jwks_path_field = r.field_path("jwks_path");
    let jwks_path = r
        .string("jwks_path", problems)
        .unwrap_or_else(|| DEFAULT_JWKS_PATH.into());
    if !is_plain_path(&jwks_path) {
        problems.add(
            &jwks_path_field,
            format!("\"{jwks_path}\" is not a path like {DEFAULT_JWKS_PATH}"),
        );
    }
    let keys = read_keys(&mut r, env, problems);
    r.finish(problems);
    if problems.0.len() > before {
        return None;
    }
    let jwks = jwks_document(&keys);
    let signer = keys.into_iter().next()?;
    Some(Rc::new(AssertionSettings {
        issuer,
        jwks_path,
        signer,
        jwks,
    }))
}

/// `keys`: one or two `{"kid", "algorithm", "private_key"}`, `kid`s unique.
fn read_keys(r: &mut ObjectReader, env: EnvLookup, problems: &mut Problems) -> Vec<SigningKey> {
    let path = r.field_path("keys");
    let items = match r.value("keys").and_then(Value::as_array) {
        Some(items) if (1..=MAX_KEYS).contains(&items.len()) => items,
        _ => {
            problems.add(
                &path,
                "must list one or two keys (the first signs; both are published)",
            );
            return Vec::new();
        }
    };
    let mut keys: Vec<SigningKey> = Vec::new();
    let mut kids: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut k = ObjectReader::new(&format!("{path}[{i}]"), item, problems);
        let kid_path = k.field_path("kid");
        let kid = k.string("kid", problems).unwrap_or_default();
        if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
            problems.add(&kid_path, "must be 1 to 64 printable characters, no spaces");
        } else if kids.contains(&kid) {
            problems.add(&kid_path, format!("\"{kid}\" appears twice"));
        }
        kids.push(kid.clone());
        let algorithm_path = k.field_path("algorithm");
        let algorithm = k.string("algorithm", problems);
        let algorithm = algorithm.as_deref().and_then(Algorithm::parse);
        if algorithm.is_none() {
            problems.add(&algorithm_path, "must be \"ES256\" or \"EdDSA\"");
        }
        let key_path = k.field_path("private_key");
        let pem = read_secret(&mut k, "private_key", env, problems);
        if field_missing(item, "private_key") {
            problems.add(
                &key_path,
                "is required: a PEM PKCS#8 private key, or {\"env\": \"VARIABLE\"}",
            );
        }
        k.finish(problems);
        if let (Some(algorithm), Some(pem)) = (algorithm, pem) {
            match SigningKey::from_pem(&kid, algorithm, &pem) {
                Ok(key) => keys.push(key),
                Err(why) => problems.add(&key_path, why),
            }
        }
    }
    keys
}

/// Whether `item` lacks field `name` (null counts as absent).
fn field_missing(item: &Value, name: &str) -> bool {
    item.as_object()
        .is_some_and(|o| o.get(name).is_none_or(Value::is_null))
}

/// A service's `identity_assertion` (read with its rules); `false` or absent: none.
/// `kubernetes`: the service impersonates callers, and the apiserver reads no assertion.
pub(crate) fn read_service_assertion(
    reader: &mut ObjectReader,
    problems: &mut Problems,
    kubernetes: bool,
) -> Option<Rc<ServiceAssertion>> {
    let path = reader.field_path("identity_assertion");
    if kubernetes
        && reader
            .value("identity_assertion")
            .is_some_and(|v| v != &Value::Bool(false))
    {
        problems.add(
            &path,
            "is not sent in Kubernetes API mode (impersonate): the apiserver reads Impersonate-* only",
        );
        return None;
    }
    let defaults = ServiceAssertion {
        header: DEFAULT_HEADER.into(),
        audience: None,
        lifetime_secs: DEFAULT_LIFETIME_MS / 1000,
    };
    let value = reader.value("identity_assertion")?;
    match value {
        Value::Bool(false) => return None,
        Value::Bool(true) => return Some(Rc::new(defaults)),
        Value::Object(_) => {}
        _ => {
            problems.add(
                &path,
                "must be true, or {\"header\": ..., \"audience\": ..., \"lifetime\": ...}",
            );
            return None;
        }
    }
    let mut r = ObjectReader::new(&path, value, problems);
    let header_path = r.field_path("header");
    let header = r
        .string("header", problems)
        .unwrap_or_else(|| defaults.header.clone())
        .to_ascii_lowercase();
    if !header_name_safe(&header) || RESERVED_HEADERS.contains(&header.as_str()) {
        problems.add(
            &header_path,
            format!("\"{header}\" is not a header name the assertion may use"),
        );
    }
    let audience_path = r.field_path("audience");
    let audience = r.string("audience", problems);
    if audience
        .as_deref()
        .is_some_and(|a| a.is_empty() || !header_value_safe(a))
    {
        problems.add(&audience_path, "must be printable text, not empty");
    }
    let lifetime_path = r.field_path("lifetime");
    let lifetime_ms = r.duration_millis("lifetime", DEFAULT_LIFETIME_MS, problems);
    if !(MIN_LIFETIME_MS..=MAX_LIFETIME_MS).contains(&lifetime_ms) {
        problems.add(&lifetime_path, "must be between 30s and 1h");
    }
    r.finish(problems);
    Some(Rc::new(ServiceAssertion {
        header,
        audience,
        lifetime_secs: lifetime_ms / 1000,
    }))
}

/// Every service that asks for an assertion needs the top-level keys; an assertion's header
/// may not be an identity header too.
pub(crate) fn check_services<'a>(
    configured: bool,
    services: impl Iterator<Item = (String, Option<&'a Rc<ServiceAssertion>>)>,
    identity_header_names: &[&str],
    problems: &mut Problems,
) {
    for (path, asked) in services {
        let Some(asked) = asked else { continue };
        let field = format!("{path}.identity_assertion");
        if !configured {
            problems.add(
                &field,
                "needs the top-level identity_assertion block (issuer and signing keys)",
            );
        }
        if identity_header_names.contains(&asked.header.as_str()) {
            problems.add(
                &format!("{field}.header"),
                format!("\"{}\" is an identity header already", asked.header),
            );
        }
    }
}

/// The headers no client may send: ours, and every one a service puts its assertion in.
pub(crate) fn stripped_names<'a>(
    services: impl Iterator<Item = Option<&'a Rc<ServiceAssertion>>>,
) -> Vec<String> {
    let mut names = vec![DEFAULT_HEADER.to_string()];
    for asked in services.flatten() {
        if !names.contains(&asked.header) {
            names.push(asked.header.clone());
        }
    }
    names
}

/// The JWKS is answered before anything else, on every host: at the path of one of our own
/// endpoints it would answer that endpoint with a `200` (an `auth_request` check that passes
/// everything, or an `ext_authz` check under the auth path; a sign-in endpoint that no longer
/// works). Its path may be none of them.
pub(crate) fn check_jwks_path(
    settings: Option<&AssertionSettings>,
    endpoints: &OwnEndpoints,
    login: &[LoginService],
    problems: &mut Problems,
) {
    let Some(jwks_path) = settings.map(|s| s.jwks_path.as_str()) else {
        return;
    };
    let under_auth = endpoints.auth.as_deref().is_some_and(|auth| {
        jwks_path == auth
            || jwks_path
                .strip_prefix(auth)
                .is_some_and(|rest| rest.starts_with('/') || auth.ends_with('/'))
    });
    let own = [&endpoints.userinfo, &endpoints.ping, &endpoints.ready]
        .into_iter()
        .any(|path| path.as_deref() == Some(jwks_path));
    let sign_in = login.iter().any(|service| {
        [
            &service.callback_path,
            &service.start_path,
            &service.sign_out_path,
            &service.backchannel_logout_path,
        ]
        .into_iter()
        .any(|path| path == jwks_path)
    });
    if under_auth || own || sign_in {
        problems.add(
            "identity_assertion.jwks_path",
            format!("\"{jwks_path}\" is the path of one of our own endpoints (or under the auth check's): the keys would answer it"),
        );
    }
}
