//! Poison records against the emulator: each lands in the SQS dead-letter queue with its
//! reason, later rows on the same shard are delivered, and the checkpoint moves past them.

mod common;

use std::time::Duration;

use common::{distinct, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(60);

// A route that cannot render its records, and the same route fixed. (A template that no record
// can render is refused at start-up, so the poison is a record without the image the route
// unmarshals: an INSERT has no OldImage.)
const BROKEN_DETAIL: &str = r#"unmarshall = "OldImage""#;
const FIXED_DETAIL: &str = r#"template = '{"name": <$.dynamodb.NewImage.eventData.M.name.S>}'"#;

/// Two routes that poison records (an image, a bus) and the dead-letter queue.
fn poison_routes(bus: &str, lost_bus: &str, detail: &str, dlq: &str) -> String {
    format!(
        r#"
[[routes]]
name = "broken-template"
filters = ['{{"dynamodb": {{"NewImage": {{"eventType": {{"S": ["Broken"]}}}}}}}}']
event_bus_name = "{bus}"
source = "OutboxDemo.Books"
detail_type = "Broken"
{detail}

[[routes]]
name = "huge-template"
filters = ['{{"dynamodb": {{"NewImage": {{"eventType": {{"S": ["Huge"]}}}}}}}}']
event_bus_name = "{bus}"
source = "OutboxDemo.Books"
detail_type = "Huge"
template = '{{"a": <$.NewImage.eventData.padding>, "b": <$.NewImage.eventData.padding>, "c": <$.NewImage.eventData.padding>, "d": <$.NewImage.eventData.padding>}}'

[[routes]]
name = "missing-bus"
filters = ['{{"dynamodb": {{"NewImage": {{"eventType": {{"S": ["Lost"]}}}}}}}}']
event_bus_name = "{lost_bus}"
source = "OutboxDemo.Books"
detail_type = "Lost"
unmarshall = "NewImage"

[dead_letter]
queue_url = "{dlq}"
"#
    )
}

async fn queue_depth(f: &Fixture, queue_url: &str) -> usize {
    f.sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

fn redrive(config: &std::path::Path, endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let all: Vec<&str> = std::iter::once("redrive")
        .chain(args.iter().copied())
        .collect();
    let (code, out, err) = common::relay_cmd(config, endpoint, &all);
    (code == 0, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_after_fixing_the_config_delivers_the_dead_letters_and_empties_the_queue() {
    let mut f = Fixture::new().await;
    let dlq = f.queue("dlq").await;
    let broken_config = f.config_with(
        "",
        &poison_routes(&f.bus, "no-such-bus", BROKEN_DETAIL, &dlq),
    );
    let relay = Relay::start(&broken_config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    let broken = f.write_event("Broken", 0).await;
    let lost = f.write_event("Lost", 0).await;
    relay
        .wait_metric("outbox_relay_events_dead_lettered_total", 2.0, DEADLINE)
        .await;
    drop(relay);
    assert_eq!(queue_depth(&f, &dlq).await, 2);

    // With the broken config, redrive renders and publishes nothing and keeps both messages.
    let (ok, _, err) = redrive(&broken_config, &f.endpoint, &[]);
    assert!(
        !ok,
        "messages left behind make redrive fail:
{err}"
    );
    assert!(err.contains("still cannot render"), "{err}");
    assert_eq!(queue_depth(&f, &dlq).await, 2);

    // Fixed: a dry run shows the entries and changes nothing.
    let fixed_config = f.config_with("", &poison_routes(&f.bus, &f.bus, FIXED_DETAIL, &dlq));
    let (ok, out, err) = redrive(&fixed_config, &f.endpoint, &["--dry-run"]);
    assert!(ok, "{err}");
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry per line"))
        .collect();
    assert_eq!(entries.len(), 2, "{out}");
    assert!(entries.iter().all(|e| e["EventBusName"] == f.bus.as_str()));
    assert_eq!(queue_depth(&f, &dlq).await, 2);

    // For real: both arrive on the bus, the queue is empty.
    let (ok, _, err) = redrive(&fixed_config, &f.endpoint, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("redriven 2, left in the queue 0"), "{err}");
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 2)
        .await;
    let mut types: Vec<_> = received
        .iter()
        .map(|r| {
            r.body["detail-type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["Broken", "Lost"]);
    let lost_event = received
        .iter()
        .find(|r| r.body["detail-type"] == "Lost")
        .expect("lost");
    assert_eq!(lost_event.event_id(), lost);
    let broken_event = received
        .iter()
        .find(|r| r.body["detail-type"] == "Broken")
        .expect("broken");
    assert_eq!(broken_event.body["detail"]["name"], "Book 0");
    assert!(!broken.is_empty());
    assert_eq!(queue_depth(&f, &dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_with_their_reason_and_the_shard_moves_on() {
    let mut f = Fixture::new().await;
    let dlq = f.queue("dlq").await;
    // Strict per-shard order, so the good rows' order can be checked across the poison.
    let config = f.strict_config(
        "",
        &poison_routes(&f.bus, "no-such-bus", BROKEN_DETAIL, &dlq),
    );
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;

    let good_before = f.write_books(2).await;
    let broken = f.write_event("Broken", 0).await;
    let lost = f.write_event("Lost", 0).await;
    // A row of 300 KiB (DynamoDB items stop at 400 KB) whose template repeats it four times:
    // an entry above PutEvents' 1 MiB.
    let big = f.write_event("Huge", 300 * 1024).await;
    let good_after = f.write_books(3).await;

    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 5)
        .await;
    // First deliveries, in order. A PutEvents call that fails as a whole (moto: missing bus)
    // may still have delivered the entries before the culprit; they are re-sent when the call
    // is split to isolate it. At least once: such duplicates carry the same eventId.
    let mut first = Vec::new();
    for r in &received {
        if !first.contains(&r.event_id().to_owned()) {
            first.push(r.event_id().to_owned());
        }
    }
    assert_eq!(
        first,
        [good_before.clone(), good_after].concat(),
        "good rows in order, poison skipped"
    );
    let (_, dups) = distinct(&received);
    let duplicated: Vec<&str> = {
        let mut seen = std::collections::HashSet::new();
        received
            .iter()
            .map(common::Received::event_id)
            .filter(|id| !seen.insert(*id))
            .collect()
    };
    assert!(
        duplicated
            .iter()
            .all(|id| good_before.iter().any(|g| g == id)),
        "only rows that shared a call with the culprit are re-sent: {duplicated:?}"
    );
    eprintln!("dead letters: {dups} duplicate deliveries from splitting the rejected call");

    let letters = f.drain(&dlq, 3, DEADLINE).await;
    let by_id = |id: &str| {
        letters
            .iter()
            .find(|l| l["event_id"] == id)
            .unwrap_or_else(|| panic!("no dead letter for {id} in {letters:#?}"))
    };
    let b = by_id(&broken);
    assert_eq!(b["route"], "broken-template");
    assert_eq!(b["stage"], "transform");
    assert_eq!(b["error_code"], "ImageMissing");
    assert_eq!(
        b["record"]["dynamodb"]["NewImage"]["eventType"]["S"],
        "Broken"
    );
    let l = by_id(&lost);
    assert_eq!(l["route"], "missing-bus");
    assert_eq!(l["stage"], "publish");
    assert_eq!(l["error_code"], "ResourceNotFoundException");
    assert_eq!(l["entry"]["EventBusName"], "no-such-bus");
    let g = by_id(&big);
    assert_eq!(g["route"], "huge-template");
    assert_eq!(g["error_code"], "EntryTooLarge");
    // SQS takes 1 MiB messages since 2026-01-29: the 300 KiB record is kept whole.
    assert_eq!(g["truncated"], false, "the record fits an SQS message");
    assert_eq!(
        g["record"]["dynamodb"]["NewImage"]["eventData"]["M"]["padding"]["S"]
            .as_str()
            .map(str::len),
        Some(300 * 1024)
    );
    assert_eq!(g["record"]["dynamodb"]["Keys"]["pk"]["S"], big.as_str());
    assert!(g["sequence_number"].as_str().is_some_and(|s| !s.is_empty()));

    // The telemetry contract.
    assert_eq!(
        relay
            .metric("outbox_relay_events_dead_lettered_total")
            .await,
        3.0
    );
    assert_eq!(
        relay.metric("outbox_relay_events_published_total").await,
        5.0
    );

    // The checkpoint moved past the poison: a restart re-sends and re-dead-letters nothing.
    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    relay
        .wait_metric("outbox_relay_get_records_requests_total", 2.0, DEADLINE)
        .await;
    f.write_books(1).await;
    let before_restart = received.len();
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 6)
        .await;
    received.extend(f.receive_batch(1).await);
    assert_eq!(
        received.len(),
        before_restart + 1,
        "nothing re-sent after the restart"
    );
    assert_eq!(
        relay
            .metric("outbox_relay_events_dead_lettered_total")
            .await,
        0.0
    );
}

async fn checkpoint(f: &Fixture) -> String {
    let leases = f.leases().await;
    leases
        .first()
        .and_then(|l| l.get("checkpoint"))
        .and_then(|c| c.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_dead_letter_queue_holds_the_checkpoint_and_loses_nothing() {
    unreachable_dead_letter_queue(true).await;
}

/// With calls in flight per ordering key (the default), rows of other keys keep flowing while
/// the poison's dead letter waits; the checkpoint still holds before the poison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_dead_letter_queue_holds_the_checkpoint_but_not_other_keys() {
    unreachable_dead_letter_queue(false).await;
}

/// `strict`: one PutEvents call in flight per shard (`max_in_flight_per_shard = 1`).
async fn unreachable_dead_letter_queue(strict: bool) {
    let mut f = Fixture::new().await;
    let dlq_url = f.queue("dlq").await;
    let dlq_name = dlq_url.rsplit('/').next().expect("name").to_owned();
    let tail = poison_routes(&f.bus, &f.bus, BROKEN_DETAIL, "unused").replace(
        r#"queue_url = "unused""#,
        &format!(r#"queue_name = "{dlq_name}""#),
    );
    let in_flight = if strict { "1" } else { "10" };
    let relay = Relay::start_with_env(
        &f.config_with("", &tail),
        &f.endpoint,
        &[(
            "OUTBOX_RELAY__PUBLISHER__MAX_IN_FLIGHT_PER_SHARD",
            in_flight,
        )],
    );
    relay.wait_ready(DEADLINE).await;
    f.write_books(2).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 2)
        .await;
    let end = std::time::Instant::now() + DEADLINE;
    let before = loop {
        let c = checkpoint(&f).await;
        if c.chars().all(|ch| ch.is_ascii_digit()) && !c.is_empty() {
            break c;
        }
        assert!(std::time::Instant::now() < end, "no checkpoint written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The queue goes away; a poison record and two good rows follow it.
    f.sqs
        .delete_queue()
        .queue_url(&dlq_url)
        .send()
        .await
        .expect("delete queue");
    let poison = f.write_event("Broken", 0).await;
    let after = f.write_books(2).await;
    relay
        .wait_metric("outbox_relay_dead_letter_write_errors_total", 3.0, DEADLINE)
        .await;
    assert_eq!(
        checkpoint(&f).await,
        before,
        "no checkpoint past an unwritten dead letter"
    );
    if strict {
        assert!(
            f.receive_batch(1).await.is_empty(),
            "nothing after the poison is published yet"
        );
    } else {
        // Other items' rows are published meanwhile; the checkpoint still waits.
        f.receive_until(&mut received, DEADLINE, |r| r.len() >= 4)
            .await;
        assert_eq!(
            checkpoint(&f).await,
            before,
            "no checkpoint past an unwritten dead letter"
        );
    }

    // The queue is back (same name, same URL): the dead letter lands, the rows follow.
    f.sqs
        .create_queue()
        .queue_name(&dlq_name)
        .send()
        .await
        .expect("recreate queue");
    let letters = f.drain(&dlq_url, 1, DEADLINE).await;
    assert_eq!(letters[0]["event_id"], poison.as_str());
    assert_eq!(letters[0]["error_code"], "ImageMissing");
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 4)
        .await;
    let got: Vec<String> = received[2..]
        .iter()
        .map(|r| r.event_id().to_owned())
        .collect();
    assert_eq!(got, after);
    let end = std::time::Instant::now() + DEADLINE;
    while checkpoint(&f).await == before {
        assert!(std::time::Instant::now() < end, "checkpoint never advanced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
