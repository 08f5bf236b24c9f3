//! Kubernetes API mode, as kube-oidc-proxy does it: the apiserver authenticates the proxy
//! (Envoy's client certificate) and is asked to act as the user through `Impersonate-*`
//! headers; the client's own `Authorization` never reaches it.

use serde_json::json;

use crate::core::config::kubernetes::Impersonation;
use crate::core::forward::Forward;
use crate::core::identity::Identity;
use crate::core::reply::{header_value_safe, Reply};

/// Header edits for the apiserver: `set` replaces, `add` may repeat a name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Impersonating {
    pub(crate) set: Vec<(String, String)>,
    pub(crate) add: Vec<(String, String)>,
}

/// The headers that ask the apiserver to act as `identity`: every value header-safe (a
/// group or claim that is not is left out, never written).
pub(crate) fn headers(impersonation: &Impersonation, identity: &Identity) -> Impersonating {
    let mut edits = Impersonating::default();
    let user = format!("{}{}", impersonation.user_prefix, identity.user);
    if writable(&user) {
        edits.set.push(("impersonate-user".into(), user));
    }
    for group in &identity.groups {
        let group = format!("{}{group}", impersonation.group_prefix);
        if writable(&group) {
            edits.add.push(("impersonate-group".into(), group));
        }
    }
    for (key, claim) in &impersonation.extra_claims {
        let name = format!("impersonate-extra-{key}");
        for value in identity.claim_values(claim) {
            if writable(&value) {
                edits.add.push((name.clone(), value));
            }
        }
    }
    edits
}

/// Kubernetes API mode: the apiserver hears who the caller is only from `Impersonate-*`
/// (anonymous on a public route, never the proxy's own identity), never from the client's
/// `Authorization` or our identity headers. `None` when no user can be written: without
/// `Impersonate-User` the apiserver would act as the proxy.
pub(crate) fn forward(
    impersonation: &Impersonation,
    identity: Option<&Identity>,
    mut forward: Forward,
    judged_path: Option<(String, String)>,
) -> Option<Forward> {
    forward.set_headers.retain(|(name, _)| name == "cookie");
    if !forward.remove_headers.iter().any(|h| h == "authorization") {
        forward.remove_headers.push("authorization".into());
    }
    let edits = match identity {
        Some(identity) => headers(impersonation, identity),
        None => anonymous(),
    };
    forward.set_headers.extend(edits.set);
    forward.add_headers.extend(edits.add);
    forward.set_headers.extend(judged_path);
    // Never as the proxy's own identity, whatever a change above might do.
    forward.impersonates().then_some(forward)
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
pub(crate) fn anonymous() -> Impersonating {
    Impersonating {
        set: vec![("impersonate-user".into(), "system:anonymous".into())],
        add: vec![("impersonate-group".into(), "system:unauthenticated".into())],
    }
}

/// Whether a client asked to impersonate on its own (`403`, kube-oidc-proxy's rule).
pub(crate) fn client_impersonates<'a>(mut names: impl Iterator<Item = &'a [u8]>) -> bool {
    names.any(|n| {
        n.get(..12)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"impersonate-"))
    })
}

/// A refusal as the apiserver writes one, which `kubectl` prints as `error: You must be
/// logged in to the server (Unauthorized)` or `Error from server (Forbidden): ...`: built
/// from the refusal's status and description; other statuses keep `reply` as it is.
pub(crate) fn as_status(mut reply: Reply, description: &str) -> Reply {
    let reason = match reply.status {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => return reply,
    };
    reply.body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{reason}: {description}"),
        "reason": reason,
        "code": reply.status,
    })
    .to_string();
    // No longer a page: the exit must not write it again as one.
    reply.page = None;
    reply
        .headers
        .retain(|(n, _)| n != "content-type" && n != "content-security-policy");
    reply
        .headers
        .push(("content-type".into(), "application/json".into()));
    reply
}
