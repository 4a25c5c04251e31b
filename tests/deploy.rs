//! The deployment files agree with the code and the README: the Docker image's paths, user,
//! port and entrypoint, the IAM policy's actions against the AWS calls the relay makes, the ECS
//! task definition and CloudFormation service (botocore's validator, cfn-lint), the alerting rules
//! and the dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[path = "common/tools.rs"]
mod tools;

use outbox_relay::config::Config;
use tools::{read, run, venv_bin, REPO};

/// The smallest config the relay accepts: its defaults are what the deployment files must
/// agree with.
fn default_config() -> Config {
    Config::from_toml(MINIMAL_CONFIG).expect("minimal config")
}

const MINIMAL_CONFIG: &str = "[source]\ntable_name = \"T\"\n[[routes]]\nname = \"r\"\n\
    event_bus_name = \"b\"\nsource = \"s\"\ndetail_type = \"d\"\nunmarshall = \"NewImage\"\n";

/// The Dockerfile's instructions of the runtime stage (the last `FROM`), continuation lines
/// joined.
fn runtime_stage() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stage = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instruction, args) = line.split_once(' ').unwrap_or((line, ""));
        if instruction == "FROM" {
            stage.clear();
        }
        stage.push((instruction.to_owned(), args.trim().to_owned()));
    }
    stage
}

fn instruction(stage: &[(String, String)], name: &str) -> String {
    stage
        .iter()
        .find(|(i, _)| i == name)
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| panic!("runtime stage has no {name}"))
}

#[test]
fn the_image_runs_the_relay_as_documented() {
    let dockerfile = read("Dockerfile");
    assert!(
        !dockerfile.starts_with("# syntax="),
        "a syntax line makes BuildKit pull a frontend, which fails offline"
    );
    let stage = runtime_stage();
    assert_eq!(instruction(&stage, "FROM"), "scratch AS runtime");
    // The port is the default of [http] listen.
    let config = default_config();
    assert_eq!(
        instruction(&stage, "EXPOSE"),
        config.http.listen.port().to_string()
    );
    // Non-root, by numeric id (scratch has no /etc/passwd).
    let user = instruction(&stage, "USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("numeric USER");
    assert_ne!(uid, 0, "the image must not run as root");
    assert_eq!(instruction(&stage, "STOPSIGNAL"), "SIGTERM");
    assert_eq!(instruction(&stage, "ENTRYPOINT"), r#"["/outbox-relay"]"#);
    assert_eq!(instruction(&stage, "CMD"), r#"["run"]"#);
    assert!(
        instruction(&stage, "HEALTHCHECK").ends_with(r#"CMD ["/outbox-relay", "healthcheck"]"#),
        "the health check needs no shell"
    );
    // The config path the image reads is the one the README documents.
    let env = instruction(&stage, "ENV");
    let config_path = "/etc/outbox-relay/config.toml";
    assert!(
        env.contains(&format!("OUTBOX_RELAY_CONFIG={config_path}")),
        "{env}"
    );
    let deployment = read("docs/deployment.md");
    assert!(
        deployment.contains(config_path),
        "docs/deployment.md documents {config_path}"
    );
    assert!(
        read("README.md").contains("docker build") && deployment.contains("docker build"),
        "the README and docs/deployment.md document the build"
    );
}

#[test]
fn the_licence_file_is_the_one_the_package_and_image_declare() {
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("license = \"Apache-2.0\""),
        "Cargo.toml declares Apache-2.0"
    );
    assert!(
        read("Dockerfile").contains("org.opencontainers.image.licenses=\"Apache-2.0\""),
        "the image label declares Apache-2.0"
    );
    let licence = read("LICENSE");
    let head: Vec<&str> = licence.lines().map(str::trim).take(2).collect();
    assert_eq!(head, ["Apache License", "Version 2.0, January 2004"]);
    assert!(
        licence.contains("END OF TERMS AND CONDITIONS"),
        "the whole licence text"
    );
}

/// SDK operations the relay's own code calls, and the IAM action each needs. The operator
/// commands' extra calls (`redrive`'s ReceiveMessage/DeleteMessage) are not the relay's.
const CALLS: &[(&str, &str)] = &[
    (".describe_table()", "dynamodb:DescribeTable"),
    (".describe_stream()", "dynamodb:DescribeStream"),
    (".get_shard_iterator()", "dynamodb:GetShardIterator"),
    (".get_records()", "dynamodb:GetRecords"),
    (".create_table()", "dynamodb:CreateTable"),
    (".scan()", "dynamodb:Scan"),
    (".put_item()", "dynamodb:PutItem"),
    (".update_item()", "dynamodb:UpdateItem"),
    (".delete_item()", "dynamodb:DeleteItem"),
    (".get_item()", "dynamodb:GetItem"),
    (".query()", "dynamodb:Query"),
    (".put_events()", "events:PutEvents"),
    (".put_raw_events()", "events:PutRawEvents"),
    (".send_message()", "sqs:SendMessage"),
    (".get_queue_url()", "sqs:GetQueueUrl"),
];

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path.ends_with("redrive.rs")
            && !path.to_string_lossy().contains("/tests")
        {
            out.push_str(&std::fs::read_to_string(&path).expect("readable"));
        }
    }
}

#[test]
fn the_iam_policy_allows_exactly_the_calls_the_relay_makes() {
    let mut code = String::new();
    sources(&Path::new(REPO).join("src"), &mut code);
    let needed: BTreeSet<&str> = CALLS
        .iter()
        .filter(|(call, _)| code.contains(call))
        .map(|(_, action)| *action)
        .collect();
    let policy: serde_json::Value =
        serde_json::from_str(&read("deploy/iam/relay-policy.json")).expect("policy is JSON");
    let granted: BTreeSet<&str> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions"))
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(granted, needed, "policy vs calls in src/");
    for statement in policy["Statement"].as_array().expect("statements") {
        for resource in statement["Resource"].as_array().expect("resources") {
            assert_ne!(
                resource, "*",
                "{statement}: least privilege means no wildcard resource"
            );
        }
    }
}

/// The metric names an expression refers to (histogram series mapped to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("outbox_relay_") || word.starts_with("process_"))
        .map(|name| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

/// Where the alerts' `runbook_url`s point (the chart can replace it: `prometheusRule.runbookBaseUrl`).
const RUNBOOK_BASE: &str =
    "https://github.com/outbox-relay/outbox-relay/blob/main/docs/operations/runbook.md";

#[test]
fn the_alerting_rules_are_valid_promql_over_metrics_the_relay_exports() {
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yaml")).expect("rules are YAML");
    let exported = outbox_relay::telemetry::Metrics::new().names().to_vec();
    let runbook = read("docs/operations/runbook.md");
    let mut alerts = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            promql_parser::parser::parse(expr)
                .unwrap_or_else(|e| panic!("{name}: invalid PromQL: {e}\n{expr}"));
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{name} uses no relay metric");
            for metric in used {
                assert!(
                    exported.contains(&metric),
                    "{name} uses {metric}, which the relay does not export"
                );
            }
            assert!(
                runbook.contains(&format!("## {name}")),
                "docs/operations/runbook.md has no section for {name}"
            );
            // Alertmanager and Grafana link `runbook_url`: absolute, to this alert's section.
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no runbook_url"));
            assert_eq!(
                url,
                format!("{RUNBOOK_BASE}#{}", name.to_lowercase()),
                "{name}"
            );
            // Two installs in one Prometheus alert apart: every aggregation keeps both labels.
            let compact: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
            for aggregation in ["sum", "max", "min", "group"] {
                for (i, _) in compact.match_indices(&format!("{aggregation} ")) {
                    let rest = &compact[i + aggregation.len() + 1..];
                    assert!(
                        rest.starts_with("by (namespace, job"),
                        "{name}: `{aggregation}` without `by (namespace, job…)`: {compact}"
                    );
                }
            }
            alerts += 1;
        }
    }
    assert!(alerts >= 5, "{alerts} alerts");
}

#[test]
fn the_grafana_dashboard_shows_every_metric_per_install_over_valid_promql() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/outbox-relay.json")).expect("dashboard JSON");
    let exported = outbox_relay::telemetry::Metrics::new().names().to_vec();
    // Variables an on-call engineer narrows by.
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "job", "pod"]);
    let selector = r#"{namespace=~"$namespace", job=~"$job", pod=~"$pod""#;
    let mut shown = BTreeSet::new();
    let mut rows = Vec::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        if panel["type"] == "row" {
            rows.push(title);
            continue;
        }
        titles.push(title);
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            // Grafana's own variable is not PromQL: a window stands in for the check.
            let promql = expr.replace("$__rate_interval", "1m");
            promql_parser::parser::parse(&promql)
                .unwrap_or_else(|e| panic!("{title}: invalid PromQL: {e}\n{expr}"));
            assert!(
                !expr.contains("[5m]") && !expr.contains("[1m]"),
                "{title}: a fixed window instead of $__rate_interval: {expr}"
            );
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{title}: no relay metric in {expr}");
            for metric in used {
                assert!(
                    exported.contains(&metric),
                    "{expr}: {metric} is not exported"
                );
                // Every series is narrowed to the chosen install and pods.
                let at = expr.find(&metric).expect("found");
                let after = &expr[at..];
                let brace = after.find('{').expect("a selector");
                assert!(
                    after[brace..].starts_with(selector),
                    "{title}: {metric} without the namespace/job/pod selector: {expr}"
                );
                shown.insert(metric);
            }
        }
    }
    assert_eq!(
        rows,
        [
            "Lag and age",
            "Throughput",
            "Dead letters and deduplication",
            "Leases and shards",
            "Gaps and sources",
            "AWS errors",
            "Process"
        ]
    );
    let missing: Vec<&String> = exported.iter().filter(|m| !shown.contains(*m)).collect();
    assert!(missing.is_empty(), "metrics on no panel: {missing:?}");
    for needed in [
        "lag",
        "Throughput",
        "PutEvents latency",
        "failures",
        "Leases per replica",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(needed)),
            "no panel about {needed}: {titles:?}"
        );
    }
}

/// CloudFormation YAML with its short-form tags (`!Sub x`, `!Ref x`, `!If [...]`) rewritten to
/// the long form (`{"Fn::Sub": x}`, `{"Ref": x}`), as JSON.
fn cloudformation(relative: &str) -> serde_json::Value {
    fn long_form(v: serde_yaml_ng::Value) -> serde_yaml_ng::Value {
        use serde_yaml_ng::Value;
        match v {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let key = if name == "Ref" {
                    "Ref".to_owned()
                } else {
                    format!("Fn::{name}")
                };
                let mut map = serde_yaml_ng::Mapping::new();
                map.insert(Value::String(key), long_form(tagged.value));
                Value::Mapping(map)
            }
            Value::Sequence(items) => Value::Sequence(items.into_iter().map(long_form).collect()),
            Value::Mapping(map) => {
                Value::Mapping(map.into_iter().map(|(k, v)| (k, long_form(v))).collect())
            }
            other => other,
        }
    }
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(relative)).expect("template is YAML");
    serde_json::to_value(long_form(yaml)).expect("template as JSON")
}

#[test]
fn the_ecs_service_template_passes_cfn_lint_and_yamllint() {
    let (ok, text) = run(
        Command::new(venv_bin("cfn-lint")).arg(Path::new(REPO).join("deploy/ecs/service.yaml"))
    );
    assert!(ok, "cfn-lint:\n{text}");
    let (ok, text) = run(Command::new(venv_bin("yamllint")).current_dir(REPO).args([
        "--strict",
        "-c",
        ".yamllint.yaml",
        "deploy/ecs/service.yaml",
    ]));
    assert!(ok, "yamllint:\n{text}");
}

/// botocore's own parameter validator against the `RegisterTaskDefinition` input shape; prints
/// its report (empty when valid).
const VALIDATE_TASK_DEFINITION: &str = r#"
import json, sys, botocore.session
from botocore.validate import ParamValidator
shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
print(ParamValidator().validate(json.load(sys.stdin), shape).generate_report())
"#;

fn register_task_definition_report(request: &serde_json::Value) -> String {
    use std::io::Write;
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", VALIDATE_TASK_DEFINITION])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("validator ran");
    assert!(out.status.success(), "the validator failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_task_definition_is_a_valid_register_task_definition_request() {
    let request: serde_json::Value =
        serde_json::from_str(&read("deploy/ecs/task-definition.json")).expect("JSON");
    assert_eq!(register_task_definition_report(&request), "");
    // The validator does bite: a misspelled key and a wrong type are reported.
    let mut bad = request.clone();
    bad["containerDefinitions"][0]["stopTimout"] = 30.into();
    bad["containerDefinitions"][0]["readonlyRootFilesystem"] = "yes".into();
    let report = register_task_definition_report(&bad);
    assert!(
        report.contains("stopTimout") && report.contains("readonlyRootFilesystem"),
        "{report}"
    );
    // The config comes from an SSM parameter, not from the task definition itself.
    assert_eq!(
        request["containerDefinitions"][0]["secrets"][0]["valueFrom"],
        "arn:aws:ssm:eu-north-1:123456789012:parameter/outbox-relay/config"
    );
}

/// The invariants of a task definition, in the API's camelCase (`task-definition.json`) or
/// CloudFormation's PascalCase (`service.yaml`).
fn check_task_definition(task: &serde_json::Value, pascal: bool) {
    let key = |name: &str| {
        if pascal {
            let mut c = name.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        } else {
            name.to_owned()
        }
    };
    let get = |v: &serde_json::Value, path: &[&str]| {
        path.iter().fold(v.clone(), |v, k| v[key(k)].clone())
    };
    let config = default_config();
    assert_eq!(get(task, &["networkMode"]), "awsvpc");
    assert_eq!(
        get(task, &["requiresCompatibilities"]),
        serde_json::json!(["FARGATE"])
    );
    let containers = get(task, &["containerDefinitions"]);
    let c = &containers[0];
    assert_eq!(get(c, &["command"]), serde_json::json!(["run"]));
    // Non-root as in the image, read-only root, no capabilities, not privileged.
    let user = get(c, &["user"]);
    assert!(
        read("Dockerfile").contains(&format!("USER {}", user.as_str().expect("user"))),
        "the task runs as the image's user {user}"
    );
    assert_eq!(get(c, &["readonlyRootFilesystem"]), true);
    assert_eq!(get(c, &["privileged"]), false);
    assert_eq!(
        get(c, &["linuxParameters", "capabilities", "drop"]),
        serde_json::json!(["ALL"])
    );
    // The port the relay listens on by default, and the image's shell-less health check.
    assert_eq!(
        get(c, &["portMappings"])[0][key("containerPort")],
        config.http.listen.port()
    );
    assert_eq!(
        get(c, &["healthCheck", "command"]),
        serde_json::json!(["CMD", "/outbox-relay", "healthcheck"])
    );
    assert!(read("Dockerfile").contains(r#"CMD ["/outbox-relay", "healthcheck"]"#));
    // ECS waits longer than the relay's drain before SIGKILL (Fargate allows up to 120 s).
    let stop = get(c, &["stopTimeout"]).as_u64().expect("stopTimeout");
    assert!(
        Duration::from_secs(stop) > config.shutdown.grace && stop <= 120,
        "{stop}"
    );
    assert_eq!(get(c, &["logConfiguration", "logDriver"]), "awslogs");
    let secrets = get(c, &["secrets"]);
    assert!(
        secrets
            .as_array()
            .expect("secrets")
            .iter()
            .any(|e| e[key("name")] == "OUTBOX_RELAY_CONFIG_TOML"),
        "the config comes in OUTBOX_RELAY_CONFIG_TOML, from a secret (an SSM parameter)"
    );
    assert!(
        get(c, &["environment"])
            .as_array()
            .expect("environment")
            .iter()
            .all(|e| e[key("name")] != "OUTBOX_RELAY_CONFIG_TOML"),
        "not as plain environment: a CloudFormation parameter holds at most 4 KB"
    );
}

#[test]
fn both_task_definitions_run_the_image_as_the_relay_expects() {
    let plain: serde_json::Value =
        serde_json::from_str(&read("deploy/ecs/task-definition.json")).expect("JSON");
    check_task_definition(&plain, false);
    let template = cloudformation("deploy/ecs/service.yaml");
    // StopTimeout is a parameter: check its default, and that it cannot exceed Fargate's limit.
    let stop = &template["Parameters"]["StopTimeoutSeconds"];
    assert_eq!(stop["MaxValue"], 120);
    let mut task = template["Resources"]["TaskDefinition"]["Properties"].clone();
    let container = &mut task["ContainerDefinitions"][0];
    assert_eq!(
        container["StopTimeout"],
        serde_json::json!({"Ref": "StopTimeoutSeconds"})
    );
    container["StopTimeout"] = stop["Default"].clone();
    check_task_definition(&task, true);
}

/// The `OUTBOX_RELAY__*` variables a container definition sets (`pascal`: CloudFormation's
/// key names), loaded over the smallest config as the relay loads them: each must be a key
/// it accepts, with a value it accepts.
fn config_with_environment(container: &serde_json::Value, pascal: bool) -> Config {
    let (list, name, value) = if pascal {
        ("Environment", "Name", "Value")
    } else {
        ("environment", "name", "value")
    };
    let env: config::Map<String, String> = container[list]
        .as_array()
        .expect("environment")
        .iter()
        .map(|e| {
            let text = e[value].as_str().expect("a string value").to_owned();
            (e[name].as_str().expect("a name").to_owned(), text)
        })
        .filter(|(n, _)| n.starts_with("OUTBOX_RELAY__"))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, MINIMAL_CONFIG).expect("write");
    Config::load_with_env(&path, Some(env)).expect("the task's environment is valid config")
}

#[test]
fn each_task_size_runs_one_worker_thread_per_whole_vcpu() {
    // The container's threads as the relay reads them, against the task's CPU units: one per
    // whole vCPU (1024 units), at least one.
    let check = |container: &serde_json::Value, pascal: bool, units: &serde_json::Value| {
        let config = config_with_environment(container, pascal);
        let units: usize = units
            .as_str()
            .expect("CPU units")
            .parse()
            .expect("a number");
        assert_eq!(
            config
                .runtime
                .worker_threads
                .map(std::num::NonZeroUsize::get),
            Some((units / 1024).max(1)),
            "{units} CPU units"
        );
    };
    let plain: serde_json::Value =
        serde_json::from_str(&read("deploy/ecs/task-definition.json")).expect("JSON");
    check(&plain["containerDefinitions"][0], false, &plain["cpu"]);
    let template = cloudformation("deploy/ecs/service.yaml");
    let sizes = template["Parameters"]["Cpu"]["AllowedValues"]
        .as_array()
        .expect("Cpu's allowed values")
        .clone();
    assert_eq!(sizes.len(), 5);
    for cpu in sizes {
        let stack = Stack::new("deploy/ecs/service.yaml", &[("Cpu", cpu.clone())]);
        let task = stack
            .resource("TaskDefinition")
            .expect("the task definition");
        assert_eq!(task["Cpu"], cpu);
        check(&task["ContainerDefinitions"][0], true, &cpu);
    }
}

#[test]
fn the_ecs_service_keeps_every_shard_owned_during_deployments() {
    let template = cloudformation("deploy/ecs/service.yaml");
    let service = &template["Resources"]["Service"]["Properties"];
    assert_eq!(service["LaunchType"], "FARGATE");
    let deployment = &service["DeploymentConfiguration"];
    assert_eq!(deployment["MinimumHealthyPercent"], 100);
    assert_eq!(deployment["MaximumPercent"], 200);
    assert_eq!(
        deployment["DeploymentCircuitBreaker"],
        serde_json::json!({"Enable": true, "Rollback": true})
    );
    assert_eq!(
        service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"],
        "DISABLED"
    );
}

/// A CloudFormation template evaluated for given parameters: the intrinsic functions the
/// templates here use (`Ref`, `Fn::Sub`, `Fn::Join`, `Fn::Split`, `Fn::If`, `Fn::GetAtt`,
/// conditions with `Fn::Equals`/`Fn::Not`), so a test can read what a stack would get.
struct Stack {
    template: serde_json::Value,
    params: BTreeMap<String, serde_json::Value>,
    conditions: BTreeMap<String, bool>,
}

impl Stack {
    const REGION: &'static str = "eu-north-1";
    const ACCOUNT: &'static str = "123456789012";
    const NAME: &'static str = "outbox-relay";

    fn new(relative: &str, given: &[(&str, serde_json::Value)]) -> Self {
        let template = cloudformation(relative);
        let mut params = BTreeMap::new();
        for (name, spec) in template["Parameters"].as_object().expect("parameters") {
            let value = match given.iter().find(|(n, _)| n == name) {
                Some((_, v)) => v.clone(),
                None => match (&spec["Default"], spec["Type"].as_str()) {
                    (serde_json::Value::Null, _) => continue,
                    (d, Some("CommaDelimitedList")) => d
                        .as_str()
                        .expect("a list default")
                        .split(',')
                        .map(|s| serde_json::Value::from(s.trim()))
                        .collect(),
                    (d, _) => serde_json::Value::from(match d {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                },
            };
            params.insert(name.clone(), value);
        }
        let mut stack = Self {
            template,
            params,
            conditions: BTreeMap::new(),
        };
        let conditions = stack.template["Conditions"].clone();
        for (name, condition) in conditions.as_object().expect("conditions") {
            let value = stack.condition(condition);
            stack.conditions.insert(name.clone(), value);
        }
        stack
    }

    fn condition(&self, c: &serde_json::Value) -> bool {
        if let Some(args) = c.get("Fn::Equals") {
            return self.eval(&args[0]) == self.eval(&args[1]);
        }
        if let Some(args) = c.get("Fn::Not") {
            return !self.condition(&args[0]);
        }
        if let Some(name) = c.get("Condition").and_then(|n| n.as_str()) {
            return self.conditions[name];
        }
        panic!("unknown condition {c}")
    }

    fn reference(&self, name: &str) -> Option<serde_json::Value> {
        Some(match name {
            "AWS::NoValue" => return None,
            "AWS::Partition" => "aws".into(),
            "AWS::Region" => Self::REGION.into(),
            "AWS::AccountId" => Self::ACCOUNT.into(),
            "AWS::StackName" => Self::NAME.into(),
            other => self
                .params
                .get(other)
                .cloned()
                .unwrap_or_else(|| format!("<{other}>").into()),
        })
    }

    fn sub(&self, text: &str, vars: &serde_json::Value) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').expect("closed") + i;
            let name = &rest[i + 2..end];
            let value = match vars.get(name) {
                Some(v) => self.eval(v).expect("a value"),
                None if name.contains('.') && !name.starts_with("AWS::") => {
                    format!("<{name}>").into()
                }
                None => self.reference(name).expect("a value"),
            };
            out.push_str(value.as_str().expect("a string"));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The value of `v`; `None` for `AWS::NoValue`.
    fn eval(&self, v: &serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        match v {
            J::Object(map) if map.len() == 1 => {
                let (f, args) = map.iter().next().expect("one");
                match f.as_str() {
                    "Ref" => self.reference(args.as_str().expect("a name")),
                    "Fn::Sub" => Some(match args {
                        J::String(s) => self.sub(s, &J::Null).into(),
                        J::Array(a) => self.sub(a[0].as_str().expect("text"), &a[1]).into(),
                        other => panic!("Fn::Sub {other}"),
                    }),
                    "Fn::Join" => {
                        let parts = self.eval(&args[1]).expect("a list");
                        let parts: Vec<String> = parts
                            .as_array()
                            .expect("a list")
                            .iter()
                            .map(|p| p.as_str().expect("a string").to_owned())
                            .collect();
                        Some(parts.join(args[0].as_str().expect("a delimiter")).into())
                    }
                    "Fn::Split" => {
                        let text = self.eval(&args[1]).expect("a string");
                        Some(
                            text.as_str()
                                .expect("a string")
                                .split(args[0].as_str().expect("a delimiter"))
                                .map(J::from)
                                .collect(),
                        )
                    }
                    "Fn::If" => {
                        let name = args[0].as_str().expect("a condition");
                        self.eval(&args[if self.conditions[name] { 1 } else { 2 }])
                    }
                    "Fn::GetAtt" => Some(format!("<{}.{}>", args[0], args[1]).into()),
                    "Fn::FindInMap" => {
                        let key = |i: usize| {
                            let k = self.eval(&args[i]).expect("a key");
                            k.as_str().expect("a string key").to_owned()
                        };
                        let value = &self.template["Mappings"][key(0)][key(1)][key(2)];
                        assert!(!value.is_null(), "Fn::FindInMap {args}: no such entry");
                        Some(value.clone())
                    }
                    _ => Some(J::Object(self.eval_map(map))),
                }
            }
            J::Object(map) => Some(J::Object(self.eval_map(map))),
            J::Array(items) => Some(J::Array(
                items.iter().filter_map(|i| self.eval(i)).collect(),
            )),
            other => Some(other.clone()),
        }
    }

    fn eval_map(
        &self,
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), self.eval(v)?)))
            .collect()
    }

    /// A resource's properties as the stack would create them (`None`: its condition is off).
    fn resource(&self, name: &str) -> Option<serde_json::Value> {
        let resource = &self.template["Resources"][name];
        if let Some(condition) = resource["Condition"].as_str() {
            if !self.conditions[condition] {
                return None;
            }
        }
        self.eval(&resource["Properties"])
    }
}

/// The parameters of a stack relaying two tables to two buses, with a Custom Event Bus and a
/// dead-letter queue.
fn two_table_stack(metrics: &str) -> Stack {
    let arn = |service: &str, resource: &str| {
        serde_json::Value::from(format!(
            "arn:aws:{service}:{}:{}:{resource}",
            Stack::REGION,
            Stack::ACCOUNT
        ))
    };
    Stack::new(
        "deploy/ecs/service.yaml",
        &[
            (
                "Image",
                "123456789012.dkr.ecr.eu-north-1.amazonaws.com/outbox-relay:0.1.0".into(),
            ),
            ("ConfigParameterName", "/outbox-relay/config".into()),
            (
                "SourceTableArns",
                serde_json::json!([
                    arn("dynamodb", "table/Orders"),
                    arn("dynamodb", "table/Payments")
                ]),
            ),
            (
                "EventBusArns",
                serde_json::json!([
                    arn("events", "event-bus/default"),
                    arn("events", "event-bus/orders")
                ]),
            ),
            (
                "CustomEventBusArn",
                arn("events", "event-busv2/books/abcdefghij0123456789abcde"),
            ),
            ("DeadLetterQueue", "relay-dead-letters".into()),
            ("MetricsDestination", metrics.into()),
            (
                "AmpWorkspaceId",
                "ws-0123abcd-4567-89ef-0123-456789abcdef".into(),
            ),
        ],
    )
}

#[test]
fn the_ecs_task_role_grants_exactly_the_relay_policy_per_table_and_bus() {
    let stack = two_table_stack("CloudWatch");
    let role = stack.resource("TaskRole").expect("the task role");
    let granted = role["Policies"][0]["PolicyDocument"]["Statement"].clone();
    // deploy/iam/relay-policy.json, each resource filled in per table and bus.
    let policy: serde_json::Value =
        serde_json::from_str(&read("deploy/iam/relay-policy.json")).expect("policy JSON");
    let fill = |template: &str, name: &str, value: &str| -> String {
        template
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::Region}", Stack::REGION)
            .replace("${AWS::AccountId}", Stack::ACCOUNT)
            .replace(&format!("${{{name}}}"), value)
    };
    let expected: Vec<serde_json::Value> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|statement| {
            let mut statement = statement.clone();
            let resources: Vec<serde_json::Value> = statement["Resource"]
                .as_array()
                .expect("resources")
                .iter()
                .flat_map(|r| {
                    let r = r.as_str().expect("a string");
                    let each: Vec<(&str, &str)> = if r.contains("${SourceTable}") {
                        vec![("SourceTable", "Orders"), ("SourceTable", "Payments")]
                    } else if r.contains("${EventBus}") {
                        vec![("EventBus", "default"), ("EventBus", "orders")]
                    } else if r.contains("${LeaseTable}") {
                        vec![("LeaseTable", "outbox-relay-leases")]
                    } else if r.contains("${DeadLetterQueue}") {
                        vec![("DeadLetterQueue", "relay-dead-letters")]
                    } else {
                        vec![(
                            "CustomEventBusArn",
                            "arn:aws:events:eu-north-1:123456789012:event-busv2/books/abcdefghij0123456789abcde",
                        )]
                    };
                    each.into_iter()
                        .map(|(name, value)| serde_json::Value::from(fill(r, name, value)))
                        .collect::<Vec<_>>()
                })
                .collect();
            statement["Resource"] = resources.into();
            statement
        })
        .collect();
    assert_eq!(
        granted,
        serde_json::Value::from(expected),
        "TaskRole policy vs deploy/iam/relay-policy.json"
    );
    // Without a Custom Event Bus or a dead-letter queue, their statements are left out.
    let plain = Stack::new(
        "deploy/ecs/service.yaml",
        &[
            (
                "SourceTableArns",
                serde_json::json!(["arn:aws:dynamodb:eu-north-1:123456789012:table/T"]),
            ),
            (
                "EventBusArns",
                serde_json::json!(["arn:aws:events:eu-north-1:123456789012:event-bus/default"]),
            ),
            ("ConfigParameterName", "/c".into()),
        ],
    );
    let sids: Vec<String> = plain.resource("TaskRole").expect("role")["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["Sid"].as_str().expect("sid").to_owned())
        .collect();
    assert_eq!(
        sids,
        [
            "ResolveSourceTables",
            "ReadSourceStreams",
            "LeaseTable",
            "PublishToConfiguredBuses"
        ]
    );
}

/// A CloudFormation (PascalCase) task definition as the API's camelCase request; map keys
/// (log driver options) stay as they are.
fn camel_case(v: &serde_json::Value, keep_keys: bool) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let key = if keep_keys {
                    k.clone()
                } else {
                    let mut c = k.chars();
                    c.next()
                        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                        .unwrap_or_default()
                };
                (key, camel_case(v, k == "Options"))
            })
            .collect(),
        serde_json::Value::Array(items) => items.iter().map(|i| camel_case(i, false)).collect(),
        other => other.clone(),
    }
}

#[test]
fn the_ecs_template_runs_a_config_above_4_kb_from_ssm_and_ships_metrics_with_a_lag_alarm() {
    // A config larger than a CloudFormation parameter holds (4,096 bytes) fits an SSM
    // parameter of the Advanced tier (8 KB), and the relay accepts it from the variable ECS
    // fills from that parameter.
    let operators = read("config/operators.toml");
    assert!(
        operators.len() > 4096 && operators.len() <= 8192,
        "{} bytes",
        operators.len()
    );
    let (ok, text) = run(Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .arg("validate")
        .env_remove("OUTBOX_RELAY_CONFIG")
        .env("OUTBOX_RELAY_CONFIG_TOML", &operators));
    assert!(ok, "{text}");
    assert!(
        cloudformation("deploy/ecs/service.yaml")["Parameters"]
            .get("RelayConfig")
            .is_none(),
        "no config text in a CloudFormation parameter"
    );

    for (metrics, exporter) in [
        ("CloudWatch", "awsemf"),
        ("AmazonManagedPrometheus", "prometheusremotewrite"),
    ] {
        let stack = two_table_stack(metrics);
        let task = stack.resource("TaskDefinition").expect("task definition");
        // The rendered task definition is a valid RegisterTaskDefinition request.
        let mut request = camel_case(&task, false);
        request["executionRoleArn"] = "arn:aws:iam::123456789012:role/execution".into();
        request["taskRoleArn"] = "arn:aws:iam::123456789012:role/task".into();
        // A Number parameter reaches a resource as text; CloudFormation converts it.
        let stop: u64 = request["containerDefinitions"][0]["stopTimeout"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("StopTimeoutSeconds");
        request["containerDefinitions"][0]["stopTimeout"] = stop.into();
        request["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] =
            "/ecs/outbox-relay".into();
        request["containerDefinitions"][1]["logConfiguration"]["options"]["awslogs-group"] =
            "/ecs/outbox-relay".into();
        assert_eq!(register_task_definition_report(&request), "", "{metrics}");
        let relay = &request["containerDefinitions"][0];
        assert_eq!(
            relay["secrets"],
            serde_json::json!([{
                "name": "OUTBOX_RELAY_CONFIG_TOML",
                "valueFrom": "arn:aws:ssm:eu-north-1:123456789012:parameter/outbox-relay/config"
            }])
        );
        eprintln!(
            "ecs ({metrics}): the relay container's secrets: {}",
            relay["secrets"]
        );
        // The execution role may read exactly that parameter.
        let execution = stack.resource("ExecutionRole").expect("execution role");
        assert_eq!(
            execution["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"][0],
            relay["secrets"][0]["valueFrom"]
        );
        // The collector scrapes the relay's port over localhost and sends the metrics on.
        let collector = &request["containerDefinitions"][1];
        assert_eq!(collector["essential"], false);
        let config = collector["environment"][0]["value"]
            .as_str()
            .expect("AOT_CONFIG_CONTENT");
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(config).expect("YAML");
        let scrape = &config["receivers"]["prometheus"]["config"]["scrape_configs"][0];
        assert_eq!(scrape["job_name"], Stack::NAME);
        assert_eq!(
            scrape["static_configs"][0]["targets"][0],
            format!("localhost:{}", default_config().http.listen.port())
        );
        assert_eq!(
            config["service"]["pipelines"]["metrics"]["exporters"][0],
            exporter
        );
        if metrics == "CloudWatch" {
            // The alarm watches the metric the collector exports, under its job.
            let alarm = stack.resource("LagAlarm").expect("the lag alarm");
            let emf = &config["exporters"]["awsemf"];
            assert_eq!(alarm["Namespace"], emf["namespace"].as_str().expect("ns"));
            let selectors = emf["metric_declarations"][0]["metric_name_selectors"]
                .as_sequence()
                .expect("selectors");
            let metric = alarm["MetricName"].as_str().expect("metric");
            assert!(selectors
                .iter()
                .any(|s| s.as_str() == Some(&format!("^{metric}$"))));
            assert!(outbox_relay::telemetry::Metrics::new()
                .names()
                .iter()
                .any(|n| n == metric));
            assert_eq!(alarm["Dimensions"][0]["Value"], Stack::NAME);
            assert_eq!(
                alarm["TreatMissingData"], "breaching",
                "no replica alarms too"
            );
        } else {
            assert!(stack.resource("LagAlarm").is_none());
        }
    }
    // No collector at all when metrics go nowhere.
    let stack = two_table_stack("None");
    let task = stack.resource("TaskDefinition").expect("task definition");
    assert_eq!(
        task["ContainerDefinitions"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn the_books_app_template_passes_cfn_lint_and_yamllint() {
    let (ok, text) = run(Command::new(venv_bin("cfn-lint"))
        .arg(Path::new(REPO).join("deploy/books-app/template.yaml")));
    assert!(ok, "cfn-lint:\n{text}");
    let (ok, text) = run(Command::new(venv_bin("yamllint")).current_dir(REPO).args([
        "--strict",
        "-c",
        ".yamllint.yaml",
        "deploy/books-app/template.yaml",
    ]));
    assert!(ok, "yamllint:\n{text}");
}

/// The IAM actions a function's inline policies grant.
fn granted_actions(template: &serde_json::Value, function: &str) -> BTreeSet<String> {
    template["Resources"][function]["Properties"]["Policies"]
        .as_array()
        .expect("policies")
        .iter()
        .flat_map(|p| p["Statement"].as_array().expect("statements").clone())
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// The DynamoDB actions the handler code in `files` needs (a transaction's items need their own
/// actions). The consumer's local SQS runner (its `main.rs`) is not part of the Lambda.
fn needed_actions(files: &[&str]) -> BTreeSet<String> {
    let code: String = files.iter().map(|f| read(f)).collect();
    let mut calls: Vec<(&str, &str)> = CALLS.to_vec();
    calls.extend([
        ("Put::builder()", "dynamodb:PutItem"),
        ("Delete::builder()", "dynamodb:DeleteItem"),
    ]);
    calls
        .iter()
        .filter(|(call, _)| code.contains(call))
        .map(|(_, action)| (*action).to_owned())
        .collect()
}

#[test]
fn the_books_app_grants_each_function_exactly_what_it_calls() {
    let template = cloudformation("deploy/books-app/template.yaml");
    assert_eq!(
        granted_actions(&template, "BookApiFunction"),
        needed_actions(&["lambdas/book-api/src/lib.rs"])
    );
    assert_eq!(
        granted_actions(&template, "BookConsumerFunction"),
        needed_actions(&[
            "lambdas/book-consumer/src/lib.rs",
            "lambdas/idempotency/src/lib.rs"
        ])
    );
    // The relay's policy is deploy/iam/relay-policy.json without CreateTable (the stack makes
    // the lease table), without the dead-letter queue (the stack has none for the relay) and
    // without PutRawEvents (its bus is a classic one: PutRawEvents is the Custom Event Bus's).
    let relay: BTreeSet<String> = template["Resources"]["RelayPolicy"]["Properties"]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let policy: serde_json::Value =
        serde_json::from_str(&read("deploy/iam/relay-policy.json")).expect("policy JSON");
    let expected: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .filter(|a| {
            a != "dynamodb:CreateTable" && !a.starts_with("sqs:") && a != "events:PutRawEvents"
        })
        .collect();
    assert_eq!(relay, expected);
}

#[test]
fn the_tests_build_the_binary_as_the_dockerfile_build_stage_does() {
    // tests/image.rs runs the runtime stage around `scripts/docker-stack binary`'s output, so
    // that build must be the build stage's.
    let dockerfile = read("Dockerfile");
    let script = read("scripts/docker-stack");
    for needle in [
        "RUSTFLAGS=\"-C target-feature=+crt-static\"",
        "cargo build --release --locked --bin outbox-relay --target x86_64-unknown-linux-gnu",
        "target/x86_64-unknown-linux-gnu/release/outbox-relay",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
        assert!(
            script.contains(needle),
            "scripts/docker-stack lacks {needle}"
        );
    }
}

/// `promtool` from Debian's `prometheus` package (`./scripts/test` installs it).
fn promtool() -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("promtool").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "promtool is not on PATH: ./scripts/test installs Debian's prometheus package \
         (apt-get install prometheus)"
    );
    let mut cmd = Command::new("promtool");
    cmd.current_dir(Path::new(REPO).join("deploy/prometheus"));
    cmd
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_promtool_unit_tests_say() {
    let (ok, text) = run(promtool().args(["check", "rules", "alerts.yaml"]));
    assert!(ok, "promtool check rules:\n{text}");
    let (ok, text) = run(promtool().args(["test", "rules", "alerts.test.yaml"]));
    assert!(ok, "promtool test rules:\n{text}");

    // Every alert has a case that fires it and one that must not.
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yaml")).expect("rules YAML");
    let tests: serde_json::Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.test.yaml")).expect("tests YAML");
    let cases: Vec<&serde_json::Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert_rule_test"))
        .collect();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            let of_alert: Vec<_> = cases.iter().filter(|c| c["alertname"] == name).collect();
            let fires = of_alert
                .iter()
                .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
            let quiet = of_alert
                .iter()
                .any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty));
            assert!(
                fires && quiet,
                "{name}: needs a firing and a quiet case in alerts.test.yaml"
            );
        }
    }
}
