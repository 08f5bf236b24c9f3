//! Everything wasm-iap decides, as plain Rust: no proxy-wasm, time and randomness passed in.
//!
//! - `config`: the plugin configuration, parsed and checked once;
//! - `cluster`: the etcd store a fleet of replicas shares (requests, answers, keys, sealing);
//! - `keys`: issuers' signing keys (algorithms, JWKS, the shared record, fetching);
//! - `bearer`: bearer tokens (parsing, claims, the authenticator, its cache, its errors);
//! - `login`: browser sign-in (the flow, OIDC messages, sessions, refresh slots);
//! - `worker`: one VM's core, a door per proxy-wasm callback;
//! - `gateway`: one worker's decision about a request, in order, behind the `host` trait;
//! - `policy`: who may pass (hosts, routes, the normalised path, the rules);
//! - `mode`: how a request is answered (upstream, a forward-auth check, user info,
//!   Kubernetes impersonation), and how a refusal (`refusal`) is written;
//! - `revocation`: revoked sessions (sign-out, back-channel logout), shared by the workers;
//! - `log_text`: values from outside made safe for a log line; `access_log`: the record of a
//!   decision Envoy's access log prints;
//! - shared: identity, replies, sealed cookies, secrets, randomness, request headers, and
//!   the shared data all workers see.
pub mod access_log;
pub mod assertion;
pub mod bearer;
// Parts not called yet: revocation sync and server-side sessions come next (issue 18).
#[allow(dead_code)]
pub mod cluster;
pub mod config;
pub mod cookies;
pub(crate) mod forward;
pub mod gateway;
pub mod host;
pub mod hostname;
pub mod identity;
pub mod keys;
pub(crate) mod log_text;
pub mod login;
pub(crate) mod metric;
pub mod mode;
pub(crate) mod page;
pub mod policy;
pub mod random;
pub(crate) mod refusal;
pub mod reply;
pub mod request_headers;
pub mod revocation;
pub mod seal;
pub mod secret;
pub mod shared_data;
pub(crate) mod worker;
