//! Why an issuer's keys (or its discovery document) could not be had; the text is the log
//! line and the configuration problem.

use std::fmt;

use crate::core::log_text::Escaped;

/// Which document of the IdP a fetch asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Discovery,
    Jwks,
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Document::Discovery => "discovery",
            Document::Jwks => "JWKS",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysError {
    JwksNotJson {
        detail: String,
    },
    NoKeysArray,
    NoUsableKey {
        keys: usize,
    },
    JwksNotUtf8,
    NoAnswer {
        document: Document,
    },
    TooLarge {
        document: Document,
        max: usize,
    },
    Status {
        document: Document,
        status: u32,
    },
    DiscoveryNotJson,
    WrongIssuer {
        announced: String,
        expected: String,
    },
    NotHttpUrl {
        field: String,
        value: String,
    },
    NoJwksUri,
    /// The callout could not be sent through the cluster.
    Unreachable {
        cluster: String,
        detail: String,
    },
    UnknownProvider,
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeysError::JwksNotJson { detail } => {
                write!(f, "JWKS is not JSON: {}", Escaped(detail))
            }
            KeysError::NoKeysArray => f.write_str("JWKS has no \"keys\" array"),
            KeysError::NoUsableKey { keys } => write!(
                f,
                "JWKS holds no usable signing key ({keys} keys, none fit the allowed algorithms)"
            ),
            KeysError::JwksNotUtf8 => f.write_str("JWKS is not UTF-8"),
            KeysError::NoAnswer { document } => {
                write!(f, "{document} request failed or timed out")
            }
            KeysError::TooLarge { document, max } => {
                write!(f, "{document} larger than {max} bytes")
            }
            KeysError::Status { document, status } => {
                write!(f, "{document} answered HTTP {status}")
            }
            KeysError::DiscoveryNotJson => f.write_str("discovery document is not JSON"),
            KeysError::WrongIssuer {
                announced,
                expected,
            } => write!(
                f,
                "discovery document names issuer \"{}\", not \"{}\"",
                Escaped(announced),
                Escaped(expected)
            ),
            KeysError::NotHttpUrl { field, value } => {
                write!(
                    f,
                    "discovery {} \"{}\" is not an http(s) URL",
                    Escaped(field),
                    Escaped(value)
                )
            }
            KeysError::NoJwksUri => f.write_str("discovery document has no jwks_uri"),
            KeysError::Unreachable { cluster, detail } => {
                write!(
                    f,
                    "cannot call cluster \"{}\": {}",
                    Escaped(cluster),
                    Escaped(detail)
                )
            }
            KeysError::UnknownProvider => f.write_str("no such provider"),
        }
    }
}
