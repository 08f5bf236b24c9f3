//! Splits a compact JWS and decodes its header and claims, before anything is trusted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::bearer::error::AuthError;
use crate::core::keys::algorithm::Algorithm;

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// A token whose structure is sound; its signature and claims are not yet checked.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    pub compact: &'a str,
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// Typed as a logout or security event token, or carrying `events` (RFC 8417).
    pub(crate) is_event: bool,
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed { what })?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed { what })
}

/// Parses a compact JWS of at most `max_bytes`. Algorithms outside `Algorithm` (`none`,
/// HMAC, anything unknown) are refused here, before any key is looked at.
/// An access or ID token: never a logout token (a security event token), which the IdP
/// signs with the same keys and addresses to the client, so it would otherwise pass as one.
pub fn parse(compact: &str, max_bytes: usize) -> Result<UnverifiedToken<'_>, AuthError> {
    let token = parse_signed(compact, max_bytes)?;
    if token.is_event {
        return Err(AuthError::Malformed {
            what: "a logout or security event token is not an access or ID token",
        });
    }
    Ok(token)
}

/// A signed token of any JWT type (a logout token included); its claims are checked by
/// whoever asked for it.
pub(crate) fn parse_signed(
    compact: &str,
    max_bytes: usize,
) -> Result<UnverifiedToken<'_>, AuthError> {
    if compact.len() > max_bytes {
        return Err(AuthError::TokenTooLarge { max: max_bytes });
    }
    let mut parts = compact.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed {
            what: "not three dot-separated parts",
        });
    };
    if signature.is_empty() {
        return Err(AuthError::Malformed {
            what: "empty signature",
        });
    }
    // A JOSE header is a JSON object (RFC 7515 §5.2); serde would also take an array.
    let header: Map<String, Value> = decode_json(header, "header is not base64url JSON")?;
    let header: RawHeader =
        serde_json::from_value(Value::Object(header)).map_err(|_| AuthError::Malformed {
            what: "header is not base64url JSON",
        })?;
    // We understand no JWS extension, so a `crit` header must be refused (RFC 7515 §4.1.11).
    if header.crit.is_some() {
        return Err(AuthError::Malformed {
            what: "header names critical extensions",
        });
    }
    // A token typed as something else (a logout token, a JWE) is not an access or ID token.
    if let Some(typ) = &header.typ {
        let upper = typ.to_ascii_uppercase();
        if upper != "JWT" && !upper.ends_with("+JWT") {
            return Err(AuthError::Malformed {
                what: "header typ is not a JWT",
            });
        }
    }
    let alg_name = header.alg.ok_or(AuthError::Malformed {
        what: "header has no alg",
    })?;
    let alg =
        Algorithm::from_name(&alg_name).ok_or(AuthError::AlgorithmNotAccepted { alg: alg_name })?;
    let claims: Map<String, Value> = decode_json(payload, "payload is not base64url JSON")?;
    let event_typ = header.typ.as_deref().is_some_and(|typ| {
        let lower = typ.to_ascii_lowercase();
        lower.ends_with("logout+jwt") || lower.ends_with("secevent+jwt")
    });
    Ok(UnverifiedToken {
        compact,
        alg,
        kid: header.kid,
        is_event: event_typ || claims.contains_key("events"),
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_that_is_an_array_is_not_a_jose_header() {
        let array_header = format!("{}.{}.c2ln", b64(r#"["RS256",""]"#), b64("{}"));
        assert_eq!(
            parse(&array_header, 4096).err(),
            Some(AuthError::Malformed {
                what: "header is not base64url JSON"
            })
        );
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn reads_alg_kid_and_claims() {
        let text = token(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"sub":"alice"}"#);
        let parsed = parse(&text, 4096);
        let parsed = parsed
            .as_ref()
            .map(|t| (t.alg, t.kid.as_deref(), t.claims.get("sub")));
        assert_eq!(
            parsed,
            Ok((Algorithm::ES256, Some("k1"), Some(&Value::from("alice"))))
        );
    }

    #[test]
    fn structural_attacks_are_refused_with_a_reason() {
        let cases: &[(&str, String, AuthError)] = &[
            (
                "alg none",
                token(r#"{"alg":"none"}"#, "{}"),
                AuthError::AlgorithmNotAccepted { alg: "none".into() },
            ),
            (
                "HMAC",
                token(r#"{"alg":"HS256"}"#, "{}"),
                AuthError::AlgorithmNotAccepted {
                    alg: "HS256".into(),
                },
            ),
            (
                "critical extension",
                token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, "{}"),
                AuthError::Malformed {
                    what: "header names critical extensions",
                },
            ),
            (
                "another token type",
                token(r#"{"alg":"RS256","typ":"logout+jwt-no"}"#, "{}"),
                AuthError::Malformed {
                    what: "header typ is not a JWT",
                },
            ),
            (
                "no alg",
                token(r#"{"kid":"x"}"#, "{}"),
                AuthError::Malformed {
                    what: "header has no alg",
                },
            ),
            (
                "two parts",
                "a.b".into(),
                AuthError::Malformed {
                    what: "not three dot-separated parts",
                },
            ),
            (
                "four parts",
                "a.b.c.d".into(),
                AuthError::Malformed {
                    what: "not three dot-separated parts",
                },
            ),
            (
                "unsigned",
                format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64("{}")),
                AuthError::Malformed {
                    what: "empty signature",
                },
            ),
            (
                "header not base64",
                "!!!.e30.c2ln".into(),
                AuthError::Malformed {
                    what: "header is not base64url JSON",
                },
            ),
            (
                "header not JSON",
                format!("{}.e30.c2ln", b64("not json")),
                AuthError::Malformed {
                    what: "header is not base64url JSON",
                },
            ),
            (
                "payload not JSON",
                format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("[1,")),
                AuthError::Malformed {
                    what: "payload is not base64url JSON",
                },
            ),
            (
                "payload an array",
                token(r#"{"alg":"RS256"}"#, "[]"),
                AuthError::Malformed {
                    what: "payload is not base64url JSON",
                },
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(
                parse(text, 4096).err().as_ref(),
                Some(expected),
                "case: {name}"
            );
        }
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let text = "a".repeat(5000);
        assert_eq!(
            parse(&text, 4096).err(),
            Some(AuthError::TokenTooLarge { max: 4096 })
        );
    }
}
