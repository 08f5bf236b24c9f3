//! A corpus of plugin configurations for tests/config_schema.rs: valid ones drawn by a
//! proptest strategy over most of docs/configuration.md's fields, and invalid ones made from
//! them by one local mutation each (an unknown field, a wrong type, a bad enum value, a
//! missing required field): the kinds of mistake a schema can see. Cross-field checks
//! (unique hosts, issuers a provider must have, cookie scopes, duration ranges) are left out
//! on purpose: docs/check.md lists them.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::{json, Map, Value};

use super::mint::shared_keys;

const ISSUERS: [&str; 2] = ["https://dex.example.com", "https://corp.example"];

fn maybe(
    field: &'static str,
    strategy: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Option<(String, Value)>> {
    prop::option::weighted(0.4, strategy.prop_map(move |v| (field.to_string(), v)))
}

fn object(fields: Vec<Option<(String, Value)>>, mut base: Value) -> Value {
    for (k, v) in fields.into_iter().flatten() {
        base[k] = v;
    }
    base
}

fn duration() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["250ms", "5s", "10m", "1h"]).prop_map(|d| json!(d))
}

fn provider(index: usize) -> impl Strategy<Value = Value> {
    let algorithms = prop::sample::subsequence(vec!["RS256", "ES256", "EdDSA", "PS384"], 1..=3);
    let inline = index == 1;
    (
        maybe("algorithms", algorithms.prop_map(|a| json!(a))),
        maybe("clock_skew", duration()),
        maybe("require_expiry", any::<bool>().prop_map(Value::Bool)),
        maybe("user_claim", Just(json!("email"))),
        maybe("groups_claim", Just(json!("realm_access.roles"))),
        maybe(
            "email_verified",
            prop::sample::select(vec!["required", "when_present"]).prop_map(|v| json!(v)),
        ),
        maybe("jwks_refresh_interval", duration()),
        maybe("timeout", Just(json!("3s"))),
    )
        .prop_map(move |(a, b, c, d, e, f, g, h)| {
            let mut base =
                json!({"issuer": ISSUERS[index], "audiences": ["prometheus", "grafana"]});
            if inline {
                base["jwks"] = shared_keys().jwks_of(&["ES256"]);
            } else {
                base["cluster"] = json!("outbound|443||dex.example.com");
            }
            // Inline keys are ES256: another algorithm list would leave them unusable.
            let algorithms = if inline { None } else { a };
            object(vec![algorithms, b, c, d, e, f, g, h], base)
        })
}

fn rule() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"groups": ["myorg:sre"]})),
        Just(json!({"authenticated": true})),
        Just(json!({"email_domains": [".example.com"], "scopes": ["read"]})),
        Just(json!({"claims": {"realm_access.roles": ["admin"], "tenant": "a"}})),
        Just(json!({"emails": ["ops@example.com"], "issuers": [ISSUERS[0]]})),
    ]
}

fn route() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        Just(json!({"path": "/healthz"})),
        Just(json!({"path_prefix": "/admin"})),
        Just(json!({"path_regex": "/api/v[0-9]+/.*"})),
        Just(json!({})),
    ];
    let access = prop_oneof![
        Just(json!({"public": true})),
        prop::collection::vec(rule(), 1..3).prop_map(|r| json!({"allow": r})),
        (rule(), rule())
            .prop_map(|(a, d)| json!({"allow": [a], "deny": [d], "unauthenticated": "deny"})),
        Just(json!({"unauthenticated": "login"})),
    ];
    (path, access, prop::option::of(Just(json!(["GET", "HEAD"])))).prop_map(|(mut p, a, m)| {
        for (k, v) in a.as_object().cloned().unwrap_or_default() {
            p[k] = v;
        }
        if let Some(m) = m {
            p["methods"] = m;
        }
        p
    })
}

fn pages() -> impl Strategy<Value = Value> {
    (
        maybe("product_name", Just(json!("Acme Portal"))),
        maybe("accent_color", Just(json!("#0A7"))),
        maybe("dark_background_color", Just(json!("#101418"))),
        maybe("logo_url", Just(json!("https://cdn.example.com/logo.svg"))),
        maybe("support_url", Just(json!("mailto:help@example.com"))),
        maybe("forbidden_message", Just(json!("Ask #it-access."))),
    )
        .prop_map(|(a, b, c, d, e, f)| object(vec![a, b, c, d, e, f], json!({})))
}

/// The policy fields a login service and an entry of `services` share.
fn policy() -> impl Strategy<Value = Vec<Option<(String, Value)>>> {
    (
        maybe("allowed_groups", Just(json!(["myorg:sre"]))),
        maybe(
            "email_domains",
            Just(json!(["example.com", ".corp.example"])),
        ),
        maybe("allowed_emails", Just(json!(["a@example.com"]))),
        maybe(
            "routes",
            prop::collection::vec(route(), 0..3).prop_map(|r| json!(r)),
        ),
        maybe(
            "forward_normalized_path",
            any::<bool>().prop_map(Value::Bool),
        ),
        maybe("pages", pages()),
    )
        .prop_map(|(a, b, c, d, e, f)| vec![a, b, c, d, e, f])
}

fn client(issuer_index: usize) -> Value {
    let issuer = ISSUERS[issuer_index];
    let mut c = json!({"issuer": issuer, "client_id": "grafana", "client_secret": {"env": "CLIENT_SECRET"}});
    if issuer_index == 1 {
        // Inline keys: no discovery, so the endpoints and the cluster are named.
        c["authorization_endpoint"] = json!(format!("{issuer}/auth"));
        c["token_endpoint"] = json!(format!("{issuer}/token"));
        c["cluster"] = json!("idp");
    }
    c
}

fn login(index: usize, two_providers: bool) -> impl Strategy<Value = Value> {
    let form = prop_oneof![Just(0usize), Just(1), Just(2)];
    let extras = (
        maybe(
            "cookie_samesite",
            prop::sample::select(vec!["Strict", "lax", "None"]).prop_map(|v| json!(v)),
        ),
        maybe("scopes", Just(json!(["openid", "email", "groups"]))),
        maybe(
            "client_auth",
            prop::sample::select(vec!["client_secret_basic", "client_secret_post"])
                .prop_map(|v| json!(v)),
        ),
        maybe("idle_timeout", Just(json!("30m"))),
        maybe("refresh_race_grace", Just(json!("30s"))),
        maybe("pass_access_token", any::<bool>().prop_map(Value::Bool)),
        maybe("callback_path", Just(json!("/oauth/callback"))),
        maybe("allowed_redirect_hosts", Just(json!([".example.com"]))),
    );
    let hints = prop::option::weighted(
        0.3,
        prop_oneof![
            Just(json!({"start_parameters": ["login_hint", "prompt"]})),
            Just(json!({"start_parameters": ["acr_values"], "acr_values": ["urn:mfa"]})),
        ],
    );
    (form, extras, hints, policy(), prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(
        move |(form, (a, b, c, d, e, f, g, h), hints, policy, cluster, assertion)| {
            let mut service = json!({
                "hosts": [format!("login{index}.example.com")],
                "cookie_name": format!("_svc{index}"),
                "cookie_secrets": [if index == 0 { json!({"env": "COOKIE_SECRET"}) } else { json!("a-literal-cookie-secret-of-32-bytes!") }],
            });
            match (form, two_providers) {
                (2, true) => {
                    let mut second = client(1);
                    second["id"] = json!("corp");
                    second["label"] = json!("Corp SSO");
                    let mut first = client(0);
                    first["id"] = json!("dex");
                    service["idps"] = json!([first, second]);
                }
                (f, _) => {
                    let issuer = if two_providers { f % 2 } else { 0 };
                    for (k, v) in client(issuer).as_object().cloned().unwrap_or_default() {
                        service[k] = v;
                    }
                }
            }
            let mut service = object(vec![a, d, e, f, g, h], service);
            if service.get("idps").is_none() {
                service = object(vec![b, c], service);
            }
            for (k, v) in hints.and_then(|h| h.as_object().cloned()).unwrap_or_default() {
                service[k] = v;
            }
            if cluster {
                service["session_store"] = json!("cluster");
                service["session_store_outage"] = json!("sign_in");
            }
            if assertion {
                service["identity_assertion"] = json!({"audience": "grafana", "lifetime": "1m"});
            }
            object(policy, service)
        },
    )
}

fn api_service(index: usize, two_providers: bool) -> impl Strategy<Value = Value> {
    (policy(), prop::bool::weighted(0.3), prop::bool::weighted(0.2)).prop_map(move |(policy, kube, assertion)| {
        let mut service = json!({"hosts": [format!("api{index}.example.com")]});
        if two_providers {
            service["providers"] = json!(ISSUERS);
        }
        if kube {
            service["impersonate"] = json!({"user_prefix": "oidc:", "group_prefix": "oidc:", "extra_claims": {"tenant": "tenant.id"}});
        } else if assertion {
            service["identity_assertion"] = json!(true);
        }
        object(policy, service)
    })
}

fn top_level() -> impl Strategy<Value = Vec<Option<(String, Value)>>> {
    (
        maybe("max_token_size", (1u64..100_000).prop_map(|n| json!(n))),
        maybe("keys_wait_timeout", duration()),
        maybe(
            "identity_headers",
            Just(json!({"user": "x-user-name", "groups": "X-Team"})),
        ),
        maybe("claim_headers", Just(json!({"x-tenant": "tenant.id"}))),
        maybe(
            "strip_request_headers",
            Just(json!(["x-internal-*", "x-debug"])),
        ),
        maybe(
            "endpoints",
            Just(json!({"auth": "", "ping": "/healthz", "trust_original_url": true})),
        ),
        maybe(
            "signature_check_budget",
            Just(json!({"per_second": 5, "burst": 20})),
        ),
        maybe(
            "shared_token_cache_bytes",
            prop::sample::select(vec![0u64, 1 << 20]).prop_map(|n| json!(n)),
        ),
        maybe("pages", pages()),
        maybe("access_log", any::<bool>().prop_map(Value::Bool)),
    )
        .prop_map(|(a, b, c, d, e, f, g, h, i, j)| vec![a, b, c, d, e, f, g, h, i, j])
}

fn config() -> impl Strategy<Value = Value> {
    any::<bool>().prop_flat_map(|two| {
        let providers: Vec<_> = (0..if two { 2 } else { 1 }).map(provider).collect();
        let logins = prop::collection::vec(Just(()), 0..=2)
            .prop_flat_map(move |l| (0..l.len()).map(|i| login(i, two)).collect::<Vec<_>>());
        let services = prop::collection::vec(Just(()), 0..=2)
            .prop_flat_map(move |l| (0..l.len()).map(|i| api_service(i, two)).collect::<Vec<_>>());
        (providers, logins, services, top_level()).prop_map(|(providers, login, services, top)| {
            let mut config = object(top, json!({"providers": providers}));
            let stores = login.iter().any(|s| s["session_store"] == "cluster");
            let asks = login.iter().chain(&services).any(|s| s.get("identity_assertion").is_some());
            if !login.is_empty() {
                config["login"] = json!(login);
            }
            if !services.is_empty() {
                config["services"] = json!(services);
            }
            if stores {
                config["cluster_store"] = json!({"etcd": {"cluster": "etcd", "prefix": "/team-a", "timeout": "500ms"}, "sync_interval": "1s"});
            }
            if asks {
                config["identity_assertion"] = json!({"issuer": "gateway", "keys": [{"kid": "k1", "algorithm": "ES256", "private_key": {"env": "ASSERTION_KEY_1"}}]});
            }
            config
        })
    })
}

/// `count` valid configurations, the same ones on every run.
pub fn valid(count: usize) -> Vec<Value> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = config();
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .map(|t| t.current())
                .unwrap_or(Value::Null)
        })
        .collect()
}

/// Objects whose keys are names the user picks (claims, headers): no field is unknown there.
const MAPS: [&str; 4] = ["claims", "claim_headers", "extra_claims", "jwks"];
const ENUMS: [&str; 9] = [
    "client_auth",
    "cookie_samesite",
    "session_store",
    "session_store_outage",
    "email_verified",
    "unauthenticated",
    "algorithms",
    "start_parameters",
    "algorithm",
];
/// Required fields by the key of the list or object that holds them.
const REQUIRED: [(&str, &[&str]); 9] = [
    ("", &["providers"]),
    ("providers", &["issuer", "audiences"]),
    ("login", &["hosts", "cookie_secrets"]),
    ("services", &["hosts"]),
    ("idps", &["id", "issuer", "client_id", "client_secret"]),
    ("cluster_store", &["etcd"]),
    ("etcd", &["cluster"]),
    ("identity_assertion", &["keys"]),
    ("keys", &["kid", "algorithm", "private_key"]),
];

/// Every place in `value`: its JSON pointer and the key it sits under (a list's key for
/// its items), skipping the insides of user-keyed maps.
fn places(value: &Value, pointer: &str, key: &str, out: &mut Vec<(String, String)>) {
    out.push((pointer.to_string(), key.to_string()));
    if MAPS.contains(&key) {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                places(v, &format!("{pointer}/{k}"), k, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                places(v, &format!("{pointer}/{i}"), key, out);
            }
        }
        _ => {}
    }
}

/// One mutation of `valid`, chosen by `seed`: (what was done, the invalid configuration),
/// or `None` when the chosen kind finds no place in this configuration.
pub fn mutated(valid: &Value, seed: u64) -> Option<(String, Value)> {
    let mut all = Vec::new();
    places(valid, "", "", &mut all);
    let pick = |n: usize| (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as usize % n.max(1);
    let mut config = valid.clone();
    match seed % 4 {
        0 => {
            let objects: Vec<_> = all
                .iter()
                .filter(|(p, k)| {
                    !MAPS.contains(&k.as_str()) && config.pointer(p).is_some_and(Value::is_object)
                })
                .collect();
            let (p, _) = objects.get(pick(objects.len()))?;
            config
                .pointer_mut(p)?
                .as_object_mut()?
                .insert("unexpected_field".into(), json!(1));
            Some((format!("unknown field at {p}"), config))
        }
        1 => {
            let leaves: Vec<_> = all
                .iter()
                .filter(|(p, k)| !p.is_empty() && k != "jwks")
                .collect();
            let (p, _) = leaves.get(pick(leaves.len()))?;
            let slot = config.pointer_mut(p)?;
            *slot = match slot {
                Value::String(_) => json!(42),
                Value::Bool(_) => json!("yes"),
                Value::Number(_) => json!("many"),
                Value::Array(_) => json!({"a": 1}),
                _ => json!([1]),
            };
            Some((format!("wrong type at {p}"), config))
        }
        2 => {
            let enums: Vec<_> = all
                .iter()
                .filter(|(p, k)| {
                    ENUMS.contains(&k.as_str()) && config.pointer(p).is_some_and(Value::is_string)
                })
                .collect();
            let (p, _) = enums.get(pick(enums.len()))?;
            *config.pointer_mut(p)? = json!("bogus");
            Some((format!("bad enum value at {p}"), config))
        }
        _ => {
            let mut removable = Vec::new();
            for (p, k) in &all {
                let Some(Value::Object(map)) = config.pointer(p) else {
                    continue;
                };
                let required = REQUIRED
                    .iter()
                    .find(|(holder, _)| holder == k)
                    .map(|(_, r)| *r)
                    .unwrap_or(&[]);
                let single_form = k == "login" && !map.contains_key("idps");
                let extra: &[&str] = if single_form {
                    &["issuer", "client_id", "client_secret"]
                } else {
                    &[]
                };
                for field in required
                    .iter()
                    .chain(extra)
                    .filter(|f| map.contains_key(**f))
                {
                    removable.push((p.clone(), field.to_string()));
                }
            }
            let (p, field) = removable.get(pick(removable.len()))?;
            let map: &mut Map<String, Value> = config.pointer_mut(p)?.as_object_mut()?;
            map.remove(field);
            Some((format!("missing {field} at {p}"), config))
        }
    }
}
