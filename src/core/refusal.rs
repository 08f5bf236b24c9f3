//! What the filter refuses, before the mode writes it down (`core::mode`): JSON with a
//! challenge for a program, a page for a person, or the apiserver's `Status`.

use url::form_urlencoded;

use crate::core::bearer::error::AuthError;
use crate::core::identity::Identity;

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A token fault, or no keys in time (`401`, `403`, `429`, `503`).
    Token(AuthError),
    /// The caller is known and the rules say no (`403`).
    Forbidden(Box<Forbidden>),
    /// A request the rules cannot judge safely (`400`); why, for the caller.
    BadRequest(String),
    /// No service lists the host (`403`).
    UnlistedHost,
    /// A client asked the apiserver to impersonate on its own (`403`).
    ClientImpersonates,
    /// An `auth_request` check of a request with a header only the proxy may set (`400`),
    /// the first such header named.
    SpoofedHeader(String),
}

/// A known caller the rules refuse: whom a person's page names, what a program's challenge
/// asks for, and the way out.
#[derive(Debug, PartialEq, Eq)]
pub struct Forbidden {
    pub(crate) shown: String,
    pub(crate) missing_scopes: Vec<String>,
    pub(crate) sign_out_path: Option<String>,
    /// Where "Switch account" goes: the login start asking the IdP to let the person pick
    /// another account, back to this path (hosts with sign-in only).
    pub(crate) switch_account: Option<String>,
}

impl Forbidden {
    /// `identity` refused: a person sees the name they know the account by.
    pub(crate) fn of(
        identity: &Identity,
        missing_scopes: Vec<String>,
        sign_out_path: Option<&str>,
    ) -> Self {
        let shown = identity
            .email
            .as_deref()
            .or(identity.preferred_username.as_deref())
            .unwrap_or(&identity.user);
        Forbidden {
            shown: shown.to_string(),
            missing_scopes,
            sign_out_path: sign_out_path.map(str::to_string),
            switch_account: None,
        }
    }

    /// With "Switch account": `start_path` with `prompt=select_account`, back to `path`.
    pub(crate) fn switching_at(mut self, start_path: &str, path: &str) -> Self {
        let rd: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
        self.switch_account = Some(format!("{start_path}?prompt=select_account&rd={rd}"));
        self
    }
}

impl Forbidden {
    /// What a program is told: which scopes were missing, or only that it may not pass.
    pub(crate) fn description(&self) -> String {
        if self.missing_scopes.is_empty() {
            return "access to this resource is not allowed".into();
        }
        format!(
            "the token lacks the scopes {}",
            self.missing_scopes.join(" ")
        )
    }
}

/// A refusal with the cookies its answer sets (a stale session cleared, a renewed one kept).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    pub(crate) set_cookies: Vec<String>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            refusal,
            set_cookies: Vec::new(),
        }
    }
}

impl From<AuthError> for Refused {
    fn from(error: AuthError) -> Refused {
        Refusal::Token(error).into()
    }
}

const NOT_A_SERVICE: &str = "no service protects this host";
const CLIENT_IMPERSONATES: &str = "impersonation headers are not allowed";

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u32 {
        match self {
            Refusal::Token(error) => error.status(),
            Refusal::BadRequest(_) | Refusal::SpoofedHeader(_) => 400,
            Refusal::Forbidden(_) | Refusal::UnlistedHost | Refusal::ClientImpersonates => 403,
        }
    }

    /// What went wrong, for the caller (never which rule refused).
    pub(crate) fn description(&self) -> String {
        match self {
            Refusal::Token(error) => error.to_string(),
            Refusal::Forbidden(forbidden) => forbidden.description(),
            Refusal::BadRequest(why) => why.clone(),
            Refusal::UnlistedHost => NOT_A_SERVICE.into(),
            Refusal::ClientImpersonates => CLIENT_IMPERSONATES.into(),
            Refusal::SpoofedHeader(first) => format!(
                "the request carries {first}, a header only the proxy may set \
                 (an identity header or a method override)"
            ),
        }
    }
}
