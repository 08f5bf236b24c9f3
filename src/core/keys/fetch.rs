//! The steps of fetching an issuer's keys: which URL to call, and what a response means.

use serde_json::Value;
use url::Url;

use crate::core::config::provider::{Locator, RemoteKeys};
use crate::core::host::Callout;
use crate::core::keys::algorithm::Algorithm;
use crate::core::keys::error::{Document, KeysError};
use crate::core::keys::jwks::KeySet;
use crate::core::keys::record::{max_age, Discovery, KeysRecord};

/// Bodies larger than this are not a discovery document or a key set.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Discovery,
    Jwks,
}

/// An HTTP GET through an Envoy cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
/// A response as the host delivers it: no status means the call failed or timed out.
pub struct CalloutResponse<'a> {
    pub status: Option<u32>,
    pub cache_control: Option<&'a str>,
    pub body: &'a [u8],
}

/// The pseudo-headers of a request to `url`, for `dispatch_http_call`.
pub(crate) fn request_line(method: &'static str, url: &Url) -> Vec<(&'static str, String)> {
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    vec![
        (":method", method.into()),
        (":path", path),
        (":authority", authority),
        (":scheme", url.scheme().into()),
        ("user-agent", "wasm-iap".into()),
    ]
}

pub(crate) fn callout(url: &Url, remote: &RemoteKeys) -> Callout {
    let mut headers = request_line("GET", url);
    headers.push(("accept", "application/json".into()));
    Callout {
        cluster: remote.cluster.clone(),
        headers,
        body: None,
        timeout_ms: remote.timeout_ms,
    }
}

/// Where a fetch starts: the configured `jwks_uri`, a `jwks_uri` discovered earlier, or
/// discovery.
pub(crate) fn first_step(remote: &RemoteKeys, record: &KeysRecord) -> (Stage, Url) {
    match &remote.locator {
        Locator::JwksUri(url) => (Stage::Jwks, url.clone()),
        Locator::Discovery(discovery) => {
            let known = record.discovery.as_ref().filter(|_| !record.rediscover);
            match known.and_then(|d| Url::parse(&d.jwks_uri).ok()) {
                Some(jwks_uri) => (Stage::Jwks, jwks_uri),
                None => (Stage::Discovery, discovery.clone()),
            }
        }
    }
}

fn ok_body<'a>(response: &CalloutResponse<'a>, document: Document) -> Result<&'a [u8], KeysError> {
    match response.status {
        None => Err(KeysError::NoAnswer { document }),
        Some(200) if response.body.len() > MAX_DOCUMENT_BYTES => Err(KeysError::TooLarge {
            document,
            max: MAX_DOCUMENT_BYTES,
        }),
        Some(200) => Ok(response.body),
        Some(status) => Err(KeysError::Status { document, status }),
    }
}

/// The endpoints of a discovery document, whose `issuer` must be ours (OIDC Discovery §4.3).
pub fn read_discovery(response: &CalloutResponse, issuer: &str) -> Result<Discovery, KeysError> {
    let body = ok_body(response, Document::Discovery)?;
    let doc: Value = serde_json::from_slice(body).map_err(|_| KeysError::DiscoveryNotJson)?;
    let announced = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if announced != issuer {
        return Err(KeysError::WrongIssuer {
            announced: announced.to_string(),
            expected: issuer.to_string(),
        });
    }
    let endpoint = |name: &str| -> Result<Option<String>, KeysError> {
        match doc.get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(text) => match Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Some(url.to_string())),
                _ => Err(KeysError::NotHttpUrl {
                    field: name.to_string(),
                    value: text.to_string(),
                }),
            },
        }
    };
    let jwks_uri = endpoint("jwks_uri")?.ok_or(KeysError::NoJwksUri)?;
    Ok(Discovery {
        jwks_uri,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        end_session_endpoint: endpoint("end_session_endpoint")?,
    })
}

/// A key set response: the document, once it is known to hold usable keys, and its max-age.
pub fn read_jwks(
    response: &CalloutResponse,
    algorithms: &[Algorithm],
) -> Result<(String, Option<u64>), KeysError> {
    let body = ok_body(response, Document::Jwks)?;
    let text = std::str::from_utf8(body).map_err(|_| KeysError::JwksNotUtf8)?;
    KeySet::parse(text, algorithms)?;
    Ok((text.to_string(), response.cache_control.and_then(max_age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(locator: Locator) -> RemoteKeys {
        RemoteKeys {
            locator,
            cluster: "outbound|443||dex.example.com".into(),
            timeout_ms: 5000,
            refresh_interval_ms: 600_000,
            min_refetch_interval_ms: 10_000,
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|_| Url::parse("http://invalid").unwrap())
    }

    fn ok(body: &str) -> CalloutResponse<'_> {
        CalloutResponse {
            status: Some(200),
            cache_control: None,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn callout_carries_host_path_and_query() {
        let c = callout(
            &url("https://dex.example.com:8443/keys?v=2"),
            &remote(Locator::JwksUri(url("https://x"))),
        );
        assert_eq!(c.cluster, "outbound|443||dex.example.com");
        assert!(c.headers.contains(&(":path", "/keys?v=2".into())));
        assert!(c
            .headers
            .contains(&(":authority", "dex.example.com:8443".into())));
    }

    #[test]
    fn discovery_is_skipped_once_the_jwks_uri_is_known() {
        let discovery = remote(Locator::Discovery(url(
            "https://i/.well-known/openid-configuration",
        )));
        assert_eq!(
            first_step(&discovery, &KeysRecord::default()).0,
            Stage::Discovery
        );
        let known = KeysRecord {
            discovery: Some(Discovery {
                jwks_uri: "https://i/keys".into(),
                ..Discovery::default()
            }),
            ..KeysRecord::default()
        };
        let after_failure = KeysRecord {
            rediscover: true,
            ..known.clone()
        };
        assert_eq!(first_step(&discovery, &after_failure).0, Stage::Discovery);
        assert_eq!(
            first_step(&discovery, &known),
            (Stage::Jwks, url("https://i/keys"))
        );
        let fixed = remote(Locator::JwksUri(url("https://i/fixed")));
        assert_eq!(
            first_step(&fixed, &known),
            (Stage::Jwks, url("https://i/fixed"))
        );
    }

    #[test]
    fn discovery_table() {
        let issuer = "https://i";
        assert_eq!(
            read_discovery(
                &ok(
                    r#"{"issuer":"https://i","jwks_uri":"https://i/keys","token_endpoint":"https://i/token"}"#
                ),
                issuer
            ),
            Ok(Discovery {
                jwks_uri: "https://i/keys".into(),
                token_endpoint: Some("https://i/token".into()),
                ..Discovery::default()
            })
        );
        let failures = [
            (
                ok(r#"{"issuer":"https://evil","jwks_uri":"https://i/keys"}"#),
                "names issuer",
            ),
            (ok(r#"{"issuer":"https://i"}"#), "has no jwks_uri"),
            (
                ok(r#"{"issuer":"https://i","jwks_uri":"file:///etc/passwd"}"#),
                "is not an http(s) URL",
            ),
            (ok("<html>"), "is not JSON"),
            (
                CalloutResponse {
                    status: Some(500),
                    cache_control: None,
                    body: b"",
                },
                "answered HTTP 500",
            ),
            (
                CalloutResponse {
                    status: None,
                    cache_control: None,
                    body: b"",
                },
                "failed or timed out",
            ),
        ];
        for (response, expected) in failures {
            let error = read_discovery(&response, issuer)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn garbage_jwks_is_an_error_so_old_keys_stay() {
        assert!(read_jwks(&ok("garbage"), &Algorithm::ALL).is_err());
        assert!(read_jwks(&ok(r#"{"keys":[]}"#), &Algorithm::ALL).is_err());
        assert!(read_jwks(
            &ok(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"}]}"#),
            &Algorithm::ALL
        )
        .is_err());
    }
}
