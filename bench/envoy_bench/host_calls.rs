//! Host calls per request: wasm-iap built with the feature `host-call-count` logs, when each
//! request is done, how many proxy-wasm host calls it made by kind. Each path is sent a few
//! times through real Envoys of their own (the configurations of the throughput scenarios),
//! before and apart from the throughput rounds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::scenarios::{direct_response_bootstrap, session_config, session_cookie, AUDIENCE};
use crate::scenarios::{Material, ISSUER};
use crate::support;
use crate::support::envoy::{repo_root, wasm_filter, Envoy, Started};
use crate::support::mint::{claims_with, now_secs, shared_keys, tamper_signature};

/// The kinds of host call, in the order the filter logs them.
pub const KINDS: [&str; 8] = [
    "header_reads",
    "header_writes",
    "clock",
    "counters",
    "shared_data",
    "logs",
    "properties",
    "other",
];

/// How often each path is sent; every request of a path must make the same calls.
const REQUESTS: usize = 5;

/// One path's calls per request, by kind (`KINDS` order).
pub struct PathCalls {
    pub path: &'static str,
    pub what: &'static str,
    pub counts: [u32; 8],
}

impl PathCalls {
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }
}

pub struct HostCalls {
    pub requests: usize,
    pub paths: Vec<PathCalls>,
}

/// The counting build, made by `./build.sh bench` next to the shipped one.
fn counting_wasm() -> PathBuf {
    repo_root().join("target/host-call-count/wasm32-wasip1/release/wasm_iap.wasm")
}

fn start(plugin_config: &Value) -> Envoy {
    let wasm = counting_wasm();
    assert!(
        wasm.exists(),
        "{} is missing: run ./build.sh bench",
        wasm.display()
    );
    let mut filter = wasm_filter(plugin_config);
    filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = json!(wasm);
    match Envoy::try_start(&direct_response_bootstrap(vec![filter]), 1) {
        Started::Running(envoy) => envoy,
        Started::Exited(log) => panic!("host calls: Envoy did not start:\n{log}"),
    }
}

/// The counts of every request logged so far, oldest first.
fn logged(envoy: &Envoy) -> Vec<[u32; 8]> {
    envoy
        .log()
        .lines()
        .filter_map(|line| line.split_once("host calls: ").map(|(_, counts)| counts))
        .map(|counts| {
            let fields: BTreeMap<&str, u32> = counts
                .split_whitespace()
                .filter_map(|f| f.split_once('='))
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect();
            KINDS.map(|kind| fields.get(kind).copied().expect("every kind logged"))
        })
        .collect()
}

/// Sends `requests` to `path` (each a list of header lines) one after the other, each
/// expecting `status`, and returns the calls each made.
fn measure_path(
    envoy: &Envoy,
    (path, what): (&'static str, &'static str),
    url_path: &str,
    requests: &[Vec<String>],
    status: u16,
) -> PathCalls {
    let before = logged(envoy).len();
    for lines in requests {
        let headers: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| l.split_once(": ").expect("a header line"))
            .collect();
        let answer = support::http::get(&envoy.url(url_path), &headers);
        assert_eq!(answer.status, status, "host calls, {path}: the answer");
    }
    // A request's line is written when Envoy is done with its stream, just after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = logged(envoy);
    while seen.len() < before + requests.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = logged(envoy);
    }
    let mine = &seen[before.min(seen.len())..];
    assert_eq!(
        mine.len(),
        requests.len(),
        "host calls, {path}: one line per request"
    );
    assert!(
        mine.iter().all(|c| *c == mine[0]),
        "host calls, {path}: requests of one path made different calls: {mine:?}"
    );
    PathCalls {
        path,
        what,
        counts: mine[0],
    }
}

/// `count` tokens never seen before (distinct `jti`), valid for an hour.
fn fresh_tokens(count: usize) -> Vec<String> {
    let exp = now_secs() + 3600;
    (0..count)
        .map(|i| {
            let changes = json!({ "exp": exp, "jti": format!("host-calls-{i}") });
            shared_keys()
                .signer("RS256")
                .sign(&claims_with(ISSUER, AUDIENCE, changes))
        })
        .collect()
}

pub fn measure(material: &Material) -> HostCalls {
    let same = |line: String| vec![vec![line]; REQUESTS];
    let bearer = format!("Authorization: Bearer {}", material.token);

    // `wasm_iap_bearer`'s configuration.
    let api = start(&material.bearer_config());
    let first_sight: Vec<Vec<String>> = fresh_tokens(REQUESTS)
        .into_iter()
        .map(|t| vec![format!("Authorization: Bearer {t}")])
        .collect();
    let forged: Vec<Vec<String>> = fresh_tokens(REQUESTS)
        .iter()
        .map(|t| vec![format!("Authorization: Bearer {}", tamper_signature(t))])
        .collect();
    let url = "/api/v1/query";
    let first_sight = measure_path(
        &api,
        ("bearer_first_sight", "bearer, a token not seen before"),
        url,
        &first_sight,
        200,
    );
    // The first sight of this token caches it (measured just above with others).
    measure_path(&api, ("warm-up", ""), url, &same(bearer.clone())[..1], 200);
    let mut paths = vec![measure_path(
        &api,
        ("bearer", "bearer, a cached token"),
        url,
        &same(bearer),
        200,
    )];
    paths.push(first_sight);
    let refused = [
        measure_path(
            &api,
            ("refused_no_credential", "no credential (401)"),
            url,
            &vec![vec![]; REQUESTS],
            401,
        ),
        measure_path(
            &api,
            ("refused_forged", "a forged token (401)"),
            url,
            &forged,
            401,
        ),
    ];
    drop(api);

    // The session scenarios' configuration, with a public route as README's oauth2-proxy
    // migration has.
    let mut config = session_config(&material.jwks);
    config["login"][0]["routes"] = json!([{ "path": "/healthz", "public": true }]);
    let login = start(&config);
    for (chunks, name) in [
        (1, ("session", "session cookie")),
        (3, ("session_3_chunks", "session in 3 cookies")),
    ] {
        let cookie = format!("Cookie: {}", session_cookie(&config, chunks));
        paths.push(measure_path(&login, name, url, &same(cookie), 200));
    }
    paths.push(measure_path(
        &login,
        ("public", "public route, no credential"),
        "/healthz",
        &vec![vec![]; REQUESTS],
        200,
    ));
    paths.extend(refused);
    HostCalls {
        requests: REQUESTS,
        paths,
    }
}
