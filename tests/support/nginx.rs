//! Debian's NGINX as a child process, from a template of `envoy-local/nginx`, stopped on
//! drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::envoy::{repo_root, TempDir};

pub struct Nginx {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

impl Nginx {
    /// Renders `envoy-local/nginx/<template>` with `${NAME}` replaced by `values` (and
    /// `${DIR}`, `${LISTEN}` set here), and runs it in the foreground on `port`.
    pub fn start(template: &str, port: u16, values: &[(&str, String)]) -> Nginx {
        let dir = TempDir::new("nginx");
        let path = repo_root().join("envoy-local/nginx").join(template);
        let mut config = std::fs::read_to_string(&path).expect("NGINX template");
        let mut all: Vec<(&str, String)> = vec![
            ("DIR", dir.0.display().to_string()),
            ("LISTEN", format!("127.0.0.1:{port}")),
        ];
        all.extend(values.iter().cloned());
        for (name, value) in &all {
            config = config.replace(&format!("${{{name}}}"), value);
        }
        assert!(
            !config.contains("${"),
            "unrendered placeholder in:\n{config}"
        );
        let config_path = dir.0.join("nginx.conf");
        std::fs::write(&config_path, config).expect("write NGINX config");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&config_path)
            .arg("-g")
            .arg("daemon off; master_process off;")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (./build.sh test installs it)");
        let mut nginx = Nginx { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("NGINX exited ({status}):\n{}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "NGINX did not listen:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
