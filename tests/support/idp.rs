//! The real OpenID provider (npm oidc-provider, envoy-local/idp) as a child process,
//! stopped on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::envoy::repo_root;
use super::http;

pub struct Idp {
    child: Child,
    log: super::envoy::TempDir,
    pub issuer: String,
    pub port: u16,
}

impl Idp {
    /// Starts the IdP; `env` sets e.g. REDIRECT_URIS.
    pub fn start(env: &[(&str, &str)]) -> Idp {
        let dir = repo_root().join("envoy-local/idp");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "npm packages missing: run ./build.sh test"
        );
        let log = super::envoy::TempDir::new("idp");
        let stderr = std::fs::File::create(log.0.join("idp.log")).expect("idp log");
        let mut command = Command::new("node");
        command
            .arg("idp.mjs")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start node");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("IdP prints its address");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("IdP did not start: {line:?}")
        });
        Idp {
            child,
            log,
            issuer: ready["issuer"].as_str().expect("issuer").to_string(),
            port: ready["port"].as_u64().expect("port") as u16,
        }
    }

    /// Stops this IdP, then starts another with `env` (give `IDP_PORT` to keep the issuer).
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Idp::start(env);
    }

    /// A JWT access token for the `demo-cli` client, by client credentials.
    pub fn client_credentials_token(&self) -> String {
        self.client_credentials_token_for("demo-cli", "demo-cli-secret", "api")
    }

    /// A JWT access token for `client` (`demo-cli`: scopes api, read, write; `reader-cli`:
    /// api, read) with the space-separated `scope`, by client credentials.
    pub fn client_credentials_token_for(&self, client: &str, secret: &str, scope: &str) -> String {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let authorization = format!("Basic {basic}");
        let body = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "+")
        );
        let response = http::request(
            "POST",
            &format!("{}/token", self.issuer),
            &[
                ("authorization", authorization.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(&body),
        );
        assert_eq!(response.status, 200, "token endpoint: {response:?}");
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }
}

impl Drop for Idp {
    /// Stops the IdP; a failing test prints what it logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.0.join("idp.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("WARNING")).collect();
            eprintln!("--- IdP log ---\n{}", lines.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
