//! Revocation across a fleet: three gateway replicas (real Envoy processes, two workers each)
//! with the same configuration, the real IdP, and a real 3-member etcd as `cluster_store`.
//! A session ended on one replica (sign-out, or the IdP's back-channel logout) is refused
//! on every replica within the 2 s; without a store it is refused only where it
//! ended. Each test prints the times it measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::Browser;
use support::etcd::EtcdCluster;
use support::fleet::{etcd_cluster, plugin_with_store, Fleet};
use support::fleet_refusals::{admits, ms, refused_after, refuses};

const REPLICAS: usize = 3;
const EVERY_REPLICA: [usize; REPLICAS] = [0, 1, 2];
const LOGOUT: &str = "/oauth2/backchannel_logout";
/// The bound: a revocation reaches every replica within 2 s.
const BOUND: Duration = Duration::from_secs(2);
/// How long the tests look, so that a slow propagation is reported with its time.
const LOOK_FOR: Duration = Duration::from_secs(6);

/// The fleet with the store on `etcd` under `prefix`; the IdP sends its back-channel logout
/// tokens to replica 0, with `idp_env` added.
fn fleet_with_store(etcd: &EtcdCluster, prefix: &str, idp_env: &[(&str, &str)]) -> Fleet {
    let idp_env: Vec<(String, String)> = idp_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Fleet::start_plugin_idp_knowing_ports(
        REPLICAS,
        |replica_ports| {
            let uri = format!("http://127.0.0.1:{}{LOGOUT}", replica_ports[0]);
            let mut env = vec![("BACKCHANNEL_LOGOUT_URI".to_string(), uri)];
            env.extend(idp_env);
            env
        },
        vec![etcd_cluster(&etcd.client_ports())],
        |issuer| plugin_with_store(issuer, &json!({}), prefix),
    )
}

/// A browser signed in as `user` through the front, and a copy of its cookies (the `Cookie`
/// header it sends), checked to open the session on every replica.
fn signed_in(fleet: &Fleet, user: &str) -> (Browser, String) {
    let (browser, _) = fleet.logged_in(user, "/");
    let copied = browser.cookie_header(&fleet.replica_url(0, "/")).unwrap();
    for replica in EVERY_REPLICA {
        assert!(
            admits(fleet, replica, &copied),
            "{user}'s session opens on replica {replica}"
        );
    }
    (browser, copied)
}

fn signs_out_on_replica_0(fleet: &Fleet, browser: &mut Browser) {
    let out = browser.request("GET", &fleet.replica_url(0, "/oauth2/sign_out"), None, &[]);
    assert_eq!(out.status, 302, "{out:?}");
}

/// Asserts that each of `replicas` refused within `BOUND` (`took`, as `refused_after` says).
fn assert_within_bound(what: &str, replicas: &[usize], took: &[Option<Duration>]) {
    for (replica, took) in replicas.iter().zip(took) {
        assert!(
            took.is_some_and(|t| t < BOUND),
            "{what}: replica {replica} refused the session after {} (the bound is 2 s)",
            ms(*took)
        );
    }
}

fn report(what: &str, replicas: &[usize], took: &[Option<Duration>]) {
    let each: Vec<String> = replicas
        .iter()
        .zip(took)
        .map(|(replica, took)| format!("replica {replica}: {}", ms(*took)))
        .collect();
    println!("{what}: refused after {}", each.join(", "));
}

#[test]
fn a_cookie_copied_before_sign_out_on_one_replica_is_refused_on_the_others_within_2_s() {
    let etcd = EtcdCluster::start(3);
    let fleet = fleet_with_store(&etcd, "/revoke-sign-out", &[]);
    let (mut browser, copied) = signed_in(&fleet, "vic@example.com");
    let (_, bystander) = signed_in(&fleet, "val@example.com");

    signs_out_on_replica_0(&fleet, &mut browser);
    let signed_out = Instant::now();
    let others = [1, 2];
    let took = refused_after(&fleet, &others, &copied, signed_out, LOOK_FOR);
    report("sign-out on replica 0", &others, &took);
    assert_within_bound("sign-out on replica 0", &others, &took);
    assert!(refuses(&fleet, 0, &copied), "and on replica 0 itself");
    for replica in EVERY_REPLICA {
        assert!(
            admits(&fleet, replica, &bystander),
            "another user's session is untouched on replica {replica}"
        );
    }
}

#[test]
fn a_back_channel_logout_from_the_real_idp_ends_the_session_on_every_replica_within_2_s() {
    let etcd = EtcdCluster::start(3);
    let fleet = fleet_with_store(&etcd, "/revoke-backchannel", &[]);
    let (mut browser, copied) = signed_in(&fleet, "wen@example.com");
    let (_, bystander) = signed_in(&fleet, "wes@example.com");

    // The IdP POSTs its logout token to replica 0 before it answers.
    fleet.idp.end_session(&mut browser);
    let ended = Instant::now();
    let took = refused_after(&fleet, &EVERY_REPLICA, &copied, ended, LOOK_FOR);
    report("back-channel logout at replica 0", &EVERY_REPLICA, &took);
    assert_within_bound("back-channel logout", &EVERY_REPLICA, &took);
    let taken = "back-channel logout for demo: the IdP session revoked";
    assert!(fleet.replicas[0].log().contains(taken), "replica 0 took it");
    for replica in [1, 2] {
        assert!(
            !fleet.replicas[replica].log().contains(taken),
            "replica {replica} learnt it from the store, not from the IdP"
        );
    }
    for replica in EVERY_REPLICA {
        assert!(admits(&fleet, replica, &bystander), "replica {replica}");
    }
}

/// A logout token with `sub` and no `sid` ends every session of that user. The real IdP
/// sends one when the client is registered without `backchannel_logout_session_required`
/// (`BACKCHANNEL_LOGOUT_SESSION_REQUIRED=0`), so the token is the IdP's own, signed with its
/// keys and sent by it; no test key has to be trusted by the provider, and the path (IdP,
/// replica 0's endpoint, the store, the other replicas' sync) is the one production takes.
#[test]
fn a_logout_token_naming_only_the_user_ends_all_their_sessions_on_every_replica_within_2_s() {
    let etcd = EtcdCluster::start(3);
    let fleet = fleet_with_store(
        &etcd,
        "/revoke-user",
        &[("BACKCHANNEL_LOGOUT_SESSION_REQUIRED", "0")],
    );
    let (mut laptop, on_laptop) = signed_in(&fleet, "yan@example.com");
    let (_, on_phone) = signed_in(&fleet, "yan@example.com");
    let (_, bystander) = signed_in(&fleet, "yva@example.com");

    // The laptop's IdP session ends; the phone's IdP session lives on, but the IdP's token
    // names the user.
    fleet.idp.end_session(&mut laptop);
    let ended = Instant::now();
    let watch = |cookie: &str| refused_after(&fleet, &EVERY_REPLICA, cookie, ended, LOOK_FOR);
    let (laptop_took, phone_took) = std::thread::scope(|scope| {
        let laptop = scope.spawn(|| watch(&on_laptop));
        let phone = scope.spawn(|| watch(&on_phone));
        (laptop.join().unwrap(), phone.join().unwrap())
    });
    report("the user's laptop", &EVERY_REPLICA, &laptop_took);
    report("the user's phone", &EVERY_REPLICA, &phone_took);
    assert_within_bound("the laptop", &EVERY_REPLICA, &laptop_took);
    assert_within_bound("the phone", &EVERY_REPLICA, &phone_took);
    assert!(fleet.replicas[0]
        .log()
        .contains("back-channel logout for demo: every session of the user revoked"));
    for replica in EVERY_REPLICA {
        assert!(
            admits(&fleet, replica, &bystander),
            "another user's session is untouched on replica {replica}"
        );
    }
}

/// Without `cluster_store` each Envoy keeps its own revocations: a sign-out is refused on
/// every worker of the replica that served it, and the other replicas go on admitting the
/// copied cookie (until the session expires). This is the documented behaviour without a
/// store; the test keeps the documentation true.
#[test]
fn without_a_store_a_sign_out_is_refused_only_on_the_replica_that_served_it() {
    let fleet = Fleet::start(REPLICAS, &json!({}), &[]);
    let (mut browser, copied) = signed_in(&fleet, "zoe@example.com");

    signs_out_on_replica_0(&fleet, &mut browser);
    let signed_out = Instant::now();
    let took = refused_after(&fleet, &[0], &copied, signed_out, LOOK_FOR);
    report("sign-out without a store", &[0], &took);
    assert_within_bound("the replica that served the sign-out", &[0], &took);
    // Well past the bound a store would keep: still nothing reached the others.
    std::thread::sleep((signed_out + 2 * BOUND).saturating_duration_since(Instant::now()));
    for replica in [1, 2] {
        assert!(
            admits(&fleet, replica, &copied),
            "without a store, replica {replica} knows nothing of the sign-out"
        );
    }
}
