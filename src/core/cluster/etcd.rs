//! Requests to etcd's v3 JSON gateway (`POST /v3/...`), as callouts through the Envoy
//! cluster that reaches it. Keys and values travel base64-encoded; int64 fields are sent as
//! JSON strings, as etcd itself writes them (a lease ID does not fit a double).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::core::config::cluster_store::Etcd;
use crate::core::host::Callout;
use crate::core::secret::Secret;

/// A lease etcd granted: keys put with it go when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseId(pub i64);

/// Which keys a range reads.
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a> {
    One(&'a [u8]),
    /// Every key that starts with these bytes.
    Prefix(&'a [u8]),
}

/// A range read: the keys, only those changed at or after `min_mod_revision` (0: all),
/// at most `limit` of them, oldest change first (0: no limit; `more` in the answer says
/// some were left).
#[derive(Clone, Copy, Debug)]
pub struct Range<'a> {
    pub keys: Keys<'a>,
    pub min_mod_revision: i64,
    pub limit: u64,
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(STANDARD.encode(bytes))
}

fn int64(n: i64) -> Value {
    Value::String(n.to_string())
}

/// The first key after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`):
/// its last byte below 0xff raised by one; `[0]` (to the end of the keyspace) when none is.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn call(etcd: &Etcd, path: &'static str, body: Value) -> Callout {
    Callout {
        cluster: etcd.cluster.clone(),
        headers: vec![
            (":method", "POST".into()),
            (":path", path.into()),
            (":authority", etcd.authority.clone()),
            (":scheme", "http".into()),
            ("user-agent", "wasm-iap".into()),
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        // Values are sealed session data: the body is never logged.
        body: Some(Secret::new(body.to_string())),
        timeout_ms: etcd.timeout_ms,
    }
}

fn range_body(range: &Range) -> Value {
    let mut body = Map::new();
    match range.keys {
        Keys::One(key) => {
            body.insert("key".into(), base64(key));
        }
        Keys::Prefix(prefix) => {
            body.insert("key".into(), base64(prefix));
            body.insert("range_end".into(), base64(&prefix_end(prefix)));
        }
    }
    if range.min_mod_revision > 0 {
        body.insert("min_mod_revision".into(), int64(range.min_mod_revision));
    }
    if range.limit > 0 {
        body.insert(
            "limit".into(),
            int64(i64::try_from(range.limit).unwrap_or(i64::MAX)),
        );
        // The oldest changes first: a sync that got `limit` of them goes on after the last.
        body.insert("sort_target".into(), Value::String("MOD".into()));
        body.insert("sort_order".into(), Value::String("ASCEND".into()));
    }
    Value::Object(body)
}

fn put_body(key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Value {
    let mut body = json!({ "key": base64(key), "value": base64(value) });
    if let Some(LeaseId(id)) = lease {
        body["lease"] = int64(id);
    }
    body
}

/// `POST /v3/kv/range`.
pub fn range(etcd: &Etcd, range: &Range) -> Callout {
    call(etcd, "/v3/kv/range", range_body(range))
}

/// `POST /v3/kv/put`: sets `key`, bound to `lease` if given.
pub fn put(etcd: &Etcd, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Callout {
    call(etcd, "/v3/kv/put", put_body(key, value, lease))
}

/// `POST /v3/kv/txn`: puts `key` only if it does not exist (its `create_revision` is 0);
/// otherwise reads it, so the loser of a race learns the winner's value in the same call.
pub fn create_if_absent(etcd: &Etcd, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Callout {
    let body = json!({
        "compare": [{
            "target": "CREATE",
            "result": "EQUAL",
            "key": base64(key),
            "create_revision": int64(0),
        }],
        "success": [{ "request_put": put_body(key, value, lease) }],
        "failure": [{ "request_range": { "key": base64(key) } }],
    });
    call(etcd, "/v3/kv/txn", body)
}

/// `POST /v3/kv/deleterange` of one key.
pub fn delete(etcd: &Etcd, key: &[u8]) -> Callout {
    call(etcd, "/v3/kv/deleterange", json!({ "key": base64(key) }))
}

/// `POST /v3/lease/grant`: a lease of `ttl_secs` seconds, its ID chosen by etcd.
pub fn grant_lease(etcd: &Etcd, ttl_secs: u64) -> Callout {
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    call(etcd, "/v3/lease/grant", json!({ "TTL": int64(ttl) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd() -> Etcd {
        Etcd {
            cluster: "outbound|2379||etcd.store.svc".into(),
            authority: "etcd.store.svc:2379".into(),
            prefix: "/wasm-iap".into(),
            timeout_ms: 750,
        }
    }

    fn header<'a>(call: &'a Callout, name: &str) -> Option<&'a str> {
        call.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body(call: &Callout) -> Value {
        let text = call.body.as_ref().map(Secret::expose).unwrap_or_default();
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn a_call_goes_to_the_configured_cluster_with_its_timeout() {
        let call = delete(&etcd(), b"/wasm-iap/jti/ab");
        assert_eq!(call.cluster, "outbound|2379||etcd.store.svc");
        assert_eq!(call.timeout_ms, 750);
        assert_eq!(header(&call, ":method"), Some("POST"));
        assert_eq!(header(&call, ":path"), Some("/v3/kv/deleterange"));
        assert_eq!(header(&call, ":authority"), Some("etcd.store.svc:2379"));
        assert_eq!(header(&call, "content-type"), Some("application/json"));
        assert_eq!(body(&call), json!({ "key": "L3dhc20taWFwL2p0aS9hYg==" }));
    }

    #[test]
    fn the_body_is_never_printed() {
        let call = put(&etcd(), b"k", b"sealed session", None);
        assert!(!format!("{call:?}").contains(&STANDARD.encode(b"sealed session")));
    }

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        let call = range(
            &etcd(),
            &Range {
                keys: Keys::Prefix(b"/a/"),
                min_mod_revision: 42,
                limit: 500,
            },
        );
        assert_eq!(header(&call, ":path"), Some("/v3/kv/range"));
        assert_eq!(
            body(&call),
            json!({ "key": "L2Ev", "range_end": "L2Ew", "min_mod_revision": "42", "limit": "500",
                    "sort_target": "MOD", "sort_order": "ASCEND" })
        );
        let one = range(
            &etcd(),
            &Range {
                keys: Keys::One(b"/a/b"),
                min_mod_revision: 0,
                limit: 0,
            },
        );
        assert_eq!(body(&one), json!({ "key": "L2EvYg==" }));
    }

    #[test]
    fn values_are_base64_and_int64_are_strings() {
        let call = put(
            &etcd(),
            b"k",
            &[0, 1, 0xff],
            Some(LeaseId(7_587_883_255_612_401_234)),
        );
        assert_eq!(
            body(&call),
            json!({ "key": "aw==", "value": "AAH/", "lease": "7587883255612401234" })
        );
        assert_eq!(body(&grant_lease(&etcd(), 30)), json!({ "TTL": "30" }));
    }

    #[test]
    fn create_if_absent_compares_the_create_revision_with_zero() {
        let call = create_if_absent(&etcd(), b"k", b"v", Some(LeaseId(5)));
        assert_eq!(header(&call, ":path"), Some("/v3/kv/txn"));
        assert_eq!(
            body(&call),
            json!({
                "compare": [{ "target": "CREATE", "result": "EQUAL", "key": "aw==", "create_revision": "0" }],
                "success": [{ "request_put": { "key": "aw==", "value": "dg==", "lease": "5" } }],
                "failure": [{ "request_range": { "key": "aw==" } }],
            })
        );
    }
}
