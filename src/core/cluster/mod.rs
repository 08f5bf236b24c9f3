//! The store a fleet of gateways shares (issue 18): etcd's v3 JSON gateway reached through
//! Envoy callouts. Requests are built and answers read here; nothing here sends anything.
//!
//! - `client`: one worker's leases, writes nobody waits for, and whether the store answers;
//! - `etcd`: the requests (range, put, create-if-absent, delete, lease grant);
//! - `etcd_answer`: etcd's answers as typed results or an `EtcdError`;
//! - `namespace`: keys under the configured prefix, one kind per sub-namespace, ids hashed;
//! - `revocation_sync`: revocations put in the store and read back by every worker;
//! - `sealed_value`: values sealed with a login service's keys, bound to their key;
//! - `stored_session`: server-side sessions: the handle a cookie carries, the session stored.
pub(crate) mod client;
pub mod etcd;
pub mod etcd_answer;
pub mod namespace;
pub(crate) mod revocation_sync;
pub mod sealed_value;
pub mod stored_session;
