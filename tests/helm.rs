//! The Helm chart (`deploy/helm/outbox-relay`), rendered and linted offline by Helm's own Go SDK
//! (`scripts/helm-render`, PyPI `helm-python-sdk`), its manifests validated against the
//! Kubernetes schemas (`kubernetes-validate --strict`), and the relay config it renders checked
//! by `outbox-relay validate`. The tools come from `scripts/dev-stack install`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outbox_relay::config::Config;
use serde_yaml_ng::Value;

#[path = "common/tools.rs"]
mod tools;

use tools::{read, run, venv_bin, REPO};

const CHART: &str = "deploy/helm/outbox-relay";
const MULTI_REPLICA: &str = "deploy/helm/outbox-relay/ci/multi-replica-values.yaml";
/// The users' values files of `ci/`: each holds a config of its own kind.
const STREAM_ARN: &str = "deploy/helm/outbox-relay/ci/stream-arn-values.yaml";
const TWO_TABLES: &str = "deploy/helm/outbox-relay/ci/two-tables-values.yaml";
const REGION_FROM_ENV: &str = "deploy/helm/outbox-relay/ci/region-from-env-values.yaml";
const EXISTING_CONFIGMAP: &str = "deploy/helm/outbox-relay/ci/existing-configmap-values.yaml";
/// The books demo's values, an example for users.
const BOOKS_DEMO: &str = "deploy/helm/outbox-relay/examples/books-demo-values.yaml";
/// A config given inline (`--set-json`), for the tests that are about something else.
const INLINE_CONFIG: &str = r#""config": {"source": {"table_name": "Outbox"}, "routes": [{"name": "r", "event_bus_name": "b", "source": "s", "detail_type": "d", "unmarshall": "NewImage"}]}"#;

/// What `scripts/helm-render` printed: the manifests (by template path) and the lint report,
/// or the error that rejected the values.
fn render(values_file: Option<&str>, set_json: &str) -> serde_json::Value {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.current_dir(REPO)
        .arg("scripts/helm-render")
        .arg(CHART)
        .args(values_file)
        .args(["--set-json", set_json]);
    let out = cmd.output().expect("helm-render runs");
    assert!(
        out.status.success(),
        "helm-render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("helm-render prints JSON")
}

/// A successful render: its lint has no warnings or errors, and its manifests by kind.
struct Rendered {
    manifests: BTreeMap<String, String>,
    by_kind: BTreeMap<String, Vec<Value>>,
}

fn rendered(values_file: Option<&str>, set_json: &str) -> Rendered {
    let out = render(values_file, set_json);
    assert!(
        out.get("error").is_none(),
        "render failed: {}",
        out["error"]
    );
    // helm lint --strict: severity 2 = warning, 3 = error (1 = info, e.g. "icon is recommended").
    let lint = &out["lint"];
    let serious: Vec<_> = lint["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
        .collect();
    assert!(serious.is_empty(), "helm lint --strict: {serious:?}");
    assert_eq!(lint["errors"], serde_json::json!([]), "helm lint errors");

    let mut manifests = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    for (template, text) in out["manifests"].as_object().expect("manifests") {
        let text = text.as_str().expect("manifest text").to_owned();
        if template.ends_with(".yaml") && !text.trim().is_empty() {
            let doc: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{template} is not YAML: {e}\n{text}"));
            let kind = doc["kind"].as_str().expect("kind").to_owned();
            by_kind.entry(kind).or_insert_with(Vec::new).push(doc);
        }
        manifests.insert(template.clone(), text);
    }
    Rendered { manifests, by_kind }
}

impl Rendered {
    /// The one manifest of `kind` (the config's ConfigMap, for `ConfigMap`).
    fn get(&self, kind: &str) -> &Value {
        let all = self
            .by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"));
        let mine: Vec<&Value> = all
            .iter()
            .filter(|d| {
                !d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-dashboard"))
            })
            .collect();
        assert_eq!(mine.len(), 1, "one {kind}");
        mine[0]
    }

    fn config_toml(&self) -> String {
        self.get("ConfigMap")["data"]["config.toml"]
            .as_str()
            .expect("config.toml in the ConfigMap")
            .to_owned()
    }

    /// The relay container's environment, as the config loader sees it.
    fn container_env(&self) -> config::Map<String, String> {
        self.container()["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// The config the relay in the pod loads: the rendered file with the container's
    /// environment overrides (the chart's `[http]` and `[shutdown]`).
    fn pod_config(&self) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, self.config_toml()).expect("write config");
        Config::load_with_env(&path, Some(self.container_env()))
            .unwrap_or_else(|e| panic!("the pod's config: {e}\n{}", self.config_toml()))
    }

    fn container(&self) -> &Value {
        &self.get("Deployment")["spec"]["template"]["spec"]["containers"][0]
    }

    /// `kubernetes-validate --strict` over every manifest; returns its output.
    fn validate_against_kubernetes_schemas(&self, kube_version: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = Vec::new();
        for (template, text) in &self.manifests {
            if template.ends_with(".yaml") && !text.trim().is_empty() {
                let path = dir.path().join(template.replace('/', "_"));
                std::fs::write(&path, text).expect("write manifest");
                files.push(path);
            }
        }
        let (ok, text) = run(Command::new(venv_bin("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", kube_version])
            .args(&files));
        assert!(ok, "kubernetes-validate failed:\n{text}");
        text
    }
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an integer: {v:?}"))
}

/// The chart's invariants, for any values: they tie the manifests to the relay's config.
fn check_invariants(r: &Rendered) {
    // The config inside the ConfigMap is one the relay accepts, with the pod's environment.
    let toml = r.config_toml();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .envs(r.container_env())
        .output()
        .expect("outbox-relay validate runs");
    assert!(
        out.status.success(),
        "outbox-relay validate rejected the chart's config:\n{}\n{toml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = r.pod_config();

    let deployment = r.get("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = r.container();

    // Rolling updates never drop below the desired count: shards always have an owner.
    assert_eq!(
        as_u64(&deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"]),
        0
    );
    // Kubernetes waits longer than the relay's drain before it kills the pod.
    let termination = as_u64(&pod["terminationGracePeriodSeconds"]);
    assert!(
        Duration::from_secs(termination) > config.shutdown.grace,
        "terminationGracePeriodSeconds {termination} must exceed [shutdown] grace {:?}",
        config.shutdown.grace
    );
    // The probes and the Service reach the port the relay listens on.
    let port = as_u64(&container["ports"][0]["containerPort"]);
    assert_eq!(port, u64::from(config.http.listen.port()));
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
    let service = r.get("Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // Hardened: non-root (the image's user), read-only root, no escalation, no capabilities.
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(
        security["capabilities"]["drop"],
        Value::Sequence(vec!["ALL".into()])
    );
    let uid = as_u64(&pod["securityContext"]["runAsUser"]);
    assert!(
        read("Dockerfile").contains(&format!("USER {uid}:")),
        "the pod runs as the image's user {uid}"
    );
    // The config is mounted where the image reads it, and a change rolls the pods.
    let env = &container["env"][0];
    assert_eq!(env["name"], "OUTBOX_RELAY_CONFIG");
    let config_path = env["value"].as_str().expect("config path");
    assert!(read("Dockerfile").contains(&format!("OUTBOX_RELAY_CONFIG={config_path}")));
    assert_eq!(
        Path::new(config_path).parent(),
        container["volumeMounts"][0]["mountPath"]
            .as_str()
            .map(Path::new)
    );
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .is_some_and(|c| c.len() == 64),
        "checksum/config annotation"
    );
    // The disruption budget selects the relay's pods.
    assert_eq!(
        r.get("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_chart_ships_no_config_and_says_what_to_give() {
    let out = render(None, "{}");
    let error = out["error"]
        .as_str()
        .expect("the default values are refused");
    assert!(
        error.contains("no relay config: set one of config")
            && error.contains("configToml")
            && error.contains("existingConfigMap"),
        "{error}"
    );
    let values: Value =
        serde_yaml_ng::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values yaml");
    assert_eq!(
        values["config"],
        Value::Mapping(serde_yaml_ng::Mapping::new())
    );
}

#[test]
fn the_books_demo_example_renders_lints_and_validates() {
    let r = rendered(Some(BOOKS_DEMO), "{}");
    check_invariants(&r);
    let text = r.validate_against_kubernetes_schemas("1.30.0");
    for kind in [
        "configmap",
        "deployment",
        "service",
        "serviceaccount",
        "poddisruptionbudget",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{text}"
        );
    }
    assert!(!r.by_kind.contains_key("ServiceMonitor"));
    assert!(!r.by_kind.contains_key("PrometheusRule"));
    // The image defaults to the chart's appVersion, which is the crate's version.
    let chart: Value =
        serde_yaml_ng::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("yaml");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["appVersion"], version);
    assert_eq!(r.container()["image"], format!("outbox-relay:{version}"));
    assert_eq!(r.container()["args"], Value::Sequence(vec!["run".into()]));
    assert_eq!(as_u64(&r.get("Deployment")["spec"]["replicas"]), 2);
    // The default port is the one the image exposes.
    assert!(read("Dockerfile").contains(&format!(
        "EXPOSE {}",
        as_u64(&r.container()["ports"][0]["containerPort"])
    )));
    assert!(r.manifests["outbox-relay/templates/NOTES.txt"].contains("roleArn is empty"));
    let config = r.pod_config();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.aws.region, None, "the pod's AWS_REGION decides");
}

/// YAML or TOML as JSON, numbers as floats (Helm's `toToml` writes `500` as `500.0`).
fn normalized(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Number(n) => n.as_f64().map_or(J::Null, |f| serde_json::json!(f)),
        J::Array(items) => J::Array(items.into_iter().map(normalized).collect()),
        J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, normalized(v))).collect()),
        other => other,
    }
}

/// The `config` (or `configToml`) of a values file, as JSON.
fn users_config(values_file: &str) -> serde_json::Value {
    let values: serde_json::Value =
        serde_yaml_ng::from_str(&read(values_file)).expect("values yaml");
    if let Some(text) = values["configToml"].as_str() {
        return normalized(toml::from_str(text).expect("configToml is TOML"));
    }
    normalized(values["config"].clone())
}

#[test]
fn the_pod_gets_exactly_the_users_config() {
    for file in [STREAM_ARN, TWO_TABLES, REGION_FROM_ENV, MULTI_REPLICA] {
        let r = rendered(Some(file), "{}");
        check_invariants(&r);
        let rendered: serde_json::Value =
            toml::from_str(&r.config_toml()).expect("the ConfigMap holds TOML");
        assert_eq!(
            normalized(rendered),
            users_config(file),
            "{file}: the config file holds the user's keys, nothing else"
        );
        // The chart's own keys come from its values, through the environment.
        let env = r.container_env();
        assert!(env["OUTBOX_RELAY__HTTP__LISTEN"].starts_with("0.0.0.0:"));
        assert!(env["OUTBOX_RELAY__SHUTDOWN__GRACE"].ends_with('s'));
        assert_eq!(env["OUTBOX_RELAY__RUNTIME__WORKER_THREADS"], "1");
    }
    // Stream ARN only: one source, that stream; no table, no region.
    let config = rendered(Some(STREAM_ARN), "{}").pod_config();
    assert_eq!(config.source.streams().len(), 1);
    assert_eq!(config.source.table_name, None);
    assert_eq!(config.aws.region, None);
    assert_eq!(config.source.event_id_attribute, None);
    // Two tables.
    let config = rendered(Some(TWO_TABLES), "{}").pod_config();
    assert_eq!(config.source.table_names, ["Orders", "Payments"]);
    // The region from the pod: the config has none, the container's AWS_REGION stays.
    let r = rendered(Some(REGION_FROM_ENV), "{}");
    assert!(!r.config_toml().contains("[aws]"));
    assert_eq!(r.pod_config().aws.region, None);
    assert_eq!(r.container_env()["AWS_REGION"], "ap-southeast-2");
}

#[test]
fn an_existing_config_map_is_mounted_as_the_config_file() {
    let r = rendered(Some(EXISTING_CONFIGMAP), "{}");
    r.validate_against_kubernetes_schemas("1.30.0");
    assert!(
        !r.by_kind.contains_key("ConfigMap"),
        "the chart renders no config of its own"
    );
    let pod = &r.get("Deployment")["spec"]["template"]["spec"];
    let volume = &pod["volumes"][0];
    assert_eq!(volume["configMap"]["name"], "relay-config");
    assert_eq!(volume["configMap"]["items"][0]["key"], "relay.toml");
    assert_eq!(volume["configMap"]["items"][0]["path"], "config.toml");
    assert_eq!(
        r.container_env()["OUTBOX_RELAY_CONFIG"],
        "/etc/outbox-relay/config.toml"
    );
    // A Secret works the same way.
    let r = rendered(None, r#"{"existingSecret": "relay-config-secret"}"#);
    let volume = &r.get("Deployment")["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], "relay-config-secret");
    assert_eq!(volume["secret"]["items"][0]["key"], "config.toml");
}

#[test]
fn multi_replica_values_with_service_monitor_render_lint_and_validate() {
    let r = rendered(Some(MULTI_REPLICA), "{}");
    check_invariants(&r);
    // Several Kubernetes versions: the chart says kubeVersion >= 1.27 (matchLabelKeys).
    for kube in ["1.27.0", "1.33.0"] {
        let text = r.validate_against_kubernetes_schemas(kube);
        assert!(text.contains("passed for resource deployment/"), "{text}");
    }
    let deployment = r.get("Deployment");
    assert_eq!(as_u64(&deployment["spec"]["replicas"]), 3);
    assert_eq!(as_u64(&r.container()["ports"][0]["containerPort"]), 9500);
    assert_eq!(
        as_u64(&deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]),
        55
    );
    assert_eq!(
        r.get("ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/outbox-relay"
    );
    let config = r.pod_config();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.source.max_records_per_poll.get(), 500);
    // Pulled by digest; a collector beside the relay; environment from a Secret.
    assert!(r.container()["image"].as_str().is_some_and(|i| i.ends_with(
        "/outbox-relay@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][1]["name"], "otel-collector");
    assert_eq!(
        r.container()["envFrom"][0]["secretRef"]["name"],
        "relay-extra-env"
    );
    for constraint in pod["topologySpreadConstraints"]
        .as_sequence()
        .expect("spread")
    {
        assert_eq!(
            constraint["matchLabelKeys"],
            Value::Sequence(vec!["pod-template-hash".into()])
        );
    }
    // The dashboard for Grafana's sidecar is the one of deploy/grafana.
    let dashboard = r.by_kind["ConfigMap"]
        .iter()
        .find(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-dashboard"))
        })
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/outbox-relay.json")).expect("dashboard");
    let in_chart: serde_json::Value = serde_json::from_str(
        dashboard["data"]["outbox-relay.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("JSON");
    assert_eq!(in_chart, shipped);

    // kubernetes-validate has no schemas for prometheus-operator's CRDs: check them here.
    let service = r.get("Service");
    let monitor = r.get("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "monitoring");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0], "outbox",
        "a monitor in another namespace still selects the release's"
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["metricRelabelings"][0]["action"],
        "drop"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("labels")
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the monitor selects the Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // The PrometheusRule carries exactly the alerts of deploy/prometheus/alerts.yaml.
    let rule = r.get("PrometheusRule");
    let alerts: Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yaml")).expect("alerts yaml");
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    // The runbook links can point at a copy of the runbook.
    let r = rendered(
        Some(MULTI_REPLICA),
        r#"{"prometheusRule": {"runbookBaseUrl": "https://wiki.example.com/outbox-relay"}}"#,
    );
    let rules = r.get("PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .clone();
    for rule in rules {
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        assert!(
            url.starts_with("https://wiki.example.com/outbox-relay#outboxrelay"),
            "{url}"
        );
    }
}

#[test]
fn the_worker_threads_come_from_the_chart_or_else_the_config() {
    let threads = |set: &str| {
        let r = rendered(None, &format!("{{{INLINE_CONFIG}{set}}}"));
        check_invariants(&r);
        let config = r.pod_config();
        config
            .runtime
            .worker_threads
            .map(std::num::NonZeroUsize::get)
    };
    // The chart's default: one thread, for its default request of 100m CPU.
    assert_eq!(threads(""), Some(1));
    assert_eq!(threads(r#", "workerThreads": 4"#), Some(4));
    // 0: the config's `[runtime]` decides, or else the relay (one thread per core it sees).
    assert_eq!(threads(r#", "workerThreads": 0"#), None);
    let r = rendered(
        None,
        r#"{"workerThreads": 0, "configToml": "[source]\ntable_name = \"T\"\n[[routes]]\nname = \"r\"\nevent_bus_name = \"b\"\nsource = \"s\"\ndetail_type = \"d\"\nunmarshall = \"NewImage\"\n[runtime]\nworker_threads = 2\n"}"#,
    );
    assert!(!r
        .container_env()
        .contains_key("OUTBOX_RELAY__RUNTIME__WORKER_THREADS"));
    assert_eq!(
        r.pod_config()
            .runtime
            .worker_threads
            .map(std::num::NonZeroUsize::get),
        Some(2)
    );
}

#[test]
fn a_route_can_target_a_custom_event_bus() {
    let arn = "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";
    let set = format!(
        r#"{{"config": {{"source": {{"table_name": "Outbox"}}, "routes": [{{"name": "books", "event_bus_arn": "{arn}", "source": "S", "detail_type": "T", "unmarshall": "NewImage"}}]}}}}"#
    );
    let r = rendered(None, &set);
    let config = Config::from_toml(&r.config_toml()).expect("config");
    assert_eq!(
        config.routes[0].route.target().bus,
        outbox_relay::pipeline::Bus::Custom(arn.into())
    );
}

#[test]
fn the_chart_ships_the_same_alerts_and_dashboard_as_deploy() {
    assert_eq!(
        read(&format!("{CHART}/files/alerts.yaml")),
        read("deploy/prometheus/alerts.yaml"),
        "copy deploy/prometheus/alerts.yaml to the chart's files/"
    );
    assert_eq!(
        read(&format!("{CHART}/files/outbox-relay.json")),
        read("deploy/grafana/outbox-relay.json"),
        "copy deploy/grafana/outbox-relay.json to the chart's files/"
    );
}

#[test]
fn a_pod_monitor_can_replace_the_service_monitor() {
    let r = rendered(
        None,
        &format!(
            r#"{{{INLINE_CONFIG}, "podMonitor": {{"enabled": true, "relabelings": [{{"targetLabel": "team", "replacement": "books"}}]}}}}"#
        ),
    );
    let monitor = r.get("PodMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        r.get("Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"],
        "team"
    );
    assert!(!r.by_kind.contains_key("ServiceMonitor"));
}

#[test]
fn a_config_change_rolls_the_pods() {
    let checksum = |set: &str| {
        rendered(None, set).get("Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .clone()
    };
    let with = |extra: &str| format!("{{{INLINE_CONFIG}{extra}}}");
    let base = checksum(&with(""));
    assert_eq!(base, checksum(&with("")), "rendering is deterministic");
    assert_ne!(
        base,
        checksum(
            r#"{"config": {"source": {"table_name": "Outbox"}, "log": {"level": "debug"}, "routes": [{"name": "r", "event_bus_name": "b", "source": "s", "detail_type": "d", "unmarshall": "NewImage"}]}}"#
        )
    );
    assert_eq!(
        base,
        checksum(&with(r#", "podLabels": {"team": "books"}"#)),
        "only the config changes it"
    );
    // The chart's own keys travel in the environment; a change of them rolls the pods too.
    let settings = |set: &str| {
        rendered(None, set).get("Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/chart-settings"]
            .clone()
    };
    assert_ne!(
        settings(&with("")),
        settings(&with(r#", "shutdownGraceSeconds": 40"#))
    );
}

#[test]
fn bad_values_are_refused_with_the_key_and_the_reason() {
    let cases = [
        (r#"{"replicaCount": "3"}"#, "/replicaCount"),
        (r#"{"replics": 3}"#, "'replics' not allowed"),
        (r#"{"metricsPort": 70000}"#, "/metricsPort"),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": []}}"#,
            "/config/routes",
        ),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": [{"name": "r", "source": "S", "detail_type": "T"}]}}"#,
            "/config/routes/0",
        ),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": [{"name": "r", "event_bus_arn": "arn:aws:events:us-east-1:123456789012:event-bus/b", "source": "S", "detail_type": "T"}]}}"#,
            "/config/routes/0/event_bus_arn",
        ),
        (r#"{"config": {"log": {"level": "debug"}}}"#, "source"),
        (
            r#"{"configToml": "[source]", "existingConfigMap": "c"}"#,
            "more than one relay config: configToml, existingConfigMap",
        ),
        (
            r#"{"configToml": "[http]\nlisten = \"0.0.0.0:1\""}"#,
            "configToml sets [http]: the chart sets it, use metricsPort",
        ),
        (
            r#"{"existingConfigMap": "c", "workerThreads": -1}"#,
            "/workerThreads",
        ),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": [{"name": "r", "event_bus_name": "b", "source": "S", "detail_type": "T"}], "runtime": {"worker_threads": 2}}}"#,
            "config.runtime is set by the chart: use workerThreads",
        ),
        (
            r#"{"configToml": "[runtime]\nworker_threads = 2"}"#,
            "configToml sets [runtime]: the chart sets it, use workerThreads",
        ),
        (
            r#"{"existingConfigMap": "c", "image": {"repository": "r", "digest": "latest"}}"#,
            "/image/digest",
        ),
        (
            r#"{"serviceAccount": {"roleArn": "my-role"}}"#,
            "/serviceAccount/roleArn",
        ),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": [{"name": "r", "event_bus_name": "b", "source": "S", "detail_type": "T"}], "http": {"listen": "0.0.0.0:1"}}}"#,
            "config.http is set by the chart: use metricsPort",
        ),
        (
            r#"{"config": {"source": {"table_name": "T"}, "routes": [{"name": "r", "event_bus_name": "b", "source": "S", "detail_type": "T"}], "shutdown": {"grace": "1s"}}}"#,
            "config.shutdown is set by the chart: use shutdownGraceSeconds",
        ),
    ];
    for (set, expected) in cases {
        let out = render(None, set);
        let error = out["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{set} was accepted"));
        assert!(error.contains(expected), "{set}: {error}");
    }
}

#[test]
fn the_chart_readme_documents_every_value() {
    let values: Value =
        serde_yaml_ng::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values yaml");
    let readme = read(&format!("{CHART}/README.md"));
    let mut missing = Vec::new();
    // Groups of settings get a row per key; free-form objects (the relay config, probes,
    // resources, security contexts) one row for the whole.
    let free_form = [
        "config",
        "resources",
        "podSecurityContext",
        "securityContext",
        "livenessProbe",
        "readinessProbe",
    ];
    for (key, value) in values.as_mapping().expect("values map") {
        let key = key.as_str().expect("string key");
        let rows: Vec<String> = match value.as_mapping() {
            Some(group) if !group.is_empty() && !free_form.contains(&key) => group
                .keys()
                .map(|k| format!("{key}.{}", k.as_str().expect("string key")))
                .collect(),
            _ => vec![key.to_owned()],
        };
        missing.extend(
            rows.into_iter()
                .filter(|row| !readme.contains(&format!("| `{row}` |"))),
        );
    }
    assert!(
        missing.is_empty(),
        "chart README lacks rows for {missing:?}"
    );
}

#[test]
fn the_chart_and_its_values_pass_yamllint() {
    let files = [
        "Chart.yaml",
        "values.yaml",
        "ci/multi-replica-values.yaml",
        "ci/stream-arn-values.yaml",
        "ci/two-tables-values.yaml",
        "ci/region-from-env-values.yaml",
        "ci/existing-configmap-values.yaml",
        "examples/books-demo-values.yaml",
        "files/alerts.yaml",
    ];
    let (ok, text) = run(Command::new(venv_bin("yamllint"))
        .current_dir(Path::new(REPO).join(CHART))
        .args(["--strict", "-c", "../../../.yamllint.yaml"])
        .args(files));
    assert!(ok, "yamllint:\n{text}");
}
