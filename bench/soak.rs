//! Soak: minutes of mixed load (valid, expired, forged, hostile and browser-style requests) on
//! real Envoy with the filter; passes with zero unexpected statuses or 5xx and reports Envoy's RSS.
//!   ./build.sh soak   (SOAK_SECONDS=300, SOAK_CONNECTIONS=8; writes bench/soak-results.json)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{bootstrap, repo_root, wasm_filter, Envoy, Started};
use support::envoy_idp_bed::{COOKIE, SECRET};
use support::mint::{b64, claims_with, forge, now_secs, shared_keys, tamper_signature};
use support::servers::KeyServer;

const API_HOST: &str = "api.test";
const LOGIN_HOST: &str = "login.test";
const AUDIENCE: &str = "soak-api";
const USER: &str = "alice-id";
/// Marks Envoy's access-log lines (5xx only) in its log.
const ACCESS_MARK: &str = "SOAK-5XX";
const WARM_UP: Duration = Duration::from_secs(10);
const RSS_EVERY: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const EXAMPLES_PER_KIND: usize = 3;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: enough to pick request kinds and variants.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn token<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, items: &[&'static [u8]]) -> &'static [u8] {
        items[self.below(items.len())]
    }
}

/// Extra checks on an allowed answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    /// A 200 carries the token's user to the route, and no client-sent identity.
    Identity,
    /// A 302 goes to the IdP's authorization endpoint.
    ToIdp,
    /// A 302 stays on this host.
    OnThisHost,
}

type Build = Box<dyn Fn(&mut Rng) -> Vec<u8> + Send + Sync>;

struct Kind {
    name: &'static str,
    weight: u32,
    /// Statuses this request may legitimately get.
    allowed: &'static [u16],
    /// Malformed on purpose: Envoy itself may refuse it (400, 431) before the filter runs.
    envoy_may_refuse: bool,
    check: Check,
    /// The request line and headers, each ending in CRLF; the sender adds an id header and the
    /// blank line.
    build: Build,
}

/// `GET target` to `host` with `headers`, as bytes (without the final blank line).
fn head(host: &str, target: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

const NAVIGATE: [(&[u8], &[u8]); 2] = [
    (
        b"Accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    (b"Sec-Fetch-Mode", b"navigate"),
];

fn navigation(target: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut headers = NAVIGATE.to_vec();
    headers.extend_from_slice(extra);
    head(LOGIN_HOST, target, &headers)
}

const NOT_UTF8: [&[u8]; 3] = [b"\xff", b"\xc3\x28", b"\x80"];

/// CR, LF, NUL and friends, percent-encoded, for our endpoints' parameters.
const ENCODED_ATTACKS: [&[u8]; 7] = [
    b"%0D%0ASet-Cookie:a=b",
    b"%0D%0A%0D%0A%3Cscript%3Ex",
    b"%0Dinjected:1",
    b"%0Ainjected:1",
    b"x%00injected",
    b"%FF%FEinjected",
    b"%E2%80%A8injected:1",
];

struct Material {
    pool: Vec<String>,
    repeated: String,
    expired: Vec<String>,
    forged: Vec<String>,
    alg_none: Vec<String>,
    garbage: Vec<String>,
    dots: String,
    tampered_cookie: String,
}

fn mint(issuer: &str, seconds: u64) -> Material {
    let signer = shared_keys().signer("RS256");
    let exp = now_secs() + seconds + 3600;
    let started = Instant::now();
    // Two signing threads: RSA signing is the slow part of the start.
    let pool: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                scope.spawn(move || {
                    (0..1000)
                        .map(|i| {
                            let jti = format!("soak-{}", half * 1000 + i);
                            signer.sign(&claims_with(
                                issuer,
                                AUDIENCE,
                                json!({ "exp": exp, "jti": jti }),
                            ))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    });
    eprintln!(
        "minted {} valid tokens in {:.1} s",
        pool.len(),
        started.elapsed().as_secs_f64()
    );
    let now = now_secs();
    let expired = (0..20)
        .map(|i| {
            signer.sign(&claims_with(
                issuer,
                AUDIENCE,
                json!({ "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600 - i, "jti": format!("expired-{i}") }),
            ))
        })
        .collect();
    let forged = pool[..20].iter().map(|t| tamper_signature(t)).collect();
    let claims = claims_with(issuer, AUDIENCE, json!({ "exp": exp }));
    let alg_none = vec![
        forge(&json!({ "alg": "none" }), &claims, b""),
        forge(&json!({ "alg": "none", "typ": "JWT" }), &claims, b"sig"),
        forge(&json!({ "alg": "NONE" }), &claims, b""),
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims.to_string())),
    ];
    let garbage = vec![
        "not-a-token".to_string(),
        "!!!.@@@.###".to_string(),
        "a.b.c".to_string(),
        format!("{}.{}.{}", b64("{"), b64("["), b64("sig")),
        b64([0u8, 1, 2, 3, 255, 254, 253].repeat(40)),
        "eyJhbGciOiJSUzI1NiJ9".to_string(),
    ];
    Material {
        repeated: pool[0].clone(),
        pool,
        expired,
        forged,
        alg_none,
        garbage,
        dots: ".".repeat(10_000),
        tampered_cookie: String::new(),
    }
}

/// `GET target` to the bearer host with `token` and `extra` headers.
fn api(target: &[u8], token: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let auth = bearer(token);
    let mut headers: Vec<(&[u8], &[u8])> = vec![(b"Authorization", &auth)];
    headers.extend_from_slice(extra);
    head(API_HOST, target, &headers)
}

fn kind(
    name: &'static str,
    weight: u32,
    allowed: &'static [u16],
    envoy_may_refuse: bool,
    check: Check,
    build: Build,
) -> Kind {
    Kind {
        name,
        weight,
        allowed,
        envoy_may_refuse,
        check,
        build,
    }
}

/// The mix: (kind, weight out of 99, allowed statuses, Envoy may refuse, extra check).
fn kinds(m: &'static Material) -> Vec<Kind> {
    vec![
        kind(
            "valid_token_pool",
            25,
            &[200],
            false,
            Check::Identity,
            Box::new(move |r| api(b"/api/v1/query?query=up", r.token(&m.pool), &[])),
        ),
        kind(
            "valid_token_repeated",
            15,
            &[200],
            false,
            Check::Identity,
            Box::new(move |_| api(b"/api/v1/query?query=up", &m.repeated, &[])),
        ),
        kind(
            "expired_token",
            5,
            &[401],
            false,
            Check::None,
            Box::new(move |r| api(b"/api/v1/query", r.token(&m.expired), &[])),
        ),
        kind(
            "forged_signature",
            5,
            &[401],
            false,
            Check::None,
            Box::new(move |r| api(b"/api/v1/query", r.token(&m.forged), &[])),
        ),
        kind(
            "alg_none",
            3,
            &[401],
            false,
            Check::None,
            Box::new(move |r| api(b"/api/v1/query", r.token(&m.alg_none), &[])),
        ),
        kind(
            "garbage_token",
            3,
            &[401],
            false,
            Check::None,
            Box::new(move |r| api(b"/api/v1/query", r.token(&m.garbage), &[])),
        ),
        kind(
            "token_of_10000_dots",
            2,
            &[401],
            false,
            Check::None,
            Box::new(move |_| api(b"/api/v1/query", &m.dots, &[])),
        ),
        kind(
            "hostile_non_utf8_other_header",
            4,
            &[200],
            true,
            Check::Identity,
            Box::new(move |r| {
                let value = [b"a", r.bytes(&NOT_UTF8), b"b"].concat();
                api(b"/api/v1/query", r.token(&m.pool), &[(b"X-Foo", &value)])
            }),
        ),
        kind(
            "hostile_non_utf8_authorization",
            4,
            &[401],
            true,
            Check::None,
            Box::new(move |r| {
                let bad = r.bytes(&NOT_UTF8);
                let value = match r.below(3) {
                    0 => [b"Bearer ", bad].concat(),
                    1 => bad.to_vec(),
                    _ => [b"Bearer ", r.token(&m.pool).as_bytes(), bad].concat(),
                };
                head(API_HOST, b"/api/v1/query", &[(b"Authorization", &value)])
            }),
        ),
        kind(
            "hostile_non_utf8_cookie",
            4,
            &[302],
            true,
            Check::ToIdp,
            Box::new(move |r| {
                let bad = r.bytes(&NOT_UTF8);
                let value = if r.below(2) == 0 {
                    [b"theme=", bad].concat()
                } else {
                    [COOKIE.as_bytes(), b"=", bad].concat()
                };
                navigation(b"/graph", &[(b"Cookie", &value)])
            }),
        ),
        kind(
            "hostile_callback_crlf_nul",
            4,
            &[400],
            false,
            Check::None,
            Box::new(move |r| {
                let target = [
                    b"/oauth2/callback?state=" as &[u8],
                    r.bytes(&ENCODED_ATTACKS),
                    b"&code=",
                    r.bytes(&ENCODED_ATTACKS),
                ]
                .concat();
                navigation(&target, &[])
            }),
        ),
        kind(
            "hostile_sign_out_crlf_nul",
            4,
            &[302],
            false,
            Check::OnThisHost,
            Box::new(move |r| {
                let prefix: &[u8] = if r.below(2) == 0 { b"" } else { b"%2F" };
                let target = [
                    b"/oauth2/sign_out?rd=" as &[u8],
                    prefix,
                    r.bytes(&ENCODED_ATTACKS),
                ]
                .concat();
                let cookie = format!("{COOKIE}=x; {COOKIE}_login_abc=y");
                navigation(&target, &[(b"Cookie", cookie.as_bytes())])
            }),
        ),
        kind(
            "hostile_spoofed_identity",
            4,
            &[200],
            false,
            Check::Identity,
            Box::new(move |r| {
                api(
                    b"/api/v1/query",
                    r.token(&m.pool),
                    &[
                        (b"X-Auth-Request-User", b"admin"),
                        (b"x_auth_request_user", b"root"),
                        (b"X-Auth-Request-Email", b"admin@example.com"),
                        (b"Impersonate-User", b"system:admin"),
                        (b"Impersonate-Group", b"system:masters"),
                    ],
                )
            }),
        ),
        kind(
            "browser_navigation_no_cookie",
            6,
            &[302],
            false,
            Check::ToIdp,
            Box::new(move |_| navigation(b"/graph?g0.expr=up", &[])),
        ),
        kind(
            "browser_tampered_session",
            6,
            &[302],
            false,
            Check::ToIdp,
            Box::new(move |_| {
                let cookie = format!("theme=dark; {COOKIE}={}", m.tampered_cookie);
                navigation(b"/graph?g0.expr=up", &[(b"Cookie", cookie.as_bytes())])
            }),
        ),
        kind(
            "browser_xhr_no_cookie",
            5,
            &[401],
            false,
            Check::None,
            Box::new(move |_| {
                head(
                    LOGIN_HOST,
                    b"/api/v1/query?query=up",
                    &[
                        (b"Accept", b"application/json"),
                        (b"X-Requested-With", b"XMLHttpRequest"),
                    ],
                )
            }),
        ),
    ]
}

/// The filter's plugin configuration: bearer tokens from the key server (found by discovery)
/// on `api.test`, browser login on `login.test` with explicit endpoints (the key server's
/// discovery document has none).
fn plugin(issuer: &str) -> Value {
    json!({
        "providers": [{ "issuer": issuer, "audiences": [AUDIENCE], "cluster": "idp" }],
        "login": [{
            "hosts": [LOGIN_HOST],
            "issuer": issuer,
            "client_id": "demo",
            "client_secret": "demo-secret",
            "cookie_secrets": [SECRET],
            "cookie_secure": false,
            "scopes": ["openid", "email", "profile", "groups"],
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
        }],
        // The bearer host is a service too: with services configured, an unlisted host is
        // refused.
        "services": [{ "hosts": [API_HOST] }],
    })
}

/// The test bootstrap with the shipped failure policy, a route that answers directly (echoing
/// the identity headers that reached it as response headers), and an access log of 5xx
/// answers with Envoy's reason for them.
fn envoy_config(issuer: &str, idp_port: u16) -> Value {
    let mut filter = wasm_filter(&plugin(issuer));
    filter["typed_config"]["config"]["failure_policy"] = json!("FAIL_RELOAD");
    let mut config = bootstrap(vec![filter], 1, idp_port);
    let hcm = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let route = &mut hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    route.as_object_mut().unwrap().remove("route");
    route["direct_response"] = json!({ "status": 200, "body": { "inline_string": "ok" } });
    route["response_headers_to_add"] = json!([
        { "header": { "key": "x-soak-user", "value": "%REQ(x-auth-request-user)%" } },
        { "header": { "key": "x-soak-email", "value": "%REQ(x-auth-request-email)%" } },
        { "header": { "key": "x-soak-impersonate", "value": "%REQ(impersonate-user)%" } },
    ]);
    hcm["access_log"] = json!([{
        "name": "envoy.access_loggers.stderr",
        "filter": { "status_code_filter": { "comparison": {
            "op": "GE", "value": { "default_value": 500, "runtime_key": "soak_access_log_min" }
        }}},
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
            "log_format": { "text_format_source": { "inline_string": format!(
                "{ACCESS_MARK} id=%REQ(X-SOAK-ID)% status=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% flags=%RESPONSE_FLAGS% host=%REQ(:AUTHORITY)% path=%REQ(:PATH)%\n"
            )}}
        }
    }]);
    config
}

/// One response, as much as the soak looks at.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    head: String,
    close: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of a complete chunked body at the start of `data`, or `None` if more must arrive.
fn chunked_length(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let end = pos + find(&data[pos..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[pos..end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = end + 2;
        if size == 0 {
            // No trailers from Envoy: the blank line ends the body.
            return (data.len() >= pos + 2).then_some(pos + 2);
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        pos += size + 2;
    }
}

/// A keep-alive connection to Envoy, reopened when the server closes it.
struct Conn {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

enum Outcome {
    Answer(Answer),
    /// Could not connect, or the connection broke before a whole answer arrived.
    ConnectionError(String),
}

impl Conn {
    fn fill(&mut self) -> Result<(), String> {
        let stream = self.stream.as_mut().ok_or("no connection")?;
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => Err("closed by the server".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Outcome {
        if self.stream.is_none() {
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
                    self.stream = Some(stream);
                    self.buf.clear();
                }
                Err(e) => return Outcome::ConnectionError(format!("connect: {e}")),
            }
        }
        // A server may answer (431) and close before all is written: read on regardless.
        let write_error = self
            .stream
            .as_mut()
            .and_then(|s| s.write_all(request).err());
        match self.read_answer() {
            Ok(answer) => {
                if answer.close {
                    self.stream = None;
                }
                Outcome::Answer(answer)
            }
            Err(e) => {
                self.stream = None;
                let written = write_error.map_or(String::new(), |w| format!(" (write: {w})"));
                Outcome::ConnectionError(format!("{e}{written}"))
            }
        }
    }

    fn read_answer(&mut self) -> Result<Answer, String> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill()
                .map_err(|e| format!("{e} after {} bytes of an answer", self.buf.len()))?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let mut close = value("connection").is_some_and(|v| v.contains("close"));
        let body_start = head_end + 4;
        let body_length = if status < 200 || status == 204 || status == 304 {
            0
        } else if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                if let Some(n) = chunked_length(&self.buf[body_start..]) {
                    break n;
                }
                self.fill()?;
            }
        } else if let Some(length) = value("content-length").and_then(|v| v.parse().ok()) {
            length
        } else {
            // Delimited by the end of the connection.
            close = true;
            while self.fill().is_ok() {}
            self.buf.len() - body_start
        };
        while self.buf.len() < body_start + body_length {
            self.fill()?;
        }
        self.buf.drain(..body_start + body_length);
        Ok(Answer {
            status,
            headers,
            head,
            close,
        })
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    passed: u64,
    failed: u64,
    connection_errors: u64,
    /// Status (or "no answer") to count.
    statuses: BTreeMap<String, u64>,
    examples: Vec<Value>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.passed += other.passed;
        self.failed += other.failed;
        self.connection_errors += other.connection_errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for example in other.examples {
            if self.examples.len() < EXAMPLES_PER_KIND {
                self.examples.push(example);
            }
        }
    }
}

/// Why an answer is wrong for its kind, if it is.
fn judge(kind: &Kind, answer: &Answer, authorize: &str) -> Option<String> {
    let status = answer.status;
    if status >= 500 {
        return Some(format!("{status} from the gateway"));
    }
    let refused_by_envoy = kind.envoy_may_refuse && matches!(status, 400 | 431);
    if !kind.allowed.contains(&status) && !refused_by_envoy {
        return Some(format!("status {status}, allowed {:?}", kind.allowed));
    }
    match kind.check {
        Check::Identity if status == 200 => {
            let user = answer.header("x-soak-user");
            let email = answer.header("x-soak-email");
            let impersonate = answer.header("x-soak-impersonate");
            if user != Some(USER)
                || email != Some("alice@example.com")
                || impersonate.is_some_and(|v| !v.is_empty())
            {
                return Some(format!(
                    "identity at the route: user {user:?}, email {email:?}, impersonate {impersonate:?}"
                ));
            }
        }
        Check::ToIdp if status == 302 => {
            let location = answer.header("location").unwrap_or_default();
            if !location.starts_with(authorize) {
                return Some(format!("302 not to the IdP: {location:?}"));
            }
        }
        Check::OnThisHost if status == 302 => {
            let location = answer.header("location").unwrap_or_default();
            let on_this_host = (location.starts_with('/')
                && !location.starts_with("//")
                && !location.starts_with("/\\"))
                || location.starts_with(&format!("http://{LOGIN_HOST}/"));
            if !on_this_host || location.bytes().any(|b| b <= 0x20 || b == 0x7f) {
                return Some(format!("302 off this host: {location:?}"));
            }
        }
        _ => {}
    }
    None
}

fn shown(bytes: &[u8], limit: usize) -> String {
    let text = bytes.escape_ascii().to_string();
    if text.len() > limit {
        format!("{}... ({} bytes)", &text[..limit], bytes.len())
    } else {
        text
    }
}

struct Shared<'a> {
    kinds: &'a [Kind],
    port: u16,
    authorize: String,
    deadline: Instant,
    requests: AtomicU64,
    failed: AtomicU64,
}

fn load(shared: &Shared, thread: u64) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = shared.kinds.iter().map(|_| Tally::default()).collect();
    let total_weight: u32 = shared.kinds.iter().map(|k| k.weight).sum();
    let mut rng = Rng::new(thread + 1 + u64::from(std::process::id()) * 1000);
    let mut conn = Conn {
        port: shared.port,
        stream: None,
        buf: Vec::new(),
    };
    let mut n = 0u64;
    while Instant::now() < shared.deadline {
        let mut ticket = (rng.next() % u64::from(total_weight)) as u32;
        let index = shared
            .kinds
            .iter()
            .position(|k| {
                let hit = ticket < k.weight;
                ticket = ticket.saturating_sub(k.weight);
                hit
            })
            .unwrap_or(0);
        let kind = &shared.kinds[index];
        let id = format!("{thread}-{n}");
        n += 1;
        let mut request = (kind.build)(&mut rng);
        request.extend_from_slice(format!("X-Soak-Id: {id}\r\n\r\n").as_bytes());
        let tally = &mut tallies[index];
        tally.requests += 1;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let (label, problem, head) = match conn.exchange(&request) {
            Outcome::Answer(answer) => (
                answer.status.to_string(),
                judge(kind, &answer, &shared.authorize),
                answer.head,
            ),
            Outcome::ConnectionError(e) => {
                tally.connection_errors += 1;
                std::thread::sleep(Duration::from_millis(50));
                ("no answer".to_string(), Some(e), String::new())
            }
        };
        *tally.statuses.entry(label.clone()).or_default() += 1;
        match problem {
            None => tally.passed += 1,
            Some(problem) => {
                tally.failed += 1;
                shared.failed.fetch_add(1, Ordering::Relaxed);
                if tally.examples.len() < EXAMPLES_PER_KIND {
                    tally.examples.push(json!({
                        "id": id,
                        "status": label,
                        "problem": problem,
                        "request": shown(&request, 600),
                        "response_head": head,
                    }));
                }
            }
        }
    }
    tallies
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// Sends one request on a fresh connection (set-up checks).
fn once(port: u16, request: &[u8]) -> Answer {
    let mut conn = Conn {
        port,
        stream: None,
        buf: Vec::new(),
    };
    let mut bytes = request.to_vec();
    bytes.extend_from_slice(b"X-Soak-Id: setup\r\n\r\n");
    match conn.exchange(&bytes) {
        Outcome::Answer(answer) => answer,
        Outcome::ConnectionError(e) => panic!("no answer to a set-up request: {e}"),
    }
}

fn main() -> ExitCode {
    if run() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run() -> bool {
    let seconds = env_number("SOAK_SECONDS", 300).max(1);
    let connections = env_number("SOAK_CONNECTIONS", 8).max(1);
    let keys = KeyServer::start(0, shared_keys().jwks());
    let issuer = keys.issuer();
    let material: &'static mut Material = Box::leak(Box::new(mint(&issuer, seconds)));
    let envoy = match Envoy::try_start(&envoy_config(&issuer, keys.port), 2) {
        Started::Running(envoy) => envoy,
        Started::Exited(log) => panic!("Envoy did not start:\n{log}"),
    };
    let authorize = format!("{issuer}/authorize?");

    // Keys loaded (a valid token passes on both workers' VMs, so try a few times).
    let valid = head(
        API_HOST,
        b"/api/v1/query",
        &[(b"Authorization", &bearer(&material.repeated))],
    );
    let ready = Instant::now() + Duration::from_secs(15);
    let mut passes = 0;
    while passes < 10 {
        let answer = once(envoy.port, &valid);
        if answer.status == 200 {
            passes += 1;
        } else if Instant::now() > ready {
            panic!(
                "a valid token never passed: {}\n{}",
                answer.head,
                envoy.log()
            );
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // A real sealed value (the login cookie of a navigation), with one character changed in the
    // middle, as the tampered session cookie.
    let start = once(envoy.port, &navigation(b"/graph", &[]));
    assert_eq!(start.status, 302, "navigation: {}", start.head);
    let sealed = start
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| support::cookie_value(v).to_string())
        .find(|v| v.len() > 20)
        .unwrap_or_else(|| panic!("no sealed login cookie: {}", start.head));
    let mut tampered = sealed.into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    material.tampered_cookie = String::from_utf8(tampered).expect("cookie is ASCII");
    let material: &'static Material = material;
    let kinds = kinds(material);

    let pid = envoy.pid();
    let before_load = rss_kb(pid);
    eprintln!(
        "soak: {seconds} s, {connections} connections, Envoy pid {pid} (--concurrency 2), RSS before load {}",
        mib(before_load)
    );
    let began = Instant::now();
    let shared = Shared {
        kinds: &kinds,
        port: envoy.port,
        authorize,
        deadline: began + Duration::from_secs(seconds),
        requests: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut tallies: Vec<Tally> = kinds.iter().map(|_| Tally::default()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|t| {
                let shared = &shared;
                scope.spawn(move || load(shared, t))
            })
            .collect();
        let warm_up = WARM_UP.min(Duration::from_secs(seconds) / 2);
        let mut next = began + warm_up;
        while next < shared.deadline {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let kb = rss_kb(pid);
            samples.push((began.elapsed().as_secs(), kb));
            eprintln!(
                "  t={:>4} s  requests {:>9}  failed {:>6}  Envoy RSS {}",
                began.elapsed().as_secs(),
                shared.requests.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
                mib(kb)
            );
            next += RSS_EVERY;
        }
        for worker in workers {
            for (total, part) in tallies.iter_mut().zip(worker.join().expect("load thread")) {
                total.merge(part);
            }
        }
    });
    let elapsed = began.elapsed().as_secs_f64();
    samples.push((began.elapsed().as_secs(), rss_kb(pid)));

    // What Envoy logged: crashes, criticals, its reasons for any 5xx, the filter's lines.
    let log = envoy.log();
    let alarming: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("panic") || l.contains("[critical]"))
        .collect();
    let five_xx: Vec<&str> = log.lines().filter(|l| l.starts_with(ACCESS_MARK)).collect();
    // Who produced them: Envoy's response code details (`wasm_fail_stream`: a dead VM;
    // `wasm_iap_requests_denied_unavailable`: a local reply of the filter, since issue 19).
    let mut five_xx_details: BTreeMap<String, u64> = BTreeMap::new();
    for line in &five_xx {
        let details = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("details="))
            .unwrap_or_default();
        *five_xx_details.entry(details.to_string()).or_default() += 1;
    }
    let mut filter_lines: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("wasm-iap")) {
        // Without the timestamp and thread, so that repeated lines are counted as one.
        let text = line
            .match_indices(']')
            .nth(1)
            .map_or(line, |(i, _)| &line[i + 1..]);
        *filter_lines.entry(text.to_string()).or_default() += 1;
    }

    let mut total = Tally::default();
    println!(
        "\n{:<32} {:<12} {:>9} {:>9} {:>7}  statuses",
        "kind", "allowed", "requests", "passed", "failed"
    );
    for (kind, tally) in kinds.iter().zip(&tallies) {
        let statuses: Vec<String> = tally
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        let mut allowed: Vec<String> = kind.allowed.iter().map(u16::to_string).collect();
        if kind.envoy_may_refuse {
            allowed.push("(400,431)".into());
        }
        println!(
            "{:<32} {:<12} {:>9} {:>9} {:>7}  {}",
            kind.name,
            allowed.join(" "),
            tally.requests,
            tally.passed,
            tally.failed,
            statuses.join(" ")
        );
    }
    for tally in &tallies {
        total.requests += tally.requests;
        total.passed += tally.passed;
        total.failed += tally.failed;
        total.connection_errors += tally.connection_errors;
    }
    let rss_start = samples.first().map_or(0, |s| s.1);
    let rss_end = samples.last().map_or(0, |s| s.1);
    let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let rps = total.requests as f64 / elapsed;
    println!(
        "\n{} requests in {elapsed:.0} s over {connections} keep-alive connections: {rps:.0} req/s; connection errors: {}",
        total.requests, total.connection_errors
    );
    println!(
        "Envoy RSS: before load {}, start (after {} s warm-up) {}, max {}, end {} (samples: {})",
        mib(before_load),
        samples.first().map_or(0, |s| s.0),
        mib(rss_start),
        mib(rss_max),
        mib(rss_end),
        samples
            .iter()
            .map(|(t, kb)| format!("{t}s={}", kb / 1024))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "Envoy log: {} panic/critical lines, {} 5xx in the access log, {} lines of wasm-iap",
        alarming.len(),
        five_xx.len(),
        filter_lines.values().sum::<u64>()
    );
    for line in alarming.iter().take(10) {
        println!("  ALARM {line}");
    }
    if !five_xx_details.is_empty() {
        println!("  5xx by Envoy's response code details: {five_xx_details:?}");
    }
    for line in five_xx.iter().take(10) {
        println!("  {line}");
    }
    for (kind, tally) in kinds.iter().zip(&tallies) {
        for example in &tally.examples {
            println!(
                "  FAILED {} (X-Soak-Id {}): {}\n    request:  {}\n    response: {:?}",
                kind.name,
                example["id"].as_str().unwrap_or_default(),
                example["problem"].as_str().unwrap_or_default(),
                example["request"].as_str().unwrap_or_default(),
                example["response_head"].as_str().unwrap_or_default(),
            );
        }
    }
    if total.failed > 0 || !alarming.is_empty() {
        let mut lines: Vec<(&String, &u64)> = filter_lines.iter().collect();
        lines.sort_by(|a, b| b.1.cmp(a.1));
        println!("wasm-iap log lines (most frequent first):");
        for (text, n) in lines.iter().take(15) {
            println!("  {n:>8} x {text}");
        }
    }

    let results = json!({
        "seconds": seconds,
        "elapsed_seconds": elapsed,
        "connections": connections,
        "envoy_concurrency": 2,
        "requests": total.requests,
        "requests_per_second": rps,
        "passed": total.passed,
        "failed": total.failed,
        "connection_errors": total.connection_errors,
        "rss_kb": {
            "before_load": before_load,
            "start": rss_start,
            "max": rss_max,
            "end": rss_end,
            "samples": samples.iter().map(|(t, kb)| json!({ "t": t, "kb": kb })).collect::<Vec<_>>(),
        },
        "kinds": kinds.iter().zip(&tallies).map(|(kind, tally)| json!({
            "kind": kind.name,
            "weight": kind.weight,
            "allowed": kind.allowed,
            "envoy_may_refuse": kind.envoy_may_refuse,
            "requests": tally.requests,
            "passed": tally.passed,
            "failed": tally.failed,
            "connection_errors": tally.connection_errors,
            "statuses": tally.statuses,
            "failure_examples": tally.examples,
        })).collect::<Vec<_>>(),
        "envoy_log": {
            "panic_or_critical": alarming,
            "access_log_5xx": five_xx.iter().take(100).collect::<Vec<_>>(),
            "access_log_5xx_count": five_xx.len(),
            "access_log_5xx_details": five_xx_details,
            "wasm_iap_lines": filter_lines,
        },
    });
    let path = repo_root().join("bench/soak-results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).expect("write results");
    println!("written to {}", path.display());
    println!("soak: {} passed, {} failed", total.passed, total.failed);
    // Envoy and the key server stop when they go out of scope here.
    total.failed == 0 && alarming.is_empty()
}
