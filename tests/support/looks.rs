//! How a page of ours looks to a person in headless Chromium: on a phone (390 x 844) and a
//! desktop (1280 x 800), light and dark. Each look is checked for what a person would notice
//! (fits the width, dark is dark, the product's name as text, the logo loads) and saved
//! as a screenshot under target/screenshots/.

use serde_json::json;

use super::webdriver::Chrome;

/// What every look of a page must show.
pub struct Expected<'a> {
    pub product: &'a str,
    /// Whether the page carries a logo (and it must load: the CSP allows its origin).
    pub logo: bool,
}

/// The page Chromium shows, in every size and scheme.
pub fn every_look(chrome: &Chrome, name: &str, expected: &Expected) {
    for (width, height) in [(390, 844), (1280, 800)] {
        for scheme in ["light", "dark"] {
            look_at(chrome, name, width, height, scheme, expected);
        }
    }
}

fn look_at(
    chrome: &Chrome,
    name: &str,
    width: u32,
    height: u32,
    scheme: &str,
    expected: &Expected,
) {
    chrome.set_viewport_size(width, height);
    chrome.prefer_color_scheme(scheme);
    let seen = chrome.run_async(
        "const img = document.querySelector('header img');
         const ready = () => done({
           scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
           background: getComputedStyle(document.body).backgroundColor,
           text: getComputedStyle(document.body).color,
           logo: !!img && img.complete && img.naturalWidth > 0,
           product: document.querySelector('header span').textContent,
           title: document.title,
           dark: matchMedia('(prefers-color-scheme: dark)').matches });
         if (!img || img.complete) ready(); else { img.onload = ready; img.onerror = ready; }",
    );
    let what = format!("{name} at {width}x{height} {scheme}: {seen}");
    assert_eq!(seen["inner"], json!(width), "{what}");
    assert!(
        seen["scroll"].as_u64().unwrap() <= u64::from(width),
        "no horizontal scroll: {what}"
    );
    assert_eq!(seen["dark"], json!(scheme == "dark"), "{what}");
    let background = luminance(seen["background"].as_str().unwrap());
    let text = luminance(seen["text"].as_str().unwrap());
    if scheme == "dark" {
        assert!(background < 0.1 && text > 0.7, "dark is dark: {what}");
    } else {
        assert!(background > 0.8 && text < 0.2, "light is light: {what}");
    }
    assert_eq!(seen["logo"], json!(expected.logo), "the logo: {what}");
    assert_eq!(
        seen["product"],
        json!(expected.product),
        "shown as text: {what}"
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let device = if width < 600 { "phone" } else { "desktop" };
    let png = chrome.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots.join(format!("{name}-{device}-{scheme}.png")), png).unwrap();
}

/// Relative luminance (0 black, 1 white) of a computed `rgb(r, g, b)`.
fn luminance(rgb: &str) -> f64 {
    let channels: Vec<f64> = rgb
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|c| c.trim().parse::<f64>().unwrap() / 255.0)
        .collect();
    0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
}
