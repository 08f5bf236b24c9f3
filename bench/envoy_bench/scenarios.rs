//! The scenarios: the Envoy each one runs (its filters in front of a direct response), what
//! its requests carry, and the requests that must pass, or be refused, before it is measured.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use wasm_iap::core::config::Settings;
use wasm_iap::core::login::session::{self, Session};

use crate::load::{rotation_script, Load};
use crate::support;
use crate::support::envoy::{bootstrap, repo_root, wasm_filter, TempDir};
use crate::support::mint::{claims_with, now_secs, shared_keys, tamper_signature, Signer};

pub const ISSUER: &str = "https://dex.example.com";
pub const AUDIENCE: &str = "prometheus";
/// The keys every provider trusts (one per family of algorithms); RS256 signs the tokens
/// that pass.
pub const ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
const AUTHZ_CLUSTER: &str = "authz";
const ETCD_CLUSTER: &str = "etcd";

/// Every scenario, in the order they are run and reported, with what it measures.
pub const ALL: [(&str, &str); 17] = [
    ("no_filter", "Envoy alone"),
    ("wasm_floor", "do-nothing Rust Wasm filter"),
    ("jwt_authn_native", "native jwt_authn"),
    ("jwt_authn_native_cached", "native jwt_authn, JWT cache"),
    ("ext_authz_http", "native ext_authz to a do-nothing server"),
    ("wasm_iap_bearer", "wasm-iap, same token"),
    (
        "wasm_iap_bearer_assertion",
        "wasm-iap, same token, identity assertion",
    ),
    (
        "wasm_iap_bearer_no_access_log",
        "wasm-iap, same token, access_log false",
    ),
    (
        "wasm_iap_distinct_tokens",
        "wasm-iap, distinct valid tokens",
    ),
    (
        "wasm_iap_forged_rs256",
        "wasm-iap, forged RS256 tokens (401)",
    ),
    (
        "wasm_iap_forged_es256",
        "wasm-iap, forged ES256 tokens (401)",
    ),
    (
        "wasm_iap_forged_eddsa",
        "wasm-iap, forged EdDSA tokens (401)",
    ),
    ("wasm_iap_session_cookie", "wasm-iap, session cookie"),
    (
        "wasm_iap_session_assertion",
        "wasm-iap, session cookie, identity assertion",
    ),
    (
        "wasm_iap_session_no_access_log",
        "wasm-iap, session cookie, access_log false",
    ),
    (
        "wasm_iap_session_store",
        "wasm-iap, session cookie, cluster store (etcd)",
    ),
    (
        "wasm_iap_session_3_chunks",
        "wasm-iap, session in 3 cookies",
    ),
];

pub fn describe(name: &str) -> &'static str {
    ALL.iter().find(|(n, _)| *n == name).map_or("", |(_, d)| d)
}

pub struct Scenario {
    pub name: &'static str,
    /// The Envoy bootstrap.
    pub config: Value,
    pub load: Load,
    /// A header line (`Name: value`) that must get 200 before measuring.
    pub pass: String,
    /// One that must get 401.
    pub refuse: Option<String>,
}

/// The do-nothing filter built from `bench/floor` by `./build.sh bench`.
pub fn floor_wasm() -> PathBuf {
    repo_root().join("bench/floor/target/wasm32-wasip1/release/wasm_iap_bench_floor.wasm")
}

/// The testbed bootstrap with its route answering directly instead of proxying.
pub fn direct_response_bootstrap(filters: Vec<Value>) -> Value {
    direct_response(bootstrap(filters, 1, 1))
}

/// `config` with its route answering 200 directly instead of proxying.
pub fn direct_response(mut config: Value) -> Value {
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

/// Envoy's ext_authz asking an HTTP authorization server (cluster `authz`) about every request.
fn ext_authz() -> Value {
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "http_service": {
                "server_uri": { "uri": "http://127.0.0.1", "cluster": AUTHZ_CLUSTER, "timeout": "1s" }
            }
        }
    })
}

/// `config` with a cluster `name` to 127.0.0.1:`port`.
fn with_cluster(mut config: Value, name: &str, port: u16) -> Value {
    let cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}}]}]
        }
    });
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(cluster);
    config
}

/// The Wasm filter entry of wasm-iap, with the floor's code instead (same configuration).
fn floor_filter(plugin_config: &Value) -> Value {
    let wasm = floor_wasm();
    assert!(
        wasm.exists(),
        "{} is missing: run ./build.sh bench",
        wasm.display()
    );
    let mut filter = wasm_filter(plugin_config);
    let config = &mut filter["typed_config"]["config"];
    config["name"] = json!("floor");
    config["root_id"] = json!("floor");
    config["vm_config"]["vm_id"] = json!("floor");
    config["vm_config"]["code"]["local"]["filename"] = json!(wasm);
    filter
}

/// A login service on every host, with Dex's keys inline and its endpoints given (no
/// fetch), for the session-cookie scenarios.
pub fn session_config(jwks: &Value) -> Value {
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

/// `config` with signed identity assertions (an ES256 key made for this run) for every
/// service: the top-level keys, and `identity_assertion: true` on each login service, or on
/// one `services` entry for every host when there is none.
fn with_assertion(mut config: Value) -> Value {
    use jwt_simple::prelude::ES256KeyPair;
    let pem = ES256KeyPair::generate().to_pem().expect("a PEM key");
    config["identity_assertion"] =
        json!({ "keys": [{ "kid": "bench", "algorithm": "ES256", "private_key": pem }] });
    match config["login"].as_array_mut() {
        Some(services) => {
            for service in services {
                service["identity_assertion"] = json!(true);
            }
        }
        None => config["services"] = json!([{ "hosts": ["*"], "identity_assertion": true }]),
    }
    config
}

/// `config` with a cluster store on etcd (cluster `etcd`): leases granted and the store
/// asked on the tick, never a callout per request when no session needs a refresh.
fn with_cluster_store(mut config: Value) -> Value {
    config["cluster_store"] = json!({ "etcd": { "cluster": ETCD_CLUSTER, "prefix": "/bench" } });
    config
}

/// A `Cookie` header value holding a session of `config`'s login service in `chunks` cookies
/// (groups are added until it takes that many), valid for an hour, no refresh.
pub fn session_cookie(config: &Value, chunks: usize) -> String {
    let settings = Settings::parse(&config.to_string()).expect("bench config");
    let service = &settings.login[0];
    let now = now_secs();
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
            &service.idps.first().sealer,
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

/// `count` distinct tokens (by `jti`) of `signer`, valid for an hour, signed on every core.
fn sign_many(signer: &Signer, count: u64) -> Vec<String> {
    let exp = now_secs() + 3600;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t * per_thread..((t + 1) * per_thread).min(count))
                        .map(|i| {
                            let changes = json!({ "exp": exp, "jti": format!("bench-{i}") });
                            signer.sign(&claims_with(ISSUER, AUDIENCE, changes))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("signing thread"))
            .collect()
    })
}

/// What the scenarios are made of: keys, the token that passes, and distinct tokens per
/// algorithm, signed on first use.
pub struct Material {
    pub jwks: Value,
    /// An RS256 token valid for an hour.
    pub token: String,
    tokens: u64,
    dir: TempDir,
    distinct: HashMap<&'static str, Vec<String>>,
}

impl Material {
    pub fn new(tokens: u64) -> Material {
        let keys = shared_keys();
        let changes = json!({ "exp": now_secs() + 3600 });
        Material {
            jwks: keys.jwks_of(&ALGORITHMS),
            token: keys
                .signer("RS256")
                .sign(&claims_with(ISSUER, AUDIENCE, changes)),
            tokens: tokens.max(1),
            dir: TempDir::new("bench-tokens"),
            distinct: HashMap::new(),
        }
    }

    fn distinct(&mut self, alg: &'static str) -> Vec<String> {
        let count = self.tokens;
        self.distinct
            .entry(alg)
            .or_insert_with(|| {
                let started = std::time::Instant::now();
                let tokens = sign_many(shared_keys().signer(alg), count);
                eprintln!(
                    "signed {count} distinct {alg} tokens in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                tokens
            })
            .clone()
    }

    /// wasm-iap's configuration in the bearer scenarios: the provider, its keys inline.
    pub fn bearer_config(&self) -> Value {
        json!({
            "providers": [{ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": self.jwks }]
        })
    }

    /// The scenario `name` (one of `ALL`); `authz_port`: the authorization server of
    /// `ext_authz_http`; `etcd_port`: the cluster store of `wasm_iap_session_store`.
    pub fn scenario(
        &mut self,
        name: &'static str,
        authz_port: Option<u16>,
        etcd_port: Option<u16>,
    ) -> Scenario {
        let bearer = format!("Authorization: Bearer {}", self.token);
        let not_a_token = Some("Authorization: Bearer not-a-token".to_string());
        let wasm_config = self.bearer_config();
        let wasm = || vec![wasm_filter(&wasm_config)];
        let same = |filters: Vec<Value>, refuse: Option<String>| {
            (filters, Load::Same(bearer.clone()), bearer.clone(), refuse)
        };
        let (filters, load, pass, refuse) = match name {
            "no_filter" => same(vec![], None),
            "ext_authz_http" => same(vec![ext_authz()], None),
            "wasm_floor" => same(vec![floor_filter(&wasm_config)], None),
            "jwt_authn_native" => same(vec![jwt_authn(&self.jwks, false)], not_a_token),
            "jwt_authn_native_cached" => same(vec![jwt_authn(&self.jwks, true)], not_a_token),
            "wasm_iap_bearer" => same(wasm(), not_a_token),
            "wasm_iap_bearer_assertion" => same(
                vec![wasm_filter(&with_assertion(wasm_config.clone()))],
                not_a_token,
            ),
            "wasm_iap_bearer_no_access_log" => {
                let mut config = wasm_config.clone();
                config["access_log"] = json!(false);
                same(vec![wasm_filter(&config)], not_a_token)
            }
            "wasm_iap_distinct_tokens" => {
                let tokens = self.distinct("RS256");
                let load = Load::Rotating {
                    script: rotation_script(&self.dir.0, name, &tokens),
                    refused: false,
                };
                (
                    wasm(),
                    load,
                    format!("Authorization: Bearer {}", tokens[0]),
                    not_a_token,
                )
            }
            "wasm_iap_forged_rs256" | "wasm_iap_forged_es256" | "wasm_iap_forged_eddsa" => {
                let alg = match name {
                    "wasm_iap_forged_rs256" => "RS256",
                    "wasm_iap_forged_es256" => "ES256",
                    _ => "EdDSA",
                };
                let tokens = self.distinct(alg);
                let forged: Vec<String> = tokens.iter().map(|t| tamper_signature(t)).collect();
                let load = Load::Rotating {
                    script: rotation_script(&self.dir.0, name, &forged),
                    refused: true,
                };
                let untampered = format!("Authorization: Bearer {}", tokens[0]);
                let refuse = format!("Authorization: Bearer {}", forged[0]);
                (wasm(), load, untampered, Some(refuse))
            }
            "wasm_iap_session_cookie"
            | "wasm_iap_session_3_chunks"
            | "wasm_iap_session_store"
            | "wasm_iap_session_assertion"
            | "wasm_iap_session_no_access_log" => {
                let mut config = session_config(&self.jwks);
                if name == "wasm_iap_session_no_access_log" {
                    config["access_log"] = json!(false);
                }
                if name == "wasm_iap_session_store" {
                    config = with_cluster_store(config);
                }
                if name == "wasm_iap_session_assertion" {
                    config = with_assertion(config);
                }
                let chunks = if name == "wasm_iap_session_3_chunks" {
                    3
                } else {
                    1
                };
                let cookie = format!("Cookie: {}", session_cookie(&config, chunks));
                let filters = vec![wasm_filter(&config)];
                (filters, Load::Same(cookie.clone()), cookie, not_a_token)
            }
            _ => panic!("unknown scenario {name}"),
        };
        let mut config = direct_response_bootstrap(filters);
        if name == "ext_authz_http" {
            let port = authz_port.expect("ext_authz_http needs its authorization server");
            config = with_cluster(config, AUTHZ_CLUSTER, port);
        }
        if name == "wasm_iap_session_store" {
            let port = etcd_port.expect("wasm_iap_session_store needs its etcd");
            config = with_cluster(config, ETCD_CLUSTER, port);
        }
        Scenario {
            name,
            config,
            load,
            pass,
            refuse,
        }
    }
}
