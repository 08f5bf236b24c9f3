//! The one layout of every page a person sees (403, sign-in errors, bad addresses, the
//! chooser): written from Rust strings, never from template files, every value escaped.
//! Readable on a phone and a desktop, light and dark, branded by a `pages` block.

use crate::core::config::pages::Branding;

/// What a page says, before it is branded: kept on the reply so the exit can write it with
/// the branding of the service the request belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) title: String,
    pub(crate) paragraphs: Vec<String>,
    /// The ways forward (`href`, text); the first is the main one.
    pub(crate) links: Vec<(String, String)>,
    /// A refusal by the rules: the operator's `forbidden_message` belongs here.
    pub(crate) forbidden: bool,
}

/// Ours when a `pages` block leaves a field out (light, then dark).
const LIGHT: Palette = Palette {
    background: "#f5f6f8",
    text: "#1d2330",
    accent: "#1f5fbf",
};
const DARK: Palette = Palette {
    background: "#14171c",
    text: "#e6e8eb",
    accent: "#8ab4f8",
};

struct Palette {
    background: &'static str,
    text: &'static str,
    accent: &'static str,
}

/// Small and inline. The card is a translucent layer over the background, so any
/// background colour keeps it readable; the main button's text takes the background
/// colour, which contrasts with the accent in both schemes.
const STYLE: &str = "*{box-sizing:border-box}\
html{color-scheme:light dark}\
body{font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",sans-serif;margin:0;padding:1rem;\
background:var(--bg);color:var(--fg);min-height:100vh}\
main{max-width:34rem;margin:8vh auto 0;padding:1.5rem;border-radius:12px;\
background:var(--card);box-shadow:0 1px 4px #0003;overflow-wrap:anywhere}\
header{display:flex;align-items:center;gap:.6rem;margin:0 0 1rem;font-weight:600}\
header img{max-height:40px;max-width:10rem;width:auto}\
h1{font-size:1.35rem;line-height:1.3;margin:0 0 .75rem}p{margin:.6rem 0}\
a{color:var(--accent)}\
nav{display:flex;flex-wrap:wrap;gap:.6rem;margin:1.25rem 0 .5rem}\
nav a{display:inline-block;padding:.55rem 1rem;border:1px solid var(--accent);\
border-radius:8px;text-decoration:none;font-weight:600}\
nav a:first-child{background:var(--accent);color:var(--bg)}\
.note{border-left:3px solid var(--accent);padding:.25rem 0 .25rem .75rem}\
.meta{font-size:.875rem;opacity:.8}code{font-size:.85em}\
footer{max-width:34rem;margin:1rem auto;font-size:.8rem;opacity:.7;text-align:center}";

/// The whole document for `page`, answered with `status`.
pub(crate) fn render(
    status: u32,
    page: &Page,
    branding: &Branding,
    request_id: Option<&str>,
) -> String {
    let mut html = String::with_capacity(3_000);
    let title = escape(&page.title);
    let product = branding.product_name.as_deref().map(escape);
    let head_title = match &product {
        Some(product) => format!("{title} · {product}"),
        None => title.clone(),
    };
    html.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    html.push_str("<meta name=\"color-scheme\" content=\"light dark\">");
    html.push_str("<meta name=\"referrer\" content=\"no-referrer\">");
    html.push_str(&format!(
        "<title>{head_title}</title><style>{}{STYLE}</style>",
        colors(branding)
    ));
    html.push_str("</head><body><main>");
    if branding.logo_url.is_some() || product.is_some() {
        html.push_str("<header>");
        if let Some(logo) = &branding.logo_url {
            let alt = product.as_deref().unwrap_or("Logo");
            html.push_str(&format!(
                "<img src=\"{}\" alt=\"{alt}\">",
                escape(logo.as_str())
            ));
        }
        if let Some(product) = &product {
            html.push_str(&format!("<span>{product}</span>"));
        }
        html.push_str("</header>");
    }
    html.push_str(&format!("<h1>{title}</h1>"));
    for paragraph in &page.paragraphs {
        html.push_str(&format!("<p>{}</p>", escape(paragraph)));
    }
    if let Some(message) = branding
        .forbidden_message
        .as_deref()
        .filter(|_| page.forbidden)
    {
        html.push_str(&format!("<p class=\"note\">{}</p>", escape(message)));
    }
    if !page.links.is_empty() {
        html.push_str("<nav>");
        for (href, text) in &page.links {
            html.push_str(&format!(
                "<a href=\"{}\">{}</a>",
                escape(href),
                escape(text)
            ));
        }
        html.push_str("</nav>");
    }
    if let Some(support) = &branding.support_url {
        html.push_str(&format!(
            "<p class=\"meta\">Need help? <a href=\"{}\">Contact support</a></p>",
            escape(support.as_str())
        ));
    }
    if let Some(id) = request_id.filter(|id| shown_request_id(id)) {
        html.push_str(&format!(
            "<p class=\"meta\">Request ID: <code>{}</code></p>",
            escape(id)
        ));
    }
    html.push_str("</main><footer>");
    if let Some(footer) = &branding.footer_text {
        html.push_str(&format!("{} · ", escape(footer)));
    }
    html.push_str(&format!(
        "wasm-iap · HTTP {status}</footer></body></html>\n"
    ));
    html
}

/// The page's colours as CSS variables: the block's, else ours; dark mode's accent falls
/// back to the light one (a brand has one accent), its background and text to ours.
fn colors(b: &Branding) -> String {
    let or = |value: &Option<String>, ours: &'static str| value.clone().unwrap_or(ours.into());
    let accent = or(&b.accent_color, LIGHT.accent);
    let dark_accent = b
        .dark_accent_color
        .clone()
        .or_else(|| b.accent_color.clone())
        .unwrap_or(DARK.accent.into());
    format!(
        ":root{{--bg:{};--fg:{};--accent:{accent};--card:#ffffffd9}}\
         @media(prefers-color-scheme:dark){{:root{{--bg:{};--fg:{};--accent:{dark_accent};\
         --card:#ffffff0f}}}}",
        or(&b.background_color, LIGHT.background),
        or(&b.text_color, LIGHT.text),
        or(&b.dark_background_color, DARK.background),
        or(&b.dark_text_color, DARK.text),
    )
}

/// What a page may load: its inline style, and the logo from the logo's origin; no
/// script, no frames around it, no base or plugin.
pub(crate) fn content_security_policy(branding: &Branding) -> String {
    let images = branding
        .logo_url
        .as_ref()
        .map(|logo| format!("; img-src {}", logo.origin().ascii_serialization()))
        .unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'{images}; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// A request id is shown only when it is what a proxy generates: 1 to 128 printable ASCII
/// characters (anything else a client sent is not worth echoing).
pub(crate) fn shown_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Text for HTML content and attribute values (always double-quoted).
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dark_mode_keeps_the_brands_accent_but_never_its_light_background() {
        let branding = Branding {
            accent_color: Some("#0a7".into()),
            background_color: Some("#ffffff".into()),
            ..Branding::default()
        };
        let css = colors(&branding);
        let (light, dark) = css.split_once("@media").unwrap_or_default();
        assert!(
            light.contains("--bg:#ffffff") && light.contains("--accent:#0a7"),
            "{css}"
        );
        assert!(
            dark.contains("--bg:#14171c") && dark.contains("--accent:#0a7"),
            "{css}"
        );
    }
}
