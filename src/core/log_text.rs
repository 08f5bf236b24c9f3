//! Text that others chose (a token's `alg` and `kid`, a host, a path, what an IdP answered)
//! made safe for one log line: nothing in it can end the line, start a forged one, move the
//! cursor of a terminal, or hide behind a look-alike character.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Client values are cut here: a log line is for people, and a 16 KB `kid` is an attack.
const MAX_CHARS: usize = 256;

/// A value from outside, written visibly escaped: `\\`, `\r`, `\n`, `\t`, other control
/// characters as `\xHH`, anything outside ASCII as `\u{HHHH}`; cut after 256 characters
/// with `...`. The result is printable ASCII only.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, false)
    }
}

/// A value from outside as one quoted field of a line of `key=value` fields: `Escaped`,
/// with `"` written as `\"`, between quotes. Nothing in it can end the field, so no value
/// can pass for another field.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        escape(f, self.0, true)?;
        f.write_char('"')
    }
}

fn escape(f: &mut fmt::Formatter<'_>, text: &str, quotes: bool) -> fmt::Result {
    for (n, c) in text.chars().enumerate() {
        if n == MAX_CHARS {
            return f.write_str("...");
        }
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' if quotes => f.write_str("\\\"")?,
            _ => write_char(f, c)?,
        }
    }
    Ok(())
}

/// `Escaped` as a `String`.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn escaped(text: &str) -> String {
    Escaped(text).to_string()
}

fn write_char(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\r' => f.write_str("\\r"),
        '\n' => f.write_str("\\n"),
        '\t' => f.write_str("\\t"),
        ' '..='~' => f.write_char(c),
        c if c.is_ascii() => write!(f, "\\x{:02x}", u32::from(c)),
        c => write!(f, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// The host's last guard on a whole log line, whatever its parts did: control characters
/// and non-ASCII escaped as `Escaped` does (a backslash is left alone, so parts escaped
/// before read the same). A clean line is not copied.
pub(crate) fn one_line(line: &str) -> Cow<'_, str> {
    if line.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        // Writing to a String cannot fail.
        let _ = write_char(&mut out, c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_terminal_escapes_are_written_visibly() {
        assert_eq!(
            escaped("RS256\r\n[warn] forged\x1b[2J\u{2028}é\\"),
            "RS256\\r\\n[warn] forged\\x1b[2J\\u{2028}\\u{e9}\\\\"
        );
        assert_eq!(escaped("kid-1"), "kid-1");
    }

    #[test]
    fn a_quoted_value_cannot_end_its_field() {
        let hostile = "x\" decision=allow\\\nforged";
        assert_eq!(
            Quoted(hostile).to_string(),
            "\"x\\\" decision=allow\\\\\\nforged\""
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = "a".repeat(10_000);
        assert_eq!(escaped(&long).len(), MAX_CHARS + 3);
    }

    #[test]
    fn the_last_guard_leaves_clean_lines_and_escaped_parts_alone() {
        assert!(matches!(one_line("refused with 401"), Cow::Borrowed(_)));
        let part = escaped("a\nb");
        assert_eq!(one_line(&format!("kid {part}")), "kid a\\nb");
        assert_eq!(one_line("x\r\ny\u{85}"), "x\\r\\ny\\u{85}");
    }
}
