//! Envoy with one login service whose IdPs are two real OpenID providers (two npm
//! oidc-provider instances), and an echoing upstream.

use serde_json::{json, Value};

use super::envoy::{bootstrap_on, cluster, wasm_filter_with_env, Envoy};
use super::envoy_idp_bed::{redirect_env, SECRET};
use super::idp::Idp;
use super::servers::{free_port, Upstream};

/// Envoy with one login service for 127.0.0.1 whose IdPs are `one` and `two`, each a real
/// IdP of its own (clusters `idp` and `idp2`), and an echoing upstream.
pub struct TwoIdps {
    pub envoy: Envoy,
    pub one: Idp,
    pub two: Idp,
    pub upstream: Upstream,
}

impl TwoIdps {
    pub fn start() -> TwoIdps {
        TwoIdps::start_with(json!(null))
    }

    /// With a top-level `pages` block (`null`: none).
    pub fn start_with(pages: Value) -> TwoIdps {
        let port = free_port();
        let redirects = redirect_env(&[port]);
        let env: Vec<(&str, &str)> = redirects.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (one, two) = (Idp::start(&env), Idp::start(&env));
        let upstream = Upstream::start();
        let provider = |issuer: &str, cluster: &str| json!({ "issuer": issuer, "audiences": ["demo-upstream"], "cluster": cluster });
        let idp = |id: &str, label: &str, issuer: &str| {
            json!({
                "id": id, "label": label, "issuer": issuer,
                "client_id": "demo", "client_secret": "demo-secret",
                "scopes": ["openid", "email", "profile", "groups"],
            })
        };
        let mut plugin = json!({
            "providers": [provider(&one.issuer, "idp"), provider(&two.issuer, "idp2")],
            "login": [{
                "hosts": ["127.0.0.1"],
                "cookie_secrets": [SECRET],
                "cookie_secure": false,
                "idps": [idp("one", "IdP One", &one.issuer), idp("two", "IdP Two", &two.issuer)],
            }],
        });
        if !pages.is_null() {
            plugin["pages"] = pages;
        }
        let mut bootstrap = bootstrap_on(
            port,
            vec![wasm_filter_with_env(&plugin, &[])],
            upstream.port(),
            one.port,
        );
        let clusters = bootstrap["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap();
        clusters.push(cluster("idp2", two.port));
        TwoIdps {
            envoy: Envoy::start(&bootstrap),
            one,
            two,
            upstream,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }
}
