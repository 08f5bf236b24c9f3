//! Why a sign-in failed, and the one place that turns that into the page a person sees.
//! `Display` is the log line (never a secret); `reply` is the answer.

use std::fmt;

use crate::core::bearer::error::AuthError;
use crate::core::log_text::Escaped;
use crate::core::reply::{self, LogNote, Reply, Severity};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LoginError {
    /// The IdP sent the browser back with `error=` (the user said no, or a setup problem).
    IdpRefused {
        error: String,
        description: Option<String>,
        /// Whether the callback carries the state of a login this browser started (else
        /// anyone may have sent it, and it is not worth a log line at info).
        started_here: bool,
    },
    MissingCodeOrState,
    /// `state` is not of the shape we generate: forged, truncated or injected.
    MalformedState,
    /// No login cookie for this state (or one sealed for another state): expired, replayed,
    /// or another browser's login.
    UnknownState,
    /// The callback's `iss` (RFC 9207) names another issuer than the login's IdP: a mix-up.
    IssuerMismatch,
    TookTooLong,
    CodeRefused(String),
    TokenEndpointFailed(String),
    TokenEndpointGarbage,
    TokenEndpointUnreachable,
    NoIdToken,
    IdTokenRejected(AuthError),
    /// The host gave no randomness: nothing may be sealed or named with guessable values.
    NoRandomness,
    LoginStateNotSealed,
    SessionNotStored,
    /// Discovery has not answered yet (IdP down, or a wait that ran out).
    EndpointsUnknown,
    /// Server-side sessions: the cluster store does not answer.
    SessionStoreUnavailable,
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::IdpRefused {
                error, description, ..
            } => {
                write!(f, "the IdP refused the sign-in: {}", Escaped(error))?;
                match description {
                    Some(d) => write!(f, " ({})", Escaped(d)),
                    None => Ok(()),
                }
            }
            LoginError::MissingCodeOrState => f.write_str("callback without code or state"),
            LoginError::MalformedState => f.write_str("callback state is malformed"),
            LoginError::UnknownState => {
                f.write_str("no login in flight for this state (expired, replayed or foreign)")
            }
            LoginError::IssuerMismatch => {
                f.write_str("the callback's iss names another issuer than the login's IdP (mix-up)")
            }
            LoginError::TookTooLong => f.write_str("the login took longer than login_timeout"),
            LoginError::CodeRefused(why) => {
                write!(f, "the IdP refused the code: {}", Escaped(why))
            }
            LoginError::TokenEndpointFailed(why) => {
                write!(f, "token endpoint failed: {}", Escaped(why))
            }
            LoginError::TokenEndpointGarbage => f.write_str("token endpoint answered garbage"),
            LoginError::TokenEndpointUnreachable => f.write_str("token endpoint cannot be reached"),
            LoginError::NoIdToken => f.write_str("the IdP returned no ID token"),
            LoginError::IdTokenRejected(e) => write!(f, "ID token rejected: {e}"),
            LoginError::NoRandomness => f.write_str("no randomness from the host"),
            LoginError::LoginStateNotSealed => f.write_str("the login state could not be sealed"),
            LoginError::SessionNotStored => f.write_str("the session could not be sealed"),
            LoginError::EndpointsUnknown => f.write_str("the IdP's endpoints are not known yet"),
            LoginError::SessionStoreUnavailable => {
                f.write_str("the cluster store holding sessions does not answer")
            }
        }
    }
}

impl LoginError {
    pub(crate) fn status(&self) -> u32 {
        match self {
            LoginError::IdpRefused { .. } => 403,
            LoginError::MissingCodeOrState
            | LoginError::MalformedState
            | LoginError::UnknownState
            | LoginError::IssuerMismatch
            | LoginError::TookTooLong => 400,
            LoginError::CodeRefused(_) | LoginError::IdTokenRejected(_) => 401,
            LoginError::TokenEndpointFailed(_)
            | LoginError::TokenEndpointGarbage
            | LoginError::TokenEndpointUnreachable
            | LoginError::NoIdToken => 502,
            LoginError::NoRandomness
            | LoginError::LoginStateNotSealed
            | LoginError::SessionNotStored => 500,
            LoginError::EndpointsUnknown | LoginError::SessionStoreUnavailable => 503,
        }
    }

    /// How loud the log line is: a client can send bad callbacks at will.
    pub(crate) fn severity(&self) -> Severity {
        match self {
            LoginError::MissingCodeOrState
            | LoginError::MalformedState
            | LoginError::UnknownState
            | LoginError::TookTooLong
            | LoginError::IdpRefused {
                started_here: false,
                ..
            } => Severity::Debug,
            LoginError::IdpRefused {
                started_here: true, ..
            }
            | LoginError::IssuerMismatch
            | LoginError::CodeRefused(_) => Severity::Info,
            LoginError::TokenEndpointFailed(_)
            | LoginError::TokenEndpointGarbage
            | LoginError::TokenEndpointUnreachable
            | LoginError::NoIdToken
            | LoginError::IdTokenRejected(_)
            | LoginError::EndpointsUnknown
            | LoginError::SessionStoreUnavailable => Severity::Warn,
            LoginError::NoRandomness
            | LoginError::LoginStateNotSealed
            | LoginError::SessionNotStored => Severity::Error,
        }
    }

    /// The page a person sees: a terminal page, never a redirect, so a failure cannot loop.
    pub(crate) fn reply(&self, set_cookies: Vec<String>) -> Reply {
        let (title, message) = self.title_and_message();
        let mut page = reply::page(self.status(), title, &message, set_cookies);
        if matches!(
            self,
            LoginError::EndpointsUnknown | LoginError::SessionStoreUnavailable
        ) {
            page.headers.push(("retry-after".into(), "1".into()));
        }
        page.reason = Some(LogNote {
            severity: self.severity(),
            text: self.to_string(),
        });
        page
    }

    /// What the page says: its title, and a sentence on what happened.
    fn title_and_message(&self) -> (&'static str, String) {
        match self {
            LoginError::IdpRefused {
                error, description, ..
            } => (
                "Sign-in refused",
                format!(
                    "The identity provider refused the sign-in: {error}{}.",
                    description
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            ),
            LoginError::MissingCodeOrState => (
                "Sign-in failed",
                "The callback carries no code or state.".into(),
            ),
            LoginError::MalformedState | LoginError::UnknownState => (
                "Sign-in expired",
                "This sign-in has expired or was already completed.".into(),
            ),
            LoginError::IssuerMismatch => (
                "Sign-in failed",
                "The sign-in was answered by another identity provider than the one it started with. Start again.".into(),
            ),
            LoginError::TookTooLong => (
                "Sign-in expired",
                "The sign-in took too long. Start again.".into(),
            ),
            LoginError::CodeRefused(why) => (
                "Sign-in failed",
                format!("The identity provider refused the code: {why}."),
            ),
            LoginError::TokenEndpointFailed(why) => (
                "Sign-in failed",
                format!("The identity provider's token endpoint failed: {why}."),
            ),
            LoginError::TokenEndpointGarbage => (
                "Sign-in failed",
                "The identity provider's token endpoint answered garbage.".into(),
            ),
            LoginError::TokenEndpointUnreachable => (
                "Sign-in failed",
                "The identity provider's token endpoint cannot be reached.".into(),
            ),
            LoginError::NoIdToken => (
                "Sign-in failed",
                "The identity provider returned no ID token.".into(),
            ),
            LoginError::IdTokenRejected(e) => {
                ("Sign-in failed", format!("The ID token was rejected: {e}."))
            }
            LoginError::NoRandomness => ("Sign-in unavailable", "No randomness available.".into()),
            LoginError::LoginStateNotSealed => (
                "Sign-in failed",
                "The login state could not be sealed.".into(),
            ),
            LoginError::SessionNotStored => {
                ("Sign-in failed", "The session could not be stored.".into())
            }
            LoginError::EndpointsUnknown => (
                "Sign-in unavailable",
                "The identity provider's endpoints are not known yet. Try again in a moment."
                    .into(),
            ),
            LoginError::SessionStoreUnavailable => (
                "Sign-in unavailable",
                "Sessions cannot be read right now. Try again in a moment.".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_idp_sent_cannot_break_the_log_line() {
        let error = LoginError::IdpRefused {
            error: "access_denied\r\nforged: line".into(),
            description: Some("x".repeat(1000)),
            started_here: true,
        };
        let line = error.to_string();
        assert!(!line.contains('\n') && !line.contains('\r') && line.len() < 500);
        assert_eq!(error.reply(vec![]).status, 403);
    }
}
