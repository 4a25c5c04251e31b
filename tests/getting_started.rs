//! What a newcomer meets first, against the emulator: the README's "your own table" config,
//! exactly as printed, relays a row of a fresh table to the default bus; its `validate`,
//! `validate --aws` and `test-route` commands work as the README shows them; and a stream
//! whose view type lacks what a route reads stops the relay at start-up, before anything is
//! read or dead-lettered.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use common::{relay_command, unique, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(60);

/// The first TOML block after the README's "Your own table" heading.
fn readme_config() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme
        .split_once("## Your own table")
        .expect("a 'Your own table' section")
        .1;
    let block = section.split_once("```toml\n").expect("a TOML block").1;
    block
        .split_once("```")
        .expect("a closed block")
        .0
        .to_owned()
}

/// The README's config as printed, in a file of the fixture's folder.
fn write_readme_config(f: &Fixture) -> std::path::PathBuf {
    let path = f.dir.path().join("relay.toml");
    std::fs::write(&path, readme_config()).expect("write config");
    path
}

/// The table the README names, replaced (as the README shows, from the environment) by a new
/// one of this test, so tests sharing the emulator do not meet.
fn env_for(table: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OUTBOX_RELAY__SOURCE__TABLE_NAME", table.to_owned()),
        ("OUTBOX_RELAY__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

/// A rule on the default bus sending the README route's events (`source = "my.app"`) to a new
/// queue; returns the queue URL.
async fn default_bus_queue(f: &Fixture) -> String {
    let queue = f.queue("readme").await;
    f.route_to_queue(
        "default",
        &unique("readme"),
        r#"{"source": ["my.app"]}"#,
        &queue,
    )
    .await;
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_config_as_printed_relays_a_row_of_a_new_table() {
    let f = Fixture::new().await;
    let table = unique("outbox");
    f.create_events_table_viewing(&table, StreamViewType::NewImage)
        .await;
    let queue = default_bus_queue(&f).await;
    let config = write_readme_config(&f);
    let env = env_for(&table);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Step 3 of the README: validate, validate --aws, test-route.
    for args in [
        &["validate"][..],
        &["validate", "--aws"],
        &[
            "test-route",
            "--source",
            &table,
            "--record",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/samples/outbox-book-added.json"
            ),
        ],
    ] {
        let out = relay_command(&config, &f.endpoint, args)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        if args[0] == "test-route" {
            assert!(
                text.contains("matched") && text.contains("OutboxEvent"),
                "{text}"
            );
        }
    }

    // Step 4: run, and a row written to the table arrives on the bus.
    let relay = Relay::start_with_env(&config, &f.endpoint, &env);
    relay.wait_ready(DEADLINE).await;
    let id = unique("evt");
    f.ddb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(id.clone()))
        .item("sk", AttributeValue::S("OrderPlaced".into()))
        .item("total", AttributeValue::N("42.5".into()))
        .send()
        .await
        .expect("put row");
    let events = f.drain(&queue, 1, DEADLINE).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["source"], "my.app");
    assert_eq!(event["detail-type"], "OutboxEvent");
    assert_eq!(event["detail"]["pk"], id.as_str());
    assert_eq!(event["detail"]["sk"], "OrderPlaced");
    // A number, not a string: the row unmarshalled. (moto's rule delivery re-parses the
    // detail as floats, so digits beyond f64 cannot be checked here; unit tests do.)
    assert_eq!(event["detail"]["total"].as_f64(), Some(42.5));

    // Step 5: the metrics the README names are there.
    relay
        .wait_metric("outbox_relay_events_published_total", 1.0, DEADLINE)
        .await;
    for name in [
        "outbox_relay_lag_seconds_count",
        "outbox_relay_oldest_unpublished_record_age_seconds",
        "outbox_relay_leases_owned",
    ] {
        let (_, text) = relay.get("/metrics").await;
        assert!(text.contains(name), "{name} not in /metrics");
    }
    let (status, log) = relay.terminate(DEADLINE);
    assert!(status.success(), "{log}");
}

/// Runs `outbox-relay run` until it exits by itself (a relay that keeps running is killed and
/// the test fails): exit code and standard error.
fn run_to_exit(config: &std::path::Path, endpoint: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut child = relay_command(config, endpoint, &["run"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relay");
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("read stderr");
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the relay kept running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_only_stream_with_a_new_image_route_stops_the_relay_at_start_up() {
    let f = Fixture::new().await;
    let table = unique("keysonly");
    f.create_events_table_viewing(&table, StreamViewType::KeysOnly)
        .await;
    f.ddb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("evt-1".into()))
        .item("sk", AttributeValue::S("x".into()))
        .send()
        .await
        .expect("put row");
    let config = write_readme_config(&f);
    let dlq = f.queue("dlq").await;
    let leases = unique("leases");
    let mut env = env_for(&table);
    env.push(("OUTBOX_RELAY__DEAD_LETTER__QUEUE_URL", dlq.clone()));
    env.push(("OUTBOX_RELAY__LEASES__TABLE_NAME", leases.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (code, err) = run_to_exit(&config, &f.endpoint, &env);
    assert_eq!(code, 2, "{err}");
    for needed in [
        "routes[0].unmarshall",
        "\"outbox-events\"",
        "NewImage",
        "KEYS_ONLY",
        "NEW_IMAGE or NEW_AND_OLD_IMAGES",
    ] {
        assert!(err.contains(needed), "{needed:?} not in {err}");
    }
    // Nothing read: no lease table was made; nothing dead-lettered.
    let tables = f.ddb.list_tables().send().await.expect("list tables");
    assert!(
        !tables.table_names().contains(&leases),
        "the relay made its lease table"
    );
    let letters = f
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    assert!(letters.messages().is_empty(), "a dead letter");

    // `validate --aws` says the same, as text and as JSON; plain `validate` calls no AWS API.
    let out = relay_command(&config, &f.endpoint, &["validate", "--aws", "-o", "json"])
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["problems"][0]["key"], "routes[0].unmarshall", "{json}");
    let out = relay_command(&config, &f.endpoint, &["validate"])
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert!(out.status.success());

    // A table without a stream, and one that does not exist, name the source key in
    // `validate --aws` (`run` waits for a missing table: tests/replicas.rs).
    let plain = unique("nostream");
    f.ddb
        .create_table()
        .table_name(&plain)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("complete"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("complete"),
        )
        .send()
        .await
        .expect("create table");
    for (table, needed) in [
        (plain.as_str(), "has no stream"),
        ("no-such-table", "was not found"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .args(["validate", "--aws", "-c"])
            .arg(&config)
            .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", &f.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("OUTBOX_RELAY__SOURCE__TABLE_NAME", table)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{table}: {err}");
        assert!(
            err.contains("source.table_name") && err.contains(needed),
            "{table}: {err}"
        );
    }
}
