//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution registry) on
//! loopback with its storage in a scratch directory, and Debian's `skopeo` to talk to it.
//! The registry is stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::envoy::TempDir;
use super::http;
use super::servers::free_port;

pub struct Registry {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.0.join("storage").display()
        );
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.0.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start docker-registry (install it: ./build.sh setup)");
        let mut registry = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The registry answers `GET /v2/` with 200 once it serves the distribution API.
        while http::get(&format!("http://127.0.0.1:{port}/v2/"), &[]).status != 200 {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not ready:\n{}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `docker://` reference of `repository:tag` in this registry.
    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{repository_and_tag}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `skopeo` with `args` (plain HTTP to loopback is the caller's `--*-tls-verify=false`),
/// panicking with its output when it fails.
pub fn skopeo(args: &[&str]) -> Output {
    let output = skopeo_unchecked(args);
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// As `skopeo`, whatever its exit status. The host's signature policy is not consulted:
/// these are images the test has just built.
pub fn skopeo_unchecked(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo (install it: ./build.sh setup)")
}

/// The blob `digest` (`sha256:...`) of an OCI image layout directory.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob in the layout")
}
