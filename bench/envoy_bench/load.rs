//! Load generation: `wrk` runs against one Envoy, and what they measured.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `wrk` run's figures.
pub struct Measured {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What the requests of a scenario carry.
#[derive(Clone)]
pub enum Load {
    /// One header line (`Name: value`) on every request: a token, or a session cookie.
    Same(String),
    /// Tokens from a file in rotation (a wrk Lua script); `refused`: every one must get a
    /// non-2xx answer (401).
    Rotating { script: PathBuf, refused: bool },
}

fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        _ => return None,
    })
}

/// The first line of `output` starting with `prefix`, its `index`-th word.
fn field(output: &str, prefix: &str, index: usize) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().nth(index))
        .map(str::to_string)
}

fn parse_wrk(output: &str) -> Option<Measured> {
    Some(Measured {
        rps: field(output, "Requests/sec:", 1)?.parse().ok()?,
        p50_ms: millis(&field(output, "50%", 1)?)?,
        p99_ms: millis(&field(output, "99%", 1)?)?,
    })
}

/// Requests answered in the run, and how many of them were not 2xx/3xx.
fn answered(output: &str) -> (u64, u64) {
    let total = output
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let failed = field(output, "Non-2xx or 3xx responses:", 4)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (total, failed)
}

/// A wrk script sending the tokens of `tokens` (one per line) in rotation.
pub fn rotation_script(dir: &Path, name: &str, tokens: &[String]) -> PathBuf {
    let list = dir.join(format!("{name}.tokens"));
    std::fs::write(&list, tokens.join("\n")).expect("write tokens");
    let script = dir.join(format!("{name}.lua"));
    let lua = format!(
        "local tokens = {{}}\n\
         for line in io.lines(\"{}\") do tokens[#tokens + 1] = \"Bearer \" .. line end\n\
         local i = 0\n\
         request = function()\n\
         \x20 i = i % #tokens + 1\n\
         \x20 return wrk.format(nil, nil, {{ [\"Authorization\"] = tokens[i] }})\n\
         end\n",
        list.display()
    );
    std::fs::write(&script, lua).expect("write script");
    script
}

/// Runs wrk (one thread) for `seconds` against `url`; panics when a request that should
/// pass did not, or one that should be refused passed.
pub fn wrk(url: &str, load: &Load, seconds: u64, connections: u64) -> Measured {
    let mut command = Command::new("wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    match load {
        Load::Same(header) => command.args(["-H", header]),
        Load::Rotating { script, .. } => command.arg("-s").arg(script),
    };
    let output = command
        .arg(url)
        .output()
        .expect("wrk is installed (./build.sh bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let measured = parse_wrk(&text).unwrap_or_else(|| panic!("cannot read wrk output:\n{text}"));
    let (total, failed) = answered(&text);
    if matches!(load, Load::Rotating { refused: true, .. }) {
        assert!(
            total > 0 && failed == total,
            "every forged token must be refused:\n{text}"
        );
    } else {
        assert_eq!(failed, 0, "requests failed during the run:\n{text}");
    }
    measured
}
