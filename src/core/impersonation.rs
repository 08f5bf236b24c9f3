//! Kubernetes API mode, as kube-oidc-proxy does it: the apiserver authenticates the proxy
//! (Envoy's client certificate) and is asked to act as the user through `Impersonate-*`
//! headers; the client's own `Authorization` never reaches it.

use serde_json::json;

use crate::core::identity::Identity;
use crate::core::reply::{header_name_safe, header_value_safe, Reply};

/// `impersonate` of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user_prefix: String,
    pub group_prefix: String,
    /// `(extra key, claim)`: `Impersonate-Extra-<key>` from a claim (dotted for nested).
    pub extra_claims: Vec<(String, String)>,
}

/// Header edits for the apiserver: `set` replaces, `add` may repeat a name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Impersonating {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

impl Impersonation {
    /// Whether an extra key can be a header name's tail (Kubernetes lowercases them).
    pub fn extra_key_ok(key: &str) -> bool {
        !key.is_empty() && key == key.to_ascii_lowercase() && header_name_safe(key)
    }

    /// The headers that ask the apiserver to act as `identity`: every value header-safe
    /// (a group or claim that is not is left out, never written).
    pub fn headers(&self, identity: &Identity) -> Impersonating {
        let mut edits = Impersonating::default();
        let user = format!("{}{}", self.user_prefix, identity.user);
        if writable(&user) {
            edits.set.push(("impersonate-user".into(), user));
        }
        for group in &identity.groups {
            let group = format!("{}{group}", self.group_prefix);
            if writable(&group) {
                edits.add.push(("impersonate-group".into(), group));
            }
        }
        for (key, claim) in &self.extra_claims {
            let name = format!("impersonate-extra-{key}");
            for value in identity.claim_values(claim) {
                if writable(&value) {
                    edits.add.push((name.clone(), value));
                }
            }
        }
        edits
    }
}

/// Namespaces of the cluster's own users and groups: `system:masters`, and kubeadm's
/// `kubeadm:cluster-admins` (bound to `cluster-admin` since Kubernetes 1.29).
const CLUSTER_NAMESPACES: [&str; 2] = ["system:", "kubeadm:"];

/// A name the apiserver reads exactly as written, and not one of its own. Go trims spaces
/// from header values: `" "` would be no user at all (the apiserver would act as the proxy),
/// `"alice "` another user. An IdP name in the cluster's namespaces must not become one (a
/// prefix, required unless `allow_unprefixed`, keeps every IdP name out of them).
fn writable(name: &str) -> bool {
    header_value_safe(name)
        && !name.trim().is_empty()
        && name.trim() == name
        && !CLUSTER_NAMESPACES
            .iter()
            .any(|ns| name.to_ascii_lowercase().starts_with(ns))
}

/// A public route's request: the apiserver's own anonymous user, never the proxy's identity.
pub fn anonymous() -> Impersonating {
    Impersonating {
        set: vec![("impersonate-user".into(), "system:anonymous".into())],
        add: vec![("impersonate-group".into(), "system:unauthenticated".into())],
    }
}

/// Whether a client asked to impersonate on its own (`403`, kube-oidc-proxy's rule).
pub fn client_impersonates<'a>(mut names: impl Iterator<Item = &'a [u8]>) -> bool {
    names.any(|n| {
        n.get(..12)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"impersonate-"))
    })
}

/// A refusal as the apiserver writes one, which `kubectl` prints as `error: You must be
/// logged in to the server (Unauthorized)` or `Error from server (Forbidden): ...`.
pub fn as_status(mut reply: Reply) -> Reply {
    let reason = match reply.status {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => return reply,
    };
    let body = serde_json::from_str::<serde_json::Value>(&reply.body).unwrap_or_default();
    if body["kind"] == "Status" {
        return reply;
    }
    let detail = body["error_description"].as_str().map(str::to_string);
    let message = match detail {
        Some(detail) => format!("{reason}: {detail}"),
        None => reason.to_string(),
    };
    reply.body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": reply.status,
    })
    .to_string();
    reply.headers.retain(|(n, _)| n != "content-type");
    reply
        .headers
        .push(("content-type".into(), "application/json".into()));
    reply
}

/// The reply to a client that sent `Impersonate-*` headers.
pub fn refused_client_impersonation() -> Reply {
    let reply = Reply {
        status: 403,
        headers: vec![("cache-control".into(), "no-store".into())],
        body: json!({ "error_description": "impersonation headers are not allowed" }).to_string(),
        reason: None,
    };
    as_status(reply)
}
