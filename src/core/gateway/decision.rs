//! What deciding a request comes to: the adapter's `Decision`, the gateway's own `Ended`
//! before the exit writes it, and what a request under way keeps (`Judged`, `Pending`).

use std::rc::Rc;

use crate::core::config::idp::IdpId;
use crate::core::config::pages::Branding;
use crate::core::config::ServiceId;
use crate::core::forward::Forward;
use crate::core::host::Callout;
use crate::core::login::oidc::PendingLogin;
use crate::core::login::refresh::Lease;
use crate::core::login::session::Session;
use crate::core::mode::Mode;
use crate::core::policy::gate::Gate;
use crate::core::refusal::Refused;
use crate::core::reply::Reply;
use crate::core::request_headers::RequestHeaders;

/// What the adapter does with a request.
#[derive(Debug)]
pub enum Decision {
    /// Let it go upstream with these edits.
    Forward(Forward),
    /// Answer it here.
    Respond(Reply),
    /// A token-endpoint call is under way: hand its answer to `on_token_response`.
    Calling(Box<Pending>),
    /// Parked in the gateway: `settle` decides it again.
    Parked,
    /// Read the request's body, up to this many bytes, and hand it to `on_request_body`.
    ReadBody(usize),
}

/// The decision on a request, and the client-sent headers (named as the request names
/// them) to remove whatever it is.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub strip: Vec<&'a str>,
    pub decision: Decision,
}

/// Where a path through the gateway ended, before `exit` writes it for the mode.
#[derive(Debug)]
pub(crate) enum Ended {
    Forward(Forward),
    Answer(Reply),
    Refuse(Refused),
    Calling(Box<Pending>),
    Parked,
    ReadBody(usize),
    /// How a known caller's request ended, with its user for the decision's record.
    Caller(String, Box<Ended>),
}

impl<T: Into<Refused>> From<T> for Ended {
    fn from(refused: T) -> Ended {
        Ended::Refuse(refused.into())
    }
}

/// The rules a request answers to and how it is answered: found once, kept while it
/// waits for keys or a refresh.
#[derive(Clone, Debug)]
pub struct Judged {
    pub(crate) gate: Gate,
    pub(crate) mode: Mode,
    /// How its pages are branded: its service's `pages`.
    pub(crate) pages: Rc<Branding>,
    /// The request's `x-request-id`, when a page may show it.
    pub(crate) request_id: Option<Rc<str>>,
}

/// A token-endpoint call under way, with what finishing it needs.
pub enum Pending {
    Exchange {
        token: u32,
        service: ServiceId,
        login: PendingLogin,
        cookie_header: Option<String>,
        judged: Box<Judged>,
    },
    Refresh {
        /// `None` until the root sends it (on its next tick).
        token: Option<u32>,
        service: ServiceId,
        session: Box<Session>,
        lease: Lease,
        cookie_header: Option<String>,
        path: String,
        judged: Box<Judged>,
        /// Where the refresh stands in the fleet, with a cluster store.
        fleet: Fleet,
    },
    /// A server-side session's read or write.
    Stored {
        token: u32,
        service: ServiceId,
        judged: Box<Judged>,
        wait: StoredWait,
        /// The call, to send once more when its member did not answer (`None` after that).
        retry: Option<Box<Callout>>,
    },
}

/// A server-side session's read or write the request waits for (its own callout).
#[derive(Debug)]
pub enum StoredWait {
    /// The session of `handle` is read; the request is decided again with it.
    Load {
        handle: String,
        headers: RequestHeaders,
    },
    /// A new session is written under `handle`; the sign-in's answer waits for it, and
    /// `session` is what goes into the cookie instead when the store cannot take it.
    Save {
        handle: String,
        session: Box<Session>,
        reply: Reply,
        cookie_header: Option<String>,
    },
}

/// A refresh's standing in the fleet of replicas.
#[derive(Debug)]
pub enum Fleet {
    /// No cluster store: this Envoy's own lease is all there is.
    Alone,
    /// Asking the store for the fleet's lock under `key`; the token call waits here.
    /// `retried`: a lock call that got no answer is sent once more (another member).
    Locking {
        key: String,
        token_call: Box<Callout>,
        retried: bool,
    },
    /// Refreshing for the fleet: the outcome is published under `key` for the others.
    Publishing { key: String },
}

/// The session and cookies it carries are never printed.
impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, token, service) = match self {
            Pending::Exchange { token, service, .. } => ("Exchange", Some(*token), service),
            Pending::Refresh { token, service, .. } => ("Refresh", *token, service),
            Pending::Stored { token, service, .. } => ("Stored", Some(*token), service),
        };
        f.debug_struct(kind)
            .field("token", &token)
            .field("service", service)
            .finish_non_exhaustive()
    }
}

impl Pending {
    pub(crate) fn token(&self) -> Option<u32> {
        match self {
            Pending::Exchange { token, .. } | Pending::Stored { token, .. } => Some(*token),
            Pending::Refresh { token, .. } => *token,
        }
    }

    pub(crate) fn service(&self) -> ServiceId {
        let (Pending::Exchange { service, .. }
        | Pending::Refresh { service, .. }
        | Pending::Stored { service, .. }) = self;
        *service
    }

    /// The IdP of the sign-in or refresh under way (a store call's: the first).
    pub(crate) fn idp(&self) -> IdpId {
        match self {
            Pending::Exchange { login, .. } => login.idp,
            Pending::Refresh { session, .. } => session.idp,
            Pending::Stored { .. } => IdpId(0),
        }
    }

    pub(crate) fn judged(&self) -> &Judged {
        let (Pending::Exchange { judged, .. }
        | Pending::Refresh { judged, .. }
        | Pending::Stored { judged, .. }) = self;
        judged
    }
}
