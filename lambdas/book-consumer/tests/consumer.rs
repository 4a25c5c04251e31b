//! The consumer's handler, called with committed EventBridge events (as the relay publishes
//! them) against DynamoDB on the emulator: one side effect per event id, whether the event comes
//! twice in a row, ten times at once, or again after a handler crashed mid-way.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use book_consumer::{lambda_handler, settings, Consumer, ConsumerError, Handled};
use dynamodb_idempotency::{Begin, Error as IdempotencyError};
use serde_json::Value;

mod support;

use support::{cloudevent_of, event_id, fixture, World};

#[tokio::test]
async fn the_same_event_twice_applies_once() {
    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(30));
    let event = fixture("eventbridge-book-added.json");
    let first = consumer.handle(&event).await.expect("handled");
    assert_eq!(
        first,
        Handled::Applied(
            "Team Topologies (2019) by Manuel Pais, Matthew Skelton was added!".into()
        )
    );
    // The relay redelivers (a new EventBridge id, the same event id).
    let mut again = event.clone();
    again.id = Some("another-eventbridge-id".into());
    assert_eq!(
        consumer.handle(&again).await.expect("handled"),
        Handled::Duplicate
    );
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
    let book = w
        .item(&w.presentation, "name", "Team Topologies")
        .await
        .expect("item");
    assert_eq!(book["year"], AttributeValue::N("2019".into()));

    // The record has Powertools' layout.
    let record = w
        .record(&event_id(&event))
        .await
        .expect("idempotency record");
    assert_eq!(record["status"], AttributeValue::S("COMPLETED".into()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let expiration: u64 = record["expiration"]
        .as_n()
        .expect("N")
        .parse()
        .expect("secs");
    assert!(expiration > now.as_secs() + 23 * 3600 && expiration <= now.as_secs() + 24 * 3600 + 5);
    let in_progress: u128 = record["in_progress_expiration"]
        .as_n()
        .expect("N")
        .parse()
        .expect("ms");
    assert!(in_progress > now.as_millis(), "epoch milliseconds");
    assert!(record["data"].as_s().expect("data").contains("was added!"));

    // Through the Lambda entry point too.
    let context = lambda_runtime::Context::default();
    let payload = serde_json::to_value(&event).expect("json");
    lambda_handler(
        &consumer,
        lambda_runtime::LambdaEvent::new(payload, context),
    )
    .await
    .expect("handled");
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_deliveries_apply_once() {
    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(30));
    let event = fixture("eventbridge-book-added.json");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let consumer = consumer.clone();
            let event = event.clone();
            tokio::spawn(async move { consumer.handle(&event).await })
        })
        .collect();
    let mut applied = 0;
    let mut retry = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Handled::Applied(_)) => applied += 1,
            Ok(Handled::Duplicate) => {}
            // A twin was running: this delivery fails and is retried later.
            Err(ConsumerError::Idempotency(IdempotencyError::InProgress(_))) => retry += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1, "exactly one delivery applies the event");
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
    // The failed ones come back later and find it done.
    for _ in 0..retry {
        assert_eq!(
            consumer.handle(&event).await.expect("handled"),
            Handled::Duplicate
        );
    }
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
}

#[tokio::test]
async fn a_crashed_delivery_is_taken_over_after_its_in_progress_expiry() {
    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(2));
    let event = fixture("eventbridge-book-added.json");
    let key = format!("book-consumer#{}", event_id(&event));
    // A delivery claims the event and crashes before its side effect.
    let Begin::Claimed(claim) = consumer.idempotency().begin(&key).await.expect("begin") else {
        panic!("the first delivery claims the key");
    };
    drop(claim);
    let record = w.record(&event_id(&event)).await.expect("record");
    assert_eq!(record["status"], AttributeValue::S("INPROGRESS".into()));

    // A retry right away finds it in progress and fails (to be retried later)...
    assert!(matches!(
        consumer.handle(&event).await,
        Err(ConsumerError::Idempotency(IdempotencyError::InProgress(_)))
    ));
    assert_eq!(w.times_applied("Team Topologies").await, None);
    // ...and once the in-progress expiry passed, a retry takes over and completes it.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match consumer.handle(&event).await {
            Ok(Handled::Applied(_)) => break,
            Err(ConsumerError::Idempotency(IdempotencyError::InProgress(_))) => {
                assert!(Instant::now() < end, "never taken over");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
    let record = w.record(&event_id(&event)).await.expect("record");
    assert_eq!(record["status"], AttributeValue::S("COMPLETED".into()));
    assert_eq!(
        consumer.handle(&event).await.expect("handled"),
        Handled::Duplicate
    );
}

#[tokio::test]
async fn book_removed_and_the_cdc_variant() {
    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(30));
    consumer
        .handle(&fixture("eventbridge-book-added.json"))
        .await
        .expect("added");
    let removed = fixture("eventbridge-book-removed.json");
    assert_eq!(
        consumer.handle(&removed).await.expect("removed"),
        Handled::Applied("Team Topologies was removed!".into())
    );
    assert_eq!(w.times_applied("Team Topologies").await, None);
    assert_eq!(
        consumer.handle(&removed).await.expect("handled"),
        Handled::Duplicate
    );

    let cdc = fixture("eventbridge-book-added-cdc.json");
    assert_eq!(
        consumer.handle(&cdc).await.expect("handled"),
        Handled::Applied(
            "Accelerate (2018) by Nicole Forsgren, Jez Humble, Gene Kim was added!".into()
        )
    );
    let mut other = cdc.clone();
    other.detail_type = "BookLent".into();
    assert_eq!(
        consumer.handle(&other).await.expect("handled"),
        Handled::Ignored
    );
}

#[tokio::test]
async fn failures_leave_the_event_retryable() {
    let w = World::new().await;
    // A malformed event: refused, nothing claimed.
    let mut bad = fixture("eventbridge-book-added.json");
    bad.detail["eventData"] = serde_json::json!({"title": "x"});
    assert!(matches!(
        consumer_for(&w, "unused").handle(&bad).await,
        Err(ConsumerError::BadEvent(_))
    ));
    assert!(w.record(&event_id(&bad)).await.is_none());

    // The side effect fails (no such table): the claim is released, so a retry runs it.
    let event = fixture("eventbridge-book-added.json");
    let broken = consumer_for(&w, "no-such-presentation-table");
    assert!(matches!(
        broken.handle(&event).await,
        Err(ConsumerError::Store { .. })
    ));
    assert!(
        w.record(&event_id(&event)).await.is_none(),
        "claim released"
    );
    let consumer = w.consumer(Duration::from_secs(30));
    assert!(matches!(
        consumer.handle(&event).await,
        Ok(Handled::Applied(_))
    ));
}

fn consumer_for(w: &World, presentation: &str) -> Consumer {
    Consumer::new(
        w.ddb.clone(),
        presentation,
        &w.idempotency,
        settings(Duration::from_secs(30)),
    )
}

#[test]
fn the_trace_id_comes_from_the_traceparent_the_outbox_row_carried() {
    let mut event = fixture("eventbridge-book-added.json");
    assert_eq!(
        book_consumer::trace_id(&event),
        None,
        "no traceparent: none"
    );
    event.detail["traceparent"] =
        Value::from("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_eq!(
        book_consumer::trace_id(&event).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    event.detail["traceparent"] = Value::from("00-junk");
    assert_eq!(book_consumer::trace_id(&event), None, "malformed: none");
}

/// The consumer continues the trace: its span's parent is the span that wrote the outbox row
/// (the `traceparent` in the detail), observed through OpenTelemetry's in-memory exporter.
/// A CloudEvent is applied like the EventBridge event of the same row, and is its twin: the
/// CloudEvent `id` is the same stable event id, so one delivery of each applies once. Raw (as
/// a Custom Event Bus subscriber's `RAW` transformer delivers it), through the Lambda entry
/// point, and inside an EventBridge event's detail (a classic bus) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudevent_is_applied_once_and_dedups_with_its_eventbridge_twin() {
    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(30));
    let event = fixture("eventbridge-book-added.json");
    let cloudevent = cloudevent_of(
        &event,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    assert_eq!(
        consumer
            .handle_json(cloudevent.clone())
            .await
            .expect("handled"),
        Handled::Applied(
            "Team Topologies (2019) by Manuel Pais, Matthew Skelton was added!".into()
        )
    );
    assert_eq!(
        consumer.handle(&event).await.expect("handled"),
        Handled::Duplicate
    );
    let context = lambda_runtime::Context::default();
    lambda_handler(
        &consumer,
        lambda_runtime::LambdaEvent::new(cloudevent.clone(), context),
    )
    .await
    .expect("handled");
    let mut wrapped = event.clone();
    wrapped.detail = cloudevent;
    assert_eq!(
        consumer.handle(&wrapped).await.expect("handled"),
        Handled::Duplicate
    );
    assert_eq!(w.times_applied("Team Topologies").await, Some(1));
    assert_eq!(
        book_consumer::trace_id(&wrapped).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the traceparent extension"
    );
    // Neither format: a poison event, not retried forever.
    let err = consumer
        .handle_json(serde_json::json!({"hello": "world"}))
        .await
        .expect_err("refused");
    assert!(matches!(err, ConsumerError::BadEvent(_)), "{err}");
}
