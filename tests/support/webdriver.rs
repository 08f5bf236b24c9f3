//! Headless Chromium driven through Debian's chromedriver (W3C WebDriver over HTTP).
//! The driver and the browser are stopped when the value is dropped, also on failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::envoy::TempDir;
use super::servers::free_port;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Chrome {
    driver: Child,
    base: String,
    _profile: TempDir,
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let request = agent.request(method, url);
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let text = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => {
            response.into_string().unwrap_or_default()
        }
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(error) = value["value"]["error"].as_str() {
        panic!("{method} {url}: {error}: {}", value["value"]["message"]);
    }
    value["value"].clone()
}

impl Chrome {
    pub fn start() -> Chrome {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (./build.sh test installs chromium-driver)");
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while super::http::get(&format!("{root}/status"), &[]).status != 200 {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = TempDir::new("chrome");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let mut chrome = Chrome {
            driver,
            base: String::new(),
            _profile: profile,
        };
        let session = call(
            "POST",
            &format!("{root}/session"),
            Some(json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
                }}
            })),
        );
        let id = session["sessionId"].as_str().expect("session id");
        chrome.base = format!("{root}/session/{id}");
        chrome
    }

    pub fn go(&self, url: &str) {
        call(
            "POST",
            &format!("{}/url", self.base),
            Some(json!({ "url": url })),
        );
    }

    pub fn url(&self) -> String {
        call("GET", &format!("{}/url", self.base), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn text(&self) -> String {
        let body = self.find("body");
        call("GET", &format!("{}/element/{body}/text", self.base), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn find(&self, css: &str) -> String {
        let found = call(
            "POST",
            &format!("{}/element", self.base),
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT].as_str().expect("element id").to_string()
    }

    pub fn has(&self, css: &str) -> bool {
        let found = call(
            "POST",
            &format!("{}/elements", self.base),
            Some(json!({ "using": "css selector", "value": css })),
        );
        found.as_array().is_some_and(|a| !a.is_empty())
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        call(
            "POST",
            &format!("{}/element/{element}/value", self.base),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        call(
            "POST",
            &format!("{}/element/{element}/click", self.base),
            Some(json!({})),
        );
    }

    /// Whether the element `css` finds is shown (WebDriver's "displayed" check).
    pub fn displayed(&self, css: &str) -> bool {
        let element = self.find(css);
        call(
            "GET",
            &format!("{}/element/{element}/displayed", self.base),
            None,
        ) == json!(true)
    }

    /// The rendered text of the element `css` finds.
    pub fn text_of(&self, css: &str) -> String {
        let element = self.find(css);
        call(
            "GET",
            &format!("{}/element/{element}/text", self.base),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Resizes the window (in headless Chromium, the viewport) to `width` x `height`.
    pub fn set_window_size(&self, width: u32, height: u32) {
        call(
            "POST",
            &format!("{}/window/rect", self.base),
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Resizes the window so that the page's viewport is `width` x `height` CSS pixels
    /// (the window's own bars are added), as on a phone of that size.
    pub fn set_viewport_size(&self, width: u32, height: u32) {
        self.set_window_size(width, height);
        let inner = self.run("return [window.innerWidth, window.innerHeight]");
        let extra = |i: usize, want: u32| {
            want.saturating_sub(inner[i].as_u64().unwrap_or(u64::from(want)) as u32)
        };
        self.set_window_size(width + extra(0, width), height + extra(1, height));
    }

    /// Makes the page see `prefers-color-scheme: scheme` ("light" or "dark"), through
    /// chromedriver's DevTools passthrough (CSS media emulation, as DevTools' own switch).
    pub fn prefer_color_scheme(&self, scheme: &str) {
        call(
            "POST",
            &format!("{}/goog/cdp/execute", self.base),
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] }
            })),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = call("GET", &format!("{}/screenshot", self.base), None);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 screenshot"))
            .expect("a base64 PNG")
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        call(
            "POST",
            &format!("{}/execute/sync", self.base),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` in the page; it must call `done(result)`.
    pub fn run_async(&self, script: &str) -> Value {
        let wrapped = format!("const done = arguments[arguments.length - 1]; {script}");
        call(
            "POST",
            &format!("{}/execute/async", self.base),
            Some(json!({ "script": wrapped, "args": [] })),
        )
    }

    pub fn cookies(&self) -> Vec<Value> {
        call("GET", &format!("{}/cookie", self.base), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn delete_cookie(&self, name: &str) {
        call("DELETE", &format!("{}/cookie/{name}", self.base), None);
    }

    pub fn set_cookie(&self, cookie: Value) {
        call(
            "POST",
            &format!("{}/cookie", self.base),
            Some(json!({ "cookie": cookie })),
        );
    }

    /// Waits until the page's URL satisfies `ok` (redirect chains run asynchronously).
    /// Types `user` (any password) into the IdP's login form at `issuer` and accepts its
    /// consent page, until the browser is back on a URL starting with `back_on`.
    pub fn sign_in_at_idp(&self, issuer: &str, user: &str, back_on: &str) {
        self.wait_for_url("the IdP login form", |u| u.starts_with(issuer));
        self.type_into("input[name=login]", user);
        self.type_into("input[name=password]", "demo");
        self.click("button[type=submit]");
        let url = self.wait_for_url("consent or the app", |u| {
            u.starts_with(back_on)
                || (u.contains("/interaction/")
                    && self.has("button[type=submit]")
                    && !self.has("input[name=login]"))
        });
        if url.contains("/interaction/") {
            self.click("button[type=submit]");
        }
    }

    pub fn wait_for_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.url();
            if ok(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; at {url}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        if !self.base.is_empty() {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build();
            let _ = agent.delete(&self.base).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
