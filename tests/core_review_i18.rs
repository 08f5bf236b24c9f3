//! Issue 18 under attack, natively: replicas over a real etcd (or over answers written
//! here, for what a real etcd would not say), server-side sessions read back for a check,
//! leases that etcd no longer knows, revocations that must outlive what they revoke, and
//! answers no etcd should give.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use support::etcd::EtcdCluster;
use support::host::Call;
use support::http;
use support::mint::{self, shared_keys};
use support::native_bed::*;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::Decision;
use wasm_iap::core::host::Host;
use wasm_iap::core::login::oidc::PendingLogin;
use wasm_iap::core::login::session::Session;
use wasm_iap::core::reply::Reply;
use wasm_iap::core::secret::Secret;

const HOST: &str = "grafana.example.com";
const OTHER_HOST: &str = "prometheus.example.com";

fn prefix(test: &str) -> String {
    format!("/review-{test}-{}-{}", std::process::id(), mint::now_secs())
}

fn grafana(extra: Value) -> Value {
    login_service(HOST, "grafana", "_grafana", extra)
}

fn store(prefix: &str) -> Value {
    json!({ "etcd": { "cluster": "etcd", "prefix": prefix, "timeout": "2s" } })
}

/// A replica (its own shared data, so its own Envoy) whose store calls go to etcd on `port`.
struct Node {
    bed: Bed,
    port: u16,
    /// Calls already answered.
    answered: HashSet<u32>,
}

impl Node {
    fn new(config: &Value, port: u16) -> Node {
        Node {
            bed: Bed::new(config),
            port,
            answered: HashSet::new(),
        }
    }

    /// A node whose leases are granted (ticks a second apart until `/ready` says OK).
    fn started(config: &Value, port: u16) -> Node {
        let mut node = Node::new(config, port);
        for _ in 0..10 {
            node.tick();
            let ready = node.bed.get(HOST, "/ready", &[]);
            if matches!(&ready, Decision::Respond(r) if r.body.trim() == "OK") {
                return node;
            }
            node.bed.host.advance(1_100);
        }
        panic!("the store never granted the node's leases")
    }

    fn to_etcd(&self, call: &Call) -> (Option<u32>, Vec<u8>) {
        let path = call.url.splitn(4, '/').nth(3).unwrap_or_default();
        let answer = http::request_within(
            "POST",
            &format!("http://127.0.0.1:{}/{path}", self.port),
            &[("content-type", "application/json")],
            Some(&call.body),
            Duration::from_secs(2),
        );
        (Some(u32::from(answer.status)), answer.body.into_bytes())
    }

    /// Sends the store calls the root made (nobody's request waits on them) to etcd.
    fn pump(&mut self) {
        let calls: Vec<Call> = self.bed.host.calls.clone();
        for call in calls {
            if call.cluster != "etcd" || !self.answered.insert(call.token) {
                continue;
            }
            let (status, body) = self.to_etcd(&call);
            let gateway = &mut self.bed.gateway;
            gateway.on_settled_call_response(&mut self.bed.host, call.token, status, &body);
        }
    }

    /// The tick: leases, revocations to publish, a sync; and the sync's answer taken in.
    fn tick(&mut self) {
        self.bed.tick();
        self.pump();
        self.bed.gateway.sync_revocations(&mut self.bed.host);
    }

    /// A decision waiting on its own store call (a server-side session's read or write):
    /// the call answered by etcd, until the request is decided.
    fn resolve(&mut self, context: u32, mut decision: Decision) -> Decision {
        while let Decision::Calling(pending) = decision {
            let call = self.bed.host.calls.last().cloned().expect("a call");
            assert_eq!(call.cluster, "etcd", "waits on the store: {call:?}");
            self.answered.insert(call.token);
            let (status, body) = self.to_etcd(&call);
            decision = self.bed.gateway.on_token_response(
                &mut self.bed.host,
                context,
                *pending,
                call.token,
                status,
                &body,
            );
        }
        decision
    }

    /// A request decided whole: waits on the store answered.
    fn get(&mut self, authority: &str, path: &str, extra: &[(&str, &str)]) -> Decision {
        let decision = self.bed.get(authority, path, extra);
        let context = self.bed.last_context();
        self.resolve(context, decision)
    }
}

fn cookie_config(prefix: &str) -> Value {
    json!({
        "providers": [provider()],
        "login": [grafana(json!({}))],
        "cluster_store": store(prefix),
    })
}

fn signed_in_session() -> Session {
    let now = mint::now_secs();
    Session {
        sid: format!("sid-{now}"),
        user: "alice-id".into(),
        signed_in_at: now - 10,
        expires_at: now + 3600,
        refresh_at: now + 3600,
        ..Session::default()
    }
}

/// Whether a program's request with `cookie` goes upstream on `node`.
fn passes(node: &mut Node, cookie: &str) -> bool {
    match node.get(HOST, "/api", &[("cookie", cookie), JSON]) {
        Decision::Forward(_) => true,
        Decision::Respond(reply) if reply.status == 401 => false,
        other => panic!("expected forwarded or 401, got {other:?}"),
    }
}

/// Every lease etcd holds, revoked (an etcd restored from a backup, or rebuilt, knows none
/// of the leases the replicas were granted).
fn revoke_every_lease(port: u16) {
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let leases = http::request("POST", &url("/v3/lease/leases"), &[], Some("{}")).json();
    let ids: Vec<String> = leases["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ID"].as_str().map(str::to_string))
        .collect();
    assert!(!ids.is_empty(), "the replicas hold leases: {leases}");
    for id in ids {
        let body = json!({ "ID": id }).to_string();
        let revoked = http::request("POST", &url("/v3/lease/revoke"), &[], Some(&body));
        assert_eq!(revoked.status, 200, "{revoked:?}");
    }
}

/// A lease etcd no longer knows (`requested lease not found`) is given up at once and a new
/// one asked for: a sign-out made after it still reaches the other replicas within seconds,
/// not only once the old lease's third is over (three hours for revocations).
#[test]
fn a_lease_etcd_lost_is_granted_anew_and_a_sign_out_still_reaches_the_other_replica() {
    let etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let config = cookie_config(&prefix("lost-lease"));
    let mut a = Node::started(&config, port);
    let mut b = Node::started(&config, port);
    let cookie = a.bed.session_cookie(0, &signed_in_session());
    assert!(passes(&mut b, &cookie));
    revoke_every_lease(port);
    let signed_out = responded(a.get(HOST, "/oauth2/sign_out", &[("cookie", &cookie)]));
    assert_eq!(signed_out.status, 302);
    a.pump();
    for _ in 0..5 {
        a.bed.host.advance(1_000);
        b.bed.host.advance(1_000);
        a.tick();
        a.tick();
        b.tick();
        b.tick();
    }
    assert!(
        !passes(&mut b, &cookie),
        "the sign-out on A never reached B: A keeps putting it with a lease etcd lost"
    );
}

/// What answering a lease grant with `ttl` (and the ID `id`) makes of a node: the grant's
/// answer as etcd 3.4 writes it.
fn lease_answer(id: u64, ttl: &str) -> String {
    json!({ "header": { "revision": "7" }, "ID": id.to_string(), "TTL": ttl }).to_string()
}

/// A node's tick, its lease grants answered with the TTL asked for: each lease granted so
/// far, by ID, with when it was granted and its TTL (unix seconds).
fn tick_granting(
    bed: &mut Bed,
    leases: &mut HashMap<String, (u64, u64)>,
    answered: &mut HashSet<u32>,
) {
    bed.tick();
    let grants: Vec<Call> = bed
        .host
        .calls
        .iter()
        .filter(|c| c.url.ends_with("/v3/lease/grant") && !answered.contains(&c.token))
        .cloned()
        .collect();
    for grant in grants {
        answered.insert(grant.token);
        let asked: Value = serde_json::from_str(&grant.body).unwrap();
        let ttl = asked["TTL"].as_str().unwrap().to_string();
        let id = 100 + leases.len() as u64;
        let answer = lease_answer(id, &ttl);
        let now_secs = bed.host.now_ms() / 1000;
        let gateway = &mut bed.gateway;
        gateway.on_settled_call_response(&mut bed.host, grant.token, Some(200), answer.as_bytes());
        leases.insert(id.to_string(), (now_secs, ttl.parse().unwrap()));
    }
}

/// A revocation must stay in the store as long as the session it revokes could be used:
/// a replica started later reads it from there. The long lease it is put with must not end
/// before that.
#[test]
fn a_revocation_is_put_with_a_lease_that_outlives_the_session_it_revokes() {
    let config = cookie_config("/review-lease-life");
    let mut bed = Bed::new(&config);
    let (mut leases, mut answered) = (HashMap::new(), HashSet::new());
    tick_granting(&mut bed, &mut leases, &mut answered);
    // The longest lease is the one revocations are put with (default lifetime: 8 h).
    let record_ttl = leases.values().map(|(_, ttl)| *ttl).max().unwrap();
    // Later, but before this worker asks for a new lease by the old rule (a third of its
    // TTL): a session signed in a minute ago (valid for nearly 8 more hours) signs out.
    bed.host.advance((record_ttl / 3 - 60) * 1000);
    let now = bed.host.now_ms() / 1000;
    let session = Session {
        sid: "sid-late".into(),
        user: "alice-id".into(),
        signed_in_at: now - 60,
        expires_at: now - 60 + 8 * 3600,
        refresh_at: now + 3600,
        ..Session::default()
    };
    let cookie = bed.session_cookie(0, &session);
    let signed_out = responded(bed.get(HOST, "/oauth2/sign_out", &[("cookie", &cookie)]));
    assert_eq!(signed_out.status, 302);
    for _ in 0..3 {
        bed.host.advance(100);
        tick_granting(&mut bed, &mut leases, &mut answered);
    }
    let put = bed
        .host
        .calls
        .iter()
        .find(|c| c.url.ends_with("/v3/kv/put"))
        .expect("the revocation is put in the store");
    let body: Value = serde_json::from_str(&put.body).unwrap();
    let (granted_at, ttl) = leases[body["lease"].as_str().unwrap()];
    let lease_ends = granted_at + ttl;
    assert!(
        lease_ends >= session.expires_at,
        "the revocation leaves the store {} s before the session it revokes expires",
        session.expires_at - lease_ends
    );
}

/// etcd's answers are read without trusting them: an int64 at its edge is an answer like
/// another, never a panic (debug builds check arithmetic), nor a lease that never ends.
#[test]
fn int64_edges_in_etcds_answers_are_no_panic() {
    let config = cookie_config("/review-edges");
    let mut bed = Bed::new(&config);
    bed.tick();
    let grants: Vec<Call> = bed.host.calls.clone();
    for grant in grants.iter().filter(|c| c.url.ends_with("/v3/lease/grant")) {
        let answer = lease_answer(5, &i64::MAX.to_string());
        let gateway = &mut bed.gateway;
        gateway.on_settled_call_response(&mut bed.host, grant.token, Some(200), answer.as_bytes());
    }
    bed.host.advance(2_000);
    bed.gateway.sync_revocations(&mut bed.host);
    let sync = bed
        .host
        .calls
        .iter()
        .rev()
        .find(|c| c.url.ends_with("/v3/kv/range"))
        .cloned()
        .expect("a sync");
    let max = i64::MAX.to_string();
    let answer = json!({ "header": { "revision": max }, "more": false }).to_string();
    let gateway = &mut bed.gateway;
    gateway.on_settled_call_response(&mut bed.host, sync.token, Some(200), answer.as_bytes());
    let answer = json!({
        "header": { "revision": "9" },
        "kvs": [{ "key": "eA==", "mod_revision": max, "value": "eA==" }],
        "more": true,
    })
    .to_string();
    bed.host.advance(2_000);
    bed.gateway.sync_revocations(&mut bed.host);
    let sync = bed.host.calls.last().cloned().expect("another sync");
    let gateway = &mut bed.gateway;
    gateway.on_settled_call_response(&mut bed.host, sync.token, Some(200), answer.as_bytes());
    assert!(passes_cookie_mode(&mut bed));
}

fn passes_cookie_mode(bed: &mut Bed) -> bool {
    let cookie = bed.session_cookie(0, &signed_in_session());
    matches!(
        bed.get(HOST, "/api", &[("cookie", &cookie), JSON]),
        Decision::Forward(_)
    )
}

/// What a browser does against a server-side session.
impl Node {
    /// A request whose session this worker must read from the store first (it read it
    /// more than 30 s ago): decided once the store answered.
    fn get_after_reading(
        &mut self,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Decision {
        self.bed.host.advance(31_000);
        let decision = self.bed.get(authority, path, extra);
        assert!(
            matches!(decision, Decision::Calling(_)),
            "reads the session: {decision:?}"
        );
        let context = self.bed.last_context();
        self.resolve(context, decision)
    }

    /// Signs in through the IdP (its answer written here): the cookies a browser keeps.
    fn sign_in(&mut self) -> String {
        let started = responded(self.bed.get(HOST, "/dash", &BROWSER));
        assert_eq!(started.status, 302, "{started:?}");
        let login_cookie = started
            .set_cookies()
            .find(|c| c.contains("_login_"))
            .expect("a login cookie")
            .to_string();
        let plain = self.bed.gateway.settings().login[0]
            .idps
            .first()
            .sealer
            .open("login", support::cookie_value(&login_cookie))
            .expect("opens");
        let pending: PendingLogin = serde_json::from_slice(&plain).unwrap();
        let callback = format!("/oauth2/callback?code=c0de&state={}", pending.state);
        let mut headers = BROWSER.to_vec();
        let sent_back = support::sent_back(&login_cookie).to_string();
        headers.push(("cookie", &sent_back));
        let exchange = self.bed.get(HOST, &callback, &headers);
        let context = self.bed.last_context();
        let Decision::Calling(exchange) = exchange else {
            panic!("the code is exchanged: {exchange:?}")
        };
        let token_call = self.bed.host.calls.last().cloned().unwrap();
        assert_eq!(token_call.cluster, "dex");
        let claims = mint::claims_with(ISSUER, "grafana", json!({ "nonce": pending.nonce }));
        let id_token = shared_keys().signer("RS256").sign(&claims);
        let answer = json!({ "id_token": id_token, "expires_in": 3600 }).to_string();
        let decision = self.bed.gateway.on_token_response(
            &mut self.bed.host,
            context,
            *exchange,
            token_call.token,
            Some(200),
            answer.as_bytes(),
        );
        let signed_in = responded(self.resolve(context, decision));
        assert_eq!(signed_in.status, 302, "{signed_in:?}");
        signed_in
            .set_cookies()
            .filter(|c| c.starts_with("_grafana") && !c.contains("Max-Age=0"))
            .map(|c| support::sent_back(c).to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn header_of<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.header(name).unwrap_or_default()
}

fn server_side_config(prefix: &str, endpoints: Value) -> Value {
    json!({
        "providers": [provider()],
        "login": [grafana(json!({ "session_store": "cluster" }))],
        "cluster_store": store(prefix),
        "endpoints": endpoints,
    })
}

/// A forward-auth check whose server-side session this worker has not read yet is decided
/// again once the store answered: with the request it was about, not with what is left of
/// it after the wait (`X-Original-URL` and `X-Original-Method` for NGINX's `auth_request`).
#[test]
fn an_auth_request_check_of_a_server_side_session_is_judged_by_its_original_url() {
    let etcd = EtcdCluster::start(1);
    let config = server_side_config(&prefix("check"), json!({ "trust_original_url": true }));
    let mut node = Node::started(&config, etcd.client_ports()[0]);
    let cookie = node.sign_in();
    let check = [
        ("cookie", cookie.as_str()),
        ("x-original-url", "https://grafana.example.com/dash"),
        ("x-original-method", "GET"),
    ];
    let reply = responded(node.get_after_reading(HOST, "/oauth2/auth", &check));
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(header_of(&reply, "x-auth-request-user"), "alice-id");
}

/// Envoy's `ext_authz` leaves the client's headers on the request to the app: the check's
/// answer names those of stripped families for Envoy to remove, whatever their spelling. A
/// session read from the store first must not lose them.
#[test]
fn an_ext_authz_check_of_a_server_side_session_still_removes_what_the_client_spoofed() {
    let etcd = EtcdCluster::start(1);
    let config = server_side_config(&prefix("ext-authz"), json!({}));
    let mut node = Node::started(&config, etcd.client_ports()[0]);
    let cookie = node.sign_in();
    let check = [
        ("cookie", cookie.as_str()),
        ("x_auth_request_groups", "admins"),
    ];
    let reply = responded(node.get_after_reading(HOST, "/oauth2/auth/dash", &check));
    assert_eq!(reply.status, 200, "{reply:?}");
    let removed = header_of(&reply, "x-envoy-auth-headers-to-remove");
    assert!(
        removed.split(',').any(|n| n == "x_auth_request_groups"),
        "the client's own spelling must be removed: {removed:?}"
    );
}

/// A login service added in front of the list (a new app in the next release): the
/// revocations already in the store, sealed with the former first service's keys, must
/// still be read by replicas with the new configuration.
#[test]
fn a_replica_whose_first_login_service_differs_still_reads_the_fleets_revocations() {
    let etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let prefix = prefix("first-service");
    let before = cookie_config(&prefix);
    let after = json!({
        "providers": [provider()],
        "login": [
            login_service(OTHER_HOST, "prometheus", "_prometheus", json!({})),
            grafana(json!({})),
        ],
        "cluster_store": store(&prefix),
    });
    let mut old = Node::started(&before, port);
    let cookie = old.bed.session_cookie(0, &signed_in_session());
    let signed_out = responded(old.get(HOST, "/oauth2/sign_out", &[("cookie", &cookie)]));
    assert_eq!(signed_out.status, 302);
    for _ in 0..3 {
        old.bed.host.advance(1_000);
        old.tick();
    }
    let mut new = Node::started(&after, port);
    for _ in 0..3 {
        new.bed.host.advance(1_000);
        new.tick();
        new.tick();
    }
    assert!(
        !passes(&mut new, &cookie),
        "a session signed out before the rollout opens again on the new replica"
    );
}

/// Every problem of the configuration is named where it is: a `cluster_store` with a
/// problem of its own is not also reported missing.
#[test]
fn a_wrong_cluster_store_is_not_also_reported_missing() {
    let config = json!({
        "providers": [provider()],
        "login": [grafana(json!({ "session_store": "cluster" }))],
        "cluster_store": { "etcd": { "prefix": "/x" } },
    });
    let problems = Settings::parse(&config.to_string())
        .err()
        .unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("cluster_store.etcd.cluster")),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("needs a cluster_store")),
        "the cluster_store is there, only wrong: {problems:#?}"
    );
}

/// Whoever can write etcd cannot forge a lock value, but can put back one it saw: a
/// "held" lock of a session whose refresh the IdP refused keeps every other replica going
/// on with the old session (no refresh, no end) for as long as the cookie lives, far past
/// `refresh_race_grace`.
#[test]
fn a_held_lock_put_back_by_an_etcd_writer_does_not_keep_a_refused_session_alive() {
    let etcd = EtcdCluster::start(1);
    let port = etcd.client_ports()[0];
    let prefix = prefix("held-replay");
    let config = cookie_config(&prefix);
    let mut a = Node::started(&config, port);
    let mut b = Node::started(&config, port);
    let now = mint::now_secs();
    let session = Session {
        sid: format!("sid-held-{now}"),
        user: "alice-id".into(),
        signed_in_at: now - 7200,
        expires_at: now + 3600,
        // Expired two minutes ago: past the default one-minute grace.
        refresh_at: now - 120,
        refresh_token: Some(Secret::new("rt-1")),
        ..Session::default()
    };
    let cookie = a.bed.session_cookie(0, &session);
    // A takes the fleet's lock; the writer copies the lock's value as it is now.
    let headers = [("cookie", cookie.as_str()), JSON];
    assert!(matches!(
        a.bed.get(HOST, "/api", &headers),
        Decision::Parked
    ));
    assert!(a.bed.gateway.settle(&mut a.bed.host, None).is_empty());
    a.pump();
    let url = format!("http://127.0.0.1:{port}/v3/kv/range");
    let key = STANDARD.encode(format!("{prefix}/refresh/"));
    let end = STANDARD.encode(format!("{prefix}/refresh0"));
    let range = json!({ "key": key, "range_end": end });
    let held = http::request("POST", &url, &[], Some(&range.to_string())).json();
    let kv = held["kvs"][0].clone();
    assert!(kv.is_object(), "the lock is in the store: {held}");
    // The IdP refuses the refresh (the user was disabled): A ends the session, publishes it.
    let token_call = a
        .bed
        .host
        .calls
        .iter()
        .rev()
        .find(|c| c.cluster == "dex")
        .unwrap()
        .token;
    let refused = json!({ "error": "invalid_grant" }).to_string();
    let answered = a.bed.gateway.on_settled_call_response(
        &mut a.bed.host,
        token_call,
        Some(400),
        refused.as_bytes(),
    );
    let (_, ended) = answered.expect("the refresh's request");
    assert_eq!(responded(ended).status, 401);
    a.tick();
    // The writer puts the "held" value back, on no lease.
    let put = json!({ "key": kv["key"], "value": kv["value"] });
    let url = format!("http://127.0.0.1:{port}/v3/kv/put");
    assert_eq!(
        http::request("POST", &url, &[], Some(&put.to_string())).status,
        200
    );
    // Minutes later, B still goes on with the refused session.
    for _ in 0..3 {
        b.bed.host.advance(60_000);
        b.tick();
    }
    let decision = b.bed.get(HOST, "/api", &headers);
    assert!(matches!(decision, Decision::Parked), "{decision:?}");
    assert!(b.bed.gateway.settle(&mut b.bed.host, None).is_empty());
    let calls: Vec<Call> = b.bed.host.calls.clone();
    let mut decided = Vec::new();
    for call in calls.iter().filter(|c| c.cluster == "etcd") {
        if !b.answered.insert(call.token) {
            continue;
        }
        let (status, body) = b.to_etcd(call);
        let gateway = &mut b.bed.gateway;
        decided.extend(gateway.on_settled_call_response(
            &mut b.bed.host,
            call.token,
            status,
            &body,
        ));
    }
    // The replayed "held" is past its deadline: B asks the IdP itself (which refuses a
    // disabled user) instead of going on with the session.
    match decided.pop() {
        None => assert!(
            b.bed.host.calls.iter().any(|c| c.cluster == "dex"),
            "B neither decided nor asked the IdP"
        ),
        Some((_, decision)) => assert!(
            !matches!(decision, Decision::Forward(_)),
            "a refused session goes on on B {} s after its tokens expired",
            b.bed.host.now_ms() / 1000 - session.refresh_at
        ),
    }
}
