//! `pages`: how the pages a person sees are branded (product name, logo, colours, support
//! link, footer, the 403 page's message). Top-level, and per login or API service where its
//! fields override the top-level ones. Everything is checked here, once; the pages escape
//! every value again when they write it.

use serde_json::Value;
use url::Url;

use crate::core::config::reader::{ObjectReader, Problems};

/// One `pages` block; `None` fields fall back to the top-level block, then to ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Branding {
    pub(crate) product_name: Option<String>,
    pub(crate) logo_url: Option<Url>,
    pub(crate) accent_color: Option<String>,
    pub(crate) background_color: Option<String>,
    pub(crate) text_color: Option<String>,
    pub(crate) dark_accent_color: Option<String>,
    pub(crate) dark_background_color: Option<String>,
    pub(crate) dark_text_color: Option<String>,
    pub(crate) support_url: Option<Url>,
    pub(crate) footer_text: Option<String>,
    pub(crate) forbidden_message: Option<String>,
}

const MAX_NAME_CHARS: usize = 80;
const MAX_URL_CHARS: usize = 2048;
const MAX_TEXT_CHARS: usize = 500;

impl Branding {
    /// This service's block over `base` (the top-level one): a field set here wins.
    pub(crate) fn over(&self, base: &Branding) -> Branding {
        fn pick<T: Clone>(mine: &Option<T>, base: &Option<T>) -> Option<T> {
            mine.clone().or_else(|| base.clone())
        }
        Branding {
            product_name: pick(&self.product_name, &base.product_name),
            logo_url: pick(&self.logo_url, &base.logo_url),
            accent_color: pick(&self.accent_color, &base.accent_color),
            background_color: pick(&self.background_color, &base.background_color),
            text_color: pick(&self.text_color, &base.text_color),
            dark_accent_color: pick(&self.dark_accent_color, &base.dark_accent_color),
            dark_background_color: pick(&self.dark_background_color, &base.dark_background_color),
            dark_text_color: pick(&self.dark_text_color, &base.dark_text_color),
            support_url: pick(&self.support_url, &base.support_url),
            footer_text: pick(&self.footer_text, &base.footer_text),
            forbidden_message: pick(&self.forbidden_message, &base.forbidden_message),
        }
    }
}

/// Reads a `pages` block (`path` names it in problems); absent: an empty block.
pub(crate) fn read_pages(path: &str, value: Option<&Value>, problems: &mut Problems) -> Branding {
    let Some(value) = value else {
        return Branding::default();
    };
    let mut r = ObjectReader::new(path, value, problems);
    let product_name = read_text(&mut r, "product_name", MAX_NAME_CHARS, problems);
    let footer_text = read_text(&mut r, "footer_text", MAX_TEXT_CHARS, problems);
    let forbidden_message = read_text(&mut r, "forbidden_message", MAX_TEXT_CHARS, problems);
    let logo_url = read_url(&mut r, "logo_url", &LOGO, problems);
    let support_url = read_url(&mut r, "support_url", &SUPPORT, problems);
    let branding = Branding {
        accent_color: read_color(&mut r, "accent_color", problems),
        background_color: read_color(&mut r, "background_color", problems),
        text_color: read_color(&mut r, "text_color", problems),
        dark_accent_color: read_color(&mut r, "dark_accent_color", problems),
        dark_background_color: read_color(&mut r, "dark_background_color", problems),
        dark_text_color: read_color(&mut r, "dark_text_color", problems),
        product_name,
        logo_url,
        support_url,
        footer_text,
        forbidden_message,
    };
    r.finish(problems);
    branding
}

fn read_text(
    r: &mut ObjectReader,
    name: &'static str,
    max_chars: usize,
    problems: &mut Problems,
) -> Option<String> {
    let path = r.field_path(name);
    let value = r.string(name, problems)?;
    match plain_text_problem(&value, max_chars) {
        Some(problem) => {
            problems.add(&path, problem);
            None
        }
        None => Some(value),
    }
}

fn read_color(r: &mut ObjectReader, name: &'static str, problems: &mut Problems) -> Option<String> {
    let path = r.field_path(name);
    let value = r.string(name, problems)?;
    if is_color(&value) {
        Some(value.to_ascii_lowercase())
    } else {
        problems.add(&path, "must be a colour written #rgb or #rrggbb");
        None
    }
}

fn read_url(
    r: &mut ObjectReader,
    name: &'static str,
    rule: &UrlRule,
    problems: &mut Problems,
) -> Option<Url> {
    let path = r.field_path(name);
    let value = read_text(r, name, MAX_URL_CHARS, problems)?;
    checked_url(&path, &value, rule, problems)
}

/// Why `text` may not be shown, if it may not: empty, too long, or with a control character
/// (no line breaks: each is one line on the page).
fn plain_text_problem(text: &str, max_chars: usize) -> Option<String> {
    if text.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if text.chars().count() > max_chars {
        return Some(format!("must be at most {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    None
}

/// `#rgb` or `#rrggbb`: nothing that could end the style it is written into.
fn is_color(value: &str) -> bool {
    value
        .strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Which URLs a field takes.
struct UrlRule {
    schemes: &'static [&'static str],
    /// `http` too when the host is the loopback address.
    loopback_http: bool,
    what: &'static str,
}

/// A logo is fetched by the browser from a page the gateway serves: https, or http on the
/// loopback address (tests and local setups).
const LOGO: UrlRule = UrlRule {
    schemes: &["https"],
    loopback_http: true,
    what: "an https URL (http only for 127.0.0.1 or localhost)",
};
const SUPPORT: UrlRule = UrlRule {
    schemes: &["https", "http", "mailto"],
    loopback_http: false,
    what: "an http(s) or mailto: URL",
};

fn checked_url(path: &str, value: &str, rule: &UrlRule, problems: &mut Problems) -> Option<Url> {
    let url = match Url::parse(value) {
        Ok(url) => url,
        Err(e) => {
            problems.add(path, format!("must be {}: {e}", rule.what));
            return None;
        }
    };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let allowed = rule.schemes.contains(&url.scheme())
        || (rule.loopback_http && url.scheme() == "http" && loopback);
    let has_host = url.scheme() == "mailto" || url.host_str().is_some_and(|h| !h.is_empty());
    if !allowed || !has_host || !url.username().is_empty() || url.password().is_some() {
        problems.add(path, format!("must be {}", rule.what));
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> (Branding, Vec<String>) {
        let mut problems = Problems::default();
        let branding = read_pages("pages", Some(&value), &mut problems);
        (branding, problems.0)
    }

    #[test]
    fn a_full_block_is_read() {
        let (b, problems) = read(json!({
            "product_name": "Acme Portal", "logo_url": "https://cdn.acme.test/logo.svg",
            "accent_color": "#0A7", "background_color": "#ffffff", "text_color": "#111",
            "dark_accent_color": "#3c9", "dark_background_color": "#101418",
            "dark_text_color": "#eee", "support_url": "mailto:help@acme.test",
            "footer_text": "Acme Corp", "forbidden_message": "Ask #it-access for access."
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(b.product_name.as_deref(), Some("Acme Portal"));
        assert_eq!(b.accent_color.as_deref(), Some("#0a7"));
        assert_eq!(
            b.support_url.map(|u| u.scheme().to_string()).as_deref(),
            Some("mailto")
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let (_, problems) = read(json!({
            "product_name": "a\nb", "logo_url": "javascript:alert(1)",
            "accent_color": "red", "background_color": "#12345", "text_color": "#fff;x",
            "dark_text_color": "#ggg", "support_url": "ftp://x.test/",
            "footer_text": "x".repeat(501), "forbidden_message": "",
            "colour": "#fff"
        }));
        for field in [
            "product_name",
            "logo_url",
            "accent_color",
            "background_color",
            "text_color",
            "dark_text_color",
            "support_url",
            "footer_text",
            "forbidden_message",
            "colour",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("pages.{field}:"))),
                "{field}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_logo_over_http_only_on_the_loopback_address() {
        let (b, problems) = read(json!({"logo_url": "http://127.0.0.1:8080/logo.png"}));
        assert!(problems.is_empty() && b.logo_url.is_some(), "{problems:?}");
        let (_, problems) = read(json!({"logo_url": "http://cdn.acme.test/logo.png"}));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (_, problems) = read(json!({"logo_url": "https://user:pw@cdn.acme.test/l.png"}));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_service_block_overrides_field_by_field() {
        let (top, _) = read(json!({"product_name": "Acme", "accent_color": "#111"}));
        let (mine, _) = read(json!({"accent_color": "#222"}));
        let merged = mine.over(&top);
        assert_eq!(merged.product_name.as_deref(), Some("Acme"));
        assert_eq!(merged.accent_color.as_deref(), Some("#222"));
    }
}
