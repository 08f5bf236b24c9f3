//! Registered-claim checks (RFC 7519 §4.1) against an injected clock.

use serde_json::{Map, Value};

use crate::core::bearer::error::AuthError;

/// What one issuer's tokens must satisfy.
#[derive(Clone, Debug)]
pub struct ClaimRules {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub clock_skew_secs: u64,
    pub require_expiry: bool,
    /// ID tokens must carry `iat` (OIDC Core §2); access tokens need not.
    pub require_issued_at: bool,
}

/// A NumericDate: seconds since the epoch, fractions allowed and dropped.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(|secs| Some(secs as u64))
            .ok_or(AuthError::Malformed {
                what: "time claim is not a number",
            }),
    }
}

fn audience_matches(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), AuthError> {
    let matches = |aud: &str| accepted.iter().any(|a| a == aud);
    match claims.get("aud") {
        None => Err(AuthError::MissingClaim {
            claim: "aud".into(),
        }),
        Some(Value::String(aud)) if matches(aud) => Ok(()),
        Some(Value::Array(auds)) if auds.iter().filter_map(Value::as_str).any(matches) => Ok(()),
        Some(_) => Err(AuthError::WrongAudience),
    }
}

/// Checks `iss`, `aud`, `exp`, `nbf` and `iat`; returns the expiry for caching decisions.
pub fn check(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now_secs: u64,
) -> Result<Option<u64>, AuthError> {
    match claims.get("iss").and_then(Value::as_str) {
        None => {
            return Err(AuthError::MissingClaim {
                claim: "iss".into(),
            })
        }
        Some(iss) if iss != rules.issuer => return Err(AuthError::UntrustedIssuer),
        Some(_) => {}
    }
    let skew = rules.clock_skew_secs;
    let exp = numeric_date(claims, "exp")?;
    match exp {
        None if rules.require_expiry => {
            return Err(AuthError::MissingClaim {
                claim: "exp".into(),
            })
        }
        Some(exp) if now_secs >= exp.saturating_add(skew) => return Err(AuthError::Expired),
        _ => {}
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now_secs.saturating_add(skew)) {
        return Err(AuthError::NotYetValid);
    }
    match numeric_date(claims, "iat")? {
        None if rules.require_issued_at => {
            return Err(AuthError::MissingClaim {
                claim: "iat".into(),
            })
        }
        Some(iat) if iat > now_secs.saturating_add(skew) => return Err(AuthError::IssuedInFuture),
        _ => {}
    }
    audience_matches(claims, &rules.audiences)?;
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://dex.example.com".into(),
            audiences: vec!["prometheus".into(), "grafana".into()],
            clock_skew_secs: 60,
            require_expiry: true,
            require_issued_at: false,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": "https://dex.example.com",
            "aud": "prometheus",
            "exp": NOW + 300,
            "iat": NOW - 10,
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        base.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn claim_table() {
        let cases: Vec<(&str, Value, Result<(), AuthError>)> = vec![
            ("valid token", json!({}), Ok(())),
            (
                "audience in a list",
                json!({"aud": ["other", "grafana"]}),
                Ok(()),
            ),
            (
                "expired within skew still passes",
                json!({"exp": NOW - 30}),
                Ok(()),
            ),
            (
                "expired beyond skew",
                json!({"exp": NOW - 61}),
                Err(AuthError::Expired),
            ),
            (
                "expired exactly at skew edge",
                json!({"exp": NOW - 60}),
                Err(AuthError::Expired),
            ),
            (
                "fractional exp is read",
                json!({"exp": (NOW + 10) as f64 + 0.5}),
                Ok(()),
            ),
            (
                "exp as a string",
                json!({"exp": "tomorrow"}),
                Err(AuthError::Malformed {
                    what: "time claim is not a number",
                }),
            ),
            (
                "no exp when required",
                json!({"exp": null}),
                Err(AuthError::MissingClaim {
                    claim: "exp".into(),
                }),
            ),
            (
                "nbf in the future",
                json!({"nbf": NOW + 120}),
                Err(AuthError::NotYetValid),
            ),
            ("nbf within skew", json!({"nbf": NOW + 30}), Ok(())),
            (
                "iat far in the future",
                json!({"iat": NOW + 3600}),
                Err(AuthError::IssuedInFuture),
            ),
            (
                "wrong issuer",
                json!({"iss": "https://evil.example.com"}),
                Err(AuthError::UntrustedIssuer),
            ),
            (
                "issuer with trailing slash is another issuer",
                json!({"iss": "https://dex.example.com/"}),
                Err(AuthError::UntrustedIssuer),
            ),
            (
                "no issuer",
                json!({"iss": null}),
                Err(AuthError::MissingClaim {
                    claim: "iss".into(),
                }),
            ),
            (
                "wrong audience",
                json!({"aud": "alertmanager"}),
                Err(AuthError::WrongAudience),
            ),
            (
                "audience list without ours",
                json!({"aud": ["a", "b"]}),
                Err(AuthError::WrongAudience),
            ),
            (
                "audience of wrong type",
                json!({"aud": 7}),
                Err(AuthError::WrongAudience),
            ),
            (
                "no audience",
                json!({"aud": null}),
                Err(AuthError::MissingClaim {
                    claim: "aud".into(),
                }),
            ),
        ];
        for (name, extra, expected) in cases {
            let result = check(&claims(extra), &rules(), NOW).map(|_| ());
            assert_eq!(result, expected, "case: {name}");
        }
    }

    #[test]
    fn id_token_without_iat_is_refused() {
        let id_token_rules = ClaimRules {
            require_issued_at: true,
            ..rules()
        };
        assert_eq!(
            check(&claims(json!({"iat": null})), &id_token_rules, NOW),
            Err(AuthError::MissingClaim {
                claim: "iat".into()
            })
        );
        assert!(check(&claims(json!({"iat": null})), &rules(), NOW).is_ok());
    }

    #[test]
    fn expiry_is_optional_when_configured_so() {
        let lenient = ClaimRules {
            require_expiry: false,
            ..rules()
        };
        assert_eq!(
            check(&claims(json!({"exp": null})), &lenient, NOW),
            Ok(None)
        );
    }
}
