#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every configuration the README and `docs/*.md` show is run: each JSON example (completed
//! with the providers it names when it is a fragment) and each plugin configuration inside
//! their Envoy YAML is parsed by the filter and probed with the bypass spellings of issue 16.
//! An example cannot be unsafe: on every example, a spelling of a path is never let through
//! where the plain spelling is refused, a host no service lists never passes, and no
//! client-sent identity header reaches the upstream. The Envoy configurations carry the
//! settings the documents ask for, and no document loses an example unnoticed.

mod support;

use serde_json::{json, Value};
use support::doc_examples::{blocks, documents, env_secret, examples, examples_in};
use support::mint::{claims_with, shared_keys};
use support::native_bed::Bed;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::Decision;

/// Examples (JSON blocks and plugin configurations in Envoy YAML) and Envoy YAML blocks each
/// document showed when the README was split into `docs/` (issue 17; 8 examples and 4 YAML
/// blocks before, all in the README): a block lost or broken in an edit fails here.
const SHOWN_AT_LEAST: &[(&str, usize, usize)] = &[
    ("README.md", 2, 1),
    ("docs/authorization.md", 2, 0),
    ("docs/configuration.md", 2, 0),
    ("docs/forward-auth.md", 1, 2),
    // Added with issue 19.
    ("docs/identity-assertion.md", 1, 0),
    ("docs/kubernetes.md", 2, 1),
    // Added with issue 18: the fleet's plugin configuration and etcd cluster.
    ("docs/replicas.md", 1, 1),
    // Added with issue 19: a branded service.
    ("docs/pages.md", 1, 0),
    // Issue 19: sign-in hints and the idle timeout.
    ("docs/sign-in-hints.md", 2, 0),
];

#[test]
fn no_document_shows_fewer_examples_than_when_the_readme_was_split() {
    let documents = documents();
    for &(name, examples, yamls) in SHOWN_AT_LEAST {
        let Some((_, text)) = documents.iter().find(|(n, _)| n == name) else {
            panic!("{name} is gone, with its {examples} examples");
        };
        let found = examples_in(name, text).len();
        assert!(
            found >= examples,
            "{name}: {found} examples, was {examples}"
        );
        let found = blocks(text, "yaml").len();
        assert!(
            found >= yamls,
            "{name}: {found} Envoy YAML blocks, was {yamls}"
        );
    }
}

#[test]
fn every_configuration_example_in_the_readme_is_accepted() {
    let examples = examples();
    assert!(
        examples.len() >= 9,
        "found only {} examples",
        examples.len()
    );
    for (place, config) in &examples {
        let parsed = Settings::parse_with_env(&config.to_string(), &env_secret);
        assert!(parsed.is_ok(), "{place}: {:?}\n{config:#}", parsed.err());
    }
}

/// How far a decision lets a request go: refused, sent to sign in, or through.
fn reach(decision: &Decision) -> u8 {
    match decision {
        Decision::Forward(_) => 2,
        // The IdP chooser (docs/several-idps.md) is the way to sign in, not through.
        Decision::Respond(reply) if reply.body.contains("Choose how to sign in") => 1,
        Decision::Respond(reply) if reply.status < 300 => 2,
        Decision::Respond(reply) if reply.status < 400 => 1,
        _ => 0,
    }
}

/// Hosts of every service of an example, and each service's routes.
fn services_of(config: &Value) -> Vec<(Vec<String>, Vec<Value>)> {
    ["login", "services"]
        .iter()
        .flat_map(|k| {
            config
                .get(*k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|service| {
            let hosts = service["hosts"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let routes = service["routes"].as_array().cloned().unwrap_or_default();
            (hosts, routes)
        })
        .collect()
}

/// Spellings of `path` that upstreams serve as `path` (Rails formats, IIS trailing dots and
/// spaces, escapes, matrix parameters, case).
fn spellings(path: &str) -> Vec<String> {
    let base = path.trim_end_matches('/');
    if base.is_empty() {
        return Vec::new();
    }
    let (head, last) = base.rsplit_once('/').unwrap_or(("", base));
    let escaped_last = last
        .char_indices()
        .last()
        .map(|(i, c)| format!("{}%{:02x}", &last[..i], c as u32))
        .unwrap_or_default();
    let mut out: Vec<String> = [
        ".json", ".", "..", "%2e", "%20", ";x", ";.json", ".XML.", "./x", "%2e/x", "%20/x",
    ]
    .iter()
    .map(|suffix| format!("{base}{suffix}"))
    .collect();
    out.push(base.to_uppercase());
    out.push(format!("{head}/{escaped_last}"));
    out.push(format!("{head}/{last};x/admin/users"));
    out
}

/// A token from the example's first provider with nothing a rule could grant.
fn plain_token(config: &Value) -> String {
    let provider = &config["providers"][0];
    let issuer = provider["issuer"].as_str().unwrap();
    let audience = provider["audiences"][0].as_str().unwrap();
    shared_keys().signer("ES256").sign(&claims_with(
        issuer,
        audience,
        json!({ "email": "nobody@elsewhere.test" }),
    ))
}

fn bed_for(config: &Value) -> Bed {
    Bed::with_env(config, &env_secret)
}

#[test]
fn no_readme_example_lets_a_spelling_past_its_restrictions_or_open_past_its_public_routes() {
    let mut probes = 0;
    for (place, config) in examples() {
        let token = format!("Bearer {}", plain_token(&config));
        let callers: [Vec<(&str, &str)>; 2] = [
            vec![("accept", "application/json")],
            vec![("accept", "application/json"), ("authorization", &token)],
        ];
        for (index, (hosts, routes)) in services_of(&config).iter().enumerate() {
            let Some(host) = hosts.iter().find(|h| *h != "*") else {
                continue;
            };
            for (r, route) in routes.iter().enumerate() {
                let Some(path) = route["path"].as_str().or(route["path_prefix"].as_str()) else {
                    continue;
                };
                let method = route["methods"][0].as_str().unwrap_or("GET");
                let public = route["public"].as_bool() == Some(true);
                // The same requests, judged as if the public route were not there.
                let mut without = config.clone();
                let key = if index < config["login"].as_array().map_or(0, Vec::len) {
                    ("login", index)
                } else {
                    (
                        "services",
                        index - config["login"].as_array().map_or(0, Vec::len),
                    )
                };
                without[key.0][key.1]["routes"]
                    .as_array_mut()
                    .unwrap()
                    .remove(r);
                for caller in &callers {
                    let plain = reach(&bed_for(&config).send(method, host, path, caller).decision);
                    for spelt in spellings(path) {
                        probes += 1;
                        let got =
                            reach(&bed_for(&config).send(method, host, &spelt, caller).decision);
                        let bound = if public {
                            reach(
                                &bed_for(&without)
                                    .send(method, host, &spelt, caller)
                                    .decision,
                            )
                        } else {
                            plain
                        };
                        assert!(
                            got <= bound,
                            "{place}: {method} {host}{spelt} goes further ({got}) than {} ({bound})",
                            if public { "without the public route" } else { path }
                        );
                    }
                }
            }
        }
    }
    assert!(probes >= 60, "only {probes} spellings probed");
}

#[test]
fn no_readme_example_admits_an_unlisted_host_or_a_spoofed_identity_header() {
    const SPOOFED: [&str; 8] = [
        "x_auth_request_groups",
        "X-Auth-Request-User",
        "impersonate-user",
        "x-remote-user",
        "x-http-method-override",
        "x-webauth-user",
        "remote-user",
        "x-forwarded-groups",
    ];
    for (place, config) in examples() {
        let token = format!("Bearer {}", plain_token(&config));
        let services = services_of(&config);
        let mut extra: Vec<(&str, &str)> =
            vec![("accept", "application/json"), ("authorization", &token)];
        extra.extend(SPOOFED.iter().map(|n| (*n, "admins")));
        if !services.is_empty() && !services.iter().any(|(h, _)| h.iter().any(|h| h == "*")) {
            for host in ["unlisted.example.net", "127.0.0.1", "localhost"] {
                let sent = bed_for(&config).send("GET", host, "/", &extra);
                assert!(
                    reach(&sent.decision) < 2,
                    "{place}: {host} is under no service, yet passed"
                );
            }
        }
        for (hosts, _) in &services {
            for host in hosts.iter().filter(|h| *h != "*") {
                let sent = bed_for(&config).send("GET", host, "/", &extra);
                if let Decision::Forward(forward) = &sent.decision {
                    for name in SPOOFED {
                        let removed = sent
                            .strip
                            .iter()
                            .chain(&forward.remove_headers)
                            .any(|n| n == name)
                            || forward
                                .set_headers
                                .iter()
                                .any(|(n, _)| n.eq_ignore_ascii_case(name));
                        assert!(removed, "{place}: {name} reached the upstream of {host}");
                    }
                }
            }
        }
    }
}

/// Every mapping in `yaml` whose `@type` ends with `suffix`.
fn typed<'a>(yaml: &'a serde_yaml::Value, suffix: &str, out: &mut Vec<&'a serde_yaml::Value>) {
    match yaml {
        serde_yaml::Value::Mapping(map) => {
            if map
                .get("@type")
                .and_then(serde_yaml::Value::as_str)
                .is_some_and(|t| t.ends_with(suffix))
            {
                out.push(yaml);
            }
            map.values().for_each(|v| typed(v, suffix, out));
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| typed(v, suffix, out)),
        _ => {}
    }
}

fn text_at<'a>(yaml: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a str> {
    let mut value = yaml;
    for key in path {
        value = value.get(*key)?;
    }
    value.as_str()
}

fn yaml_blocks() -> Vec<(String, serde_yaml::Value)> {
    documents()
        .iter()
        .flat_map(|(name, text)| {
            blocks(text, "yaml").into_iter().map(move |(line, body)| {
                (
                    format!("{name}:{line}"),
                    serde_yaml::from_str(&body).unwrap(),
                )
            })
        })
        .collect()
}

/// The settings the documents ask for hold in each Envoy they show: client addresses Envoy
/// decides, underscore spellings refused, paths normalised as the rules see them, a catch-all
/// virtual host that forwards nothing, and a Wasm VM that is reloaded, never failed open.
#[test]
fn every_envoy_in_the_readme_carries_the_settings_the_readme_asks_for() {
    let mut managers = 0;
    for (place, yaml) in yaml_blocks() {
        let mut found = Vec::new();
        typed(&yaml, ".HttpConnectionManager", &mut found);
        for hcm in found {
            managers += 1;
            assert_eq!(
                hcm["use_remote_address"].as_bool(),
                Some(true),
                "{place}: use_remote_address"
            );
            let underscores = text_at(
                hcm,
                &[
                    "common_http_protocol_options",
                    "headers_with_underscores_action",
                ],
            );
            assert!(
                matches!(underscores, Some("REJECT_REQUEST" | "DROP_HEADER")),
                "{place}: headers_with_underscores_action is {underscores:?}"
            );
            assert_eq!(
                hcm["normalize_path"].as_bool(),
                Some(true),
                "{place}: normalize_path"
            );
            assert_eq!(
                hcm["merge_slashes"].as_bool(),
                Some(true),
                "{place}: merge_slashes"
            );
            assert_eq!(
                text_at(hcm, &["path_with_escaped_slashes_action"]),
                Some("REJECT_REQUEST"),
                "{place}: path_with_escaped_slashes_action"
            );
            let hosts = hcm["route_config"]["virtual_hosts"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            for vhost in hosts {
                let catch_all = vhost["domains"]
                    .as_sequence()
                    .is_some_and(|d| d.iter().any(|d| d.as_str() == Some("*")));
                let forwards = vhost["routes"]
                    .as_sequence()
                    .is_some_and(|r| r.iter().any(|r| r.get("route").is_some()));
                assert!(
                    !(catch_all && forwards),
                    "{place}: a \"*\" virtual host forwards to an upstream"
                );
            }
        }
        let mut filters = Vec::new();
        typed(&yaml, "filters.http.wasm.v3.Wasm", &mut filters);
        for wasm in filters {
            assert_eq!(
                text_at(wasm, &["config", "failure_policy"]),
                Some("FAIL_RELOAD"),
                "{place}: failure_policy"
            );
        }
    }
    assert!(managers >= 3, "found {managers} connection managers");
}

/// The `ext_authz` of docs/forward-auth.md hands the check every header of a stripped family, in every
/// spelling Envoy passes on (lower case, `-` or `_`), so its answer can name them for removal.
#[test]
fn the_readmes_ext_authz_sends_the_check_every_spoofable_header() {
    const SPELLINGS: [&str; 16] = [
        "x-auth-request-groups",
        "x_auth_request_groups",
        "impersonate-user",
        "impersonate_group",
        "x-remote-user",
        "x-pomerium-jwt-assertion",
        "x-webauth-user",
        "x_webauth_groups",
        "x-http-method-override",
        "x_http_method",
        "x-method-override",
        "remote-user",
        "x-user",
        "x-email",
        "x-forwarded-user",
        "x_forwarded_groups",
    ];
    let mut checked = 0;
    for (place, yaml) in yaml_blocks() {
        let mut found = Vec::new();
        typed(&yaml, ".ExtAuthz", &mut found);
        for ext_authz in found {
            checked += 1;
            assert_eq!(
                ext_authz["failure_mode_allow"].as_bool(),
                Some(false),
                "{place}"
            );
            let patterns = ext_authz["http_service"]["authorization_request"]["allowed_headers"]
                ["patterns"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            let matches = |name: &str| {
                patterns.iter().any(|p| {
                    let ignore_case = p["ignore_case"].as_bool() == Some(true);
                    let fold = |s: &str| {
                        if ignore_case {
                            s.to_ascii_lowercase()
                        } else {
                            s.to_string()
                        }
                    };
                    if let Some(exact) = p["exact"].as_str() {
                        return fold(exact) == fold(name);
                    }
                    if let Some(prefix) = p["prefix"].as_str() {
                        return fold(name).starts_with(&fold(prefix));
                    }
                    p["safe_regex"]["regex"].as_str().is_some_and(|r| {
                        regex_lite::Regex::new(&format!("^(?:{r})$"))
                            .unwrap()
                            .is_match(name)
                    })
                })
            };
            for name in SPELLINGS {
                assert!(matches(name), "{place}: the check never sees {name}");
            }
        }
    }
    assert!(checked >= 1, "no ext_authz in the documents");
}
