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
    for name in ["local", "outbox", "cdc"] {
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
