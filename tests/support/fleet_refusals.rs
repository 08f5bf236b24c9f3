//! Whether, and how soon after a revocation, the replicas of a fleet refuse a session's
//! cookie, as an API client sees it (`401`). Shared by tests/envoy_fleet_revocation.rs and
//! the bench's revocation propagation.

use std::time::{Duration, Instant};

use super::fleet::Fleet;
use super::http;

/// Requests per look at a replica, each on its own connection, so that every worker of the
/// replica answers some of them.
const PER_LOOK: usize = 8;
/// Time between two looks at a replica that still admits the cookie.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// The statuses of `PER_LOOK` parallel API requests to `replica` with the `Cookie` header
/// value `cookie`.
pub fn statuses(fleet: &Fleet, replica: usize, cookie: &str) -> Vec<u16> {
    let url = fleet.replica_url(replica, "/api/v1/query");
    std::thread::scope(|scope| {
        let looks: Vec<_> = (0..PER_LOOK)
            .map(|_| {
                scope.spawn(|| {
                    let headers = [("cookie", cookie), ("accept", "application/json")];
                    http::get(&url, &headers).status
                })
            })
            .collect();
        looks.into_iter().map(|l| l.join().unwrap()).collect()
    })
}

/// Whether every request of a look at `replica` got `401`.
pub fn refuses(fleet: &Fleet, replica: usize, cookie: &str) -> bool {
    statuses(fleet, replica, cookie).iter().all(|s| *s == 401)
}

/// Whether every request of a look at `replica` got `200`.
pub fn admits(fleet: &Fleet, replica: usize, cookie: &str) -> bool {
    statuses(fleet, replica, cookie).iter().all(|s| *s == 200)
}

/// For each of `replicas`, looked at in parallel: how long after `since` a whole look was
/// refused, or `None` when none was by `since + limit`.
pub fn refused_after(
    fleet: &Fleet,
    replicas: &[usize],
    cookie: &str,
    since: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    std::thread::scope(|scope| {
        let watches: Vec<_> = replicas
            .iter()
            .map(|&replica| {
                scope.spawn(move || loop {
                    if refuses(fleet, replica, cookie) {
                        return Some(since.elapsed());
                    }
                    if since.elapsed() > limit {
                        return None;
                    }
                    std::thread::sleep(LOOK_EVERY);
                })
            })
            .collect();
        watches.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// Milliseconds, for reports.
pub fn ms(took: Option<Duration>) -> String {
    took.map_or("not refused".into(), |d| format!("{} ms", d.as_millis()))
}
