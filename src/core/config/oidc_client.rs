//! One OIDC client's fields, as a login service's single form or an entry of its `idps`
//! gives them: issuer, client id and secret, scopes, endpoints and the callout's cluster.

use serde_json::Value;
use url::Url;

use crate::core::config::provider::{KeySource, Provider};
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::secret::Secret;

/// Reads an environment variable of the VM (Istio: `WasmPlugin.spec.vmConfig.env`).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    Basic,
    Post,
}

/// Endpoints configured explicitly, for issuers without discovery.
#[derive(Debug, Default)]
pub(crate) struct EndpointOverrides {
    pub(crate) authorization: Option<Url>,
    pub(crate) token: Option<Url>,
    pub(crate) end_session: Option<Url>,
}

pub(crate) fn read_secret(
    reader: &mut ObjectReader,
    name: &'static str,
    env: EnvLookup,
    problems: &mut Problems,
) -> Option<Secret> {
    let path = reader.field_path(name);
    match reader.value(name) {
        None => None,
        Some(Value::String(s)) => Some(Secret::new(s.clone())),
        Some(Value::Object(o)) if o.len() == 1 && o.get("env").is_some_and(Value::is_string) => {
            let var = o.get("env").and_then(Value::as_str).unwrap_or_default();
            let value = env(var).filter(|v| !v.is_empty());
            if value.is_none() {
                problems.add(
                    &path,
                    format!("environment variable {var} is not set in the VM"),
                );
            }
            value.map(Secret::new)
        }
        Some(_) => {
            problems.add(&path, "must be a string or {\"env\": \"VARIABLE\"}");
            None
        }
    }
}

pub(crate) fn read_url(
    reader: &mut ObjectReader,
    name: &'static str,
    problems: &mut Problems,
) -> Option<Url> {
    let path = reader.field_path(name);
    let text = reader.string(name, problems)?;
    match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        _ => {
            problems.add(&path, format!("\"{text}\" is not an http(s) URL"));
            None
        }
    }
}

/// `issuer`, and which provider it names.
pub(crate) fn read_issuer(
    r: &mut ObjectReader,
    providers: &[Provider],
    problems: &mut Problems,
) -> (Option<String>, Option<usize>) {
    let issuer_path = r.field_path("issuer");
    let issuer = r.string("issuer", problems);
    let provider = match &issuer {
        None => {
            problems.add(&issuer_path, "is required");
            None
        }
        Some(issuer) => {
            let found = providers.iter().position(|p| &p.rules.issuer == issuer);
            if found.is_none() {
                problems.add(
                    &issuer_path,
                    format!("\"{issuer}\" is not the issuer of any provider"),
                );
            }
            found
        }
    };
    (issuer, provider)
}

/// `client_id`, `client_secret` and `client_auth`.
pub(crate) fn read_client(
    r: &mut ObjectReader,
    env: EnvLookup,
    problems: &mut Problems,
) -> (String, Option<Secret>, ClientAuth) {
    let client_id = r.string("client_id", problems).unwrap_or_default();
    if client_id.is_empty() {
        problems.add(&r.field_path("client_id"), "is required");
    }
    let client_secret = read_secret(r, "client_secret", env, problems);
    if client_secret.is_none() && !problems.0.iter().any(|p| p.contains("client_secret")) {
        problems.add(&r.field_path("client_secret"), "is required");
    }
    let auth_path = r.field_path("client_auth");
    let client_auth = match r.string("client_auth", problems).as_deref() {
        None | Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some(other) => {
            problems.add(
                &auth_path,
                format!("\"{other}\" is not client_secret_basic or client_secret_post"),
            );
            ClientAuth::Basic
        }
    };
    (client_id, client_secret, client_auth)
}

/// The cluster and timeout of token calls: the provider's unless given here.
pub(crate) fn read_callout(
    r: &mut ObjectReader,
    providers: &[Provider],
    provider: Option<usize>,
    problems: &mut Problems,
) -> (String, u64) {
    let cluster_override = r.string("cluster", problems);
    let timeout_override = r.value("timeout").is_some();
    let timeout_ms = r.duration_millis("timeout", 5_000, problems);
    let (cluster, timeout_ms) = match provider.and_then(|p| providers.get(p)).map(|p| &p.keys) {
        Some(KeySource::Remote(remote)) => (
            cluster_override.unwrap_or_else(|| remote.cluster.clone()),
            if timeout_override {
                timeout_ms
            } else {
                remote.timeout_ms
            },
        ),
        _ => (cluster_override.unwrap_or_default(), timeout_ms),
    };
    if cluster.is_empty() && provider.is_some() {
        problems.add(&r.field_path("cluster"), "is required: the provider has inline keys, so name the cluster that reaches its token endpoint");
    }
    (cluster, timeout_ms)
}

/// `scopes`, which must include `openid`.
pub(crate) fn read_scopes(r: &mut ObjectReader, problems: &mut Problems) -> Vec<String> {
    let scopes_path = r.field_path("scopes");
    let scopes = r
        .string_list("scopes", problems)
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        problems.add(&scopes_path, "must include openid");
    }
    scopes
}

pub(crate) fn read_endpoint_overrides(
    r: &mut ObjectReader,
    problems: &mut Problems,
) -> EndpointOverrides {
    EndpointOverrides {
        authorization: read_url(r, "authorization_endpoint", problems),
        token: read_url(r, "token_endpoint", problems),
        end_session: read_url(r, "end_session_endpoint", problems),
    }
}
