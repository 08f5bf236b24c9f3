//! A real etcd cluster (Debian's `etcd-server`, 3.4) on loopback: every member with its own
//! client and peer port and data directory, killed and restarted at will, stopped on drop.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::envoy::TempDir;
use super::http;
use super::servers::free_port;

/// `WASM_IAP_ETCD` names another binary.
fn etcd_binary() -> PathBuf {
    std::env::var_os("WASM_IAP_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Member {
    fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("etcd.log")
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts the process; with a data directory from an earlier run it rejoins as itself.
    fn spawn(&mut self, initial_cluster: &str, token: &str) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-token", token])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd (install etcd-server: ./build.sh setup)");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `/health` is true only when this member sees a leader and a quorum read succeeds.
    fn healthy(&self) -> bool {
        let answer = http::request_within(
            "GET",
            &format!("{}/health", self.client_url()),
            &[],
            None,
            Duration::from_secs(2),
        );
        answer.status == 200 && answer.json()["health"] == "true"
    }

    /// This member's id and the leader's, as its `/v3/maintenance/status` says.
    fn status(&self) -> Option<(String, String)> {
        let answer = http::request_within(
            "POST",
            &format!("{}/v3/maintenance/status", self.client_url()),
            &[],
            Some("{}"),
            Duration::from_secs(2),
        )
        .json();
        let id = answer["header"]["member_id"].as_str()?.to_string();
        Some((id, answer["leader"].as_str()?.to_string()))
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each of them is healthy.
    pub fn start(size: usize) -> EtcdCluster {
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                dir: TempDir::new(&format!("etcd-m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("wasm-iap-{}-{}", std::process::id(), members[0].peer_port);
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
        };
        cluster.restart_all();
        cluster
    }

    /// Each member's client port, in member order.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// The member that leads now, as the running members say.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<Option<(String, String)>> = self
            .members
            .iter()
            .map(|m| m.child.as_ref().and_then(|_| m.status()))
            .collect();
        let (_, leader) = statuses.iter().flatten().next()?;
        statuses
            .iter()
            .position(|s| s.as_ref().is_some_and(|(id, _)| id == leader))
    }

    /// Kills a member at once (SIGKILL): its port refuses connections from now on.
    pub fn kill(&mut self, member: usize) {
        self.members[member].stop();
    }

    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.stop();
        }
    }

    /// Starts a killed member again on its ports and data directory, and waits until it is
    /// back in the cluster and healthy.
    pub fn restart(&mut self, member: usize) {
        self.spawn(member);
        self.wait_healthy(&[member]);
    }

    /// Starts every stopped member and waits until all are healthy.
    pub fn restart_all(&mut self) {
        let all: Vec<usize> = (0..self.members.len()).collect();
        for &member in &all {
            self.spawn(member);
        }
        self.wait_healthy(&all);
    }

    fn spawn(&mut self, member: usize) {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let member = &mut self.members[member];
        if member.child.is_none() {
            member.spawn(&initial_cluster, &token);
        }
    }

    fn wait_healthy(&mut self, members: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in members {
            while !self.members[i].healthy() {
                let exited = self.members[i]
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                assert!(
                    !exited && Instant::now() < deadline,
                    "etcd member {i} not healthy within 30 s (exited: {exited}):\n{}",
                    self.members[i].log_tail(40)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for EtcdCluster {
    /// Stops every member; a failing test prints the end of each member's log.
    fn drop(&mut self) {
        for member in &mut self.members {
            member.stop();
        }
        if std::thread::panicking() || std::env::var_os("WASM_IAP_SHOW_LOGS").is_some() {
            for member in &self.members {
                eprintln!(
                    "--- etcd member {} (client port {}) ---\n{}",
                    member.name,
                    member.client_port,
                    member.log_tail(60)
                );
            }
        }
    }
}
