//! `cluster_store`: the etcd cluster the replicas of a fleet share (refresh locks,
//! revocations, server-side sessions), reached through an Envoy cluster.

use serde_json::Value;

use crate::core::config::reader::{ObjectReader, Problems};
use crate::core::reply::header_value_safe;

/// Revocations must reach every replica within 2 s, so no replica may sync less often.
pub(crate) const MAX_SYNC_INTERVAL_MS: u64 = 2_000;
const DEFAULT_SYNC_INTERVAL_MS: u64 = 1_000;
/// Below this a sync would be a callout per tick; `sync_interval` is at least this.
const MIN_SYNC_INTERVAL_MS: u64 = 100;
const DEFAULT_TIMEOUT_MS: u64 = 1_000;
/// A callout to etcd is bounded: a store that hangs must not hold a request (or a sync)
/// longer than this.
const TIMEOUT_RANGE_MS: (u64, u64) = (100, 10_000);
const DEFAULT_PREFIX: &str = "/wasm-iap";
const MAX_PREFIX_CHARS: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStore {
    pub etcd: Etcd,
    /// How often each Envoy reads what changed in the store (revocations).
    pub sync_interval_ms: u64,
}

/// Where etcd's v3 JSON gateway is: the Envoy cluster (TLS, if any, is the cluster's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Etcd {
    pub cluster: String,
    pub authority: String,
    /// Every key starts with it: several deployments can share one etcd.
    pub prefix: String,
    pub timeout_ms: u64,
}

/// Reads `cluster_store: {"etcd": {"cluster", "authority", "prefix", "timeout"},
/// "sync_interval"}`; `None` when absent (each Envoy on its own) or wrong.
pub(crate) fn read_cluster_store(
    value: Option<&Value>,
    problems: &mut Problems,
) -> Option<ClusterStore> {
    let value = value?;
    let mut reader = ObjectReader::new("cluster_store", value, problems);
    let etcd_path = reader.field_path("etcd");
    let etcd = match reader.value("etcd") {
        Some(etcd) => read_etcd(&etcd_path, etcd, problems),
        None => {
            problems.add(&etcd_path, "is required (the etcd cluster to use)");
            None
        }
    };
    let sync_path = reader.field_path("sync_interval");
    let sync_interval_ms =
        reader.duration_millis("sync_interval", DEFAULT_SYNC_INTERVAL_MS, problems);
    if !(MIN_SYNC_INTERVAL_MS..=MAX_SYNC_INTERVAL_MS).contains(&sync_interval_ms) {
        problems.add(
            &sync_path,
            "must be from 100ms to 2s (revocations reach every replica within 2 s)",
        );
    }
    reader.finish(problems);
    Some(ClusterStore {
        etcd: etcd?,
        sync_interval_ms,
    })
}

fn read_etcd(path: &str, value: &Value, problems: &mut Problems) -> Option<Etcd> {
    let mut reader = ObjectReader::new(path, value, problems);
    let cluster_path = reader.field_path("cluster");
    let cluster = reader.string("cluster", problems);
    if cluster.as_deref().is_none_or(str::is_empty) {
        problems.add(
            &cluster_path,
            "is required (the Envoy cluster that reaches etcd)",
        );
    }
    let authority_path = reader.field_path("authority");
    let authority = reader.string("authority", problems);
    if let Some(text) = &authority {
        if text.is_empty() || text.contains(char::is_whitespace) || !header_value_safe(text) {
            problems.add(&authority_path, format!("\"{text}\" is not a host[:port]"));
        }
    }
    let prefix_path = reader.field_path("prefix");
    let prefix = reader
        .string("prefix", problems)
        .unwrap_or_else(|| DEFAULT_PREFIX.into());
    if !prefix_valid(&prefix) {
        problems.add(
            &prefix_path,
            format!("\"{prefix}\" must start with \"/\", not end with \"/\", and be printable ASCII (at most {MAX_PREFIX_CHARS} characters)"),
        );
    }
    let timeout_path = reader.field_path("timeout");
    let timeout_ms = reader.duration_millis("timeout", DEFAULT_TIMEOUT_MS, problems);
    let (least, most) = TIMEOUT_RANGE_MS;
    if !(least..=most).contains(&timeout_ms) {
        problems.add(&timeout_path, "must be from 100ms to 10s");
    }
    reader.finish(problems);
    let cluster = cluster.filter(|c| !c.is_empty())?;
    Some(Etcd {
        authority: authority.unwrap_or_else(|| cluster.clone()),
        cluster,
        prefix,
        timeout_ms,
    })
}

/// `/name`, `/a/b`: no trailing `/` (kinds add their own), nothing a log or a key
/// listing would show differently from what it is.
fn prefix_valid(prefix: &str) -> bool {
    prefix.len() > 1
        && prefix.len() <= MAX_PREFIX_CHARS
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use crate::core::config::Settings;

    const PROVIDERS: &str =
        r#""providers":[{"issuer":"https://i","audiences":["a"],"cluster":"c"}]"#;

    fn parse(store: &str) -> Result<Settings, Vec<String>> {
        Settings::parse(&format!("{{{PROVIDERS},\"cluster_store\":{store}}}"))
    }

    fn problems_of(store: &str) -> Vec<String> {
        parse(store).err().unwrap_or_default()
    }

    #[test]
    fn absent_means_each_envoy_on_its_own() {
        let settings = Settings::parse(&format!("{{{PROVIDERS}}}"));
        assert!(settings.is_ok_and(|s| s.cluster_store.is_none()));
    }

    #[test]
    fn a_cluster_alone_gets_the_defaults() {
        let store = parse(r#"{"etcd":{"cluster":"outbound|2379||etcd.store.svc"}}"#)
            .ok()
            .and_then(|s| s.cluster_store);
        let Some(store) = store else {
            panic!("expected a cluster store")
        };
        assert_eq!(store.etcd.cluster, "outbound|2379||etcd.store.svc");
        assert_eq!(store.etcd.authority, "outbound|2379||etcd.store.svc");
        assert_eq!(store.etcd.prefix, "/wasm-iap");
        assert_eq!(store.etcd.timeout_ms, 1_000);
        assert_eq!(store.sync_interval_ms, 1_000);
    }

    #[test]
    fn every_field_is_read() {
        let store = parse(
            r#"{"etcd":{"cluster":"etcd","authority":"etcd.example:2379","prefix":"/team-a/iap","timeout":"250ms"},"sync_interval":"2s"}"#,
        )
        .ok()
        .and_then(|s| s.cluster_store);
        let Some(store) = store else {
            panic!("expected a cluster store")
        };
        assert_eq!(store.etcd.authority, "etcd.example:2379");
        assert_eq!(store.etcd.prefix, "/team-a/iap");
        assert_eq!(store.etcd.timeout_ms, 250);
        assert_eq!(store.sync_interval_ms, 2_000);
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let cases = [
            (r#"[]"#, "cluster_store: must be an object"),
            (r#"{}"#, "cluster_store.etcd: is required"),
            (r#"{"etcd":{}}"#, "cluster_store.etcd.cluster: is required"),
            (
                r#"{"etcd":{"cluster":""}}"#,
                "cluster_store.etcd.cluster: is required",
            ),
            (
                r#"{"etcd":{"cluster":7}}"#,
                "cluster_store.etcd.cluster: must be a string",
            ),
            (
                r#"{"etcd":"etcd:2379"}"#,
                "cluster_store.etcd: must be an object",
            ),
            (
                r#"{"etcd":{"cluster":"e","authority":"a b"}}"#,
                "cluster_store.etcd.authority: \"a b\" is not a host[:port]",
            ),
            (
                r#"{"etcd":{"cluster":"e","authority":""}}"#,
                "cluster_store.etcd.authority: \"\" is not a host[:port]",
            ),
            (
                r#"{"etcd":{"cluster":"e","prefix":"wasm-iap"}}"#,
                "cluster_store.etcd.prefix: \"wasm-iap\" must start with \"/\"",
            ),
            (
                r#"{"etcd":{"cluster":"e","prefix":"/wasm-iap/"}}"#,
                "cluster_store.etcd.prefix: \"/wasm-iap/\" must start",
            ),
            (
                r#"{"etcd":{"cluster":"e","prefix":"/"}}"#,
                "cluster_store.etcd.prefix: \"/\" must start",
            ),
            (
                r#"{"etcd":{"cluster":"e","prefix":"/a b"}}"#,
                "cluster_store.etcd.prefix: \"/a b\" must start",
            ),
            (
                r#"{"etcd":{"cluster":"e","prefix":"/caf\u00e9"}}"#,
                "cluster_store.etcd.prefix: \"/caf\\u{e9}\" must start",
            ),
            (
                r#"{"etcd":{"cluster":"e","timeout":"1"}}"#,
                "cluster_store.etcd.timeout: \"1\" has no unit",
            ),
            (
                r#"{"etcd":{"cluster":"e","timeout":"50ms"}}"#,
                "cluster_store.etcd.timeout: must be from 100ms to 10s",
            ),
            (
                r#"{"etcd":{"cluster":"e","timeout":"11s"}}"#,
                "cluster_store.etcd.timeout: must be from 100ms to 10s",
            ),
            (
                r#"{"etcd":{"cluster":"e"},"sync_interval":"3s"}"#,
                "cluster_store.sync_interval: must be from 100ms to 2s",
            ),
            (
                r#"{"etcd":{"cluster":"e"},"sync_interval":"0s"}"#,
                "cluster_store.sync_interval: must be from 100ms to 2s",
            ),
            (
                r#"{"etcd":{"cluster":"e","endpoints":["x"]}}"#,
                "cluster_store.etcd.endpoints: unknown field",
            ),
            (
                r#"{"etcd":{"cluster":"e"},"redis":{}}"#,
                "cluster_store.redis: unknown field",
            ),
        ];
        for (store, expected) in cases {
            let problems = problems_of(store);
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{store}: expected {expected:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn all_problems_come_at_once() {
        let problems = problems_of(
            r#"{"etcd":{"prefix":"x/","timeout":"1m","tls":true},"sync_interval":"5s"}"#,
        );
        for expected in [
            "cluster_store.etcd.cluster:",
            "cluster_store.etcd.prefix:",
            "cluster_store.etcd.timeout:",
            "cluster_store.etcd.tls: unknown field",
            "cluster_store.sync_interval:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "expected {expected:?} in {problems:#?}"
            );
        }
    }
}
