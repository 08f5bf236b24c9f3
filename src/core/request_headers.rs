//! A request's headers as the host hands them over: raw bytes in one buffer, decoded without
//! assuming UTF-8 (one non-UTF-8 byte from a client must never take the VM down).

use std::ops::Range;

/// Headers in the proxy-wasm map serialization, with the spans of each name and value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    buf: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

impl RequestHeaders {
    /// Decodes the host's serialization: a count, then (name length, value length) pairs,
    /// then each name and value followed by a NUL. `None` when it does not add up.
    pub fn decode(buf: Vec<u8>) -> Option<RequestHeaders> {
        if buf.is_empty() {
            return Some(RequestHeaders::default());
        }
        let count = read_u32(&buf, 0)?;
        let mut at = count.checked_mul(8)?.checked_add(4)?;
        if at > buf.len() {
            return None;
        }
        let mut spans = Vec::with_capacity(count);
        for n in 0..count {
            let sizes = 4 + n * 8;
            let name_len = read_u32(&buf, sizes)?;
            let value_len = read_u32(&buf, sizes + 4)?;
            let name = at..at.checked_add(name_len)?;
            let value_start = name.end.checked_add(1)?;
            let value = value_start..value_start.checked_add(value_len)?;
            at = value.end.checked_add(1)?;
            if at > buf.len() {
                return None;
            }
            spans.push((name, value));
        }
        Some(RequestHeaders { buf, spans })
    }

    /// Builds headers from pairs, as the host would hand them over (tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let pairs: Vec<(&str, &[u8])> = pairs.into_iter().collect();
        RequestHeaders::decode(serialize(&pairs)).unwrap_or_default()
    }

    /// Only the headers named in `names` (for a request kept while it waits: nothing more
    /// than deciding it again needs).
    pub(crate) fn only(&self, names: &[&str]) -> RequestHeaders {
        let kept: Vec<(&str, &[u8])> = self
            .iter()
            .filter_map(|(n, v)| {
                let name = names
                    .iter()
                    .find(|w| n.eq_ignore_ascii_case(w.as_bytes()))?;
                Some((*name, v))
            })
            .collect();
        RequestHeaders::decode(serialize(&kept)).unwrap_or_default()
    }

    /// Every (name, value) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().filter_map(|(name, value)| {
            Some((self.buf.get(name.clone())?, self.buf.get(value.clone())?))
        })
    }

    /// The first value of header `name` (case-insensitive), as bytes.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The value of header `name` when it is present and text; a value that is not UTF-8
    /// counts as absent (for headers where that is the safe reading: hints, not credentials).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// As `text`, but a non-UTF-8 value is kept readable with replacement characters, which
    /// never match anything of ours (for `:path` and `:authority`).
    pub(crate) fn lossy(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(String::from_utf8_lossy)
    }
}

/// Header pairs in the proxy-wasm map serialization, as the host reads them (local replies).
pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 10).sum();
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        buf.extend_from_slice(value);
        buf.push(0);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_values_are_kept_as_bytes_and_read_as_absent_text() {
        let headers = RequestHeaders::from_pairs([
            (":path", &b"/a"[..]),
            ("x-foo", &b"\xff"[..]),
            ("Accept", &b"text/html"[..]),
        ]);
        assert_eq!(headers.get("x-foo"), Some(&b"\xff"[..]));
        assert_eq!(headers.text("x-foo"), None);
        assert_eq!(headers.text("accept"), Some("text/html"));
        assert_eq!(headers.text(":path"), Some("/a"));
        assert_eq!(headers.iter().count(), 3);
    }

    #[test]
    fn a_kept_request_holds_only_the_headers_named() {
        let headers = RequestHeaders::from_pairs([
            (":path", &b"/a"[..]),
            ("X-Big", &[b'x'; 1000][..]),
            ("Cookie", &b"a=1"[..]),
        ]);
        let kept = headers.only(&[":path", "cookie"]);
        assert_eq!(kept.iter().count(), 2);
        assert_eq!(kept.text("cookie"), Some("a=1"));
        assert_eq!(kept.get("x-big"), None);
    }

    #[test]
    fn truncated_or_lying_serializations_are_refused() {
        let good = RequestHeaders::from_pairs([("a", &b"b"[..])]).buf;
        for cut in 1..good.len() {
            assert_eq!(RequestHeaders::decode(good[..cut].to_vec()), None, "{cut}");
        }
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(RequestHeaders::decode(huge_count), None);
        let mut long_name = good;
        long_name[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(RequestHeaders::decode(long_name), None);
        assert_eq!(
            RequestHeaders::decode(Vec::new()),
            Some(RequestHeaders::default())
        );
    }
}
