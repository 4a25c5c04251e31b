//! The deployment files agree with the code and the README: the Docker image's paths, user,
//! port and entrypoint, and the IAM policy's actions against the AWS calls the relay makes.

use std::collections::BTreeSet;
use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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
    let config = outbox_relay::config::Config::from_toml(
        "[source]\ntable_name = \"T\"\n[[routes]]\nname = \"r\"\nevent_bus_name = \"b\"\n\
         source = \"s\"\ndetail_type = \"d\"\nunmarshall = \"NewImage\"\n",
    )
    .expect("minimal config");
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
    let readme = read("README.md");
    assert!(
        readme.contains(config_path),
        "README documents {config_path}"
    );
    assert!(
        readme.contains("docker build"),
        "README documents the build"
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
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut code,
    );
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
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("outbox_relay_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_alerting_rules_are_valid_promql_over_metrics_the_relay_exports() {
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yaml")).expect("rules are YAML");
    let exported = outbox_relay::telemetry::Metrics::new().names().to_vec();
    let readme = read("README.md");
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
                readme.contains(&format!("#### {name}")),
                "README has no runbook section for {name}"
            );
            alerts += 1;
        }
    }
    assert!(alerts >= 5, "{alerts} alerts");
}

#[test]
fn the_grafana_dashboard_queries_valid_promql_over_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/outbox-relay.json")).expect("dashboard JSON");
    let exported = outbox_relay::telemetry::Metrics::new().names().to_vec();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            promql_parser::parser::parse(expr)
                .unwrap_or_else(|e| panic!("{}: invalid PromQL: {e}\n{expr}", panel["title"]));
            for metric in metric_names(expr) {
                assert!(
                    exported.contains(&metric),
                    "{expr}: {metric} is not exported"
                );
            }
            queries += 1;
        }
    }
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
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
    assert!(queries >= 10, "{queries} queries");
}
