//! The real OpenID provider (npm oidc-provider, envoy-local/idp) as a child process,
//! stopped on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::browser::{absolute, attribute_after, Browser};
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
        let body = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "+")
        );
        let response = self.token_endpoint(client, secret, &body);
        assert_eq!(response.status, 200, "token endpoint: {response:?}");
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// The token endpoint's answer to the form `body`, sent as `client` (client_secret_basic).
    pub fn token_endpoint(&self, client: &str, secret: &str, body: &str) -> http::Response {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let authorization = format!("Basic {basic}");
        http::request(
            "POST",
            &format!("{}/token", self.issuer),
            &[
                ("authorization", authorization.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(body),
        )
    }

    /// The token endpoint's answer to a refresh by the `demo` client.
    pub fn refresh(&self, refresh_token: &str) -> http::Response {
        let body = format!("grant_type=refresh_token&refresh_token={refresh_token}");
        self.token_endpoint("demo", "demo-secret", &body)
    }

    /// The `demo` client's tokens (access, ID, refresh) for `user`, by the authorization-code
    /// flow: `browser` logs in at the IdP and is sent to `redirect_uri` (one of REDIRECT_URIS,
    /// where nothing needs to listen: the code is read from the address).
    pub fn code_flow_tokens(&self, browser: &mut Browser, redirect_uri: &str, user: &str) -> Value {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", "demo")
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile groups")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", "fleet")
            .finish();
        let at_idp = browser.get(&format!("{}/auth?{query}", self.issuer));
        let (landed, page) = browser.log_in_at_idp(at_idp, user);
        let landed = url::Url::parse(&landed).expect("landing address");
        let code = landed
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {landed}: {}", page.body))
            .1
            .into_owned();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", redirect_uri)
            .finish();
        let response = self.token_endpoint("demo", "demo-secret", &body);
        assert_eq!(response.status, 200, "code exchange: {response:?}");
        response.json()
    }

    /// The token-endpoint calls so far by grant type and outcome, e.g.
    /// `{"refresh_token": {"ok": 3, "invalid_grant": 1}}` (needs `IDP_TEST_COUNTS=1`).
    pub fn counts(&self) -> Value {
        let response = http::get(&format!("{}/_test/counts", self.issuer), &[]);
        assert_eq!(response.status, 200, "IDP_TEST_COUNTS=1? {response:?}");
        response.json()
    }

    /// Ends `browser`'s session at the IdP (RP-initiated logout: GET /session/end, then the
    /// confirm form posted with `logout=yes`), as a user signing out at the IdP does. With
    /// `BACKCHANNEL_LOGOUT_URI` set, the IdP POSTs there, before it answers, the form
    /// `logout_token=<JWT>`: a signed JWT with `iss`, `aud` ("demo"), `iat`, `exp`, `jti`,
    /// `sub`, `sid` (the ID tokens' `sid`) and `events`
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`, no `nonce`.
    /// The IdP finds the session by the browser's IdP cookies, not by an ID token: a token
    /// given without them ends nothing.
    pub fn end_session(&self, browser: &mut Browser) -> http::Response {
        let (_, page) = browser.get(&format!("{}/session/end", self.issuer));
        let action = attribute_after(&page.body, "<form", "action")
            .unwrap_or_else(|| panic!("no logout form: {}", page.body));
        let xsrf = attribute_after(&page.body, "name=\"xsrf\"", "value").expect("xsrf");
        let form = format!("xsrf={xsrf}&logout=yes");
        let (_, done) = browser.navigate("POST", &absolute(&self.issuer, &action), Some(&form));
        assert_eq!(done.status, 200, "IdP session ended: {done:?}");
        done
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
