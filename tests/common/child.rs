//! The real `outbox-relay` binary as a child process: started, read (log, metrics, health),
//! stopped with SIGTERM or killed with SIGKILL; and one-shot commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The relay binary running as a child process.
pub struct Relay {
    child: Child,
    pub log: PathBuf,
    pub http: String,
}

impl Relay {
    /// Starts `outbox-relay run --config path` against `endpoint`, and waits until it logs its
    /// HTTP address.
    pub fn start(config: &Path, endpoint: &str) -> Self {
        Self::start_with_env(config, endpoint, &[])
    }

    pub fn start_with_env(config: &Path, endpoint: &str, env: &[(&str, &str)]) -> Self {
        let log = config.with_extension(format!("{:08x}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).expect("log file");
        // A measurement may run another build (the baseline of BENCHMARKS.md) instead.
        let binary = std::env::var("OUTBOX_RELAY_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_outbox-relay").to_owned());
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn relay");
        let mut relay = Self {
            child,
            log,
            http: String::new(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = relay.log_lines().iter().find_map(|l| {
                (l["message"] == "Serving /metrics, /healthz and /readyz.")
                    .then(|| l["address"].as_str().map(str::to_owned))
                    .flatten()
            }) {
                relay.http = format!("http://{addr}");
                return relay;
            }
            assert!(
                relay.child.try_wait().expect("try_wait").is_none(),
                "relay exited at start-up:\n{}",
                relay.log_text()
            );
            assert!(
                Instant::now() < end,
                "relay never logged its address:\n{}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log as JSON lines (non-JSON lines skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.http)).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// A metric's value (sum over its label sets), from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, name)
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < end,
                "relay not ready within {deadline:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `metric` reaches at least `value`.
    pub async fn wait_metric(&self, name: &str, value: f64, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.metric(name).await >= value {
                return;
            }
            assert!(
                Instant::now() < end,
                "{name} did not reach {value} within {deadline:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for the exit (at most `deadline`).
    pub fn terminate(mut self, deadline: Duration) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.log_text());
            }
            assert!(
                Instant::now() < end,
                "relay did not exit within {deadline:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to checkpoint or release.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        self.log_text()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `outbox-relay ARGS --config CONFIG` against `endpoint`, with the emulator's credentials.
pub fn relay_command(config: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    command
}

/// Runs `outbox-relay ARGS --config CONFIG` against `endpoint`; returns exit code, stdout and
/// stderr.
pub fn relay_cmd(config: &Path, endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = relay_command(config, endpoint, args)
        .output()
        .expect("run outbox-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
