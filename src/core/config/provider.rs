//! One trusted issuer: its claim rules, algorithms, user claim and where its keys come from.

use std::rc::Rc;

use serde_json::Value;
use url::Url;

use crate::core::bearer::claims::ClaimRules;
use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::identity::EmailVerification;
use crate::core::keys::algorithm::Algorithm;
use crate::core::keys::jwks::KeySet;

/// Where an issuer's keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys given in the configuration (air-gapped clusters); never fetched.
    Inline(Rc<KeySet>),
    Remote(RemoteKeys),
}

/// The first document to fetch for remote keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Locator {
    /// `<issuer>/.well-known/openid-configuration`, which names the `jwks_uri`.
    Discovery(Url),
    /// A configured `jwks_uri`, fetched directly.
    JwksUri(Url),
}

#[derive(Debug)]
pub(crate) struct RemoteKeys {
    pub(crate) locator: Locator,
    pub(crate) cluster: String,
    pub(crate) timeout_ms: u64,
    pub(crate) refresh_interval_ms: u64,
    pub(crate) min_refetch_interval_ms: u64,
}

#[derive(Debug)]
pub struct Provider {
    pub rules: ClaimRules,
    pub algorithms: Vec<Algorithm>,
    pub(crate) user_claim: String,
    /// Where groups are read from (Dex, Keycloak: `groups`).
    pub(crate) groups_claim: String,
    pub(crate) email_verification: EmailVerification,
    pub(crate) keys: KeySource,
}

pub(crate) fn read_provider(
    path: &str,
    value: &Value,
    problems: &mut Problems,
) -> Option<Provider> {
    let mut reader = ObjectReader::new(path, value, problems);
    let issuer = reader.string("issuer", problems);
    let issuer_url = match &issuer {
        None => {
            problems.add(&reader.field_path("issuer"), "is required");
            None
        }
        Some(text) => parse_http_url(text, &reader.field_path("issuer"), problems),
    };
    let audiences = reader
        .string_list("audiences", problems)
        .unwrap_or_default();
    if audiences.is_empty() {
        problems.add(
            &reader.field_path("audiences"),
            "must list at least one accepted audience",
        );
    }
    let algorithms = read_algorithms(&mut reader, problems);
    let clock_skew_ms = reader.duration_millis("clock_skew", 60_000, problems);
    let require_expiry = reader.bool("require_expiry", true, problems);
    let user_claim = reader
        .string("user_claim", problems)
        .unwrap_or_else(|| "sub".into());
    let groups_claim = reader
        .string("groups_claim", problems)
        .unwrap_or_else(|| "groups".into());
    let email_path = reader.field_path("email_verified");
    let email_verification = match reader.string("email_verified", problems).as_deref() {
        None | Some("required") => EmailVerification::Required,
        Some("when_present") => EmailVerification::WhenPresent,
        Some(other) => {
            problems.add(
                &email_path,
                format!("\"{other}\" is not one of required, when_present"),
            );
            EmailVerification::Required
        }
    };
    let keys = read_key_source(&mut reader, issuer_url.as_ref(), &algorithms, problems);
    reader.finish(problems);
    Some(Provider {
        rules: ClaimRules {
            issuer: issuer?,
            audiences,
            clock_skew_secs: clock_skew_ms / 1000,
            require_expiry,
            require_issued_at: false,
        },
        algorithms,
        user_claim,
        groups_claim,
        email_verification,
        keys: keys?,
    })
}

fn read_algorithms(reader: &mut ObjectReader, problems: &mut Problems) -> Vec<Algorithm> {
    let path = reader.field_path("algorithms");
    let Some(names) = reader.string_list("algorithms", problems) else {
        return Algorithm::ALL.to_vec();
    };
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Algorithm::from_name(name) {
            Some(alg) => algorithms.push(alg),
            None => problems.add(
                &format!("{path}[{i}]"),
                format!("\"{name}\" is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"),
            ),
        }
    }
    if names.is_empty() {
        problems.add(&path, "must not be empty");
    }
    algorithms
}

fn read_key_source(
    reader: &mut ObjectReader,
    issuer: Option<&Url>,
    algorithms: &[Algorithm],
    problems: &mut Problems,
) -> Option<KeySource> {
    let discovery = reader.bool("discovery", true, problems);
    let jwks_uri_path = reader.field_path("jwks_uri");
    let jwks_uri = reader
        .string("jwks_uri", problems)
        .and_then(|text| parse_http_url(&text, &jwks_uri_path, problems));
    let inline_path = reader.field_path("jwks");
    let inline = reader.value("jwks");
    let cluster = reader.string("cluster", problems);
    let timeout_ms = reader.duration_millis("timeout", 5_000, problems);
    let refresh_interval_ms = reader.duration_millis("jwks_refresh_interval", 600_000, problems);
    let min_refetch_interval_ms =
        reader.duration_millis("jwks_min_refetch_interval", 10_000, problems);

    if let Some(inline) = inline {
        if jwks_uri.is_some() {
            problems.add(&inline_path, "give either jwks or jwks_uri, not both");
        }
        let parsed = match inline {
            Value::String(text) => KeySet::parse(text, algorithms),
            other => KeySet::from_value(other, algorithms),
        };
        return match parsed {
            Ok(keys) => Some(KeySource::Inline(Rc::new(keys))),
            Err(e) => {
                problems.add(&inline_path, e);
                None
            }
        };
    }
    let locator = match (jwks_uri, discovery) {
        (Some(uri), _) => Locator::JwksUri(uri),
        (None, true) => Locator::Discovery(discovery_url(issuer?)?),
        (None, false) => {
            problems.add(
                &reader.field_path("discovery"),
                "is off, so jwks_uri or jwks is required",
            );
            return None;
        }
    };
    let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
        problems.add(
            &reader.field_path("cluster"),
            "is required to fetch keys (the Envoy cluster that reaches the issuer)",
        );
        return None;
    };
    if timeout_ms == 0 {
        problems.add(&reader.field_path("timeout"), "must be above 0");
    }
    Some(KeySource::Remote(RemoteKeys {
        locator,
        cluster,
        timeout_ms,
        refresh_interval_ms,
        min_refetch_interval_ms,
    }))
}

fn parse_http_url(text: &str, path: &str, problems: &mut Problems) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Some(url)
        }
        Ok(_) => {
            problems.add(path, format!("\"{text}\" is not an http(s) URL"));
            None
        }
        Err(e) => {
            problems.add(path, format!("\"{text}\" is not a URL: {e}"));
            None
        }
    }
}

fn discovery_url(issuer: &Url) -> Option<Url> {
    let base = issuer.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/.well-known/openid-configuration")).ok()
}

/// `providers`: issuers of configured providers whose tokens a service accepts; `None`
/// when the field is absent. An issuer no provider has is a problem.
pub(crate) fn read_provider_list(
    reader: &mut ObjectReader,
    providers: &[Provider],
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let path = reader.field_path("providers");
    let listed = reader.string_list("providers", problems)?;
    if listed.is_empty() {
        problems.add(&path, "must name at least one provider's issuer");
    }
    for (i, issuer) in listed.iter().enumerate() {
        if !providers.iter().any(|p| &p.rules.issuer == issuer) {
            problems.add(
                &format!("{path}[{i}]"),
                format!("\"{issuer}\" is not the issuer of any provider"),
            );
        }
    }
    Some(listed)
}
