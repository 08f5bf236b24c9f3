//! Server-side sessions (`session_store: "cluster"`) with real Envoy replicas, a real etcd
//! and the real IdP: a user with 200 groups and both tokens kept signs in behind NGINX's
//! default buffers; a session opens, is refreshed and ends across replicas; and what a user
//! sees while the whole store is down, as `session_store_outage` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::browser::Browser;
use support::envoy_idp_bed::{logged_in_at, login_plugin, COOKIE};
use support::etcd::EtcdCluster;
use support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use support::http;
use support::nginx::Nginx;
use support::servers::free_port;
use wasm_iap::core::login::session::is_session_cookie;

const USER: &str = "sam@example.com";
const PREFIX: &str = "/server-sessions";
/// A handle's cookie is a few hundred bytes at most, whatever the session holds.
const SMALL_COOKIE: usize = 400;

fn groups(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("myorg:team-{i:03}")).collect()
}

/// The `name=value` bytes of the session cookies a browser holds.
fn session_cookie_bytes(browser: &Browser) -> usize {
    browser
        .jar
        .iter()
        .filter(|c| is_session_cookie(&c.name, COOKIE))
        .map(|c| c.name.len() + 1 + c.value.len())
        .sum()
}

/// An API request with the cookies `browser` holds.
fn api(browser: &Browser, url: &str) -> http::Response {
    let cookie = browser.cookie_header(url).unwrap_or_default();
    http::get(url, &[("cookie", &cookie), ("accept", "application/json")])
}

/// A browser's page request with the cookies `browser` holds (not followed).
fn page(browser: &Browser, url: &str) -> http::Response {
    let cookie = browser.cookie_header(url).unwrap_or_default();
    http::get(url, &[("cookie", &cookie), ("accept", "text/html")])
}

fn echoed_user(response: &http::Response) -> Value {
    response.json()["headers"]["x-auth-request-user"].clone()
}

/// The groups the upstream got, from its one `x-auth-request-groups` header (comma-joined).
fn echoed_groups(response: &http::Response) -> Vec<String> {
    let values = response.echoed_header("x-auth-request-groups");
    match values.as_deref() {
        Some([joined]) => joined.split(',').map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Whether a response sets (or clears) one of the session cookies.
fn sets_session_cookie(response: &http::Response) -> bool {
    response.headers.iter().any(|(name, value)| {
        let cookie_name = support::sent_back(value).split('=').next().unwrap_or("");
        name.eq_ignore_ascii_case("set-cookie") && is_session_cookie(cookie_name, COOKIE)
    })
}

/// Server-side sessions the store holds under `prefix`, as etcd's JSON gateway counts them.
fn stored_sessions(etcd: &EtcdCluster, prefix: &str) -> u64 {
    let b64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let body = json!({
        "key": b64(format!("{prefix}/sessions/")),
        "range_end": b64(format!("{prefix}/sessions0")),
        "count_only": true,
    });
    let url = format!("http://127.0.0.1:{}/v3/kv/range", etcd.client_ports()[0]);
    let answer = http::request("POST", &url, &[], Some(&body.to_string()));
    assert_eq!(answer.status, 200, "etcd range: {answer:?}");
    answer.json()["count"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Calls `check` every 100 ms until it holds or `within` is over; whether it held.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// --- 200 groups behind NGINX -------------------------------------------------------------

/// What signing in through NGINX came to.
struct ThroughNginx {
    /// The callback's status as the browser got it from NGINX.
    callback: u16,
    /// The next request's answer, when the sign-in ended on the deep link.
    next: Option<http::Response>,
    cookie_bytes: usize,
    nginx_log: String,
}

impl ThroughNginx {
    fn report(&self) -> String {
        format!(
            "callback {}; next request {:?}; groups upstream {}; session cookies {} bytes\nNGINX: {}",
            self.callback,
            self.next.as_ref().map(|r| r.status),
            self.next.as_ref().map_or(0, |r| echoed_groups(r).len()),
            self.cookie_bytes,
            self.nginx_log
                .lines()
                .filter(|l| l.contains("[error]"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

/// A user with 200 groups, both tokens kept (`pass_access_token`, `set_authorization_header`),
/// signs in through NGINX (default buffers) in front of one replica whose login service has
/// `session_store`; with `etcd`, the replica's cluster store is on it.
fn sign_in_behind_nginx(session_store: &str, etcd: Option<&EtcdCluster>) -> ThroughNginx {
    let nginx_port = free_port();
    let users = json!({ USER: { "groups": groups(200) } }).to_string();
    // The IdP sends the browser back through NGINX only.
    let callback = format!("http://127.0.0.1:{nginx_port}/oauth2/callback");
    let idp_env = [
        ("IDP_USERS", users.as_str()),
        ("REDIRECT_URIS", callback.as_str()),
    ];
    let login = json!({
        "session_store": session_store,
        "pass_access_token": true,
        "set_authorization_header": true,
    });
    let clusters = etcd.map_or_else(Vec::new, |e| vec![etcd_cluster(&e.client_ports())]);
    let fleet = Fleet::start_plugin(1, &idp_env, clusters, |issuer| match etcd {
        Some(_) => plugin_with_store(issuer, &login, PREFIX),
        None => login_plugin(issuer, &json!({}), &login),
    });
    let iap = format!("127.0.0.1:{}", fleet.replicas[0].port);
    let nginx = Nginx::start("reverse-proxy.conf.tmpl", nginx_port, &[("IAP", iap)]);
    let url = format!("http://127.0.0.1:{nginx_port}/dashboards/7?tab=2");
    let mut browser = Browser::default();
    let at_idp = browser.get(&url);
    assert!(
        at_idp.0.starts_with(&fleet.idp.issuer),
        "sent to the IdP through NGINX: {:#?} {}",
        browser.history,
        at_idp.1.body
    );
    let (landed, _) = browser.log_in_at_idp(at_idp, USER);
    let callback = browser
        .history
        .iter()
        .find(|(u, _)| u.contains("/oauth2/callback"))
        .map(|(_, status)| *status)
        .unwrap_or_else(|| panic!("no callback: {:#?}", browser.history));
    let next = (landed == url).then(|| api(&browser, &url));
    ThroughNginx {
        callback,
        next,
        cookie_bytes: session_cookie_bytes(&browser),
        nginx_log: nginx.error_log(),
    }
}

#[test]
fn a_user_with_200_groups_and_both_tokens_signs_in_behind_nginx_default_buffers_with_server_side_sessions(
) {
    let etcd = EtcdCluster::start(1);
    let signed_in = sign_in_behind_nginx("cluster", Some(&etcd));
    let report = signed_in.report();
    assert_eq!(signed_in.callback, 302, "{report}");
    let next = signed_in.next.as_ref().expect(&report);
    assert_eq!(next.status, 200, "{report}");
    assert_eq!(echoed_groups(next), groups(200), "{report}");
    let bearer = next.echoed_header("authorization").unwrap_or_default();
    assert!(
        bearer.len() == 1 && bearer[0].starts_with("Bearer ey"),
        "the ID token reaches the app: {bearer:?}"
    );
    let access = next
        .echoed_header("x-auth-request-access-token")
        .unwrap_or_default();
    assert_eq!(access.len(), 1, "the access token reaches the app");
    assert!(
        signed_in.cookie_bytes < SMALL_COOKIE,
        "the cookie carries only a handle: {report}"
    );
    assert_eq!(
        stored_sessions(&etcd, PREFIX),
        1,
        "the session is in the store"
    );
}

/// The control: the same user and settings with sessions in cookies cannot sign in behind
/// NGINX's defaults (issue 18): the sign-in fails, or the app gets the groups cut.
#[test]
fn the_same_sign_in_with_sessions_in_cookies_fails_behind_nginx_default_buffers() {
    let signed_in = sign_in_behind_nginx("cookie", None);
    let report = signed_in.report();
    // NGINX refuses the callback's `Set-Cookie` headers (several KB of session chunks)...
    let too_big =
        signed_in.callback == 502 && signed_in.nginx_log.contains("upstream sent too big header");
    // ...or a session made to fit lost groups on the way.
    let groups_cut = signed_in
        .next
        .as_ref()
        .is_some_and(|next| next.status != 200 || echoed_groups(next) != groups(200));
    assert!(
        too_big || groups_cut,
        "sessions in cookies should not carry this sign-in: {report}"
    );
}

// --- across replicas ---------------------------------------------------------------------

const TOKEN_TTL_SECS: u64 = 3;

fn refreshes(fleet: &Fleet, outcome: &str) -> u64 {
    fleet.idp_counts()["refresh_token"][outcome]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_server_side_session_opens_is_refreshed_and_ends_across_replicas() {
    let etcd = EtcdCluster::start(3);
    let ttl = TOKEN_TTL_SECS.to_string();
    let fleet = Fleet::start_plugin(
        2,
        &[("REFRESH_ROTATION", "strict"), ("TOKEN_TTL", &ttl)],
        vec![etcd_cluster(&etcd.client_ports())],
        |issuer| {
            // Sign-out ends the IdP's session too, with the ID token as a hint.
            let login = json!({ "session_store": "cluster", "end_idp_session": true });
            plugin_with_store(issuer, &login, PREFIX)
        },
    );
    let (browser, landed) = logged_in_at(&fleet.replica_url(0, "/"), &fleet.idp.issuer, USER);
    assert_eq!(echoed_user(&landed), json!([USER]));
    let cookie = browser.cookie_header(&fleet.replica_url(0, "/")).unwrap();
    assert!(session_cookie_bytes(&browser) < SMALL_COOKIE, "{cookie}");
    assert_eq!(stored_sessions(&etcd, PREFIX), 1);

    // Replica 1 never saw the session: it reads it from the store.
    let there = api(&browser, &fleet.replica_url(1, "/api"));
    assert_eq!(there.status, 200, "{there:?}");
    assert_eq!(echoed_user(&there), json!([USER]));

    // The tokens expire: one refresh for the fleet, the cookie stays as it is, and the
    // session goes on on both replicas.
    std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS + 1));
    for replica in [0, 1, 0, 1] {
        let response = api(&browser, &fleet.replica_url(replica, "/api"));
        assert_eq!(response.status, 200, "replica {replica}: {response:?}");
        assert!(
            !sets_session_cookie(&response),
            "replica {replica} kept the cookie: {response:?}"
        );
    }
    assert_eq!(
        (refreshes(&fleet, "ok"), refreshes(&fleet, "invalid_grant")),
        (1, 0),
        "one refresh for the fleet: {}",
        fleet.idp_counts()
    );
    // A worker that reads the session now gets the renewed one, not the expired one.
    for _ in 0..6 {
        let response = api(&browser, &fleet.replica_url(1, "/api"));
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_eq!(refreshes(&fleet, "ok"), 1, "{}", fleet.idp_counts());

    // Sign-out on replica 1: the copied cookie is refused on replica 0 within 2 s.
    let signed_out = http::get(
        &fleet.replica_url(1, "/oauth2/sign_out"),
        &[("cookie", &cookie)],
    );
    assert_eq!(signed_out.status, 302, "{signed_out:?}");
    let location = signed_out.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&fleet.idp.issuer) && location.contains("id_token_hint="),
        "the IdP's end-session endpoint, with the hint read from the store: {location}"
    );
    let copied = [("cookie", cookie.as_str()), ("accept", "application/json")];
    let started = Instant::now();
    let refused = eventually(Duration::from_secs(2), || {
        http::get(&fleet.replica_url(0, "/api"), &copied).status == 401
    });
    assert!(
        refused,
        "the copied cookie still opens the session on replica 0 after {:?}",
        started.elapsed()
    );
    let again = http::get(&fleet.replica_url(1, "/api"), &copied);
    assert_eq!(again.status, 401, "{again:?}");
    assert_eq!(stored_sessions(&etcd, PREFIX), 0, "deleted from the store");
}

// --- the whole store down ----------------------------------------------------------------

/// Two replicas with server-side sessions, their store on a 3-member etcd.
fn outage_fleet(etcd: &EtcdCluster, outage: &str) -> Fleet {
    let login = json!({ "session_store": "cluster", "session_store_outage": outage });
    Fleet::start_plugin(2, &[], vec![etcd_cluster(&etcd.client_ports())], |issuer| {
        plugin_with_store(issuer, &login, PREFIX)
    })
}

/// A browser signed in on `replica`, landed with `200`.
fn signed_in_on(fleet: &Fleet, replica: usize) -> Browser {
    let (browser, landed) = logged_in_at(&fleet.replica_url(replica, "/"), &fleet.idp.issuer, USER);
    assert_eq!(landed.status, 200, "{landed:?}");
    browser
}

/// Until the store answers again: the session of `browser`, stored before the outage, opens
/// on `replica` (read from the store).
fn heals(fleet: &Fleet, browser: &Browser, replica: usize) {
    let url = fleet.replica_url(replica, "/api");
    let healed = eventually(Duration::from_secs(10), || api(browser, &url).status == 200);
    assert!(
        healed,
        "the store came back, the session did not: {:?}",
        api(browser, &url)
    );
}

#[test]
fn with_the_store_down_read_sessions_go_on_for_a_while_and_others_get_sign_in_unavailable() {
    let mut etcd = EtcdCluster::start(3);
    let fleet = outage_fleet(&etcd, "unavailable");
    let browser = signed_in_on(&fleet, 0);
    // Enough requests that both of replica 0's workers have read the session.
    for _ in 0..20 {
        let response = api(&browser, &fleet.replica_url(0, "/api"));
        assert_eq!(response.status, 200, "{response:?}");
    }

    etcd.kill_all();
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(3) {
        let response = api(&browser, &fleet.replica_url(0, "/api"));
        assert_eq!(response.status, 200, "read before the outage: {response:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Replica 1 never read it: it cannot, and says so.
    let there = page(&browser, &fleet.replica_url(1, "/"));
    assert_eq!(there.status, 503, "{there:?}");
    assert!(there.body.contains("Sign-in unavailable"), "{}", there.body);
    // A new sign-in cannot store its session either.
    let mut newcomer = Browser::default();
    let at_idp = newcomer.get(&fleet.replica_url(1, "/"));
    let (_, answer) = newcomer.log_in_at_idp(at_idp, "tara@example.com");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("Sign-in unavailable"),
        "{}",
        answer.body
    );
    // Past the cache time (30 s) replica 0 must read the session again, and cannot.
    let after_cache = Duration::from_secs(31);
    std::thread::sleep(after_cache.saturating_sub(killed.elapsed()));
    let later = page(&browser, &fleet.replica_url(0, "/"));
    assert_eq!(later.status, 503, "kept past its cache time: {later:?}");

    etcd.restart_all();
    heals(&fleet, &browser, 1);
    let after = signed_in_on(&fleet, 1);
    assert!(
        session_cookie_bytes(&after) < SMALL_COOKIE,
        "server-side again"
    );
    assert_eq!(stored_sessions(&etcd, PREFIX), 2);
}

#[test]
fn with_the_store_down_and_sign_in_on_outage_users_sign_in_again_into_cookies() {
    let mut etcd = EtcdCluster::start(3);
    let fleet = outage_fleet(&etcd, "sign_in");
    let stored = signed_in_on(&fleet, 0);
    assert!(session_cookie_bytes(&stored) < SMALL_COOKIE);
    assert_eq!(stored_sessions(&etcd, PREFIX), 1);

    etcd.kill_all();
    // Replica 1 cannot read the session: the browser is sent to sign in.
    let there = page(&stored, &fleet.replica_url(1, "/"));
    assert_eq!(there.status, 302, "{there:?}");
    let location = there.header("location").unwrap_or_default();
    assert!(location.starts_with(&fleet.idp.issuer), "{location}");
    // A sign-in during the outage keeps its session in the cookie, and it opens everywhere.
    let during = signed_in_on(&fleet, 1);
    assert!(
        session_cookie_bytes(&during) > SMALL_COOKIE,
        "the session itself is in the cookie: {} bytes",
        session_cookie_bytes(&during)
    );
    for replica in [0, 1] {
        let response = api(&during, &fleet.replica_url(replica, "/api"));
        assert_eq!(response.status, 200, "replica {replica}: {response:?}");
        assert_eq!(echoed_user(&response), json!([USER]));
    }

    etcd.restart_all();
    heals(&fleet, &stored, 1);
    let after = signed_in_on(&fleet, 1);
    assert!(
        session_cookie_bytes(&after) < SMALL_COOKIE,
        "server-side again"
    );
    assert_eq!(stored_sessions(&etcd, PREFIX), 2);
    let still = api(&during, &fleet.replica_url(0, "/api"));
    assert_eq!(still.status, 200, "the cookie session goes on: {still:?}");
}
