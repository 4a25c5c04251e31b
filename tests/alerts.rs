//! The alert rules on a real Prometheus (Debian's `prometheus` package, which `./scripts/test`
//! installs): it scrapes the running relay and evaluates `deploy/prometheus/alerts.yaml`. When
//! PutEvents stops (a proxy in front of EventBridge only, cut), a row waits unpublished and
//! `OutboxRelayOldestUnpublishedRecordTooOld` goes pending, with its threshold and `for:`
//! shortened from 5 minutes to seconds for the test; before the cut it is quiet.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(90);
const ALERT: &str = "OutboxRelayOldestUnpublishedRecordTooOld";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_relay_raises_the_oldest_unpublished_record_alert_on_a_real_prometheus() {
    let mut f = Fixture::new().await;
    // Only EventBridge goes through the proxy: the stream and the lease table stay reachable,
    // so the relay reads the row and then cannot publish it.
    let proxy = Proxy::start(&f.endpoint).await;
    let relay = Relay::start_with_env(
        &f.config(""),
        &f.endpoint,
        &[(
            "OUTBOX_RELAY__AWS__ENDPOINTS__EVENTBRIDGE",
            proxy.endpoint.as_str(),
        )],
    );
    relay.wait_ready(DEADLINE).await;
    let rules =
        std::fs::read_to_string(Path::new(common::REPO).join("deploy/prometheus/alerts.yaml"))
            .expect("alerts.yaml");
    let shortened = rules.replace(
        "max(outbox_relay_oldest_unpublished_record_age_seconds) > 300\n        for: 5m",
        "max(outbox_relay_oldest_unpublished_record_age_seconds) > 3\n        for: 1m",
    );
    assert_ne!(
        shortened, rules,
        "the alert's threshold and for: were found"
    );
    let target = relay.http.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target, &shortened);

    // Healthy: rows published, Prometheus scraping, the alert quiet.
    f.write_books(5).await;
    let end = Instant::now() + DEADLINE;
    while !(prometheus.scraping().await
        && relay.metric("outbox_relay_events_published_total").await >= 5.0)
    {
        assert!(Instant::now() < end, "never healthy:\n{}", relay.log_text());
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
            relay.log_text()
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
    relay
        .wait_metric("outbox_relay_events_published_total", 6.0, DEADLINE)
        .await;
    let end = Instant::now() + DEADLINE;
    while prometheus.alert_state(ALERT).await.is_some() {
        assert!(Instant::now() < end, "{ALERT} never cleared");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
