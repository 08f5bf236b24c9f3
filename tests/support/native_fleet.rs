//! Replicas natively: gateways with their own shared data (so, separate Envoys) whose
//! store calls go to a real etcd, as Envoy would send them; token calls are left to the test.

use serde_json::{json, Value};

use super::http;
use super::mint::{self, shared_keys};
use super::native_bed::{login_service, provider, Bed, ISSUER};
use wasm_iap::core::gateway::Decision;

pub const HOST: &str = "grafana.example.com";

pub fn config(prefix: &str) -> Value {
    json!({
        "providers": [provider()],
        "login": [login_service(HOST, "grafana", "_grafana", json!({}))],
        "cluster_store": { "etcd": { "cluster": "etcd", "prefix": prefix, "timeout": "2s" } },
    })
}

/// A replica (its own shared data) whose store calls go to `etcd`.
pub struct Replica {
    pub bed: Bed,
    /// Calls already answered or left to the test.
    seen: usize,
}

impl Replica {
    pub fn new(prefix: &str) -> Replica {
        Replica {
            bed: Bed::new(&config(prefix)),
            seen: 0,
        }
    }

    /// Sends every store call made since the last pump to etcd (or answers it with no
    /// answer when `etcd` is `None`), and hands the answers to the gateway; the decisions
    /// they made.
    pub fn pump(&mut self, etcd_port: Option<u16>) -> Vec<(u32, Decision)> {
        let mut decided = Vec::new();
        while self.seen < self.bed.host.calls.len() {
            let call = self.bed.host.calls[self.seen].clone();
            self.seen += 1;
            if call.cluster != "etcd" {
                continue;
            }
            let path = call.url.splitn(4, '/').nth(3).unwrap_or_default();
            let (status, body) = match etcd_port {
                Some(port) => {
                    let answer = http::request_within(
                        "POST",
                        &format!("http://127.0.0.1:{port}/{path}"),
                        &[("content-type", "application/json")],
                        Some(&call.body),
                        std::time::Duration::from_secs(2),
                    );
                    (Some(answer.status as u32), answer.body.into_bytes())
                }
                None => (None, Vec::new()),
            };
            let gateway = &mut self.bed.gateway;
            decided.extend(gateway.on_settled_call_response(
                &mut self.bed.host,
                call.token,
                status,
                &body,
            ));
        }
        decided
    }

    /// A replica whose store leases are granted: ticks (a second apart) until its store
    /// answered (a member just started, on a loaded machine, may time out at first).
    pub fn started(prefix: &str, etcd_port: u16) -> Replica {
        let mut replica = Replica::new(prefix);
        for _ in 0..10 {
            replica.tick(Some(etcd_port));
            let ready = replica.bed.get(HOST, "/ready", &[]);
            if matches!(&ready, Decision::Respond(r) if r.body.trim() == "OK") {
                return replica;
            }
            replica.bed.host.advance(1_100);
        }
        panic!("the store never answered the replica's lease grants")
    }

    /// Answers the next store call as Envoy does for a member it cannot reach.
    pub fn next_call_hits_a_dead_member(&mut self) {
        let call = self.bed.host.calls[self.seen..]
            .iter()
            .find(|c| c.cluster == "etcd")
            .expect("a store call")
            .clone();
        self.seen = self.bed.host.calls.len();
        let connect_failure = "upstream connect error or disconnect/reset before headers. \
                               reset reason: connection failure";
        self.bed.gateway.on_settled_call_response(
            &mut self.bed.host,
            call.token,
            Some(503),
            connect_failure.as_bytes(),
        );
    }

    /// The tick: leases are asked for and granted.
    pub fn tick(&mut self, etcd_port: Option<u16>) {
        self.bed.gateway.tick(&mut self.bed.host);
        self.pump(etcd_port);
    }

    pub fn token_calls(&self) -> usize {
        let calls = &self.bed.host.calls;
        calls.iter().filter(|c| c.cluster == "dex").count()
    }

    /// A request with `cookie` whose session needs a refresh: parked, then sent from the
    /// root on the tick (to the store first), and what the store's answer made of it.
    pub fn expired_request(
        &mut self,
        cookie: &str,
        etcd_port: Option<u16>,
    ) -> Vec<(u32, Decision)> {
        let headers = [("cookie", cookie), ("accept", "application/json")];
        let parked = self.bed.get(HOST, "/api/search", &headers);
        assert!(matches!(parked, Decision::Parked), "{parked:?}");
        assert!(self.bed.gateway.settle(&mut self.bed.host, None).is_empty());
        self.pump(etcd_port)
    }

    /// Answers the last token call with a renewed ID token and refresh token.
    pub fn answer_refresh(&mut self, etcd_port: Option<u16>) -> Decision {
        let call = self
            .bed
            .host
            .calls
            .iter()
            .rev()
            .find(|c| c.cluster == "dex");
        let token = call.expect("a token call").token;
        let mut claims = mint::claims_with(ISSUER, "grafana", json!({}));
        claims["exp"] = json!(mint::now_secs() + 3600);
        let id_token = shared_keys().signer("RS256").sign(&claims);
        let renewed = json!({ "id_token": id_token, "refresh_token": "rt-2" }).to_string();
        let (_, decision) = self
            .bed
            .gateway
            .on_settled_call_response(&mut self.bed.host, token, Some(200), renewed.as_bytes())
            .expect("the refresh's request");
        self.pump(etcd_port);
        decision
    }
}
