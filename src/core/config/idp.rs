//! The IdPs of one login service: the single `issuer`/`client_id`/... form is one IdP; a
//! service may instead list several under `idps`, each with its own client and sealer.

use serde_json::Value;

use crate::core::config::ids::ProviderId;
use crate::core::config::oidc_client::{
    read_callout, read_client, read_endpoint_overrides, read_issuer, read_scopes, ClientAuth,
    EndpointOverrides, EnvLookup,
};
use crate::core::config::provider::Provider;
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::seal::Sealer;
use crate::core::secret::Secret;

/// An IdP of a login service: its place in `LoginService::idps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdpId(pub usize);

/// The id of the single form's IdP (never shown: there is no chooser with one IdP).
pub(crate) const SINGLE_IDP_ID: &str = "default";
/// Longest IdP id: it is a cookie's value and a prefix of sealed values.
const MAX_ID_CHARS: usize = 32;
const MAX_LABEL_CHARS: usize = 100;

/// One IdP of a login service: whom its users sign in with, and the sealer of their
/// sessions (bound to its issuer and client: a session of one IdP opens as no other).
#[derive(Debug)]
pub struct Idp {
    /// `[a-z0-9_-]{1,32}`, unique in its service.
    pub id: String,
    /// What the chooser shows (plain text).
    pub label: String,
    pub provider: ProviderId,
    /// The provider's issuer, which signed every session's ID token.
    pub(crate) issuer: String,
    pub(crate) cluster: String,
    pub(crate) timeout_ms: u64,
    pub client_id: String,
    pub client_secret: Secret,
    pub(crate) client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub sealer: Sealer,
    pub(crate) endpoints: EndpointOverrides,
}

/// A login service's IdPs: never empty.
#[derive(Debug)]
pub struct Idps {
    first: Idp,
    more: Vec<Idp>,
}

impl Idps {
    pub(crate) fn new(first: Idp, more: Vec<Idp>) -> Idps {
        Idps { first, more }
    }

    /// The IdP `id` names; the first for an id out of range (ids come from this list).
    pub fn get(&self, id: IdpId) -> &Idp {
        match id.0.checked_sub(1) {
            None => &self.first,
            Some(i) => self.more.get(i).unwrap_or(&self.first),
        }
    }

    pub fn first(&self) -> &Idp {
        &self.first
    }

    pub fn iter(&self) -> impl Iterator<Item = (IdpId, &Idp)> {
        std::iter::once(&self.first)
            .chain(self.more.iter())
            .enumerate()
            .map(|(i, idp)| (IdpId(i), idp))
    }

    /// Whether the service lists several (`idps`): their values carry a tag.
    pub fn several(&self) -> bool {
        !self.more.is_empty() || self.first.sealer.tag().is_some()
    }

    /// The IdP whose `id` this is.
    pub fn find(&self, id: &str) -> Option<IdpId> {
        self.iter().find(|(_, idp)| idp.id == id).map(|(i, _)| i)
    }

    /// The IdP that sealed `sealed`, by the tag before its first `.`; untagged: the first.
    /// Only a guess from clear text: the IdP's sealer still has to open it.
    pub(crate) fn of_sealed(&self, sealed: &str) -> IdpId {
        match sealed.split_once('.') {
            Some((tag, _)) => self.find(tag).unwrap_or_default(),
            None => IdpId(0),
        }
    }
}

/// Whether `id` may name an IdP: it goes into cookies and URLs unescaped.
pub(crate) fn valid_idp_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The fields of one IdP, as read from a service (single form) or an `idps` entry.
pub(crate) struct IdpFields {
    pub(crate) issuer: Option<String>,
    pub(crate) provider: Option<usize>,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) scopes: Vec<String>,
    pub(crate) endpoints: EndpointOverrides,
    pub(crate) cluster: String,
    pub(crate) timeout_ms: u64,
}

/// The single form's fields: given beside `idps`, each is a problem.
pub(crate) const SINGLE_FORM_FIELDS: [&str; 10] = [
    "issuer",
    "client_id",
    "client_secret",
    "client_auth",
    "scopes",
    "authorization_endpoint",
    "token_endpoint",
    "end_session_endpoint",
    "cluster",
    "timeout",
];

/// One IdP's client fields: an `idps` entry's, or the single form's on the service itself.
pub(crate) fn read_entry_fields(
    r: &mut ObjectReader,
    providers: &[Provider],
    env: EnvLookup,
    problems: &mut Problems,
) -> IdpFields {
    let (issuer, provider) = read_issuer(r, providers, problems);
    let (client_id, client_secret, client_auth) = read_client(r, env, problems);
    let scopes = read_scopes(r, problems);
    let endpoints = read_endpoint_overrides(r, problems);
    let (cluster, timeout_ms) = read_callout(r, providers, provider, problems);
    IdpFields {
        issuer,
        provider,
        client_id,
        client_secret,
        client_auth,
        scopes,
        endpoints,
        cluster,
        timeout_ms,
    }
}

/// `id` and `label` of one `idps` entry.
fn read_id_label(r: &mut ObjectReader, problems: &mut Problems) -> (String, String) {
    let id_path = r.field_path("id");
    let id = r.string("id", problems).unwrap_or_default();
    if !valid_idp_id(&id) {
        problems.add(&id_path, "must be 1 to 32 of a-z, 0-9, _ and -");
    }
    let label_path = r.field_path("label");
    let label = r.string("label", problems).unwrap_or_else(|| id.clone());
    if label.trim().is_empty()
        || label.chars().count() > MAX_LABEL_CHARS
        || label.chars().any(char::is_control)
    {
        problems.add(
            &label_path,
            "must be 1 to 100 characters of plain text, no control characters",
        );
    }
    (id, label)
}

/// What makes the sealer of one IdP of a service.
pub(crate) struct SealerInputs<'a> {
    pub(crate) path: &'a str,
    pub(crate) secrets: &'a [Secret],
    pub(crate) cookie_name: &'a str,
    pub(crate) hosts: &'a [String],
}

/// An IdP from its fields; `None` when a required one is missing (already a problem).
pub(crate) fn build_idp(
    id: String,
    label: String,
    tagged: bool,
    fields: IdpFields,
    inputs: &SealerInputs,
    problems: &mut Problems,
) -> Option<Idp> {
    let tag = tagged.then_some(id.as_str());
    let binding = service_binding(&fields.client_id, inputs.cookie_name, inputs.hosts, tag);
    let sealer = idp_sealer(inputs, fields.issuer.as_deref(), &binding, tag, problems);
    Some(Idp {
        id,
        label,
        provider: ProviderId(fields.provider?),
        issuer: fields.issuer?,
        cluster: fields.cluster,
        timeout_ms: fields.timeout_ms,
        client_id: fields.client_id,
        client_secret: fields.client_secret?,
        client_auth: fields.client_auth,
        scopes: fields.scopes,
        sealer: sealer?,
        endpoints: fields.endpoints,
    })
}

/// `idps`: a non-empty list of IdPs with unique ids.
pub(crate) fn read_idps(
    list: &Value,
    path: &str,
    providers: &[Provider],
    env: EnvLookup,
    inputs: &SealerInputs,
    problems: &mut Problems,
) -> Option<Idps> {
    let Some(entries) = list.as_array().filter(|l| !l.is_empty()) else {
        problems.add(path, "must list at least one IdP");
        return None;
    };
    let mut idps: Vec<Idp> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}[{i}]");
        let mut r = ObjectReader::new(&entry_path, entry, problems);
        let (id, label) = read_id_label(&mut r, problems);
        if ids.contains(&id) {
            problems.add(
                &format!("{entry_path}.id"),
                format!("\"{id}\" appears twice"),
            );
        }
        ids.push(id.clone());
        let fields = read_entry_fields(&mut r, providers, env, problems);
        r.finish(problems);
        if let Some(idp) = build_idp(id, label, true, fields, inputs, problems) {
            idps.push(idp);
        }
    }
    let mut idps = idps.into_iter();
    let first = idps.next()?;
    Some(Idps::new(first, idps.collect()))
}

/// Whom a service's seal names beside the issuer: its client, its cookie and its hosts, and
/// with `idps` the IdP's id. Two deployments that share a client, a cookie name and a secret
/// (one secret copied to two clusters, a `grafana` client in two realms) still serve
/// different hosts, so neither opens the other's sessions; replicas of one deployment share
/// them. The single form's binding is as before `idps` existed: its sessions stay valid.
fn service_binding(
    client_id: &str,
    cookie_name: &str,
    hosts: &[String],
    tag: Option<&str>,
) -> String {
    let mut hosts = hosts.to_vec();
    hosts.sort();
    hosts.dedup();
    let binding = format!("client_id={client_id:?} cookie_name={cookie_name:?} hosts={hosts:?}");
    match tag {
        Some(id) => format!("{binding} idp={id:?}"),
        None => binding,
    }
}

/// The sealer of an IdP's cookies; its problem is reported only when secrets were given (a
/// missing `cookie_secrets` is reported where it is read).
fn idp_sealer(
    inputs: &SealerInputs,
    issuer: Option<&str>,
    binding: &str,
    tag: Option<&str>,
    problems: &mut Problems,
) -> Option<Sealer> {
    match Sealer::new(inputs.secrets, issuer.unwrap_or_default(), binding) {
        Ok(sealer) => Some(match tag {
            Some(tag) => sealer.tagged(tag),
            None => sealer,
        }),
        Err(e) => {
            if !inputs.secrets.is_empty() {
                let path = inputs.path;
                if !problems
                    .0
                    .iter()
                    .any(|p| p.starts_with(&format!("{path}.cookie_secrets")))
                {
                    problems.add(&format!("{path}.cookie_secrets"), e);
                }
            }
            None
        }
    }
}

/// The endpoints this IdP overrides (for the check that a provider without discovery has
/// them).
impl Idp {
    pub(crate) fn overrides_login_endpoints(&self) -> bool {
        self.endpoints.authorization.is_some() && self.endpoints.token.is_some()
    }
}
