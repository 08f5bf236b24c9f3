//! Small typed ids for the configured providers and login services.

/// A provider: its place in `Settings::providers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderId(pub usize);

/// A login service: its place in `Settings::login`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceId(pub(crate) usize);
