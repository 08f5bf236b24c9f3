//! `wasm-iap check` as a user runs it: the built binary, without the caller's environment.

use std::io::Write;
use std::process::{Command, Stdio};

/// What one run of the check gave.
pub struct Checked {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Checked {
    /// Everything it printed, stdout then stderr.
    pub fn printed(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `wasm-iap check ARGS...` with `stdin` on its standard input.
pub fn run_check(args: &[&str], stdin: &str) -> Checked {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-iap"))
        .arg("check")
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Checked {
        status: out.status.code().unwrap(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}
