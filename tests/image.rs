//! The container image, built and run: the Dockerfile's `FROM scratch` runtime stage is built
//! (offline, nothing pulled) around the static binary that its build stage makes
//! (`scripts/docker-stack binary`), on a private dockerd (`scripts/docker-stack up`), and run
//! against the emulator as documented: config mounted read-only, credentials from the
//! environment, read-only root filesystem, the image's non-root user.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tools::{read, run};
use common::{Fixture, REPO};

const DEADLINE: Duration = Duration::from_secs(60);

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

/// Removes the container and the image when the test ends, passed or not.
struct Cleanup {
    host: String,
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&self.host, &["rm", "-f", &self.container]);
        let _ = docker(&self.host, &["rmi", "-f", &self.image]);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_relays_rows_and_stops_cleanly_as_non_root_on_a_read_only_root() {
    let host = stack("up", "OUTBOX_RELAY_TEST_DOCKER_HOST");
    let binary = PathBuf::from(stack("binary", "OUTBOX_RELAY_TEST_STATIC_BINARY"));
    let tag = common::unique("outbox-relay-test");
    let cleanup = Cleanup {
        host: host.clone(),
        container: tag.clone(),
        image: format!("{tag}:test"),
    };

    // Build the runtime stage; the image says what the README and Dockerfile say.
    let context = runtime_context(&binary);
    let context_path = context.path().to_string_lossy().into_owned();
    docker_ok(
        &host,
        &["build", "--quiet", "-t", &cleanup.image, &context_path],
    );
    let image = &cleanup.image;
    assert_eq!(inspect(&host, image, "{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect(&host, image, "{{json .Config.Entrypoint}}"),
        r#"["/outbox-relay"]"#
    );
    assert_eq!(inspect(&host, image, "{{json .Config.Cmd}}"), r#"["run"]"#);
    assert_eq!(inspect(&host, image, "{{.Config.StopSignal}}"), "SIGTERM");
    assert!(inspect(&host, image, "{{json .Config.ExposedPorts}}").contains("9464/tcp"));
    assert!(inspect(&host, image, "{{json .Config.Env}}")
        .contains("OUTBOX_RELAY_CONFIG=/etc/outbox-relay/config.toml"));

    // The world on the emulator, and the relay's config mounted where the image reads it.
    let mut f = Fixture::new().await;
    let port = free_port();
    let config_path = f.config("");
    let config = std::fs::read_to_string(&config_path)
        .expect("config")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    std::fs::write(&config_path, config).expect("write config");
    let mount = format!("{}:/etc/outbox-relay/config.toml:ro", config_path.display());
    let endpoint = format!("OUTBOX_RELAY__AWS__ENDPOINT_URL={}", f.endpoint);
    docker_ok(
        &host,
        &[
            "run",
            "--detach",
            "--name",
            &cleanup.container,
            // The host network: the emulator listens on 127.0.0.1 (dockerd runs without a bridge).
            "--network",
            "host",
            "--read-only",
            "--volume",
            &mount,
            "--env",
            &endpoint,
            "--env",
            "AWS_ACCESS_KEY_ID=test",
            "--env",
            "AWS_SECRET_ACCESS_KEY=test",
            image,
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let logs = |host: &str| docker(host, &["logs", &cleanup.container]).1;
    let end = Instant::now() + DEADLINE;
    while get(&format!("{base}/readyz")).await.0 != 200 {
        assert!(
            Instant::now() < end,
            "not ready within {DEADLINE:?}:\n{}",
            logs(&host)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // It runs as the image's non-root user, on a read-only root filesystem.
    let pid = inspect(&host, &cleanup.container, "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "65532"),
        "the relay runs as 65532: {uid_line}"
    );
    assert_eq!(
        inspect(&host, &cleanup.container, "{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );

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
        let health = inspect(&host, &cleanup.container, "{{.State.Health.Status}}");
        if health == "healthy" {
            break;
        }
        assert!(Instant::now() < end, "health {health}:\n{}", logs(&host));
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
    docker_ok(&host, &["stop", "--time", "30", &cleanup.container]);
    let took = started.elapsed();
    let log = logs(&host);
    assert_eq!(
        inspect(&host, &cleanup.container, "{{.State.ExitCode}}"),
        "0",
        "{log}"
    );
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    assert!(log.contains("Leases released; shutdown complete."), "{log}");
    let leases = f.leases().await;
    assert!(!leases.is_empty());
    assert!(
        leases.iter().all(|l| !l.contains_key("leaseOwner")),
        "leases released: {leases:?}"
    );
    drop(cleanup);
}
