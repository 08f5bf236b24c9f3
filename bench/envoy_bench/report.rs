//! Reporting: the figures of a run as `bench/results.json`, a Markdown table
//! (`bench/results.md`, for docs/performance.md) and a bar chart (`bench/results.svg`).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::host_calls::{HostCalls, KINDS};
use crate::propagation::{self, Propagation};
use crate::scenarios::describe;

/// One scenario's medians over the rounds, and its Envoy's memory after them.
pub struct Row {
    pub name: &'static str,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ratio_to_no_filter: Option<f64>,
    pub ratio_to_floor: Option<f64>,
    pub rss_mib: f64,
    pub hwm_mib: f64,
}

/// Median and maximum of some samples (milliseconds).
pub struct Spread {
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        Spread {
            median: median_of_sorted(&sorted),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn json(&self) -> Value {
        json!({ "median": round(self.median, 1), "max": round(self.max, 1) })
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median_of_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub struct FirstRequests {
    pub runs: usize,
    pub from_listener_ms: Spread,
    pub from_spawn_ms: Spread,
    pub samples: Vec<(f64, f64)>,
}

/// RSS and its peak (VmHWM), MiB.
pub struct Memory {
    pub rss_mib: f64,
    pub hwm_mib: f64,
}

pub struct Report {
    pub rows: Vec<Row>,
    pub first_request: Option<FirstRequests>,
    pub host_calls: Option<HostCalls>,
    pub revocation_propagation: Option<Propagation>,
    /// The Envoy answering ext_authz's checks, not counted in `ext_authz_http`'s RSS.
    pub authz_server: Option<Memory>,
    pub rounds: u64,
    pub seconds: u64,
    pub connections: u64,
    pub tokens: u64,
    pub envoy_version: String,
    pub wasm_iap_bytes: u64,
    pub floor_bytes: Option<u64>,
    pub date: String,
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("–".into(), |r| format!("{r:.2}×"))
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Today in UTC as YYYY-MM-DD (days to civil date, after Howard Hinnant).
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The bar colour of a scenario: by kind of filter.
fn color_of(name: &str) -> &'static str {
    match name {
        "no_filter" => "#8c959f",
        "wasm_floor" => "#8250df",
        n if n.starts_with("wasm_iap_forged") => "#d4802a",
        n if n.starts_with("wasm_iap") => "#2da44e",
        _ => "#3d7fd0",
    }
}

/// What the floor's source shows: its one callback returns `Continue` and calls nothing, and
/// the SDK calls nothing for it on a request.
const FLOOR_NOTE: &str = "bench/floor's only callback returns Continue: no host call";

fn host_calls_json(calls: &HostCalls) -> Value {
    let counts = |counts: &[u32; 8]| -> serde_json::Map<String, Value> {
        KINDS
            .iter()
            .zip(counts)
            .map(|(k, c)| (k.to_string(), json!(c)))
            .collect()
    };
    let paths: Vec<Value> = calls
        .paths
        .iter()
        .map(|p| {
            json!({ "path": p.path, "what": p.what, "calls": counts(&p.counts), "total": p.total() })
        })
        .collect();
    json!({
        "build": "wasm-iap with --features host-call-count",
        "requests_per_path": calls.requests,
        "floor": { "calls": counts(&[0; 8]), "total": 0, "note": FLOOR_NOTE },
        "paths": paths,
    })
}

fn host_calls_markdown(calls: &HostCalls) -> String {
    let mut out = format!(
        "\nHost calls per request (wasm-iap built with the feature `host-call-count`, which \
         logs each request's calls when it is done; each path sent {} times, every request \
         alike; the floor's from its source: its only callback returns `Continue`). Allowed \
         requests and token-cache lookups are counted once per tick (100 ms), not per \
         request:\n\n\
         | path | header reads | header writes | clock | counters | shared data | logs | \
         properties | other | total |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n\
         | the floor (`bench/floor`) | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | **0** |\n",
        calls.requests
    );
    for p in &calls.paths {
        let counts: Vec<String> = p.counts.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "| {} | {} | **{}** |",
            p.what,
            counts.join(" | "),
            p.total()
        );
    }
    out
}

impl Report {
    pub fn json(&self) -> Value {
        let scenarios: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.name,
                    "rps": round(r.rps, 1),
                    "p50_ms": round(r.p50_ms, 3),
                    "p99_ms": round(r.p99_ms, 3),
                    "ratio_to_no_filter": r.ratio_to_no_filter.map(|v| round(v, 3)),
                    "ratio_to_floor": r.ratio_to_floor.map(|v| round(v, 3)),
                    "rss_mib": round(r.rss_mib, 1),
                    "hwm_mib": round(r.hwm_mib, 1),
                })
            })
            .collect();
        let first_request = self.first_request.as_ref().map(|f| {
            json!({
                "runs": f.runs,
                "keys": "OIDC discovery + JWKS over HTTP callouts to a server on loopback",
                "from_listener_ms": f.from_listener_ms.json(),
                "from_spawn_ms": f.from_spawn_ms.json(),
                "samples": f.samples.iter().map(|(listener, spawn)| json!({
                    "from_listener_ms": round(*listener, 1),
                    "from_spawn_ms": round(*spawn, 1),
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "date": self.date,
            "envoy_version": self.envoy_version,
            "rounds": self.rounds,
            "seconds": self.seconds,
            "connections": self.connections,
            "tokens": self.tokens,
            "wasm_bytes": { "wasm_iap": self.wasm_iap_bytes, "floor": self.floor_bytes },
            "first_request": first_request,
            "host_calls_per_request": self.host_calls.as_ref().map(host_calls_json),
            "revocation_propagation": self.revocation_propagation.as_ref().map(propagation::json),
            "ext_authz_server": self.authz_server.as_ref().map(|m| json!({
                "note": "the do-nothing authorization server (a second Envoy, 1 worker); not in ext_authz_http's rss_mib",
                "rss_mib": round(m.rss_mib, 1),
                "hwm_mib": round(m.hwm_mib, 1),
            })),
            "scenarios": scenarios,
        })
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| scenario | what | req/s | p50 ms | p99 ms | vs no filter | vs floor | RSS MiB | peak RSS MiB |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} |",
                r.name,
                describe(r.name),
                thousands(r.rps),
                r.p50_ms,
                r.p99_ms,
                ratio(r.ratio_to_no_filter),
                ratio(r.ratio_to_floor),
                r.rss_mib,
                r.hwm_mib
            );
        }
        if let Some(f) = &self.first_request {
            let _ = write!(
                out,
                "\nTime to first request (fresh Envoy, wasm-iap fetching its keys by OIDC discovery \
                 and JWKS from a server on loopback; {} runs): median {:.1} ms (max {:.1}) from the \
                 listener accepting a connection to the 200, {:.1} ms (max {:.1}) from starting \
                 Envoy.\n",
                f.runs,
                f.from_listener_ms.median,
                f.from_listener_ms.max,
                f.from_spawn_ms.median,
                f.from_spawn_ms.max
            );
        }
        if let Some(calls) = &self.host_calls {
            out.push_str(&host_calls_markdown(calls));
        }
        if let Some(p) = &self.revocation_propagation {
            out.push_str(&propagation::markdown(p));
        }
        if let Some(m) = &self.authz_server {
            let _ = write!(
                out,
                "\n`ext_authz_http`'s authorization server (a second Envoy, one worker, answering \
                 200 directly) used {:.1} MiB RSS (peak {:.1}), not counted in its row.\n",
                m.rss_mib, m.hwm_mib
            );
        }
        let floor = self.floor_bytes.map_or(String::new(), |b| {
            format!(", the floor {} bytes", thousands(b as f64))
        });
        let _ = write!(
            out,
            "\nEnvoy {}, one worker per scenario, direct responses; wrk, one thread, {} connections; \
             medians of {} interleaved rounds of {} s; {} tokens in rotation; wasm-iap.wasm {} \
             bytes{floor}; RSS after the rounds; {}.\n",
            self.envoy_version,
            self.connections,
            self.rounds,
            self.seconds,
            thousands(self.tokens as f64),
            thousands(self.wasm_iap_bytes as f64),
            self.date
        );
        out
    }

    /// A horizontal bar chart of each scenario's throughput relative to no filter, with 1.0
    /// and the floor marked; `None` without the `no_filter` scenario.
    pub fn svg(&self) -> Option<String> {
        let rows: Vec<(&Row, f64)> = self
            .rows
            .iter()
            .filter_map(|r| r.ratio_to_no_filter.map(|v| (r, v)))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let floor = self
            .rows
            .iter()
            .find(|r| r.name == "wasm_floor")
            .and_then(|r| r.ratio_to_no_filter);
        let (width, label_width, value_width) = (860.0, 250.0, 150.0);
        let (top, row_height, bar_height) = (78.0, 26.0, 17.0);
        let chart_left = label_width;
        let chart_width = width - label_width - value_width;
        let chart_height = rows.len() as f64 * row_height;
        let height = top + chart_height + 96.0;
        let largest = rows.iter().map(|(_, v)| *v).fold(1.0, f64::max);
        let scale_max = (largest * 4.0).ceil() / 4.0;
        let x = |v: f64| chart_left + v / scale_max * chart_width;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"-apple-system, 'Segoe UI', Helvetica, \
             Arial, sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\" rx=\"6\"/>\n\
             <text x=\"16\" y=\"26\" font-size=\"17\" font-weight=\"600\" fill=\"#1f2328\">\
             Requests per second relative to Envoy without filters (higher is better)</text>\n\
             <text x=\"16\" y=\"47\" fill=\"#59636e\">Envoy {}, one worker, direct responses; \
             wrk {} connections; medians of {} rounds of {} s</text>\n",
            xml(&self.envoy_version),
            self.connections,
            self.rounds,
            self.seconds
        );
        let bottom = top + chart_height;
        let mut tick = 0.0;
        while tick <= scale_max + 1e-9 {
            let _ = write!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"#d8dee4\"/>\n\
                 <text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\" fill=\"#59636e\" \
                 font-size=\"12\">{tick:.2}</text>\n",
                x(tick),
                bottom + 16.0
            );
            tick += 0.25;
        }
        // The marks: 1.0 (no filter) labelled above the chart, the floor below it.
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"#1f2328\" \
             stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>\n\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#1f2328\" \
             font-size=\"12\">no filter = 1.0</text>\n",
            x(1.0),
            top - 12.0,
            top - 16.0
        );
        if let Some(floor) = floor {
            // The line stops at the axis; a small triangle under the tick labels points up
            // to it from its label.
            let fx = x(floor);
            let _ = write!(
                s,
                "<line x1=\"{fx:.1}\" y1=\"{top}\" x2=\"{fx:.1}\" y2=\"{bottom}\" stroke=\"#8250df\" \
                 stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\n\
                 <path d=\"M{fx:.1} {0} l-5 7 h10 z\" fill=\"#8250df\"/>\n\
                 <text x=\"{1:.1}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#8250df\" \
                 font-size=\"12\">floor: do-nothing Wasm filter = {floor:.2}</text>\n",
                bottom + 21.0,
                fx.clamp(chart_left + 110.0, width - 120.0),
                bottom + 42.0
            );
        }
        for (i, (row, value)) in rows.iter().enumerate() {
            let y = top + i as f64 * row_height + (row_height - bar_height) / 2.0;
            let color = color_of(row.name);
            let rps = thousands(row.rps);
            let value_text = format!("{value:.2}× {rps} req/s");
            let _ = write!(
                s,
                "<text x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#1f2328\" \
                 font-family=\"ui-monospace, SFMono-Regular, Menlo, Consolas, monospace\" \
                 font-size=\"12.5\">{name}</text>\n\
                 <rect x=\"{chart_left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bar_height}\" \
                 fill=\"{color}\" rx=\"2\"/>\n\
                 <rect x=\"{bx:.1}\" y=\"{y:.1}\" width=\"{tw:.1}\" height=\"{bar_height}\" \
                 fill=\"#ffffff\"/>\n\
                 <text x=\"{vx:.1}\" y=\"{ty:.1}\" fill=\"#1f2328\">{value:.2}× \
                 <tspan fill=\"#59636e\">{rps} req/s</tspan></text>\n",
                lx = label_width - 10.0,
                ty = y + bar_height - 4.0,
                name = xml(row.name),
                bw = (x(*value) - chart_left).max(1.0),
                // A white ground under the value, so that the marks do not cross it.
                bx = x(*value) + 3.0,
                tw = (value_text.chars().count() as f64) * 6.6 + 6.0,
                vx = x(*value) + 6.0,
            );
        }
        let legend = [
            ("#8c959f", "no filter"),
            ("#8250df", "do-nothing Rust Wasm filter"),
            ("#3d7fd0", "Envoy native filters"),
            ("#2da44e", "wasm-iap, allowed"),
            ("#d4802a", "wasm-iap, forged tokens (401)"),
        ];
        let shown: Vec<&str> = rows.iter().map(|(r, _)| color_of(r.name)).collect();
        let mut lx = 16.0;
        let ly = height - 18.0;
        for (color, text) in legend.into_iter().filter(|(c, _)| shown.contains(c)) {
            let _ = write!(
                s,
                "<rect x=\"{lx}\" y=\"{0}\" width=\"12\" height=\"12\" fill=\"{color}\" rx=\"2\"/>\n\
                 <text x=\"{1}\" y=\"{ly}\" fill=\"#1f2328\" font-size=\"12\">{text}</text>\n",
                ly - 10.0,
                lx + 17.0
            );
            lx += 17.0 + text.len() as f64 * 6.6 + 18.0;
        }
        s.push_str("</svg>\n");
        Some(s)
    }
}
