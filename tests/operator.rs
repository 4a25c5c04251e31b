//! `outbox-relay status` and `checkpoint reset` against the emulator.

mod common;

use std::time::Duration;

use common::{distinct, relay_cmd, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(60);

/// `checkpoint reset --source TABLE --to TO`.
fn reset(config: &std::path::Path, endpoint: &str, table: &str, to: &str) -> (i32, String, String) {
    relay_cmd(
        config,
        endpoint,
        &["checkpoint", "reset", "--source", table, "--to", to],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_shard_and_reset_moves_the_checkpoint() {
    let mut f = Fixture::new().await;
    let config = f.config("");
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(3).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 3)
        .await;

    // While it runs: owned, and a reset is refused without --force.
    let (code, out, err) = relay_cmd(&config, &f.endpoint, &["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["shards"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["shards"][0]["state"], "owned");
    assert_eq!(doc["shards"][0]["source"], f.events_table.as_str());
    let table = f.events_table.clone();
    let (code, _, err) = reset(&config, &f.endpoint, &table, "TRIM_HORIZON");
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to reset shards a relay owns"),
        "{err}"
    );

    let (status, _) = relay.terminate(Duration::from_secs(15));
    assert!(status.success());
    f.write_books(2).await;
    let (code, out, err) = relay_cmd(&config, &f.endpoint, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("free"), "{out}");
    let (_, out, _) = relay_cmd(&config, &f.endpoint, &["status", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let shard = &doc["shards"][0];
    assert!(shard["owner"].is_null());
    assert!(
        shard["lag_seconds"].as_f64().is_some(),
        "two rows wait: {shard}"
    );

    // A time before every record: back to TRIM_HORIZON; after every record: past them all.
    let (code, out, err) = reset(&config, &f.endpoint, &table, "2000-01-01T00:00:00Z");
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with("-> TRIM_HORIZON"), "{out}");
    let (code, out, err) = reset(&config, &f.endpoint, &table, "2100-01-01T00:00:00Z");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim_end()
            .rsplit(' ')
            .next()
            .is_some_and(|c| c.chars().all(|ch| ch.is_ascii_digit())),
        "{out}"
    );
    // Past every record: a restarted relay sends nothing old; a new row still arrives.
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    relay
        .wait_metric("outbox_relay_get_records_requests_total", 2.0, DEADLINE)
        .await;
    let newest = f.write_books(1).await;
    let mut after = Vec::new();
    f.receive_until(&mut after, DEADLINE, |r| !r.is_empty())
        .await;
    after.extend(f.receive_batch(1).await);
    assert_eq!(
        after
            .iter()
            .map(common::Received::event_id)
            .collect::<Vec<_>>(),
        newest
    );
    let (status, _) = relay.terminate(Duration::from_secs(15));
    assert!(status.success());

    // TRIM_HORIZON: everything is sent again.
    let (code, _, err) = reset(&config, &f.endpoint, &table, "TRIM_HORIZON");
    assert_eq!(code, 0, "{err}");
    let relay = Relay::start(&config, &f.endpoint);
    let mut again = Vec::new();
    f.receive_until(&mut again, DEADLINE, |r| distinct(r).0.len() >= 6)
        .await;
    drop(relay);
}
