//! `wasm-iap check`: reads plugin configurations offline with the filter's own reader and
//! prints every problem with its path, then notes on settings that are allowed but unsafe.
//! Exit status: 0 accepted, 1 problems (or notes with `--strict`), 2 usage or unreadable
//! input.

mod input;
mod notes;
mod secrets;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde_json::Value;

use crate::core::config::Settings;
use input::Found;
use secrets::Source;

pub const USAGE: &str = "usage: wasm-iap check [--strict] [--env-file FILE] FILE...
  FILE: a JSON plugin configuration, or YAML: Kubernetes manifests or `kubectl kustomize`
        output (every WasmPlugin's spec.pluginConfig and EnvoyExtensionPolicy's
        spec.wasm[].config) or an Envoy bootstrap (its Wasm filters); - reads stdin
  --env-file FILE  NAME=value lines for secrets given as {\"env\": \"NAME\"}; names it and
                   the environment leave unset are checked with a placeholder
  --strict         notes on unsafe settings fail the check too (exit 1)
exit status: 0 accepted, 1 problems, 2 usage or unreadable input";

/// What the command line asks for.
struct Options {
    strict: bool,
    env_file: Option<String>,
    files: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut args = args.iter();
    if args.next().map(String::as_str) != Some("check") {
        return Err("the only command is `check`".into());
    }
    let mut options = Options {
        strict: false,
        env_file: None,
        files: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--strict" => options.strict = true,
            "--env-file" => {
                let file = args.next().ok_or("--env-file needs a file")?;
                options.env_file = Some(file.clone());
            }
            "-" => options.files.push(arg.clone()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            file => options.files.push(file.to_string()),
        }
    }
    if options.files.is_empty() {
        return Err("no FILE to check".into());
    }
    Ok(options)
}

/// The command's environment: its input, output and variables.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Runs `wasm-iap <args>`; the exit status.
pub fn run(args: &[String], io: &mut Io) -> i32 {
    match checked(args, io) {
        Ok(status) => status,
        Err(message) => {
            let _ = writeln!(io.err, "wasm-iap: {message}\n{USAGE}");
            2
        }
    }
}

fn checked(args: &[String], io: &mut Io) -> Result<i32, String> {
    let options = parse_args(args)?;
    let env_file = match &options.env_file {
        Some(file) => {
            let text = read_input(file, io)?;
            secrets::parse_env_file(&text).map_err(|e| format!("{file}: {e}"))?
        }
        None => BTreeMap::new(),
    };
    let mut found = Vec::new();
    let mut lines = Vec::new();
    for file in &options.files {
        let text = read_input(file, io)?;
        let name = if file == "-" {
            "(stdin)"
        } else {
            file.as_str()
        };
        let configs = input::plugin_configs(name, &text)?;
        if configs.is_empty() {
            lines.push(format!("{name}: no plugin configuration in it"));
        }
        found.extend(configs);
    }
    if found.is_empty() {
        return Err("no plugin configuration found (a JSON configuration, a WasmPlugin, an EnvoyExtensionPolicy or an Envoy Wasm filter)".into());
    }
    let mut totals = (0, 0);
    for config in &found {
        // What the VM sees: a value the host gives inline, else the first of --env-file,
        // the input's own Secrets and container env, and the check's environment.
        let given = |name: &str| {
            let inline = config.inline.get(name).map(|v| {
                let field = config.vm_env.as_ref().map_or("", |e| e.0.as_str());
                (v.clone(), format!("{field} (inline)"))
            });
            inline
                .or_else(|| {
                    env_file
                        .get(name)
                        .map(|v| (v.clone(), "--env-file".to_string()))
                })
                .or_else(|| config.manifest_env.get(name).cloned())
                .or_else(|| (io.env)(name).map(|v| (v, "the environment".to_string())))
        };
        let (problems, notes) = check_one(config, &given, &mut lines);
        totals = (totals.0 + problems, totals.1 + notes);
    }
    lines.push(format!(
        "checked {} configuration(s): {} problem(s), {} note(s)",
        found.len(),
        totals.0,
        totals.1
    ));
    io.out
        .write_all((lines.join("\n") + "\n").as_bytes())
        .map_err(|e| format!("cannot write: {e}"))?;
    let failed = totals.0 > 0 || (options.strict && totals.1 > 0);
    Ok(i32::from(failed))
}

fn read_input(file: &str, io: &mut Io) -> Result<String, String> {
    let mut text = String::new();
    if file == "-" {
        io.stdin
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))
}

/// Checks one configuration, adding its lines; its (problems, notes).
fn check_one(
    found: &Found,
    given: &dyn Fn(&str) -> Option<(String, String)>,
    lines: &mut Vec<String>,
) -> (usize, usize) {
    let place = &found.place;
    let value: Value = serde_json::from_str(&found.text).unwrap_or(Value::Null);
    let values = secrets::resolve(&secrets::referenced(&value), given);
    let lookup = |name: &str| values.get(name).map(|(value, _)| value.clone());
    let mut problems = match Settings::parse_with_env(&found.text, &lookup) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    };
    if let Some((field, passed)) = &found.vm_env {
        for name in values.keys().filter(|n| !passed.contains(n)) {
            problems.push(format!(
                "{field}: {name} is named in the configuration but not passed into the VM"
            ));
        }
    }
    let mut notes: Vec<(String, String)> = found
        .fail_open
        .iter()
        .map(|field| (field.clone(), "lets every request through unauthenticated when the VM fails (SECURITY.md: never FAIL_OPEN; use FAIL_RELOAD or FAIL_CLOSE)".to_string()))
        .collect();
    if problems.is_empty() {
        notes.extend(notes::notes(&value));
    }
    lines.extend(problems.iter().map(|p| format!("{place}: problem: {p}")));
    lines.extend(
        notes
            .iter()
            .map(|(path, why)| format!("{place}: note: {path}: {why}")),
    );
    for (name, (_, source)) in &values {
        let how = match source {
            Source::Given(from) => format!("from {from}"),
            Source::Placeholder => "not given: checked with a placeholder".into(),
        };
        lines.push(format!("{place}: env: {name} ({how})"));
    }
    let verdict = if problems.is_empty() {
        "accepted"
    } else {
        "rejected"
    };
    lines.push(format!(
        "{place}: {verdict}: {} problem(s), {} note(s)",
        problems.len(),
        notes.len()
    ));
    (problems.len(), notes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(
        args: &[&str],
        stdin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = stdin.as_bytes();
        let status = run(
            &args,
            &mut Io {
                stdin: &mut stdin,
                out: &mut out,
                err: &mut err,
                env,
            },
        );
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (status, text(out), text(err))
    }

    const LOGIN: &str = r#"{"providers":[{"issuer":"https://i.example","audiences":["a"],"cluster":"c"}],
        "login":[{"hosts":["a.example"],"issuer":"https://i.example","client_id":"a",
        "client_secret":{"env":"CLIENT"},"cookie_secrets":[{"env":"COOKIE"}]}]}"#;

    #[test]
    fn usage_errors_exit_2() {
        let none = |_: &str| None;
        assert_eq!(run_with(&[], "", &none).0, 2);
        assert_eq!(run_with(&["check"], "", &none).0, 2);
        assert_eq!(run_with(&["check", "--bogus", "-"], "", &none).0, 2);
        assert_eq!(run_with(&["lint", "-"], "", &none).0, 2);
    }

    #[test]
    fn unset_secrets_get_placeholders_and_are_named() {
        let (status, out, _) = run_with(&["check", "-"], LOGIN, &|_| None);
        assert_eq!(status, 0, "{out}");
        assert!(out.contains("(stdin): env: CLIENT (not given"), "{out}");
        assert!(out.contains("(stdin): env: COOKIE (not given"), "{out}");
    }

    #[test]
    fn a_secret_from_the_environment_is_checked_as_given() {
        let short = |name: &str| (name == "COOKIE").then(|| "too short".to_string());
        let (status, out, _) = run_with(&["check", "-"], LOGIN, &short);
        assert_eq!(status, 1, "{out}");
        assert!(
            out.contains("(stdin): problem: login[0].cookie_secrets"),
            "{out}"
        );
        assert!(out.contains("env: COOKIE (from the environment)"), "{out}");
    }
}
