//! A login service's `idle_timeout`: a session unused that long ends.

use crate::core::config::reader::{ObjectReader, Problems};

/// Shortest `idle_timeout`: activity is recorded every tenth of it, and a worker may use a
/// server-side session read up to 30 s ago, so shorter would end sessions in use.
const MIN_IDLE_TIMEOUT_MS: u64 = 60_000;

/// `idle_timeout` in seconds, `None` when off (the default); between 1m and
/// `session_lifetime_secs`.
pub(crate) fn read_idle_timeout(
    r: &mut ObjectReader,
    session_lifetime_secs: u64,
    problems: &mut Problems,
) -> Option<u64> {
    let path = r.field_path("idle_timeout");
    r.value("idle_timeout")?;
    let ms = r.duration_millis("idle_timeout", 0, problems);
    if ms == 0 && problems.0.iter().any(|p| p.starts_with(&path)) {
        return None;
    }
    if ms < MIN_IDLE_TIMEOUT_MS {
        problems.add(&path, "must be at least 1m");
    } else if ms / 1000 > session_lifetime_secs {
        problems.add(
            &path,
            "must be at most session_lifetime: a session never lives longer",
        );
    }
    Some(ms / 1000)
}
