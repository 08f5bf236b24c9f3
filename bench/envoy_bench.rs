//! Throughput, latency and memory of request checks in real Envoy, every path in one run:
//! no filter; a do-nothing Rust Wasm filter (the floor, `bench/floor`); Envoy's native
//! jwt_authn without and with its JWT cache; Envoy's ext_authz to a do-nothing authorization
//! server (a second Envoy: the cost of the extra hop); and wasm-iap with the same token on
//! every request, with distinct valid tokens in rotation (each needs a signature check until
//! cached), with forged RS256, ES256 and EdDSA tokens (every request needs a check, and gets
//! 401), and with a browser session cookie (one cookie, one chunked in three, and one with a
//! cluster store configured: a one-member etcd the bench starts and stops). Routes
//! answer with a direct response so that only the filters differ. Also measures the time to
//! the first request of a fresh Envoy whose keys come by OIDC discovery, and the host calls
//! wasm-iap makes per request on each path (a counting build, in Envoys of its own), and
//! how soon a sign-out on one of three replicas sharing an etcd is refused on the others.
//!
//! Writes bench/results.json, bench/results.md (a table for docs/performance.md) and
//! bench/results.svg (a chart of the ratios to no filter), and prints the table.
//!
//!   ./build.sh bench      (BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (16) change
//!                          the load; BENCH_TOKENS (20000) distinct tokens per rotating
//!                          scenario; BENCH_FIRST_RUNS (5) fresh Envoys for the first request;
//!                          BENCH_SIGN_OUTS (20) sign-outs for revocation_propagation;
//!                          BENCH_SCENARIOS=no_filter,wasm_floor,first_request,host_calls to
//!                          run only some)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "envoy_bench/first_request.rs"]
mod first_request;
#[path = "envoy_bench/host_calls.rs"]
mod host_calls;
#[path = "envoy_bench/load.rs"]
mod load;
#[path = "envoy_bench/propagation.rs"]
mod propagation;
#[path = "envoy_bench/report.rs"]
mod report;
#[path = "envoy_bench/scenarios.rs"]
mod scenarios;

use std::process::Command;

use load::{wrk, Measured};
use report::{median_of_sorted, FirstRequests, Memory, Report, Row, Spread};
use scenarios::{direct_response_bootstrap, floor_wasm, Material, ALL};
use support::envoy::{envoy_binary, repo_root, wasm_path, Envoy, Started};
use support::etcd::EtcdCluster;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start(name: &str, config: &serde_json::Value) -> Envoy {
    match Envoy::try_start(config, 1) {
        Started::Running(envoy) => envoy,
        Started::Exited(log) => panic!("{name}: Envoy did not start:\n{log}"),
    }
}

/// Sends one request with a header line (`Name: value`) and returns its status.
fn status_with(url: &str, header: &str) -> u16 {
    let (name, value) = header.split_once(": ").expect("a header line");
    support::http::get(url, &[(name, value)]).status
}

/// A process's resident memory and its peak, from /proc/<pid>/status.
fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    Memory {
        rss_mib: mib("VmRSS:"),
        hwm_mib: mib("VmHWM:"),
    }
}

/// The store scenario measures nothing unless its Envoy really reaches etcd: etcd holds the
/// leases it granted, and `/ready` says `OK` (not "degraded").
fn assert_store_answers(envoy: &Envoy, etcd_port: u16) {
    let leases_url = format!("http://127.0.0.1:{etcd_port}/v3/lease/leases");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let leases = support::http::request("POST", &leases_url, &[], Some("{}")).json();
        let granted = leases["leases"].as_array().is_some_and(|l| !l.is_empty());
        let ready = support::http::get(&envoy.url("/ready"), &[]);
        if granted && ready.status == 200 && ready.body.trim() == "OK" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wasm_iap_session_store: the cluster store does not answer: leases {leases}, /ready {} {}",
            ready.status,
            ready.body
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A counter from Envoy's admin (`/stats`), e.g. `cluster.etcd.upstream_rq_total`.
fn stat(envoy: &Envoy, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{}/stats?filter={name}", envoy.admin_port);
    let body = support::http::get(&url, &[]).body;
    body.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn envoy_version() -> String {
    let output = Command::new(envoy_binary())
        .arg("--version")
        .output()
        .expect("envoy --version");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split("version:")
        .nth(1)
        .and_then(|v| v.trim().split('/').nth(1))
        .unwrap_or("unknown")
        .to_string()
}

fn file_size(path: &std::path::Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 5);
    let rounds = env_number("BENCH_ROUNDS", 3).max(1);
    let connections = env_number("BENCH_CONNECTIONS", 16);
    let tokens = env_number("BENCH_TOKENS", 20_000);
    let only = std::env::var("BENCH_SCENARIOS").ok();
    let chosen = |name: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|s| s.trim() == name))
    };

    let extra = ["first_request", "host_calls", "revocation_propagation"];
    let known = |name: &str| extra.contains(&name) || ALL.iter().any(|(n, _)| *n == name);
    for name in only.iter().flat_map(|list| list.split(',')) {
        assert!(
            known(name.trim()),
            "BENCH_SCENARIOS: no scenario {name:?}; there are {}, {}",
            extra.join(", "),
            ALL.map(|(n, _)| n).join(", ")
        );
    }

    let first_request = chosen("first_request").then(|| {
        let samples = first_request::measure(env_number("BENCH_FIRST_RUNS", 5).max(1));
        let listener: Vec<f64> = samples.iter().map(|s| s.from_listener_ms).collect();
        let spawn: Vec<f64> = samples.iter().map(|s| s.from_spawn_ms).collect();
        FirstRequests {
            runs: samples.len(),
            from_listener_ms: Spread::of(&listener),
            from_spawn_ms: Spread::of(&spawn),
            samples: listener.into_iter().zip(spawn).collect(),
        }
    });

    // Its own fleet of Envoys and etcd, stopped before the rounds start.
    let revocation_propagation = chosen("revocation_propagation")
        .then(|| propagation::measure(env_number("BENCH_SIGN_OUTS", 20).max(1)));

    let mut material = Material::new(tokens);
    // Its own Envoys, stopped before the rounds start.
    let host_calls = chosen("host_calls").then(|| host_calls::measure(&material));

    // ext_authz asks a second Envoy, answering 200 directly: fast and native, so that its row
    // shows the cost of the extra hop rather than of a slow server.
    let authz_server = chosen("ext_authz_http")
        .then(|| start("authorization server", &direct_response_bootstrap(vec![])));
    // The session path with a store has one member: the store is never asked per request.
    let etcd = chosen("wasm_iap_session_store").then(|| EtcdCluster::start(1));
    let mut running = Vec::new();
    for (name, _) in ALL.iter().filter(|(name, _)| chosen(name)) {
        let authz_port = authz_server.as_ref().map(|e| e.port);
        let etcd_port = etcd.as_ref().map(|e| e.client_ports()[0]);
        let scenario = material.scenario(name, authz_port, etcd_port);
        let envoy = start(name, &scenario.config);
        let url = envoy.url("/api/v1/query");
        let status = status_with(&url, &scenario.pass);
        assert_eq!(
            status, 200,
            "{name}: the credential must pass before measuring"
        );
        if *name == "ext_authz_http" {
            let asked = envoy.prometheus_metric("envoy_http_ext_authz_ok");
            assert!(
                asked.unwrap_or(0) > 0,
                "{name}: the authorization server must have been asked"
            );
        }
        if *name == "wasm_iap_session_store" {
            assert_store_answers(&envoy, etcd_port.expect("its etcd"));
        }
        if let Some(refuse) = &scenario.refuse {
            let status = status_with(&url, refuse);
            assert_eq!(status, 401, "{name}: a bad credential must be refused");
        }
        wrk(&url, &scenario.load, 2, connections); // warm-up
        running.push((scenario.name, envoy, url, scenario.load, Vec::new()));
    }

    // All Envoys run at once, one worker each, and rounds interleave the scenarios, so that
    // the machine's drift hits every scenario alike; each figure is the median over rounds.
    for round in 1..=rounds {
        for (name, _envoy, url, load, samples) in running.iter_mut() {
            let m = wrk(url, load, seconds, connections);
            eprintln!(
                "round {round} {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                m.rps, m.p50_ms, m.p99_ms
            );
            samples.push(m);
        }
    }

    if let Some((_, envoy, ..)) = running
        .iter()
        .find(|(name, ..)| *name == "wasm_iap_session_store")
    {
        let requests = stat(envoy, "http.ingress.downstream_rq_total");
        let store_calls = stat(envoy, "cluster.etcd.upstream_rq_total");
        eprintln!("wasm_iap_session_store: {store_calls} calls to etcd for {requests} requests");
    }

    let mut rows: Vec<Row> = running
        .iter()
        .map(|(name, envoy, _url, _load, samples)| {
            let median = |f: fn(&Measured) -> f64| {
                let mut values: Vec<f64> = samples.iter().map(f).collect();
                values.sort_by(|a, b| a.total_cmp(b));
                median_of_sorted(&values)
            };
            let memory = memory(envoy.pid());
            Row {
                name,
                rps: median(|m| m.rps),
                p50_ms: median(|m| m.p50_ms),
                p99_ms: median(|m| m.p99_ms),
                ratio_to_no_filter: None,
                ratio_to_floor: None,
                rss_mib: memory.rss_mib,
                hwm_mib: memory.hwm_mib,
            }
        })
        .collect();
    let authz_memory = authz_server.as_ref().map(|e| memory(e.pid()));
    drop(running);
    drop(authz_server);
    drop(etcd);
    let rps_of = |name: &str, rows: &[Row]| rows.iter().find(|r| r.name == name).map(|r| r.rps);
    let (no_filter, floor) = (rps_of("no_filter", &rows), rps_of("wasm_floor", &rows));
    for row in &mut rows {
        row.ratio_to_no_filter = no_filter.map(|base| row.rps / base);
        row.ratio_to_floor = floor.map(|base| row.rps / base);
    }

    let report = Report {
        rows,
        first_request,
        host_calls,
        revocation_propagation,
        authz_server: authz_memory,
        rounds,
        seconds,
        connections,
        tokens,
        envoy_version: envoy_version(),
        wasm_iap_bytes: file_size(&wasm_path()).unwrap_or(0),
        floor_bytes: file_size(&floor_wasm()),
        date: report::utc_date(),
    };
    let markdown = report.markdown();
    println!("\n{markdown}");
    let bench = repo_root().join("bench");
    let json = serde_json::to_string_pretty(&report.json()).unwrap();
    std::fs::write(bench.join("results.json"), json + "\n").expect("write results.json");
    std::fs::write(bench.join("results.md"), &markdown).expect("write results.md");
    match report.svg() {
        Some(svg) => std::fs::write(bench.join("results.svg"), svg).expect("write results.svg"),
        None => eprintln!("no chart: the no_filter scenario did not run"),
    }
    println!(
        "written to {} (results.json, results.md, results.svg)",
        bench.display()
    );
}
