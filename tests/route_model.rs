//! The four symptoms a new user hit with the route model (issue #12), through the real binary:
//! a pattern key with a dot, templates that can never render, an unknown log level, and
//! `test-route` ignoring a route's `sources`. No AWS call is made.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn relay(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(args)
        .current_dir(dir)
        // No endpoint and no credentials: none of these commands may call AWS.
        .env_remove("AWS_ENDPOINT_URL")
        .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("run the binary")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Writes `config` and `record` into a temporary directory and runs `test-route` on them.
fn test_route(config: &str, record: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("relay.toml"), config).expect("write config");
    std::fs::write(dir.path().join("record.json"), record.to_string()).expect("write record");
    let mut args = vec![
        "test-route",
        "--output",
        "json",
        "--config",
        "relay.toml",
        "--record",
        "record.json",
    ];
    args.extend_from_slice(extra);
    let out = relay(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn validate(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("relay.toml"), config).expect("write config");
    let out = relay(&["validate", "--config", "relay.toml"], dir.path());
    (out.status.code().unwrap_or(-1), text(&out))
}

fn route(name: &str, extra: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
event_bus_name = "bus"
source = "Demo"
detail_type = "Changed"
{extra}
"#
    )
}

fn stream_record(table: &str, new_image: Value) -> Value {
    serde_json::json!({
        "eventID": "e-1",
        "eventName": "INSERT",
        "eventSourceARN": format!(
            "arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2024-01-01T00:00:00.000"
        ),
        "dynamodb": {
            "ApproximateCreationDateTime": 1_700_000_000,
            "Keys": {"pk": {"S": "o-1"}},
            "NewImage": new_image,
        }
    })
}

/// Symptom 1: `order.status` is one attribute name; a pattern naming it matches it, with any
/// operator, as EventBridge (which matches the joined path `…NewImage.order.status.S`) does.
#[test]
fn a_pattern_key_with_a_dot_matches_that_attribute() {
    let patterns = [
        r#"{"dynamodb": {"NewImage": {"order.status": {"S": ["PAID"]}}}}"#,
        r#"{"dynamodb": {"NewImage": {"order.status": {"S": [{"prefix": "PA"}]}}}}"#,
        r#"{"dynamodb": {"NewImage": {"order.status": {"S": [{"anything-but": "OPEN"}]}}}}"#,
        r#"{"dynamodb": {"NewImage": {"order.status": {"S": [{"exists": true}]}}}}"#,
        r#"{"dynamodb": {"NewImage": {"order.status": {"S": [{"equals-ignore-case": "paid"}]}}}}"#,
    ];
    let paid = stream_record("T", serde_json::json!({"order.status": {"S": "PAID"}}));
    let open = stream_record("T", serde_json::json!({"order.status": {"S": "OPEN"}}));
    // The nested form is a different attribute (a map): DynamoDB images nest under "M".
    let nested = stream_record(
        "T",
        serde_json::json!({"order": {"M": {"status": {"S": "PAID"}}}}),
    );
    for pattern in patterns {
        let config = format!(
            "[source]\ntable_name = \"T\"\n{}",
            route(
                "dotted",
                &format!("filters = ['{pattern}']\nunmarshall = \"NewImage\"")
            )
        );
        let doc = test_route(&config, &paid, &[]);
        assert_eq!(doc["routes"][0]["matched"], true, "{pattern}: {doc}");
        let detail: Value = serde_json::from_str(
            doc["routes"][0]["entries"][0]["Detail"]
                .as_str()
                .expect("detail"),
        )
        .expect("json");
        assert_eq!(detail["order.status"], "PAID", "{pattern}");
        let doc = test_route(&config, &nested, &[]);
        assert_eq!(doc["routes"][0]["matched"], false, "{pattern}: {doc}");
        // Only `exists` matches OPEN; every other pattern asks for PAID in some form.
        let doc = test_route(&config, &open, &[]);
        let expect_match = pattern.contains("exists");
        assert_eq!(
            doc["routes"][0]["matched"], expect_match,
            "{pattern}: {doc}"
        );
    }
}

/// Template paths address such an attribute with a quoted bracket step.
#[test]
fn a_template_path_can_name_an_attribute_with_a_dot() {
    let config = format!(
        "[source]\ntable_name = \"T\"\n{}",
        route(
            "dotted",
            r#"template = '''{"status": <$.NewImage['order.status']>, "typed": "<$.dynamodb.NewImage["order.status"].S>"}'''"#
        )
    );
    let record = stream_record("T", serde_json::json!({"order.status": {"S": "PAID"}}));
    let doc = test_route(&config, &record, &[]);
    let detail = &doc["routes"][0]["entries"][0]["DetailParsed"];
    assert_eq!(
        detail,
        &serde_json::json!({"status": "PAID", "typed": "PAID"}),
        "{doc}"
    );
}

/// Symptom 2: templates that no record can render into a JSON object are refused by
/// `validate`, naming the route's key and the reason.
#[test]
fn templates_that_can_never_render_an_object_are_refused() {
    let cases = [
        (r#"'{"a": <$.eventName>,,}'"#, "not a JSON object"),
        (r#"'{"a": <$.dynamodb.NewImage'"#, "unclosed placeholder"),
        (r#"'{<$.eventName>: 1}'"#, "not a JSON object"),
        (r#"'[<$.eventName>]'"#, "not a JSON object"),
        (r#"'<$.dynamodb.NewImage>'"#, "lone placeholder"),
    ];
    for (template, reason) in cases {
        let config = format!(
            "[source]\ntable_name = \"T\"\n{}",
            route("broken", &format!("template = {template}"))
        );
        let (code, out) = validate(&config);
        assert_eq!(code, 2, "{template}: {out}");
        assert!(out.contains("routes[0].template"), "{template}: {out}");
        assert!(
            out.contains(reason),
            "{template}: expected {reason:?} in {out}"
        );
    }
    // The whole record is always an object: alone, it is a valid detail.
    let config = format!(
        "[source]\ntable_name = \"T\"\n{}",
        route("whole", "template = '<aws.pipes.event.json>'")
    );
    let (code, out) = validate(&config);
    assert_eq!(code, 0, "{out}");
}

/// Symptom 3: an unknown log level stops start-up naming `log.level`.
#[test]
fn an_unknown_log_level_is_refused() {
    let config = format!(
        "[source]\ntable_name = \"T\"\n[log]\nlevel = \"loud\"\n{}",
        route("r", "unmarshall = \"NewImage\"")
    );
    let (code, out) = validate(&config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("log.level"), "{out}");
    for good in [
        "debug",
        "warn",
        "outbox_relay=debug,info",
        "info,aws_config=warn",
    ] {
        let config = format!(
            "[source]\ntable_name = \"T\"\n[log]\nlevel = \"{good}\"\n{}",
            route("r", "unmarshall = \"NewImage\"")
        );
        let (code, out) = validate(&config);
        assert_eq!(code, 0, "{good}: {out}");
    }
}

/// Symptom 4: a route limited to `sources = ["B"]` does not apply to a record of table A in
/// `test-route`, exactly as the running relay would not send it.
#[test]
fn test_route_applies_only_the_routes_of_the_records_source() {
    let config = format!(
        "[source]\ntable_names = [\"A\", \"B\"]\n{}{}",
        route("only-b", "sources = [\"B\"]\nunmarshall = \"NewImage\""),
        route("every-table", "unmarshall = \"NewImage\""),
    );
    let from_a = stream_record("A", serde_json::json!({"pk": {"S": "o-1"}}));
    let doc = test_route(&config, &from_a, &[]);
    assert_eq!(doc["source"], "A", "{doc}");
    assert_eq!(doc["routes"][0]["name"], "only-b");
    assert_eq!(doc["routes"][0]["matched"], false, "{doc}");
    assert_eq!(doc["routes"][0]["applies"], false, "{doc}");
    assert_eq!(
        doc["routes"][0]["entries"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(doc["routes"][1]["matched"], true, "{doc}");

    let from_b = stream_record("B", serde_json::json!({"pk": {"S": "o-1"}}));
    let doc = test_route(&config, &from_b, &[]);
    assert_eq!(doc["routes"][0]["matched"], true, "{doc}");
    assert_eq!(doc["routes"][1]["matched"], true, "{doc}");

    // `--source` names the source when the record does not (or overrides it).
    let mut anonymous = from_a.clone();
    anonymous
        .as_object_mut()
        .expect("object")
        .remove("eventSourceARN");
    let doc = test_route(&config, &anonymous, &["--source", "B"]);
    assert_eq!(doc["routes"][0]["matched"], true, "{doc}");
}

/// A record whose source is not in the config, or cannot be told, is an error, not a guess.
#[test]
fn test_route_refuses_a_record_of_an_unknown_or_ambiguous_source() {
    let config = format!(
        "[source]\ntable_names = [\"A\", \"B\"]\n{}",
        route("r", "unmarshall = \"NewImage\"")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("relay.toml"), &config).expect("write config");
    let mut record = stream_record("C", serde_json::json!({"pk": {"S": "o-1"}}));
    std::fs::write(dir.path().join("c.json"), record.to_string()).expect("write");
    let out = relay(
        &["test-route", "--config", "relay.toml", "--record", "c.json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("\"C\""), "{}", text(&out));

    record
        .as_object_mut()
        .expect("object")
        .remove("eventSourceARN");
    std::fs::write(dir.path().join("none.json"), record.to_string()).expect("write");
    let out = relay(
        &[
            "test-route",
            "--config",
            "relay.toml",
            "--record",
            "none.json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--source"), "{}", text(&out));
}
