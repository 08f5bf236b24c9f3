//! Helpers shared by the test tiers: minted tokens, and real Envoy with servers around it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod check;
pub mod config_corpus;
pub mod doc_examples;
pub mod envoy;
pub mod envoy_faulty_idp_bed;
pub mod envoy_idp_bed;
pub mod etcd;
pub mod fault_idp;
pub mod file_server;
pub mod fleet;
pub mod fleet_refusals;
pub mod host;
pub mod http;
pub mod idp;
pub mod kube;
pub mod kustomize;
pub mod looks;
pub mod mint;
pub mod native_bed;
pub mod native_fleet;
pub mod native_two_idps;
pub mod nginx;
pub mod props;
pub mod random;
pub mod raw;
pub mod registry;
pub mod servers;
pub mod shared;
pub mod two_idps_bed;
pub mod webdriver;

/// What a browser sends back for a `Set-Cookie` header: its `name=value` part.
pub fn sent_back(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or_default()
}

/// The value a `Set-Cookie` header sets.
pub fn cookie_value(set_cookie: &str) -> &str {
    sent_back(set_cookie)
        .split_once('=')
        .map_or("", |(_, value)| value)
}
