//! A login service at `APP` with two IdPs, natively: Dex (`corp`, the shared `ISSUER`) and a
//! second one (`home`), both with the shared keys inline and their endpoints configured.

use serde_json::{json, Value};

use super::mint::shared_keys;
use super::native_bed::{provider, AUDIENCE, ISSUER};

pub const APP: &str = "app.example.com";
pub const HOME_ISSUER: &str = "https://home.example.com";

/// Both IdPs as `providers`, so bearer tokens of either are accepted.
pub fn providers() -> Value {
    json!([
        provider(),
        { "issuer": HOME_ISSUER, "audiences": [AUDIENCE], "jwks": shared_keys().jwks() },
    ])
}

/// One `idps` entry whose endpoints live under its issuer.
pub fn idp(id: &str, label: &str, issuer: &str, client_id: &str) -> Value {
    json!({
        "id": id,
        "label": label,
        "issuer": issuer,
        "client_id": client_id,
        "client_secret": format!("{client_id}-secret"),
        "cluster": id,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "end_session_endpoint": format!("{issuer}/logout"),
    })
}

/// The service with `corp` and `home`, and `extra` fields over it.
pub fn service(extra: Value) -> Value {
    let mut entry = json!({
        "hosts": [APP],
        "idps": [
            idp("corp", "Company SSO", ISSUER, "app-corp"),
            idp("home", "Home <IdP> & co", HOME_ISSUER, "app-home"),
        ],
        "cookie_name": "_app",
        "cookie_secrets": ["app-cookie-secret-0123456789abcdef0123"],
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        entry[k] = v;
    }
    entry
}

pub fn config(extra: Value) -> Value {
    json!({ "providers": providers(), "login": [service(extra)] })
}

/// The query parameter `name` of an absolute URL.
pub fn param(location: &str, name: &str) -> Option<String> {
    url::Url::parse(location)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
