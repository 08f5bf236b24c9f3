//! etcd's answers, read without trusting them: anything but the expected shape is an
//! `EtcdError`, never a panic. The gateway's JSON leaves out every field at its zero value
//! (no `kvs` for an empty range, no `succeeded` for a failed compare, no `value` for an
//! empty value) and writes int64 fields as strings.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::core::cluster::etcd::LeaseId;
use crate::core::keys::fetch::{CalloutResponse, MAX_DOCUMENT_BYTES};
use crate::core::log_text::Escaped;

/// How much of etcd's error message is kept: enough to name the cause in a log line.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdError {
    /// No answer: connection refused or reset, or the callout timed out.
    NoAnswer,
    /// More than a callout answer may be (ask for fewer keys with `limit`).
    TooLarge,
    /// etcd refused: its HTTP status and message (`etcdserver: request timed out`, ...).
    Refused { status: u32, message: String },
    /// An answer of another shape than etcd's: what was wrong with it.
    Garbage(&'static str),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::NoAnswer => f.write_str("etcd did not answer (refused, reset or timed out)"),
            EtcdError::TooLarge => write!(f, "etcd's answer is over {MAX_DOCUMENT_BYTES} bytes"),
            EtcdError::Refused { status, message } => {
                write!(f, "etcd answered HTTP {status}: {}", Escaped(message))
            }
            EtcdError::Garbage(what) => write!(f, "etcd's answer is not understood: {what}"),
        }
    }
}

impl EtcdError {
    /// etcd does not know the lease a key was put with: it ended, or the store lost its
    /// data (a cluster started again empty).
    pub fn lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Refused { status: 404, message }
            if message.ends_with("requested lease not found"))
    }
}

/// A key and its value, as a range or a failed create read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: Option<LeaseId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeAnswer {
    /// The store's revision when it was read: the next sync asks from the one after.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` let through.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutAnswer {
    pub revision: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateAnswer {
    pub revision: i64,
    /// This call created the key.
    pub succeeded: bool,
    /// The key as someone else created it, when this call did not.
    pub existing: Option<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAnswer {
    pub revision: i64,
    pub deleted: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseAnswer {
    pub id: LeaseId,
    pub ttl_secs: i64,
}

/// Whether a member did not answer, so another may: no answer at all, or a gateway error
/// (Envoy could not reach the member or gave up on it: `502`-`504`; a member without a
/// leader, or that saw it change, answers `503`). Envoy's balancer sends a second try
/// elsewhere.
pub fn unanswered(response: &CalloutResponse) -> bool {
    response
        .status
        .is_none_or(|status| (502..=504).contains(&status))
}

/// The answer's JSON object when etcd said yes; the reason otherwise.
fn success(response: &CalloutResponse) -> Result<Value, EtcdError> {
    let status = response.status.ok_or(EtcdError::NoAnswer)?;
    if response.body.len() > MAX_DOCUMENT_BYTES {
        return Err(EtcdError::TooLarge);
    }
    let json: Option<Value> = serde_json::from_slice(response.body).ok();
    if status != 200 {
        let message = json
            .as_ref()
            .and_then(|j| j.get("message").or_else(|| j.get("error")))
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(EtcdError::Refused {
            status,
            message: message.chars().take(MAX_MESSAGE_CHARS).collect(),
        });
    }
    match json {
        Some(object @ Value::Object(_)) => Ok(object),
        _ => Err(EtcdError::Garbage("not a JSON object")),
    }
}

/// An int64 field: a string of digits (or a number); absent is 0.
fn int64(value: &Value, field: &str, what: &'static str) -> Result<i64, EtcdError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(text)) => text.parse().map_err(|_| EtcdError::Garbage(what)),
        Some(Value::Number(n)) => n.as_i64().ok_or(EtcdError::Garbage(what)),
        Some(_) => Err(EtcdError::Garbage(what)),
    }
}

/// A bytes field in base64; absent is empty.
fn bytes(value: &Value, field: &str, what: &'static str) -> Result<Vec<u8>, EtcdError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => STANDARD.decode(text).map_err(|_| EtcdError::Garbage(what)),
        Some(_) => Err(EtcdError::Garbage(what)),
    }
}

fn boolean(value: &Value, field: &str, what: &'static str) -> Result<bool, EtcdError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(EtcdError::Garbage(what)),
    }
}

/// Every answer has a header with the store's revision, never 0 once etcd runs.
fn revision(answer: &Value) -> Result<i64, EtcdError> {
    let header = answer
        .get("header")
        .filter(|h| h.is_object())
        .ok_or(EtcdError::Garbage("no header"))?;
    match int64(header, "revision", "header.revision is not an int64")? {
        0 => Err(EtcdError::Garbage("no header.revision")),
        revision => Ok(revision),
    }
}

fn key_value(kv: &Value) -> Result<KeyValue, EtcdError> {
    if !kv.is_object() {
        return Err(EtcdError::Garbage("a kv is not an object"));
    }
    let lease = int64(kv, "lease", "kv.lease is not an int64")?;
    Ok(KeyValue {
        key: bytes(kv, "key", "kv.key is not base64")?,
        value: bytes(kv, "value", "kv.value is not base64")?,
        create_revision: int64(kv, "create_revision", "kv.create_revision is not an int64")?,
        mod_revision: int64(kv, "mod_revision", "kv.mod_revision is not an int64")?,
        lease: (lease != 0).then_some(LeaseId(lease)),
    })
}

fn key_values(answer: &Value) -> Result<Vec<KeyValue>, EtcdError> {
    match answer.get("kvs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(kvs)) => kvs.iter().map(key_value).collect(),
        Some(_) => Err(EtcdError::Garbage("kvs is not a list")),
    }
}

/// The answer to `etcd::range`.
pub fn read_range(response: &CalloutResponse) -> Result<RangeAnswer, EtcdError> {
    let answer = success(response)?;
    Ok(RangeAnswer {
        revision: revision(&answer)?,
        kvs: key_values(&answer)?,
        more: boolean(&answer, "more", "more is not a boolean")?,
    })
}

/// The answer to `etcd::put`.
pub fn read_put(response: &CalloutResponse) -> Result<PutAnswer, EtcdError> {
    let answer = success(response)?;
    Ok(PutAnswer {
        revision: revision(&answer)?,
    })
}

/// The answer to `etcd::create_if_absent`: created, or the existing key (the failure
/// branch's range, read in the same transaction, so it is always there).
pub fn read_create(response: &CalloutResponse) -> Result<CreateAnswer, EtcdError> {
    let answer = success(response)?;
    let revision = revision(&answer)?;
    let succeeded = boolean(&answer, "succeeded", "succeeded is not a boolean")?;
    if succeeded {
        return Ok(CreateAnswer {
            revision,
            succeeded,
            existing: None,
        });
    }
    let range = answer
        .get("responses")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("response_range"))
        .ok_or(EtcdError::Garbage("a failed create has no response_range"))?;
    let existing = key_values(range)?
        .into_iter()
        .next()
        .ok_or(EtcdError::Garbage("a failed create read no key"))?;
    Ok(CreateAnswer {
        revision,
        succeeded,
        existing: Some(existing),
    })
}

/// The answer to `etcd::delete`.
pub fn read_delete(response: &CalloutResponse) -> Result<DeleteAnswer, EtcdError> {
    let answer = success(response)?;
    Ok(DeleteAnswer {
        revision: revision(&answer)?,
        deleted: int64(&answer, "deleted", "deleted is not an int64")?,
    })
}

/// The answer to `etcd::grant_lease`.
pub fn read_lease(response: &CalloutResponse) -> Result<LeaseAnswer, EtcdError> {
    let answer = success(response)?;
    revision(&answer)?;
    // LeaseGrantResponse has an `error` field of its own.
    if let Some(error) = answer
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        return Err(EtcdError::Refused {
            status: 200,
            message: error.chars().take(MAX_MESSAGE_CHARS).collect(),
        });
    }
    let id = int64(&answer, "ID", "ID is not an int64")?;
    if id <= 0 {
        return Err(EtcdError::Garbage("no lease ID"));
    }
    Ok(LeaseAnswer {
        id: LeaseId(id),
        ttl_secs: int64(&answer, "TTL", "TTL is not an int64")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as etcd 3.4 wrote them.
    const HEADER: &str = r#""header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"8","raft_term":"2"}"#;

    fn answer(status: Option<u32>, body: &str) -> CalloutResponse<'_> {
        CalloutResponse {
            status,
            cache_control: None,
            body: body.as_bytes(),
        }
    }

    fn ok(body: &str) -> CalloutResponse<'_> {
        answer(Some(200), body)
    }

    #[test]
    fn a_range_reads_binary_values_revisions_and_more() {
        let body = format!(
            r#"{{{HEADER},"kvs":[{{"key":"cC8x","create_revision":"6","mod_revision":"7","version":"2","value":"AAEC/w==","lease":"2324035865215056657"}}],"more":true,"count":"3"}}"#
        );
        assert_eq!(
            read_range(&ok(&body)),
            Ok(RangeAnswer {
                revision: 8,
                kvs: vec![KeyValue {
                    key: b"p/1".to_vec(),
                    value: vec![0, 1, 2, 0xff],
                    create_revision: 6,
                    mod_revision: 7,
                    lease: Some(LeaseId(2_324_035_865_215_056_657)),
                }],
                more: true,
            })
        );
    }

    #[test]
    fn zero_values_are_left_out_by_etcd_and_read_as_zero() {
        let empty = format!(r#"{{{HEADER},"count":"3"}}"#);
        assert_eq!(
            read_range(&ok(&empty)),
            Ok(RangeAnswer {
                revision: 8,
                kvs: vec![],
                more: false,
            })
        );
        let empty_value = format!(
            r#"{{{HEADER},"kvs":[{{"key":"eA==","create_revision":"2","mod_revision":"3","version":"2"}}],"count":"1"}}"#
        );
        let kvs = read_range(&ok(&empty_value)).map(|r| r.kvs);
        assert_eq!(
            kvs.map(|k| (k[0].value.clone(), k[0].lease)),
            Ok((vec![], None))
        );
        let nothing_deleted = format!("{{{HEADER}}}");
        assert_eq!(
            read_delete(&ok(&nothing_deleted)),
            Ok(DeleteAnswer {
                revision: 8,
                deleted: 0
            })
        );
        let deleted = format!(r#"{{{HEADER},"deleted":"1"}}"#);
        assert_eq!(read_delete(&ok(&deleted)).map(|d| d.deleted), Ok(1));
        assert_eq!(
            read_put(&ok(&nothing_deleted)),
            Ok(PutAnswer { revision: 8 })
        );
    }

    #[test]
    fn a_create_is_won_or_names_the_winner() {
        let won = format!(
            r#"{{{HEADER},"succeeded":true,"responses":[{{"response_put":{{"header":{{"revision":"8"}}}}}}]}}"#
        );
        assert_eq!(
            read_create(&ok(&won)),
            Ok(CreateAnswer {
                revision: 8,
                succeeded: true,
                existing: None
            })
        );
        let lost = format!(
            r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"8"}},"kvs":[{{"key":"bG9jaw==","create_revision":"5","mod_revision":"5","version":"1","value":"d2lu","lease":"9"}}],"count":"1"}}}}]}}"#
        );
        let existing = read_create(&ok(&lost)).ok().and_then(|c| c.existing);
        assert_eq!(existing.map(|kv| kv.value), Some(b"win".to_vec()));
        let lost_without_kv = format!(
            r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"8"}}}}}}]}}"#
        );
        assert!(read_create(&ok(&lost_without_kv)).is_err());
    }

    #[test]
    fn a_lease_id_is_an_int64_in_a_string() {
        let body = format!(r#"{{{HEADER},"ID":"7587883255612401234","TTL":"2"}}"#);
        assert_eq!(
            read_lease(&ok(&body)),
            Ok(LeaseAnswer {
                id: LeaseId(7_587_883_255_612_401_234),
                ttl_secs: 2
            })
        );
        let refused = format!(r#"{{{HEADER},"ID":"5","TTL":"2","error":"lease exists"}}"#);
        assert!(matches!(
            read_lease(&ok(&refused)),
            Err(EtcdError::Refused { .. })
        ));
        assert!(read_lease(&ok(&format!(r#"{{{HEADER},"TTL":"2"}}"#))).is_err());
    }

    #[test]
    fn refusals_keep_etcds_message_safe_for_a_log_line() {
        let body = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(
            read_put(&answer(Some(404), body)),
            Err(EtcdError::Refused {
                status: 404,
                message: "etcdserver: requested lease not found".into()
            })
        );
        let forged = r#"{"message":"timed out\n[critical] forged line"}"#;
        let line = read_put(&answer(Some(503), forged))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!line.contains('\n'), "{line:?}");
        assert_eq!(
            read_range(&answer(Some(502), "<html>bad gateway</html>")),
            Err(EtcdError::Refused {
                status: 502,
                message: "no message".into()
            })
        );
        assert_eq!(read_range(&answer(None, "")), Err(EtcdError::NoAnswer));
    }

    #[test]
    fn a_dead_or_leaderless_member_is_worth_a_second_try_and_a_refusal_is_not() {
        let leader_changed = r#"{"error":"etcdserver: leader changed","message":"etcdserver: leader changed","code":14}"#;
        let envoy_503 = "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        for (status, body) in [
            (None, ""),
            (Some(503), leader_changed),
            (Some(503), envoy_503),
            (Some(503), "no healthy upstream"),
            (Some(504), "upstream request timeout"),
        ] {
            assert!(unanswered(&answer(status, body)), "{status:?} {body}");
        }
        let lease_gone = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let too_many = r#"{"error":"etcdserver: too many requests","message":"etcdserver: too many requests","code":8}"#;
        for (status, body) in [(404, lease_gone), (429, too_many), (200, "garbage")] {
            assert!(!unanswered(&answer(Some(status), body)), "{status} {body}");
        }
        let lease_error = read_put(&answer(Some(404), lease_gone)).err();
        assert!(lease_error.is_some_and(|e| e.lease_not_found()));
        let other_404 = read_put(&answer(Some(404), r#"{"message":"Not Found"}"#)).err();
        assert!(other_404.is_some_and(|e| !e.lease_not_found()));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let header = format!("{{{HEADER}");
        let bad = [
            String::new(),
            "garbage".into(),
            "[]".into(),
            "{}".into(),
            r#"{"header":{}}"#.into(),
            r#"{"header":"x"}"#.into(),
            r#"{"header":{"revision":"x"}}"#.into(),
            r#"{"header":{"revision":true}}"#.into(),
            format!(r#"{header},"kvs":{{}}}}"#),
            format!(r#"{header},"kvs":["x"]}}"#),
            format!(r#"{header},"kvs":[{{"key":"not base64!"}}]}}"#),
            format!(r#"{header},"kvs":[{{"key":7}}]}}"#),
            format!(r#"{header},"kvs":[{{"mod_revision":"99999999999999999999"}}]}}"#),
            format!(r#"{header},"more":"yes"}}"#),
            "[".repeat(10_000),
        ];
        for body in &bad {
            assert!(read_range(&ok(body)).is_err(), "{body:.80}");
            assert!(read_create(&ok(body)).is_err(), "{body:.80}");
            assert!(read_lease(&ok(body)).is_err(), "{body:.80}");
        }
        let huge = format!(
            r#"{header},"kvs":[{{"value":"{}"}}]}}"#,
            "A".repeat(MAX_DOCUMENT_BYTES)
        );
        assert_eq!(read_range(&ok(&huge)), Err(EtcdError::TooLarge));
    }
}
