//! The container image, built and run: the Dockerfile's `FROM scratch` runtime stage is built
//! (offline, nothing pulled) around the static binary that its build stage makes
//! (`scripts/docker-stack binary`), on a private dockerd (`scripts/docker-stack up`), and run
//! against the emulator as documented: config mounted read-only, credentials from the
//! environment, read-only root filesystem, the image's non-root user. A real Prometheus
//! (Debian's `prometheus` package, which `./scripts/test` installs) scrapes the running image
//! and evaluates `deploy/prometheus/alerts.yaml`: when PutEvents stops, the oldest-unpublished
//! alert goes pending; when the container stops, the "no replica" alert does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::tools::{read, run};
use common::{Fixture, REPO};

const DEADLINE: Duration = Duration::from_secs(60);
const ALERT: &str = "OutboxRelayOldestUnpublishedRecordTooOld";
const DOWN: &str = "OutboxRelayDown";

/// A Prometheus server on a free loopback port, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second and evaluates `rules` every second.
    fn start(target: &str, rules: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("alerts.yaml"), rules).expect("rules");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yaml\n\
                 scrape_configs:\n  - job_name: relay\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("prometheus")
            .current_dir(dir.path())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus does not start ({e}): ./scripts/test installs Debian's \
                     prometheus package"
                )
            });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The state (`pending`, `firing`) of alert `name`, if it is active.
    async fn alert_state(&self, name: &str) -> Option<String> {
        let body: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str())
            .map(str::to_owned)
    }

    /// Whether Prometheus has scraped the relay successfully (`up == 1`).
    async fn scraping(&self) -> bool {
        let Ok(answer) = reqwest::get(format!("{}/api/v1/query?query=up", self.url)).await else {
            return false;
        };
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        body["data"]["result"][0]["value"][1] == "1"
    }
}

fn stack(command: &str, env_override: &str) -> String {
    if let Ok(value) = std::env::var(env_override) {
        return value;
    }
    let out = Command::new(Path::new(REPO).join("scripts/docker-stack"))
        .arg(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/docker-stack runs");
    assert!(
        out.status.success(),
        "scripts/docker-stack {command} failed"
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `docker` against the private engine.
fn docker(host: &str, args: &[&str]) -> (bool, String) {
    run(Command::new("docker")
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "0")
        .args(args))
}

fn docker_ok(host: &str, args: &[&str]) -> String {
    let (ok, out) = docker(host, args);
    assert!(ok, "docker {args:?}:\n{out}");
    out
}

/// The build context of the runtime stage: the Dockerfile from its last `FROM` on, with the
/// build stage's output (`/out/`) taken from this directory instead.
fn runtime_context(binary: &Path) -> tempfile::TempDir {
    let dockerfile = read("Dockerfile");
    let start = dockerfile
        .find("FROM scratch AS runtime")
        .expect("the Dockerfile has a scratch runtime stage");
    let stage = &dockerfile[start..];
    assert_eq!(
        stage.matches("COPY --from=build /out/ /").count(),
        1,
        "the runtime stage copies the build stage's /out/"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        stage.replace("COPY --from=build /out/ /", "COPY out/ /"),
    )
    .expect("write Dockerfile");
    // What the build stage puts in /out/: the binary, the CA bundle, the config directory.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("etc/ssl/certs")).expect("mkdir");
    std::fs::create_dir_all(out.join("etc/outbox-relay")).expect("mkdir");
    std::fs::copy(binary, out.join("outbox-relay")).expect("copy binary");
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        out.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .expect("copy CA bundle");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn inspect(host: &str, what: &str, format: &str) -> String {
    docker_ok(host, &["inspect", "--format", format, what])
        .trim()
        .to_owned()
}

/// The runtime stage built around the static binary (`docker build`), removed when dropped.
struct Image {
    host: String,
    tag: String,
}

impl Image {
    fn build() -> Self {
        let host = stack("up", "OUTBOX_RELAY_TEST_DOCKER_HOST");
        let binary = PathBuf::from(stack("binary", "OUTBOX_RELAY_TEST_STATIC_BINARY"));
        let image = Self {
            host,
            tag: format!("{}:test", common::unique("outbox-relay-test")),
        };
        let context = runtime_context(&binary);
        let context_path = context.path().to_string_lossy().into_owned();
        docker_ok(
            &image.host,
            &["build", "--quiet", "-t", &image.tag, &context_path],
        );
        image
    }

    fn inspect(&self, format: &str) -> String {
        inspect(&self.host, &self.tag, format)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&self.host, &["rmi", "-f", &self.tag]);
    }
}

/// The image running as documented, against the fixture's emulator: the relay's config
/// (serving HTTP on `port`) mounted read-only where the image reads it, credentials and the
/// endpoint from the environment, a read-only root. Removed when dropped.
struct Container {
    host: String,
    name: String,
    base: String,
}

impl Container {
    async fn start(image: &Image, f: &mut Fixture, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let config_path = f
            .relay_config()
            .set("http", "listen", format!("127.0.0.1:{port}"))
            .write();
        let container = Self {
            host: image.host.clone(),
            name: common::unique("outbox-relay-test"),
            base: format!("http://127.0.0.1:{port}"),
        };
        let mount = format!("{}:/etc/outbox-relay/config.toml:ro", config_path.display());
        let mut args = vec![
            "run".to_owned(),
            "--detach".to_owned(),
            "--name".to_owned(),
            container.name.clone(),
            // The host network: the emulator listens on 127.0.0.1 (dockerd runs without a bridge).
            "--network".to_owned(),
            "host".to_owned(),
            "--read-only".to_owned(),
            "--volume".to_owned(),
            mount,
        ];
        let endpoint = f.endpoint.clone();
        let environment = [
            ("OUTBOX_RELAY__AWS__ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ];
        for (key, value) in environment.iter().chain(env) {
            args.push("--env".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.push(image.tag.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&container.host, &args);
        let end = Instant::now() + DEADLINE;
        while get(&format!("{}/readyz", container.base)).await.0 != 200 {
            assert!(
                Instant::now() < end,
                "not ready within {DEADLINE:?}:\n{}",
                container.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        container
    }

    fn logs(&self) -> String {
        docker(&self.host, &["logs", &self.name]).1
    }

    fn inspect(&self, format: &str) -> String {
        inspect(&self.host, &self.name, format)
    }

    async fn metric(&self, name: &str) -> f64 {
        common::metric_value(&get(&format!("{}/metrics", self.base)).await.1, name)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&self.host, &["rm", "-f", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_relays_rows_and_stops_cleanly_as_non_root_on_a_read_only_root() {
    // Build the runtime stage; the image says what the README and Dockerfile say.
    let image = Image::build();
    assert_eq!(image.inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        image.inspect("{{json .Config.Entrypoint}}"),
        r#"["/outbox-relay"]"#
    );
    assert_eq!(image.inspect("{{json .Config.Cmd}}"), r#"["run"]"#);
    assert_eq!(image.inspect("{{.Config.StopSignal}}"), "SIGTERM");
    assert!(image
        .inspect("{{json .Config.ExposedPorts}}")
        .contains("9464/tcp"));
    assert!(image
        .inspect("{{json .Config.Env}}")
        .contains("OUTBOX_RELAY_CONFIG=/etc/outbox-relay/config.toml"));

    // The world on the emulator, and the relay's config mounted where the image reads it.
    let mut f = Fixture::new().await;
    let container = Container::start(&image, &mut f, &[]).await;
    let base = container.base.clone();

    // It runs as the image's non-root user, on a read-only root filesystem.
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "65532"),
        "the relay runs as 65532: {uid_line}"
    );
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

    // Rows become events, end to end.
    let ids = f.write_books(5).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| {
        common::distinct(r).0.len() >= 5
    })
    .await;
    let (got, _) = common::distinct(&received);
    assert!(ids.iter().all(|id| got.contains(id)), "{ids:?} vs {got:?}");

    // The image's HEALTHCHECK (the shell-less `healthcheck` subcommand) reports healthy.
    let end = Instant::now() + DEADLINE;
    loop {
        let health = container.inspect("{{.State.Health.Status}}");
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < end,
            "health {health}:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The live /metrics serves every series the alerts query. Three families only appear with
    // their first failure (their label is the error): dead letters and failed PutEvents calls
    // are seen in live /metrics by tests/dead_letters.rs and tests/outage.rs; failed entries
    // cannot be produced by the emulator and are counted in the fakes' tests.
    let (code, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let on_first_failure = [
        "outbox_relay_events_dead_lettered_total",
        "outbox_relay_put_events_errors_total",
        "outbox_relay_put_events_failed_entries_total",
    ];
    let alerts = read("deploy/prometheus/alerts.yaml");
    let used: std::collections::BTreeSet<&str> = alerts
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("outbox_relay_"))
        .collect();
    assert!(used.len() >= 5, "{used:?}");
    for name in used {
        if on_first_failure.contains(&name) {
            continue;
        }
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "the alerts query {name}, which a running relay's /metrics lacks"
        );
    }

    // `docker stop` sends SIGTERM: the relay checkpoints, releases its lease and exits 0 within
    // its grace (10 s in this config), before docker's own timeout would SIGKILL it.
    let started = Instant::now();
    docker_ok(&container.host, &["stop", "--time", "30", &container.name]);
    let took = started.elapsed();
    let log = container.logs();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{log}");
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    assert!(log.contains("Leases released; shutdown complete."), "{log}");
    let leases = f.leases().await;
    assert!(!leases.is_empty());
    assert!(
        leases.iter().all(|l| !l.contains_key("leaseOwner")),
        "leases released: {leases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_image_raises_the_oldest_unpublished_record_alert_on_a_real_prometheus() {
    let image = Image::build();
    let mut f = Fixture::new().await;
    // Only EventBridge goes through the proxy: the stream and the lease table stay reachable,
    // so the relay reads the row and then cannot publish it.
    let proxy = Proxy::start(&f.endpoint).await;
    let relay = Container::start(
        &image,
        &mut f,
        &[(
            "OUTBOX_RELAY__AWS__ENDPOINTS__EVENTBRIDGE",
            proxy.endpoint.as_str(),
        )],
    )
    .await;
    let rules = read("deploy/prometheus/alerts.yaml");
    let shortened = rules.replace(
        "max by (namespace, job) (outbox_relay_oldest_unpublished_record_age_seconds) > 300\n        for: 5m",
        "max by (namespace, job) (outbox_relay_oldest_unpublished_record_age_seconds) > 3\n        for: 1m",
    );
    assert_ne!(
        shortened, rules,
        "the alert's threshold and for: were found"
    );
    let target = relay.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target, &shortened);

    // Healthy: rows published, Prometheus scraping, the alert quiet.
    f.write_books(5).await;
    let end = Instant::now() + DEADLINE;
    while !(prometheus.scraping().await
        && relay.metric("outbox_relay_events_published_total").await >= 5.0)
    {
        assert!(Instant::now() < end, "never healthy:\n{}", relay.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several evaluations later, still quiet.
    let quiet_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet_until {
        assert_eq!(
            prometheus.alert_state(ALERT).await,
            None,
            "fired while healthy"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // PutEvents stops: the next row waits, its age grows past the threshold, the alert goes
    // pending (and would fire after `for:`).
    proxy.cut();
    f.write_books(1).await;
    let cut_at = Instant::now();
    let state = loop {
        if let Some(state) = prometheus.alert_state(ALERT).await {
            break state;
        }
        assert!(
            Instant::now() < cut_at + DEADLINE,
            "{ALERT} never became active:\n{}",
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "alerts: {ALERT} {state} {:.1} s after PutEvents stopped (threshold shortened to 3 s)",
        cut_at.elapsed().as_secs_f64()
    );
    assert!(state == "pending" || state == "firing", "{state}");

    // PutEvents back: the row goes out and the alert clears.
    proxy.restore();
    let end = Instant::now() + DEADLINE;
    while relay.metric("outbox_relay_events_published_total").await < 6.0 {
        assert!(Instant::now() < end, "never published:\n{}", relay.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = Instant::now() + DEADLINE;
    while prometheus.alert_state(ALERT).await.is_some() {
        assert!(Instant::now() < end, "{ALERT} never cleared");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every replica gone: the container stops, its series go stale, and the "no replica"
    // alert goes pending although no series of the relay is left to compare.
    assert_eq!(prometheus.alert_state(DOWN).await, None, "{DOWN} while up");
    docker_ok(&relay.host, &["stop", &relay.name]);
    let stopped_at = Instant::now();
    let state = loop {
        if let Some(state) = prometheus.alert_state(DOWN).await {
            break state;
        }
        assert!(
            Instant::now() < stopped_at + DEADLINE,
            "{DOWN} never became active"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "alerts: {DOWN} {state} {:.1} s after the container stopped",
        stopped_at.elapsed().as_secs_f64()
    );
    assert!(state == "pending" || state == "firing", "{state}");
}
