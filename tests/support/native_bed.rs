//! The native bed: one gateway worker over the in-memory host, Dex's
//! keys inline, tokens minted for it, and the helpers that read its decisions.

use std::rc::Rc;

use serde_json::{json, Value};

use super::host::FakeHost;
use super::mint::{self, claims_with, shared_keys};
use super::random::Counter;
use wasm_iap::core::config::Settings;
use wasm_iap::core::gateway::{Decision, Forward, Gateway, RequestBody};
use wasm_iap::core::login::session::{self, Session};
use wasm_iap::core::reply::{Reply, Severity};
use wasm_iap::core::request_headers::RequestHeaders;

pub const ISSUER: &str = "https://dex.example.com";
pub const AUDIENCE: &str = "demo-upstream";
pub const JSON: (&str, &str) = ("accept", "application/json");
pub const BROWSER: [(&str, &str); 2] = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];

/// The provider every test trusts: Dex, with its keys inline (no fetch, no waiting).
pub fn provider() -> Value {
    json!({ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": shared_keys().jwks() })
}

/// A login service for `host` with its own client, cookie and secrets; `extra` merged in.
pub fn login_service(host: &str, client_id: &str, cookie_name: &str, extra: Value) -> Value {
    let mut entry = json!({
        "hosts": [host],
        "issuer": ISSUER,
        "client_id": client_id,
        "client_secret": format!("{client_id}-secret"),
        "cookie_name": cookie_name,
        "cookie_secrets": [format!("{client_id}-cookie-secret-0123456789abcdef")],
        "cluster": "dex",
        "authorization_endpoint": format!("{ISSUER}/auth"),
        "token_endpoint": format!("{ISSUER}/token"),
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        entry[k] = v;
    }
    entry
}

pub fn parse(config: &Value) -> Rc<Settings> {
    Rc::new(Settings::parse(&config.to_string()).unwrap_or_else(|e| panic!("{e:#?}")))
}

/// A decision, with the client-sent headers to strip (owned, for convenience).
pub struct Sent {
    pub strip: Vec<String>,
    pub decision: Decision,
}

/// One worker, its host, and a clock at the real time (tokens are minted with it).
pub struct Bed {
    pub host: FakeHost,
    pub gateway: Gateway,
    next_context: u32,
    settings: Rc<Settings>,
}

impl Bed {
    pub fn new(config: &Value) -> Bed {
        Bed::with_settings(parse(config))
    }

    /// A bed whose configuration names secrets as `{"env": "NAME"}`, read through `env`.
    pub fn with_env(config: &Value, env: &dyn Fn(&str) -> Option<String>) -> Bed {
        let settings =
            Settings::parse_with_env(&config.to_string(), env).unwrap_or_else(|e| panic!("{e:#?}"));
        Bed::with_settings(Rc::new(settings))
    }

    pub fn with_settings(settings: Rc<Settings>) -> Bed {
        let mut host = FakeHost::new(mint::now_secs() * 1000);
        let mut gateway = Gateway::new(Rc::clone(&settings));
        gateway.prepare(&mut host);
        Bed {
            host,
            gateway,
            next_context: 1,
            settings,
        }
    }

    /// Another worker of the same Envoy: same settings, shared data and clock.
    pub fn sibling(&self, seed: u8) -> Bed {
        let mut host = self.host.sibling(seed);
        let mut gateway = Gateway::new(Rc::clone(&self.settings));
        gateway.prepare(&mut host);
        Bed {
            host,
            gateway,
            next_context: 1,
            settings: Rc::clone(&self.settings),
        }
    }

    /// The worker's tick, as far as the gateway goes: counters, and sessions other workers
    /// revoked.
    pub fn tick(&mut self) {
        self.gateway.tick(&mut self.host);
        self.gateway.sync_revocations(&mut self.host);
    }

    /// A request with a body: its headers are decided, and when the decision asks for the
    /// body, it gets `body`.
    pub fn send_with_body(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: RequestBody,
    ) -> Decision {
        let decision = self.send(method, authority, path, extra).decision;
        match decision {
            Decision::ReadBody(_) => {
                self.gateway
                    .on_request_body(&mut self.host, self.next_context, body)
            }
            other => other,
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Sent {
        let mut pairs: Vec<(&str, &[u8])> = vec![
            (":authority", authority.as_bytes()),
            (":path", path.as_bytes()),
            (":method", method.as_bytes()),
            (":scheme", b"https"),
        ];
        pairs.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes())));
        let headers = RequestHeaders::from_pairs(pairs);
        self.next_context += 1;
        let outcome = self
            .gateway
            .decide(&mut self.host, self.next_context, &headers);
        Sent {
            strip: outcome.strip.iter().map(|s| s.to_string()).collect(),
            decision: outcome.decision,
        }
    }

    /// The context id of the request sent last.
    pub fn last_context(&self) -> u32 {
        self.next_context
    }

    pub fn get(&mut self, authority: &str, path: &str, extra: &[(&str, &str)]) -> Decision {
        self.send("GET", authority, path, extra).decision
    }

    /// A sealed session cookie (`name=value; ...`) of login service `index`.
    pub fn session_cookie(&mut self, index: usize, session: &Session) -> String {
        let service = &self.gateway.settings().login[index];
        let written = session::write(
            session,
            &[],
            &service.cookie_name,
            &service.cookie,
            &service.idps.first().sealer,
            mint::now_secs(),
            &mut Counter(1),
        )
        .expect("the session fits");
        written
            .iter()
            .map(|c| super::sent_back(c))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn info_lines(&self) -> Vec<String> {
        self.host
            .log
            .borrow()
            .iter()
            .filter(|(severity, _)| *severity == Severity::Info)
            .map(|(_, line)| line.clone())
            .collect()
    }
}

/// A token from Dex for the upstream: `alice-id`, verified alice@example.com, plus `changes`
/// (null removes a claim).
pub fn token(changes: Value) -> String {
    shared_keys()
        .signer("ES256")
        .sign(&claims_with(ISSUER, AUDIENCE, changes))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn with_bearer(authorization: &str) -> Vec<(&str, &str)> {
    vec![("authorization", authorization), JSON]
}

pub fn forwarded(decision: Decision) -> Forward {
    match decision {
        Decision::Forward(forward) => forward,
        other => panic!("expected the request to go upstream, got {other:?}"),
    }
}

pub fn responded(decision: Decision) -> Reply {
    match decision {
        Decision::Respond(reply) => reply,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

pub fn header<'a>(forward: &'a Forward, name: &str) -> Option<&'a str> {
    forward
        .set_headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
