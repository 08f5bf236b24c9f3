//! Helpers shared by the test tiers: minted tokens, and real Envoy with servers around it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod envoy;
pub mod http;
pub mod idp;
pub mod login_bed;
pub mod mint;
pub mod servers;
pub mod webdriver;
