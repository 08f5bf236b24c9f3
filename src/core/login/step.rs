//! What the sign-in flow reads from a request (`Request`) and what it decides (`Step`).

use std::rc::Rc;

use url::form_urlencoded;

use crate::core::config::login::Unauthenticated;
use crate::core::cookies;
use crate::core::identity::Identity;
use crate::core::login::oidc::{PendingLogin, TokenRequest};
use crate::core::login::request_kind::RequestHints;
use crate::core::login::session::Session;
use crate::core::refusal::Refused;
use crate::core::reply::Reply;
use crate::core::revocation::Entry;
use crate::core::secret::Secret;

/// The parts of a request the flow reads.
pub struct Request<'a> {
    /// `https` or `http`: Envoy's `:scheme` (never a client's `X-Forwarded-Proto`).
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
    pub cookie_header: Option<&'a str>,
    pub has_authorization: bool,
    pub hints: RequestHints<'a>,
    /// What the route says about requests without a session.
    pub unauthenticated: Unauthenticated,
    /// Whether a browser sent to log in may wait for the IdP's endpoints (first seconds after
    /// start) rather than get 503 at once.
    pub may_wait: bool,
}

impl Request<'_> {
    pub(super) fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(self.path)
    }

    /// Every value of query parameter `name`, in order.
    pub(super) fn query_params(&self, name: &str) -> Vec<String> {
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// The first value of query parameter `name`.
    pub(super) fn query_param(&self, name: &str) -> Option<String> {
        self.query_params(name).into_iter().next()
    }

    pub(super) fn cookies(&self) -> Vec<(&str, &str)> {
        self.cookie_header.map(cookies::parse).unwrap_or_default()
    }
}

/// A request that goes upstream under a session: with its identity, our cookies removed from
/// the `Cookie` header (`None`: remove the header), and these cookies set on the response.
/// Its `Authorization` header is always removed: the session is the identity, and a bearer
/// token nobody checked must not reach the upstream beside it.
pub struct Forwarding {
    pub identity: Rc<Identity>,
    pub cookie_header: Option<String>,
    pub set_cookies: Vec<String>,
    /// For `X-Auth-Request-Access-Token`, when the service passes it.
    pub access_token: Option<Secret>,
    /// For `Authorization: Bearer`, when the service sets it.
    pub id_token: Option<Secret>,
    /// The session's id, which a signed identity assertion's `sid` is derived from.
    pub session_sid: Secret,
}

/// Cookies hold sessions (ours and the upstream's): never printed.
impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("identity", &self.identity)
            .field(
                "cookie_header",
                &self.cookie_header.as_ref().map(|_| "[redacted]"),
            )
            .field("set_cookies", &self.set_cookies.len())
            .finish()
    }
}

#[derive(Debug)]
pub enum Step {
    /// A valid session: forward.
    Forward(Forwarding),
    /// The session's tokens expired and a refresh token is held: refresh, then forward.
    Refresh {
        session: Box<Session>,
        request: TokenRequest,
    },
    /// The IdP sent the browser back with a code: exchange it.
    Exchange {
        pending: PendingLogin,
        request: TokenRequest,
    },
    /// Answer here.
    Respond(Reply),
    /// Sign-out: answer here, and revoke the session it ended (when the request had one).
    SignOut { reply: Reply, revoke: Option<Entry> },
    /// No session, and not sent to log in: refused (`401`), written as the mode writes
    /// refusals.
    Refuse(Refused),
    /// No session: the browser goes to the IdP to sign in (this redirect).
    StartLogin(Reply),
    /// No session but an `Authorization` header: bearer validation decides.
    Bearer,
    /// A browser must be sent to log in, but the IdP's endpoints are not known yet: wait for
    /// discovery, then decide again.
    AwaitEndpoints,
    /// The session lives in the cluster store and this worker has not read it lately: read
    /// it (this handle), then decide again.
    LoadSession(String),
    /// A valid session whose activity is due to be recorded (`idle_timeout`): forward, and
    /// store this session again (a new cookie, or the cluster store under its handle).
    RecordActivity(Box<Session>),
    /// The session was unused for `idle_secs`, at least `idle_timeout`: it ended (logged
    /// and counted, `sid` its id's start), and the request goes on as one without it.
    SessionIdle {
        sid: String,
        idle_secs: u64,
        then: Box<Step>,
    },
}
