//! Throughput and latency of bearer-token checks in real Envoy, in one run:
//! no filter, Envoy's native jwt_authn (without and with its JWT cache), and wasm-iap with
//! the same token on every request, with distinct valid tokens in rotation (each one needs a
//! signature check until it is cached), with tokens whose signature is corrupted (every
//! request needs a check, and gets 401), and with a browser session cookie (one cookie, and
//! one chunked in three). Same RS256 key everywhere; routes answer with a
//! direct response so that only the filters differ. Writes bench/results.json and prints
//! ratios to `no_filter`.
//!
//!   ./build.sh bench      (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS to change the load;
//!                          BENCH_TOKENS (20000) distinct tokens for the rotating scenarios;
//!                          BENCH_SCENARIOS=no_filter,wasm_iap_bearer to run only some)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::envoy::TempDir;
use support::envoy::{bootstrap, repo_root, wasm_filter, Envoy, Started};
use support::mint::{claims_with, shared_keys, tamper_signature};
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::session::{self, Session};

const ISSUER: &str = "https://dex.example.com";
const AUDIENCE: &str = "prometheus";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The testbed bootstrap with its route answering directly instead of proxying.
fn direct_response_bootstrap(filters: Vec<Value>) -> Value {
    let mut config = bootstrap(filters, 1, 1);
    let route = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
    route.as_object_mut().unwrap().remove("route");
    route["direct_response"] = json!({ "status": 200, "body": { "inline_string": "ok" } });
    config
}

fn jwt_authn(jwks: &Value, cached: bool) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "forward": true,
        "local_jwks": { "inline_string": jwks.to_string() },
    });
    if cached {
        provider["jwt_cache_config"] = json!({ "jwt_cache_size": 1000 });
    }
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "dex": provider },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "dex" } }]
        }
    })
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        _ => return None,
    })
}

fn parse_wrk(output: &str) -> Option<Measured> {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Some(Measured {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: millis(&field("50%")?)?,
        p99_ms: millis(&field("99%")?)?,
    })
}

/// What the requests of a scenario carry.
#[derive(Clone)]
enum Load {
    /// One header line (`Name: value`) on every request: a token, or a session cookie.
    Same(String),
    /// Tokens from a file in rotation (a wrk Lua script); `refused`: every one gets 401.
    Rotating { script: PathBuf, refused: bool },
}

/// A wrk script sending the tokens of `tokens` (one per line) in rotation.
fn rotation_script(dir: &Path, name: &str, tokens: &[String]) -> PathBuf {
    let list = dir.join(format!("{name}.tokens"));
    std::fs::write(&list, tokens.join("\n")).expect("write tokens");
    let script = dir.join(format!("{name}.lua"));
    let lua = format!(
        "local tokens = {{}}\n\
         for line in io.lines(\"{}\") do tokens[#tokens + 1] = \"Bearer \" .. line end\n\
         local i = 0\n\
         request = function()\n\
         \x20 i = i % #tokens + 1\n\
         \x20 return wrk.format(nil, nil, {{ [\"Authorization\"] = tokens[i] }})\n\
         end\n",
        list.display()
    );
    std::fs::write(&script, lua).expect("write script");
    script
}

fn wrk(url: &str, load: &Load, seconds: u64, connections: u64) -> Measured {
    let mut command = Command::new("wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    match load {
        Load::Same(header) => command.args(["-H", header]),
        Load::Rotating { script, .. } => command.arg("-s").arg(script),
    };
    let output = command
        .arg(url)
        .output()
        .expect("wrk is installed (./build.sh bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let measured = parse_wrk(&text).unwrap_or_else(|| panic!("cannot read wrk output:\n{text}"));
    let refused = matches!(load, Load::Rotating { refused: true, .. });
    assert!(
        refused || !text.contains("Non-2xx"),
        "requests failed during the run:\n{text}"
    );
    measured
}

/// A login service on every host, with Dex's keys inline and its endpoints given (no
/// fetch), for the session-cookie scenarios.
fn session_config(jwks: &Value) -> Value {
    json!({
        "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks }],
        "login": [{
            "hosts": ["*"], "issuer": ISSUER, "client_id": "prometheus", "client_secret": "s",
            "cookie_secrets": ["bench-cookie-secret-0123456789abcdef"], "cookie_secure": false,
            "cluster": "idp", "authorization_endpoint": format!("{ISSUER}/auth"),
            "token_endpoint": format!("{ISSUER}/token"),
        }],
    })
}

/// A `Cookie` header holding a session of `config`'s login service in `chunks` cookies
/// (groups are added until it takes that many), valid for an hour, no refresh.
fn session_cookie(config: &Value, chunks: usize) -> String {
    let settings = Settings::parse(&config.to_string()).expect("bench config");
    let service = &settings.login[0];
    let now = support::mint::now_secs();
    for groups in (0..2_000).step_by(10) {
        let session = Session {
            sid: "bench-session".into(),
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: (0..groups).map(|i| format!("myorg:team-{i:04}")).collect(),
            expires_at: now + 3600,
            refresh_at: now + 3600,
            ..Session::default()
        };
        let cookies = session::write(
            &session,
            &[],
            &service.cookie_name,
            &service.cookie,
            &service.sealer,
            now,
            &mut support::random::Counter(1),
        )
        .expect("the session fits");
        if cookies.len() == chunks {
            return cookies
                .iter()
                .map(|c| support::sent_back(c))
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    panic!("no session takes {chunks} cookies");
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 5);
    let rounds = env_number("BENCH_ROUNDS", 3).max(1);
    let connections = env_number("BENCH_CONNECTIONS", 16);
    let signer = shared_keys().signer("RS256");
    let jwks = shared_keys().jwks_of(&["RS256"]);
    let token = signer.sign(&claims_with(
        ISSUER,
        AUDIENCE,
        json!({ "exp": support::mint::now_secs() + 3600 }),
    ));
    let wasm_config =
        json!({ "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks }] });
    let only = std::env::var("BENCH_SCENARIOS").ok();
    let chosen = |name: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|s| s == name))
    };
    let same = Load::Same(format!("Authorization: Bearer {token}"));
    let dir = TempDir::new("bench-tokens");
    let rotating = ["wasm_iap_distinct_tokens", "wasm_iap_forged_tokens"];
    let (distinct, forged) = if rotating.iter().any(|n| chosen(n)) {
        let count = env_number("BENCH_TOKENS", 20_000);
        eprintln!("signing {count} distinct tokens ...");
        let exp = support::mint::now_secs() + 3600;
        let tokens: Vec<String> = (0..count)
            .map(|i| {
                signer.sign(&claims_with(
                    ISSUER,
                    AUDIENCE,
                    json!({ "exp": exp, "jti": format!("bench-{i}") }),
                ))
            })
            .collect();
        let forged: Vec<String> = tokens.iter().map(|t| tamper_signature(t)).collect();
        (
            Load::Rotating {
                script: rotation_script(&dir.0, "distinct", &tokens),
                refused: false,
            },
            Load::Rotating {
                script: rotation_script(&dir.0, "forged", &forged),
                refused: true,
            },
        )
    } else {
        (same.clone(), same.clone())
    };
    let wasm = || vec![wasm_filter(&wasm_config)];
    let login_config = session_config(&jwks);
    let session =
        |groups: usize| Load::Same(format!("Cookie: {}", session_cookie(&login_config, groups)));
    let scenarios: Vec<(&str, Vec<Value>, Load)> = vec![
        ("no_filter", vec![], same.clone()),
        (
            "jwt_authn_native",
            vec![jwt_authn(&jwks, false)],
            same.clone(),
        ),
        (
            "jwt_authn_native_cached",
            vec![jwt_authn(&jwks, true)],
            same.clone(),
        ),
        ("wasm_iap_bearer", wasm(), same.clone()),
        ("wasm_iap_distinct_tokens", wasm(), distinct),
        ("wasm_iap_forged_tokens", wasm(), forged),
        (
            "wasm_iap_session_cookie",
            vec![wasm_filter(&login_config)],
            session(1),
        ),
        (
            "wasm_iap_session_3_chunks",
            vec![wasm_filter(&login_config)],
            session(3),
        ),
    ];
    // All Envoys run at once, one worker each, and rounds interleave the scenarios, so that
    // the machine's drift hits every scenario alike; each figure is the median over rounds.
    let mut running = Vec::new();
    for (name, filters, load) in scenarios.into_iter().filter(|(name, _, _)| chosen(name)) {
        let envoy = match Envoy::try_start(&direct_response_bootstrap(filters), 1) {
            Started::Running(envoy) => envoy,
            Started::Exited(log) => panic!("{name}: Envoy did not start:\n{log}"),
        };
        let url = envoy.url("/api/v1/query");
        let check = match &load {
            Load::Same(header) if header.starts_with("Cookie: ") => {
                support::http::get(&url, &[("cookie", &header["Cookie: ".len()..])])
            }
            _ => support::http::bearer(&url, &token),
        };
        assert_eq!(
            check.status, 200,
            "{name}: the credential must pass before measuring: {check:?}"
        );
        let refused = support::http::bearer(&url, "not-a-token");
        assert!(
            name == "no_filter" || refused.status == 401,
            "{name}: a bad token must be refused"
        );
        wrk(&url, &load, 2, connections); // warm-up
        running.push((name, envoy, url, load, Vec::new()));
    }
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
    let results: Vec<(&str, Measured)> = running
        .into_iter()
        .map(|(name, _envoy, _url, _load, samples)| {
            let median = |f: fn(&Measured) -> f64| {
                let mut values: Vec<f64> = samples.iter().map(f).collect();
                values.sort_by(|a, b| a.total_cmp(b));
                values[values.len() / 2]
            };
            (
                name,
                Measured {
                    rps: median(|m| m.rps),
                    p50_ms: median(|m| m.p50_ms),
                    p99_ms: median(|m| m.p99_ms),
                },
            )
        })
        .collect();
    let baseline = results[0].1.rps;
    println!(
        "\n{:<26} {:>10} {:>9} {:>9} {:>10}",
        "scenario", "req/s", "p50 ms", "p99 ms", "vs no_filter"
    );
    for (name, m) in &results {
        println!(
            "{name:<26} {:>10.0} {:>9.3} {:>9.3} {:>10.2}",
            m.rps,
            m.p50_ms,
            m.p99_ms,
            m.rps / baseline
        );
    }
    let json: Vec<Value> = results
        .iter()
        .map(|(name, m)| json!({ "scenario": name, "rps": m.rps, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms }))
        .collect();
    let path = repo_root().join("bench/results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write results");
    println!(
        "\nmedians of {rounds} interleaved rounds of {seconds} s, {connections} connections; written to {}",
        path.display()
    );
}
