//! The path a rule is matched against: the request's path as the upstream will resolve it,
//! so that no encoding trick makes a rule for one path apply to another. The query is never
//! part of it. Public routes match it as written (`under`); routes that restrict match it
//! as any upstream may read it (`under_loosely`, `loose_forms`).
//!
//! In order: split off the query; refuse what is ambiguous (an encoded `/`, `\`, NUL or other
//! control character, a raw `\`, a `#`, control characters, broken `%` escapes); decode
//! escapes of unreserved characters (`%2e` is a dot) and spell the others (a space too) in
//! upper case; drop `;` parameters from each segment
//! (Tomcat and Jetty ignore them); merge `//`. A `.` or `..` segment (also `%2e%2e` or `..;`)
//! is refused: upstreams disagree on it (Express and Flask serve `/admin/../public` as sent,
//! Go's router treats `..;` as a name, Tomcat as `..`), and the path is forwarded as sent, so
//! the only safe meaning is none. Browsers resolve dot segments before they send a path.
//! A trailing `/` is kept: `/admin/` and `/admin` are different paths.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path (`*`, an absolute URL, empty).
    NotAPath,
    /// `%2F`, `%5C`, `%00` or another control character: upstreams disagree on what they mean.
    AmbiguousEncoding(&'static str),
    /// A raw `\`, `#` or control character, or a broken `%` escape.
    Malformed(&'static str),
    /// A `.` or `..` segment, however spelt.
    DotSegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAPath => f.write_str("the request target is not a path"),
            PathError::AmbiguousEncoding(what) => write!(f, "the path encodes {what}"),
            PathError::Malformed(what) => write!(f, "the path holds {what}"),
            PathError::DotSegment => f.write_str("the path holds a . or .. segment"),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes what may be decoded and refuses what is ambiguous; the result is ASCII.
fn canonical_escapes(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) else {
                    return Err(PathError::Malformed("a broken % escape"));
                };
                let decoded = h * 16 + l;
                let double = bytes.get(i + 3).and_then(|b| hex(*b)).is_some()
                    && bytes.get(i + 4).and_then(|b| hex(*b)).is_some();
                match decoded {
                    // `%252e`: a `.` to an upstream (or proxy) that decodes twice.
                    b'%' if double => {
                        return Err(PathError::AmbiguousEncoding("a double-encoded escape"))
                    }
                    // Never UTF-8: only an overlong ASCII (`%C0%AE` is `.` to old decoders).
                    0xC0 | 0xC1 => {
                        return Err(PathError::AmbiguousEncoding("an overlong UTF-8 escape"))
                    }
                    b'/' => return Err(PathError::AmbiguousEncoding("a slash (%2F)")),
                    b'\\' => return Err(PathError::AmbiguousEncoding("a backslash (%5C)")),
                    0 => return Err(PathError::AmbiguousEncoding("a NUL (%00)")),
                    // Spring's and .NET's trimming read `/admin%09` as `/admin`.
                    d if d < 0x20 || d == 0x7f => {
                        return Err(PathError::AmbiguousEncoding("a control character"))
                    }
                    d if unreserved(d) => out.push(char::from(d)),
                    d => out.push_str(&format!("%{d:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Malformed("a backslash")),
            b'#' => return Err(PathError::Malformed("a fragment (#)")),
            b if b < 0x20 || b == 0x7f => return Err(PathError::Malformed("a control character")),
            b if b >= 0x80 || b == b' ' => {
                out.push_str(&format!("%{b:02X}"));
                i += 1;
            }
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Dots that NFKC folds to `.`: fullwidth (U+FF0E), small (U+FE52), one dot leader (U+2024).
const DOT_LOOKALIKES: [&str; 3] = ["%EF%BC%8E", "%EF%B9%92", "%E2%80%A4"];

/// A segment that reads `.` or `..` once its look-alike dots are folded.
fn is_dot_segment_once_normalised(name: &str) -> bool {
    let mut folded = name.to_string();
    for dot in DOT_LOOKALIKES {
        folded = folded.replace(dot, ".");
    }
    folded != name && (folded == "." || folded == "..")
}

/// The path part of `path_and_query`, normalised for matching.
pub fn normalize(path_and_query: &str) -> Result<String, PathError> {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    if !path.starts_with('/') {
        return Err(PathError::NotAPath);
    }
    let canonical = canonical_escapes(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = canonical.split('/').skip(1).collect();
    let last = raw.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in raw.iter().enumerate() {
        // `;` parameters are not part of the path an upstream serves.
        let name = segment.split(';').next().unwrap_or_default();
        match name {
            "" => trailing_slash = i == last,
            "." | ".." => return Err(PathError::DotSegment),
            // Fullwidth and other dots that Unicode normalisation (NFKC) turns into `.`.
            name if is_dot_segment_once_normalised(name) => return Err(PathError::DotSegment),
            name => {
                segments.push(name);
                trailing_slash = false;
            }
        }
    }
    let mut normalised = String::with_capacity(canonical.len());
    for segment in &segments {
        normalised.push('/');
        normalised.push_str(segment);
    }
    if normalised.is_empty() || trailing_slash {
        normalised.push('/');
    }
    Ok(normalised)
}

/// Whether normalised `path` is under `prefix` at a segment boundary: `/public` covers
/// `/public` and `/public/x`, not `/publicity`; `/public/` covers `/public/x` only.
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// The segments of a normalised path, without the empty one a trailing `/` leaves.
fn segments(path: &str) -> Vec<&str> {
    let mut segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    segments
}

/// What some upstream may append to a segment and still serve the segment: a format suffix
/// (Rails `(.:format)`, Spring MVC before 5.3: `admin.json`), trailing dots and spaces
/// (IIS: `admin.`, `admin%20`), both (`admin..json`, `admin%20.json`), or parameters.
fn decoration(rest: &str) -> bool {
    // An encoded `;` starts parameters for an upstream that decodes before it drops them.
    rest.starts_with('.')
        || rest.starts_with("%3B")
        || WHITE_SPACE.iter().any(|d| rest.starts_with(d))
}

/// White space as normalised paths spell it: the space, and every other character .NET's
/// `Trim` and Python's `strip` remove (`Char.IsWhiteSpace`: U+0085, U+00A0, U+1680,
/// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
const WHITE_SPACE: [&str; 20] = [
    "%20",
    "%C2%85",
    "%C2%A0",
    "%E1%9A%80",
    "%E2%80%80",
    "%E2%80%81",
    "%E2%80%82",
    "%E2%80%83",
    "%E2%80%84",
    "%E2%80%85",
    "%E2%80%86",
    "%E2%80%87",
    "%E2%80%88",
    "%E2%80%89",
    "%E2%80%8A",
    "%E2%80%A8",
    "%E2%80%A9",
    "%E2%80%AF",
    "%E2%81%9F",
    "%E3%80%80",
];

/// Whether a request's path segment may be served as a rule's segment: the same without
/// regard to ASCII case, or the rule's segment with a decoration after it.
fn segment_reaches(segment: &str, rule: &str) -> bool {
    let Some(head) = segment.get(..rule.len()) else {
        return false;
    };
    let rest = segment.get(rule.len()..).unwrap_or_default();
    head.eq_ignore_ascii_case(rule) && (rest.is_empty() || decoration(rest))
}

fn segments_reach(path: &[&str], rule: &[&str]) -> bool {
    path.iter().zip(rule).all(|(p, r)| segment_reaches(p, r))
}

/// How a route that restricts access matches a prefix: segment by segment, each without
/// regard to ASCII case and to a decoration (`segment_reaches`), and with `/admin/` also
/// covering `/admin`; because Express, IIS, Rails and Spring serve `/ADMIN`, `/admin/`,
/// `/admin.json`, `/admin.` and `/admin%20` as `/admin`.
pub(crate) fn under_loosely(path: &str, prefix: &str) -> bool {
    let (path, rule) = (segments(path), segments(prefix));
    path.len() >= rule.len() && segments_reach(&path, &rule)
}

/// `under_loosely` for an exact path: as many segments, each reaching the rule's.
pub(crate) fn same_loosely(path: &str, other: &str) -> bool {
    let (path, rule) = (segments(path), segments(other));
    path.len() == rule.len() && segments_reach(&path, &rule)
}

/// The segment without a decoration: cut at the first `.` or white space after its first byte
/// (`admin.json`, `admin..`, `admin%20.json` are `admin`; `.well-known` stays).
fn stem(segment: &str) -> &str {
    let cut = segment
        .char_indices()
        .skip(1)
        .find(|(i, _)| segment.get(*i..).is_some_and(decoration))
        .map_or(segment.len(), |(i, _)| i);
    segment.get(..cut).unwrap_or(segment)
}

/// The segment without trailing dots and spaces (IIS), when something is left.
fn trimmed(segment: &str) -> &str {
    let mut s = segment;
    loop {
        let shorter = s
            .strip_suffix('.')
            .or_else(|| WHITE_SPACE.iter().find_map(|w| s.strip_suffix(w)))
            .filter(|t| !t.is_empty());
        match shorter {
            Some(t) => s = t,
            None => return s,
        }
    }
}

/// The readings of a normalised path an upstream may serve it as, for matching a regular
/// expression that restricts access: as written, with trailing dots and spaces trimmed from
/// every segment, with the last segment's decoration cut off, with every segment's cut
/// off, and each of these in lower case.
pub(crate) fn loose_forms(path: &str) -> Vec<String> {
    let join = |segments: &[&str], slash: bool| {
        let mut out: String = segments.iter().flat_map(|s| ["/", s]).collect();
        if out.is_empty() || slash {
            out.push('/');
        }
        out
    };
    let slash = path.len() > 1 && path.ends_with('/');
    let written = segments(path);
    let trim: Vec<&str> = written.iter().map(|s| trimmed(s)).collect();
    let mut last = trim.clone();
    if let Some(s) = last.last_mut() {
        *s = stem(s);
    }
    let all: Vec<&str> = written.iter().map(|s| stem(s)).collect();
    let mut forms: Vec<String> = Vec::new();
    for form in [&written, &trim, &last, &all] {
        for text in [join(form, slash), join(form, slash).to_ascii_lowercase()] {
            if !forms.contains(&text) {
                forms.push(text);
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tricks_that_try_to_leave_a_public_prefix_land_outside_it_or_are_refused() {
        let cases: [(&str, Result<&str, ()>); 26] = [
            ("/public/../admin", Err(())),
            ("/public/%2e%2e/admin", Err(())),
            ("/public/%2E%2E/admin", Err(())),
            ("/public/.%2e/admin", Err(())),
            ("/public/..;/admin", Err(())),
            ("/admin/..;/public/x", Err(())),
            ("/admin/%2e%2e;/public/x", Err(())),
            ("/public;x=1/../admin", Err(())),
            ("/public/./../admin", Err(())),
            ("/public/./x", Err(())),
            ("/admin//../public/x", Err(())),
            ("//admin", Ok("/admin")),
            ("///public/x", Ok("/public/x")),
            ("/PUBLIC/x", Ok("/PUBLIC/x")),
            ("/admin?/public/", Ok("/admin")),
            ("/public%2F..%2Fadmin", Err(())),
            ("/public%2f..%2fadmin", Err(())),
            ("/public/..%5Cadmin", Err(())),
            ("/public/..\\admin", Err(())),
            ("/public/%00/x", Err(())),
            ("/public/#/../admin", Err(())),
            ("/public/\t/admin", Err(())),
            ("/public/%zz", Err(())),
            ("/public/%2", Err(())),
            ("admin", Err(())),
            ("*", Err(())),
        ];
        for (path, expected) in cases {
            let got = normalize(path);
            match expected {
                Ok(normalised) => assert_eq!(got.as_deref(), Ok(normalised), "{path:?}"),
                Err(()) => assert!(got.is_err(), "{path:?} must be refused, got {got:?}"),
            }
        }
        assert!(normalize("").is_err());
    }

    #[test]
    fn ordinary_paths_keep_their_meaning() {
        for (path, normalised) in [
            ("/", "/"),
            ("/public/", "/public/"),
            ("/public/app.js", "/public/app.js"),
            ("/api/v1/query?query=up", "/api/v1/query"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("/%7Euser/%61", "/~user/a"),
            ("/a%20b/%3b/%3F", "/a%20b/%3B/%3F"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a;jsessionid=1/b", "/a/b"),
            ("/v1.2/file.tar.gz", "/v1.2/file.tar.gz"),
            ("/.well-known/x", "/.well-known/x"),
            ("/.../x", "/.../x"),
        ] {
            assert_eq!(normalize(path).as_deref(), Ok(normalised), "{path:?}");
        }
    }

    #[test]
    fn restricting_routes_match_loosely() {
        assert!(under_loosely("/ADMIN/users", "/admin"));
        assert!(under_loosely("/Admin", "/admin/"));
        assert!(under_loosely("/admin", "/admin/"));
        assert!(!under_loosely("/administrator", "/admin"));
        assert!(!under_loosely("/x", "/admin/"));
        assert!(same_loosely("/api/delete/", "/api/delete"));
        assert!(same_loosely("/API/Delete", "/api/delete"));
        assert!(!same_loosely("/api/deletes", "/api/delete"));
        assert!(under_loosely("/anything", "/"));
    }

    /// Spellings Rails `(.:format)`, Spring MVC before 5.3 (suffix patterns, trimmed
    /// tokens) or IIS (trailing dots and spaces) serve as `/admin` or below it.
    const SERVED_AS_ADMIN: [&str; 27] = [
        "/admin%E3%80%80",
        "/admin%C2%85/x",
        "/admin%E2%80%8A.json",
        "/admin%3b.json",
        "/admin%3Bx=1/users",
        "/admin.json",
        "/admin.",
        "/ADMIN.xml",
        "/admin./x",
        "/admin%2e/x",
        "/admin%2E",
        "/admin%20/x",
        "/admin%20",
        "/admin.json/x",
        "/admin;.json",
        "/admin;x=1/users",
        "/admin..json",
        "/admin%20.json",
        "/admin .json",
        "/admin%20%20",
        "/Admin.JSON.",
        "/admin.%20.",
        "/admin%C2%A0",
        "/admin.json;x",
        "/aDmIn/users.json",
        "/admin/",
        "//admin",
    ];

    #[test]
    fn a_restriction_on_admin_holds_for_every_spelling_an_upstream_serves_as_admin() {
        for raw in SERVED_AS_ADMIN {
            let path = normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert!(under_loosely(&path, "/admin"), "{raw} ({path})");
            assert!(under_loosely(&path, "/admin/"), "{raw} ({path})");
            if path.split('/').nth(1) != Some("admin") {
                assert!(!under(&path, "/admin"), "{raw}: public routes stay strict");
            }
        }
        for other in [
            "/administrator",
            "/admin-panel",
            "/admin_x",
            "/adm",
            "/x/admin",
            "/",
        ] {
            let path = normalize(other).unwrap_or_else(|e| panic!("{other}: {e}"));
            assert!(!under_loosely(&path, "/admin"), "{other}");
        }
    }

    #[test]
    fn a_rule_on_an_exact_path_holds_for_its_format_suffixes_and_trailing_dots() {
        for raw in [
            "/api/users.json",
            "/API/Users.JSON",
            "/api/users.",
            "/api/users%20",
            "/api/users/",
            "/api/users%2e",
            "/api/users;.json",
        ] {
            let path = normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert!(same_loosely(&path, "/api/users"), "{raw} ({path})");
        }
        for other in ["/api/usersx", "/api/users/x", "/api", "/api/user"] {
            assert!(!same_loosely(other, "/api/users"), "{other}");
        }
        assert!(same_loosely("/v1.2.json", "/v1.2"));
        assert!(
            !same_loosely("/v1.3", "/v1.2"),
            "a rule's own dot is part of its name"
        );
    }

    #[test]
    fn encoded_control_characters_are_refused_since_some_upstreams_trim_them() {
        for raw in [
            "/admin%09",
            "/admin%0a/x",
            "/admin%0D",
            "/admin%1f",
            "/admin%7F",
        ] {
            assert!(normalize(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_regex_sees_every_reading_of_a_path() {
        let forms = loose_forms("/API/v1.2/Users.json");
        for reading in [
            "/API/v1.2/Users.json",
            "/api/v1.2/users.json",
            "/api/v1.2/users",
            "/api/v1/users",
        ] {
            assert!(forms.iter().any(|f| f == reading), "{reading} in {forms:?}");
        }
        assert!(loose_forms("/admin.%20./").iter().any(|f| f == "/admin/"));
        assert!(loose_forms("/.well-known/x")
            .iter()
            .all(|f| f.starts_with("/.well-known/")));
        assert_eq!(loose_forms("/"), ["/"]);
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert!(under("/public", "/public"));
        assert!(under("/public/x", "/public"));
        assert!(!under("/publicity", "/public"));
        assert!(under("/public/x", "/public/"));
        assert!(!under("/public", "/public/"));
        assert!(under("/anything", "/"));
    }
}
