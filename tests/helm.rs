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
    by_kind: BTreeMap<String, Value>,
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
            assert!(by_kind.insert(kind.clone(), doc).is_none(), "two {kind}s");
        }
        manifests.insert(template.clone(), text);
    }
    Rendered { manifests, by_kind }
}

impl Rendered {
    fn get(&self, kind: &str) -> &Value {
        self.by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    }

    fn config_toml(&self) -> String {
        self.get("ConfigMap")["data"]["config.toml"]
            .as_str()
            .expect("config.toml in the ConfigMap")
            .to_owned()
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
    // The config inside the ConfigMap is one the relay accepts.
    let toml = r.config_toml();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("outbox-relay validate runs");
    assert!(
        out.status.success(),
        "outbox-relay validate rejected the chart's config:\n{}\n{toml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = Config::from_toml(&toml).expect("config parses");

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
fn default_values_render_lint_and_validate() {
    let r = rendered(None, "{}");
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
}

#[test]
fn multi_replica_values_with_service_monitor_render_lint_and_validate() {
    let r = rendered(Some(MULTI_REPLICA), "{}");
    check_invariants(&r);
    // Several Kubernetes versions: the chart says kubeVersion >= 1.25.
    for kube in ["1.25.0", "1.30.0"] {
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
    let config = Config::from_toml(&r.config_toml()).expect("config");
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.source.max_records_per_poll.get(), 500);

    // kubernetes-validate has no schemas for prometheus-operator's CRDs: check them here.
    let service = r.get("Service");
    let monitor = r.get("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
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
}

#[test]
fn a_route_can_target_a_custom_event_bus() {
    let arn = "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";
    let set = format!(
        r#"{{"config": {{"routes": [{{"name": "books", "event_bus_arn": "{arn}", "source": "S", "detail_type": "T", "unmarshall": "NewImage"}}]}}}}"#
    );
    let r = rendered(None, &set);
    let config = Config::from_toml(&r.config_toml()).expect("config");
    assert_eq!(
        config.routes[0].route.target().bus,
        outbox_relay::pipeline::Bus::Custom(arn.to_owned())
    );
}

#[test]
fn the_chart_ships_the_same_alerts_as_deploy_prometheus() {
    assert_eq!(
        read(&format!("{CHART}/files/alerts.yaml")),
        read("deploy/prometheus/alerts.yaml"),
        "copy deploy/prometheus/alerts.yaml to the chart's files/"
    );
}

#[test]
fn a_config_change_rolls_the_pods() {
    let checksum = |set: &str| {
        rendered(None, set).get("Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .clone()
    };
    let base = checksum("{}");
    assert_eq!(base, checksum("{}"), "rendering is deterministic");
    assert_ne!(base, checksum(r#"{"config": {"log": {"level": "debug"}}}"#));
    assert_ne!(base, checksum(r#"{"shutdownGraceSeconds": 40}"#));
    assert_eq!(
        base,
        checksum(r#"{"podLabels": {"team": "books"}}"#),
        "only the config changes it"
    );
}

#[test]
fn bad_values_are_refused_with_the_key_and_the_reason() {
    let cases = [
        (r#"{"replicaCount": "3"}"#, "/replicaCount"),
        (r#"{"replics": 3}"#, "'replics' not allowed"),
        (r#"{"metricsPort": 70000}"#, "/metricsPort"),
        (r#"{"config": {"routes": []}}"#, "/config/routes"),
        (
            r#"{"config": {"routes": [{"name": "r", "source": "S", "detail_type": "T"}]}}"#,
            "/config/routes/0",
        ),
        (
            r#"{"config": {"routes": [{"name": "r", "event_bus_arn": "arn:aws:events:us-east-1:123456789012:event-bus/b", "source": "S", "detail_type": "T"}]}}"#,
            "/config/routes/0/event_bus_arn",
        ),
        (
            r#"{"serviceAccount": {"roleArn": "my-role"}}"#,
            "/serviceAccount/roleArn",
        ),
        (
            r#"{"config": {"http": {"listen": "0.0.0.0:1"}}}"#,
            "config.http is set by the chart: use metricsPort",
        ),
        (
            r#"{"config": {"shutdown": {"grace": "1s"}}}"#,
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
        "files/alerts.yaml",
    ];
    let (ok, text) = run(Command::new(venv_bin("yamllint"))
        .current_dir(Path::new(REPO).join(CHART))
        .args(["--strict", "-c", "../../../.yamllint.yaml"])
        .args(files));
    assert!(ok, "yamllint:\n{text}");
}
