//! Issue 18 end to end: headless Chromium signs in through a plain round-robin front over two
//! gateway replicas, then keeps using a dashboard page whose API calls go out in parallel and
//! alternate between the replicas, over several token expiries, and signs out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::envoy_idp_bed::COOKIE;
use support::etcd::EtcdCluster;
use support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use support::http;
use support::webdriver::Chrome;

const REPLICAS: usize = 2;
const TOKEN_TTL_SECS: u64 = 3;
const EXPIRIES: usize = 4;
const USER: &str = "alice@example.com";
const DASHBOARD: &str = "/dashboard";
const API_PATHS: [&str; 4] = [
    "/api/v1/query?query=up",
    "/api/v1/labels",
    "/api/v1/targets",
    "/api/v1/alerts",
];

/// The dashboard's script, run on the page the upstream answered for `DASHBOARD` (its JSON
/// echo, shown by Chromium in a `<pre>`): it reads who the page was served for, then fetches
/// `API_PATHS` in parallel as a single-page app does (redirects not followed, so a trip to
/// the IdP shows as a status), draws a table of the answers and calls `done` with them.
/// `window.dashboard.poll()` fetches and draws again, as the page's auto-refresh.
fn dashboard_script() -> String {
    let paths = serde_json::to_string(&API_PATHS).unwrap();
    format!(
        r#"
const paths = {paths};
const userOf = (echo) => ((echo.headers || {{}})['x-auth-request-user'] || [null])[0];
const pageUser = userOf(JSON.parse(document.querySelector('pre').textContent));
const cell = (row, text) => {{ const td = row.insertCell(); td.textContent = text; }};
const draw = (results) => {{
  document.title = 'Fleet dashboard';
  const h1 = document.createElement('h1');
  h1.textContent = 'Signed in as ' + pageUser;
  const table = document.createElement('table');
  table.border = 1;
  const head = table.insertRow();
  ['API path', 'status', 'served for'].forEach((t) => cell(head, t));
  results.forEach((r) => {{ const row = table.insertRow(); [r.path, r.status, r.user].forEach((t) => cell(row, t)); }});
  const when = document.createElement('p');
  when.textContent = 'Loaded ' + new Date().toISOString();
  document.body.replaceChildren(h1, table, when);
  document.body.style.fontFamily = 'sans-serif';
  return {{ pageUser, results }};
}};
const poll = () => Promise.all(paths.map((path) =>
  fetch(path, {{ headers: {{ 'X-Requested-With': 'XMLHttpRequest' }}, redirect: 'manual' }})
    .then(async (r) => ({{ path, status: r.status, user: r.status === 200 ? userOf(await r.json()) : null }}))
    .catch((e) => ({{ path, status: 0, user: String(e) }}))
)).then(draw);
window.dashboard = {{ poll }};
poll().then(done);
"#
    )
}

/// The requests the front has sent to each replica so far (its `/clusters` admin page).
fn sent_to_replicas(fleet: &Fleet) -> Vec<u64> {
    let clusters = http::get(
        &format!("http://127.0.0.1:{}/clusters", fleet.front.admin_port),
        &[],
    );
    fleet
        .replicas
        .iter()
        .map(|replica| {
            let key = format!("upstream::127.0.0.1:{}::rq_total::", replica.port);
            clusters
                .body
                .lines()
                .find_map(|line| line.strip_prefix(&key)?.trim().parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// Every API answer of a dashboard draw was `200` for `USER`, and the page itself too.
fn assert_shows_the_user(drawn: &Value, when: &str) {
    assert_eq!(drawn["pageUser"], json!(USER), "{when}: {drawn}");
    for result in drawn["results"].as_array().expect("results") {
        assert_eq!(
            (&result["status"], &result["user"]),
            (&json!(200), &json!(USER)),
            "{when}: {drawn}"
        );
    }
}

/// Loads the dashboard through the front: the browser stays on it (no trip to the IdP), the
/// navigation is answered `200`, and every API call on it shows the user.
fn load_dashboard(fleet: &Fleet, chrome: &Chrome, when: &str) {
    let url = fleet.front_url(DASHBOARD);
    chrome.go(&url);
    assert_eq!(chrome.url(), url, "{when}: still on the dashboard");
    let status = chrome.run("return performance.getEntriesByType('navigation')[0].responseStatus");
    assert_eq!(status, json!(200), "{when}: {}", chrome.text());
    let drawn = chrome.run_async(&dashboard_script());
    assert_shows_the_user(&drawn, when);
}

fn token_calls(fleet: &Fleet, grant: &str, outcome: &str) -> u64 {
    fleet.idp_counts()[grant][outcome].as_u64().unwrap_or(0)
}

/// What the IdP's token endpoint answered for refreshes during one expiry.
#[derive(Clone, Debug, PartialEq)]
struct Refreshes {
    ok: u64,
    invalid_grant: u64,
}

/// Signs `USER` in through the front with the IdP's form, then, at each of `EXPIRIES` token
/// expiries, lets the open dashboard poll (its parallel API calls are the first requests
/// after the expiry and go to both replicas) and reloads it. The user is never sent back to
/// the IdP and every page and API answer shows them. Leaves a screenshot of the last
/// dashboard as `target/screenshots/<screenshot>.png`; returns the refreshes per expiry.
fn browse_through_expiries(fleet: &Fleet, chrome: &Chrome, screenshot: &str) -> Vec<Refreshes> {
    chrome.go(&fleet.front_url(DASHBOARD));
    chrome.sign_in_at_idp(&fleet.idp.issuer, USER, &fleet.front_url("/"));
    let dashboard = fleet.front_url(DASHBOARD);
    chrome.wait_for_url("the dashboard", |u| u == dashboard);
    load_dashboard(fleet, chrome, "after signing in");
    let sign_ins = token_calls(fleet, "authorization_code", "ok");
    assert_eq!(sign_ins, 1, "{}", fleet.idp_counts());

    let mut refreshes = Vec::new();
    for expiry in 1..=EXPIRIES {
        std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS + 1));
        let when = format!("expiry {expiry}");
        let (ok, refused) = (
            token_calls(fleet, "refresh_token", "ok"),
            token_calls(fleet, "refresh_token", "invalid_grant"),
        );
        let sent = sent_to_replicas(fleet);
        let drawn = chrome.run_async("window.dashboard.poll().then(done)");
        assert_shows_the_user(&drawn, &format!("{when}, the page's poll"));
        let after = sent_to_replicas(fleet);
        assert!(
            sent.iter().zip(&after).all(|(b, a)| a > b),
            "{when}: the poll's calls went to every replica: {sent:?} -> {after:?}"
        );
        load_dashboard(fleet, chrome, &format!("{when}, reloaded"));
        refreshes.push(Refreshes {
            ok: token_calls(fleet, "refresh_token", "ok") - ok,
            invalid_grant: token_calls(fleet, "refresh_token", "invalid_grant") - refused,
        });
    }
    assert_eq!(
        token_calls(fleet, "authorization_code", "ok"),
        sign_ins,
        "never signed in again: {}",
        fleet.idp_counts()
    );

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = chrome.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots.join(format!("{screenshot}.png")), png).unwrap();
    refreshes
}

/// Sign-out through the front (the service ends the IdP's session too): the browser lands
/// on the IdP's sign-out confirmation, which names the front as where to go next; once
/// confirmed, the front has no session for it and sends it to the IdP's login form, and so
/// does a reload of the dashboard. The upstream serves nothing meanwhile.
fn sign_out_through_the_front(fleet: &Fleet, chrome: &Chrome) {
    let hits = fleet.upstream.hits();
    chrome.go(&fleet.front_url("/oauth2/sign_out"));
    let at_idp = chrome.wait_for_url("the IdP's sign-out page", |u| {
        u.starts_with(&fleet.idp.issuer)
    });
    assert!(
        chrome.has("button[autofocus]") && !chrome.has("input[name=login]"),
        "the IdP asks to confirm the sign-out at {at_idp}: {}",
        chrome.text()
    );
    let next = url::Url::parse(&at_idp)
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "post_logout_redirect_uri")
        .map(|(_, value)| value.into_owned());
    assert_eq!(next, Some(fleet.front_url("/")), "{at_idp}");
    assert!(
        !chrome.cookies().iter().any(|c| c["name"] == COOKIE),
        "the session cookie is gone"
    );
    chrome.click("button[autofocus]");
    let login_form = |u: &str| u.starts_with(&fleet.idp.issuer) && chrome.has("input[name=login]");
    chrome.wait_for_url("the IdP's login form after signing out", login_form);
    chrome.go(&fleet.front_url(DASHBOARD));
    chrome.wait_for_url("the IdP's login form on reload", login_form);
    assert_eq!(fleet.upstream.hits(), hits, "the upstream served nothing");
    assert!(!chrome.cookies().iter().any(|c| c["name"] == COOKIE));
}

/// The fleet as issue 18 wants it run: two replicas with the cluster store on a 3-member
/// etcd, an IdP that revokes the whole token family when a refresh token is used twice. One
/// refresh per expiry for the fleet, none refused.
#[test]
fn a_browser_through_two_replicas_with_the_store_stays_signed_in_over_expiries() {
    let etcd = EtcdCluster::start(3);
    let ttl = TOKEN_TTL_SECS.to_string();
    let fleet = Fleet::start_plugin(
        REPLICAS,
        &[("REFRESH_ROTATION", "family"), ("TOKEN_TTL", &ttl)],
        vec![etcd_cluster(&etcd.client_ports())],
        |issuer| plugin_with_store(issuer, &json!({ "end_idp_session": true }), "/e2e-fleet"),
    );
    let chrome = Chrome::start();
    let refreshes = browse_through_expiries(&fleet, &chrome, "fleet-dashboard");
    let once = Refreshes {
        ok: 1,
        invalid_grant: 0,
    };
    assert_eq!(refreshes, vec![once; EXPIRIES], "refreshes per expiry");
    sign_out_through_the_front(&fleet, &chrome);
}

/// Without a store, with one-use refresh tokens: both replicas refresh at each expiry and
/// the loser's refresh is refused, but the grace rule keeps the browser's session, so the
/// user notices nothing and the winner's session carries on to the next expiry.
#[test]
fn a_browser_through_two_replicas_without_a_store_is_carried_by_the_grace_rule() {
    let ttl = TOKEN_TTL_SECS.to_string();
    let fleet = Fleet::start(
        REPLICAS,
        &json!({ "end_idp_session": true }),
        &[("REFRESH_ROTATION", "strict"), ("TOKEN_TTL", &ttl)],
    );
    let chrome = Chrome::start();
    let refreshes = browse_through_expiries(&fleet, &chrome, "fleet-dashboard-grace");
    let tolerated: u64 = fleet
        .replicas
        .iter()
        .filter_map(|r| r.prometheus_metric("wasm_iap_refresh_refusals_tolerated"))
        .sum();
    // Both replicas refreshed at every expiry (the poll reached both with the same cookie):
    // one accepted, the other refused and tolerated.
    let raced = Refreshes {
        ok: 1,
        invalid_grant: 1,
    };
    assert_eq!(
        (refreshes, tolerated),
        (vec![raced; EXPIRIES], EXPIRIES as u64),
        "refreshes per expiry, refusals tolerated"
    );
    sign_out_through_the_front(&fleet, &chrome);
}
