//! `outbox-relay validate`: broken configs exit 2 naming the key; shipped configs pass.
//! No AWS call is made (there is no endpoint to call).

use std::process::Command;

fn validate(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

const GOOD: &str = r#"
[source]
table_name = "EventsTable"

[[routes]]
name = "added"
filters = ['{"eventName": ["INSERT"]}']
event_bus_name = "bus"
source = "Demo"
detail_type = "Added"
unmarshall = "NewImage"
"#;

#[test]
fn a_good_config_validates() {
    let (code, out) = validate(GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid (1 route)"), "{out}");
}

/// `validate` with the config given as text in `OUTBOX_RELAY_CONFIG_TOML` (how ECS injects it
/// from an SSM parameter), beside a config file path that does not exist (the image's default).
fn validate_text(text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .arg("validate")
        .env("OUTBOX_RELAY_CONFIG", "/nonexistent/config.toml")
        .env("OUTBOX_RELAY_CONFIG_TOML", text)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn the_config_can_come_as_text_from_the_environment() {
    let (code, out) = validate_text(GOOD, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OUTBOX_RELAY_CONFIG_TOML: valid (1 route)"),
        "{out}"
    );
    // Key overrides still apply on top of the text, and errors name the key.
    let (code, out) = validate_text(GOOD, &[("OUTBOX_RELAY__SOURCE__POLL_INTERVAL", "fast")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("OUTBOX_RELAY_CONFIG_TOML") && out.contains("source.poll_interval"),
        "{out}"
    );
    let (code, out) = validate_text("[source\n", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot load the config text"), "{out}");
    // Empty text means "not set": the file path is used, and it does not exist.
    let (code, out) = validate_text("  ", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/config.toml"), "{out}");
}

#[test]
fn broken_configs_exit_2_naming_the_key() {
    let cases = [
        (
            "unknown key",
            GOOD.replace("[source]", "[source]\ntable = \"x\""),
            "source.table",
        ),
        (
            "missing table",
            GOOD.replace("table_name = \"EventsTable\"", ""),
            "source.table_name",
        ),
        (
            "bad duration",
            GOOD.replace("[source]", "[source]\npoll_interval = \"fast\""),
            "source.poll_interval",
        ),
        (
            "invalid pattern JSON",
            GOOD.replace(
                r#"'{"eventName": ["INSERT"]}'"#,
                r#"'{"eventName": [INSERT]}'"#,
            ),
            "routes[0].filters[0]",
        ),
        (
            "empty routes",
            "routes = []\n[source]\ntable_name = \"T\"\n".to_owned(),
            "routes",
        ),
    ];
    for (what, text, key) in cases {
        let (code, out) = validate(&text);
        assert_eq!(code, 2, "{what}: {out}");
        assert!(
            out.contains(&format!("  - {key}: ")),
            "{what}: expected key {key} in\n{out}"
        );
    }
}

#[test]
fn the_shipped_configs_validate() {
    for name in ["local", "outbox", "cdc", "custom-bus", "operators"] {
        let path = format!("{}/config/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .args(["validate", "--config", &path])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["validate", "--config", "/nonexistent.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

fn test_route(config: &str, record: &str) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["test-route", "--output", "json", "--config"])
        .arg(format!("{root}/config/{config}"))
        .arg("--record")
        .arg(format!("{root}/config/samples/{record}"))
        // No endpoint and no credentials: test-route must not call AWS.
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[test]
fn test_route_shows_the_entries_of_the_outbox_variant() {
    let doc = test_route("outbox.toml", "outbox-book-added.json");
    let routes = doc["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["name"], "book-added");
    assert_eq!(routes[0]["matched"], true);
    assert!(routes[0]["error"].is_null());
    let entry = &routes[0]["entries"][0];
    assert_eq!(entry["EventBusName"], "default");
    assert_eq!(entry["Source"], "OutboxDemo.Books");
    assert_eq!(entry["DetailType"], "BookAdded");
    assert_eq!(entry["Time"], "2023-11-14T22:13:20.000Z");
    let detail: serde_json::Value =
        serde_json::from_str(entry["Detail"].as_str().expect("detail text")).expect("json");
    assert_eq!(detail["eventId"], "6f1c2a8e-3b7d-4e51-9d0a-2f4b8c7e1a90");
    assert_eq!(detail["eventData"]["name"], "Team Topologies");
    assert_eq!(detail["eventData"]["year"], 2019);
    assert_eq!(routes[1]["name"], "book-removed");
    assert_eq!(routes[1]["matched"], false);
    assert_eq!(routes[1]["entries"].as_array().map(Vec::len), Some(0));

    // The seed wrote eventData as JSON text: expand_json delivers the same object.
    let seed = test_route("outbox.toml", "outbox-book-added-seed-string.json");
    let seed_detail: serde_json::Value = serde_json::from_str(
        seed["routes"][0]["entries"][0]["Detail"]
            .as_str()
            .expect("detail text"),
    )
    .expect("json");
    assert_eq!(seed_detail, detail);

    let doc = test_route("outbox.toml", "outbox-book-removed.json");
    assert_eq!(doc["routes"][0]["matched"], false);
    assert_eq!(doc["routes"][1]["matched"], true);
    assert_eq!(doc["routes"][1]["entries"][0]["DetailType"], "BookRemoved");
}

#[test]
fn test_route_shows_the_group_and_dedup_ids_of_a_custom_event_bus_entry() {
    let doc = test_route("custom-bus.toml", "outbox-book-added.json");
    let entry = &doc["routes"][0]["entries"][0];
    assert!(entry["EventBusArn"]
        .as_str()
        .is_some_and(|arn| arn.contains(":event-busv2/books/")));
    assert!(entry.get("EventBusName").is_none());
    assert_eq!(entry["SystemMetadata"]["EventGroupId"], "Team Topologies");
    assert_eq!(
        entry["SystemMetadata"]["DeduplicationId"],
        "6f1c2a8e-3b7d-4e51-9d0a-2f4b8c7e1a90"
    );
    // The demo's Custom Event Bus routes publish CloudEvents: the PutRawEvents entry, its
    // format, and the CloudEvent parsed.
    assert_eq!(entry["Format"], "cloudevents");
    assert_eq!(entry["SystemMetadata"]["ContentType"], "application/json");
    let event = &entry["DataParsed"];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], "6f1c2a8e-3b7d-4e51-9d0a-2f4b8c7e1a90");
    assert_eq!(event["subject"], "Team Topologies");
    assert_eq!(event["data"]["eventData"]["name"], "Team Topologies");
    assert_eq!(
        entry["Data"]
            .as_str()
            .map(serde_json::from_str::<serde_json::Value>)
            .and_then(Result::ok)
            .as_ref(),
        Some(event),
        "Data is the CloudEvent's text"
    );
}

#[test]
fn test_route_shows_the_entries_of_the_cdc_variant() {
    let doc = test_route("cdc.toml", "cdc-insert.json");
    assert_eq!(doc["routes"][0]["matched"], true);
    assert_eq!(doc["routes"][1]["matched"], false);
    let added = &doc["routes"][0]["entries"][0];
    assert_eq!(added["Source"], "OutboxDemo.ChangeProcessor");
    assert_eq!(
        added["DetailParsed"],
        serde_json::json!({"eventId": "eccbc87e4b5ce2fe28308fd9f2a7baf3", "name": "Team Topologies",
                           "authors": ["Manuel Pais", "Matthew Skelton"], "publishedYear": 2019})
    );
    let doc = test_route("cdc.toml", "cdc-remove.json");
    assert_eq!(doc["routes"][0]["matched"], false);
    let removed = &doc["routes"][1]["entries"][0];
    assert_eq!(removed["DetailType"], "BookRemoved");
    assert_eq!(
        removed["DetailParsed"],
        serde_json::json!({"eventId": "a87ff679a2f3e71d9181a67b7542122c", "name": "Team Topologies"})
    );
}

#[test]
fn test_route_rejects_a_record_that_is_not_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("r.json");
    std::fs::write(&path, "{not json").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["test-route", "--config"])
        .arg(format!("{}/config/outbox.toml", env!("CARGO_MANIFEST_DIR")))
        .arg("--record")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

#[test]
fn test_route_evaluates_every_operator_family_of_the_example_config() {
    let doc = test_route("operators.toml", "operators.json");
    let expected = [
        ("exact-values", true),
        ("prefix", true),
        ("prefix-ignore-case", true),
        ("suffix", false),
        ("suffix-ignore-case", true),
        ("equals-ignore-case", true),
        ("wildcard", true),
        ("anything-but", true),
        ("anything-but-prefix", true),
        ("anything-but-wildcard", true),
        ("numeric", true),
        ("cidr", true),
        ("exists", true),
        ("null-and-empty", true),
        ("or", false),
    ];
    let routes = doc["routes"].as_array().expect("routes");
    let actual: Vec<(&str, bool)> = routes
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name"),
                r["matched"].as_bool().expect("matched"),
            )
        })
        .collect();
    assert_eq!(actual, expected);
    for route in routes.iter().filter(|r| r["matched"] == true) {
        assert_eq!(route["entries"][0]["DetailType"], "OrderChanged");
    }
}

#[test]
fn healthcheck_exits_1_naming_the_address_when_no_relay_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ntable_name = \"T\"\n[http]\nlisten = \"{closed}\"\n[[routes]]\nname = \"r\"\n\
             event_bus_name = \"b\"\nsource = \"s\"\ndetail_type = \"d\"\nunmarshall = \"NewImage\"\n"
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["healthcheck", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("unhealthy: {closed}/healthz")),
        "{stderr}"
    );
}

/// `validate -o json` of `text` (a file), with `env` set: exit code and the JSON document.
fn validate_json(text: &str, env: &[(&str, &str)]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["validate", "-o", "json", "-c"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn one_validate_reports_four_independent_mistakes_as_json() {
    let text = GOOD
        .replace(
            "table_name = \"EventsTable\"",
            "table_name = \"EventsTable\"\ntabel_name = \"x\"\npoll_intervall = \"1s\"",
        )
        .replace(r#"["INSERT"]"#, "[INSERT]")
        .replace("unmarshall = ", "resourcs = []\nunmarshall = ");
    let (code, json) = validate_json(&text, &[]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["valid"], false);
    let mut keys: Vec<&str> = json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["key"].as_str().expect("key"))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "routes[0].filters[0]",
            "routes[0].resourcs",
            "source.poll_intervall",
            "source.tabel_name"
        ],
        "{json}"
    );
    let (code, json) = validate_json(GOOD, &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["routes"], 1);
}

#[test]
fn an_explicit_config_flag_beats_the_config_text_in_the_environment() {
    // The file is broken, the text in the environment is fine: the flag wins, so exit 2.
    let broken = GOOD.replace("[source]", "[source]\ntable = \"x\"");
    let (code, json) = validate_json(&broken, &[("OUTBOX_RELAY_CONFIG_TOML", GOOD)]);
    assert_eq!(code, 2, "{json}");
    assert_ne!(json["origin"], "OUTBOX_RELAY_CONFIG_TOML", "{json}");
    assert_eq!(json["problems"][0]["key"], "source.table", "{json}");
}

#[test]
fn list_keys_come_from_the_environment() {
    let (code, json) = validate_json(
        GOOD,
        &[("OUTBOX_RELAY__SOURCE__TABLE_NAMES", "Orders,Payments")],
    );
    assert_eq!(code, 0, "{json}");
    // A route limited to a table that the variable adds is valid only if the list was split.
    let limited = GOOD.replace("unmarshall = ", "sources = [\"Payments\"]\nunmarshall = ");
    let (code, json) = validate_json(
        &limited,
        &[("OUTBOX_RELAY__SOURCE__TABLE_NAMES", "Orders,Payments")],
    );
    assert_eq!(code, 0, "{json}");
    let (code, json) = validate_json(&limited, &[]);
    assert_eq!(
        code, 2,
        "without the variable the route names no source: {json}"
    );
}

#[test]
fn shell_completions_need_no_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["completions", "bash"])
        .env_remove("OUTBOX_RELAY_CONFIG")
        .output()
        .expect("run");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("_outbox__relay()") && script.contains("backfill"),
        "{script}"
    );
}

/// `status` (which calls AWS) against nothing: the error is one line that says what failed and
/// what to check, not the SDK's multi-line dump.
#[test]
fn an_aws_failure_is_one_readable_line_with_what_to_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, format!("[aws]\nregion = \"us-east-1\"\n{GOOD}")).expect("write");
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .args(["status", "-c"])
            .arg(&path)
            .env_clear()
            .env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // No credentials anywhere.
    let err = run(&[]);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("no credentials found") && err.contains("set AWS_PROFILE"),
        "{err}"
    );
    assert!(!err.contains("Attempted") && err.len() < 600, "{err}");
    // Credentials, but nothing listens at the endpoint.
    let err = run(&[
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("OUTBOX_RELAY__AWS__ENDPOINT_URL", "http://127.0.0.1:9"),
    ]);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("Connection refused") && err.contains("check the network path to AWS"),
        "{err}"
    );
}

#[test]
fn checkpoint_reset_without_a_shard_or_source_exits_2_naming_both_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["checkpoint", "reset", "--to", "LATEST", "--config"])
        .arg(format!("{}/config/outbox.toml", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--shard") && stderr.contains("--source"),
        "{stderr}"
    );
}
