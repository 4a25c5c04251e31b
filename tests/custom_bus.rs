//! The Custom Event Bus (eventsv2): the real `aws-sdk-eventbridgev2` client against the local
//! emulator of `common::eventsv2`, then the real relay binary publishing outbox rows from moto
//! to it. The emulator stores what a subscriber would get, so "no duplicate for subscribers"
//! and "per-group order" are read off it directly.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_eventbridgev2::operation::put_events::PutEventsError;
use aws_sdk_eventbridgev2::types::{PutEventsRequestEntry, PutEventsSystemMetadata, SuccessCode};
use common::eventsv2::{CustomBusEmulator, Stored, EVENTBRIDGE_CONTENT_TYPE};
use common::{sdk_config, Fixture, Relay, PER_AGGREGATE};

const DEADLINE: Duration = Duration::from_secs(60);

fn entry(group: &str, dedup: &str, detail_bytes: usize) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .source("books")
        .detail_type("BookAdded")
        .detail(format!("{{\"pad\": \"{}\"}}", "x".repeat(detail_bytes)))
        .system_metadata(
            PutEventsSystemMetadata::builder()
                .event_group_id(group)
                .deduplication_id(dedup)
                .build(),
        )
        .build()
        .expect("complete entry")
}

/// The real SDK client for the emulator, its own retries off: each error a test sees is the
/// emulator's first answer.
fn client_without_retries(bus: &CustomBusEmulator) -> aws_sdk_eventbridgev2::Client {
    aws_sdk_eventbridgev2::Client::from_conf(
        aws_sdk_eventbridgev2::config::Builder::from(&sdk_config(&bus.endpoint))
            .retry_config(aws_sdk_eventbridgev2::config::retry::RetryConfig::disabled())
            .build(),
    )
}

/// The emulator speaks the protocol the SDK speaks: results, per-entry errors and whole-call
/// errors come back as the SDK's own types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_and_the_emulator_agree_on_the_protocol() {
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("orders");
    let client = client_without_retries(&bus);
    let put = |entries: Vec<PutEventsRequestEntry>, arn: String| {
        client
            .put_events()
            .event_bus_arn(arn)
            .set_entries(Some(entries))
            .send()
    };

    let out = put(
        vec![entry("o-1", "e-1", 10), entry("o-1", "e-2", 10)],
        arn.clone(),
    )
    .await
    .expect("published");
    let codes: Vec<_> = out
        .entries()
        .iter()
        .map(|e| e.success_code().cloned())
        .collect();
    assert_eq!(codes, vec![Some(SuccessCode::Published); 2]);

    // A repeat of e-1 within the window: accepted, not stored again.
    let out = put(vec![entry("o-1", "e-1", 10)], arn.clone())
        .await
        .expect("answered");
    assert_eq!(
        out.entries()[0].success_code(),
        Some(&SuccessCode::Deduplicated)
    );
    assert_eq!(bus.events(&arn).len(), 2);

    // A throttled group: a per-entry error, the other group's entry is published.
    bus.throttle_group("o-2", 1);
    let out = put(
        vec![entry("o-2", "e-3", 10), entry("o-3", "e-4", 10)],
        arn.clone(),
    )
    .await
    .expect("answered");
    assert_eq!(out.failed_entry_count(), 1);
    assert_eq!(out.entries()[0].error_code(), Some("ThrottlingException"));
    assert_eq!(
        out.entries()[1].success_code(),
        Some(&SuccessCode::Published)
    );

    // Whole-call errors are the SDK's modelled errors.
    let err = put(vec![entry("o-1", "e-5", 10)], arn.replace("orders", "nope"))
        .await
        .expect_err("unknown bus");
    assert!(matches!(
        err.into_service_error(),
        PutEventsError::ResourceNotFoundException(_)
    ));
    let over_1_mib = (0..5)
        .map(|i| entry("o-1", &format!("big-{i}"), 220 * 1024))
        .collect();
    let err = put(over_1_mib, arn.clone()).await.expect_err("over 1 MiB");
    assert!(matches!(
        err.into_service_error(),
        PutEventsError::InvalidInputException(_)
    ));
    let too_many = (0..101)
        .map(|i| entry("o-1", &format!("n-{i}"), 1))
        .collect();
    let err = put(too_many, arn.clone()).await.expect_err("101 entries");
    assert!(matches!(
        err.into_service_error(),
        PutEventsError::InvalidInputException(_)
    ));
    bus.fail_next_call("ThrottlingException");
    let err = put(vec![entry("o-1", "e-6", 10)], arn.clone())
        .await
        .expect_err("throttled");
    assert!(matches!(
        err.into_service_error(),
        PutEventsError::ThrottlingException(_)
    ));
    assert_eq!(
        bus.events(&arn).len(),
        3,
        "nothing of the refused calls was stored"
    );
}

/// PutRawEvents through the SDK: JSON data is stored with its content type and metadata, shares
/// dedup and group order with PutEvents, and what the API reference refuses is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_serves_put_raw_events_as_the_api_reference_says() {
    use aws_sdk_eventbridgev2::types::{PutRawEventsRequestEntry, PutRawEventsSystemMetadata};
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("orders");
    let client = client_without_retries(&bus);
    let raw = |data: &str, content_type: &str, dedup: &str, metadata: &[(&str, &str)]| {
        let mut e = PutRawEventsRequestEntry::builder()
            .data(aws_smithy_types::Blob::new(data.as_bytes()))
            .system_metadata(
                PutRawEventsSystemMetadata::builder()
                    .content_type(content_type)
                    .event_group_id("o-1")
                    .deduplication_id(dedup)
                    .build()
                    .expect("complete"),
            );
        for (k, v) in metadata {
            e = e.metadata(*k, *v);
        }
        e.build().expect("complete")
    };
    let put = |entries: Vec<PutRawEventsRequestEntry>| {
        client
            .put_raw_events()
            .event_bus_arn(arn.clone())
            .set_entries(Some(entries))
            .send()
    };
    let out = put(vec![
        raw(
            r#"{"specversion":"1.0"}"#,
            "application/json",
            "e-1",
            &[("traceparent", "tp")],
        ),
        raw("\u{1}bytes", "application/octet-stream", "e-2", &[]),
        raw("not json", "application/json", "e-3", &[]),
    ])
    .await
    .expect("answered");
    assert_eq!(out.failed_entry_count(), 1, "JSON content that is not JSON");
    assert_eq!(out.entries()[2].error_code(), Some("InvalidInputException"));
    let stored = bus.events(&arn);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].detail["specversion"], "1.0");
    assert_eq!(
        stored[0].metadata.get("traceparent").map(String::as_str),
        Some("tp")
    );
    assert_eq!(stored[1].content_type, "application/octet-stream");
    assert_eq!(stored[1].data, b"\x01bytes");
    assert_eq!(stored[1].sequence, 2, "one sequence per group");
    // The dedup memory is the bus's, whichever operation published.
    let out = client
        .put_events()
        .event_bus_arn(arn.clone())
        .entries(entry("o-1", "e-1", 10))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        out.entries()[0].success_code(),
        Some(&SuccessCode::Deduplicated)
    );
    // Refused whole: an unknown content type, a key with `/`, an empty value, 101 keys.
    let many: Vec<(String, String)> = (0..101).map(|i| (format!("k{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (bad, why) in [
        (raw("{}", "text/plain", "e-9", &[]), "text/plain"),
        (raw("{}", "application/avro", "e-9", &[]), "schema registry"),
        (raw("{}", "application/json", "e-9", &[("a/b", "v")]), "a/b"),
        (raw("{}", "application/json", "e-9", &[("k", "")]), "empty"),
        (raw("{}", "application/json", "e-9", &many), "101"),
    ] {
        let err = put(vec![bad]).await.expect_err(why);
        let text = format!("{:?}", err.into_service_error());
        assert!(text.contains("InvalidInputException"), "{why}: {text}");
    }
    assert_eq!(bus.events(&arn).len(), 2, "nothing refused was stored");
}

/// Waits until the bus holds `want` events.
async fn wait_for_events(bus: &CustomBusEmulator, arn: &str, want: usize) -> Vec<Stored> {
    let end = Instant::now() + DEADLINE;
    loop {
        let events = bus.events(arn);
        if events.len() >= want || Instant::now() > end {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (until `end` at most) until `relay` holds no record it has not published.
async fn wait_idle(relay: &Relay, end: Instant) {
    while relay
        .metric("outbox_relay_oldest_unpublished_record_age_seconds")
        .await
        > 0.0
        && Instant::now() < end
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The unmarshalled outbox row an event carries: its detail, or a CloudEvent's `data`.
fn row_of(e: &Stored) -> &serde_json::Value {
    if e.content_type == "application/json" {
        &e.detail["data"]
    } else {
        &e.detail
    }
}

/// Per group, the rows' `eventData.seq` in the order the bus stored them.
fn seqs_per_group(events: &[Stored]) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    for e in events {
        let seq = row_of(e)["eventData"]["seq"].as_u64().expect("seq");
        out.entry(e.group.clone().expect("every entry has a group"))
            .or_default()
            .push(seq);
    }
    out
}

fn assert_in_order_per_group(events: &[Stored]) {
    for (group, seqs) in seqs_per_group(events) {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "group {group} stored out of row order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_reach_a_custom_event_bus_with_group_and_dedup_ids() {
    let mut f = Fixture::new().await;
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    let config = f.custom_bus_config(&arn, &bus.endpoint, PER_AGGREGATE);
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(60).await;

    let events = wait_for_events(&bus, &arn, 60).await;
    assert_eq!(
        events.len(),
        60,
        "every row published once:\n{}",
        relay.log_text()
    );
    let dedup_ids: HashSet<String> = events.iter().filter_map(|e| e.dedup.clone()).collect();
    let written: HashSet<String> = f.written.iter().cloned().collect();
    assert_eq!(
        dedup_ids, written,
        "the dedup id is the outbox row's event id"
    );
    let groups = seqs_per_group(&events);
    assert_eq!(
        groups.len(),
        common::AGGREGATES,
        "the ordering key is the group"
    );
    assert_in_order_per_group(&events);
    assert!(events
        .iter()
        .all(|e| e.source == "OutboxDemo.Books" && e.detail_type == "BookAdded"));
    relay
        .wait_metric(
            "outbox_relay_events_published_total{route=\"book-added\"}",
            60.0,
            DEADLINE,
        )
        .await;
}

/// The headline: a relay killed with calls the bus accepted but never answered re-sends them
/// after the restart, and the bus answers DEDUPLICATED, so subscribers get every row exactly
/// once, in group order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_resends_only_what_the_bus_deduplicates() {
    let mut f = Fixture::new().await;
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    let config = f.custom_bus_config(&arn, &bus.endpoint, PER_AGGREGATE);

    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(30).await;
    wait_for_events(&bus, &arn, 30).await;
    // From now on the bus stores events but its answers are lost: nothing past this point
    // can be checkpointed, and the crash leaves it all to re-send.
    bus.hold_answers(true);
    f.write_books(30).await;
    let end = Instant::now() + DEADLINE;
    while bus.events(&arn).len() <= 30 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored_unanswered = bus.events(&arn).len() - 30;
    relay.kill9();
    bus.hold_answers(false);
    f.write_books(40).await;
    let relay = Relay::start(&config, &f.endpoint);
    wait_for_events(&bus, &arn, 100).await;
    // Every row is stored; once the relay has nothing pending, nothing more will come.
    wait_idle(&relay, Instant::now() + DEADLINE).await;
    let events = bus.events(&arn);
    let ids: Vec<String> = events.iter().filter_map(|e| e.dedup.clone()).collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        100,
        "every row delivered:\n{}",
        relay.log_text()
    );
    assert_eq!(ids.len(), 100, "no row stored twice");
    assert_in_order_per_group(&events);
    let deduplicated = relay
        .metric("outbox_relay_events_deduplicated_total{route=\"book-added\"}")
        .await;
    eprintln!(
        "custom bus kill -9: {stored_unanswered} entries stored but unanswered at the kill; the \
         restarted relay re-sent {deduplicated} entries the bus answered DEDUPLICATED; 100 rows \
         stored once each"
    );
    assert!(
        deduplicated >= stored_unanswered as f64,
        "every entry stored before the crash was re-sent and deduplicated:\n{}",
        relay.log_text()
    );
}

/// A route whose bus does not exist yet dead-letters its entries with the bus ARN and both
/// system ids; once the bus exists, `redrive` publishes them with the same dedup ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_missing_bus_are_redriven_with_the_same_dedup_ids() {
    let events = dead_letters_of_a_missing_bus_redriven("").await;
    assert!(events
        .iter()
        .all(|e| e.content_type == EVENTBRIDGE_CONTENT_TYPE));
}

/// The same for a CloudEvents route (#26): its letters keep the format, the content type and
/// the Metadata, and `redrive` publishes them with PutRawEvents, trace and dedup ids intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_dead_letters_keep_their_format_and_are_redriven_raw() {
    let events = dead_letters_of_a_missing_bus_redriven("format = \"cloudevents\"").await;
    for e in &events {
        assert_eq!(e.content_type, "application/json");
        let event: cloudevents::Event = serde_json::from_slice(&e.data).expect("a CloudEvent");
        let seq = row_of(e)["eventData"]["seq"].as_u64().expect("seq") as usize;
        assert_eq!(
            e.metadata.get("traceparent"),
            Some(&common::row_traceparent(seq))
        );
        assert_eq!(
            event.extension("traceparent").map(ToString::to_string),
            Some(common::row_traceparent(seq))
        );
    }
}

/// Rows of a route (with `route_extra`) to a bus that does not exist yet are dead-lettered with
/// the bus ARN and both system ids; once the bus exists, `redrive` publishes them with the
/// same dedup ids. Returns what the bus then stored.
async fn dead_letters_of_a_missing_bus_redriven(route_extra: &str) -> Vec<Stored> {
    let mut f = Fixture::new().await;
    f.traced_rows = true;
    let bus = CustomBusEmulator::start().await;
    let arn = "arn:aws:events:us-east-1:123456789012:event-busv2/later/abcdefghij0123456789abcde";
    let dlq = f.queue("dlq").await;
    let config = f
        .relay_config()
        .section_keys("source", "trace_context_attribute = \"traceparent\"")
        .route_keys(PER_AGGREGATE)
        .route_keys(route_extra)
        .custom_bus(arn, &bus.endpoint)
        .dead_letter_queue(&dlq)
        .write();
    let cloudevents = !route_extra.is_empty();

    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(3).await;
    relay
        .wait_metric("outbox_relay_events_dead_lettered_total", 3.0, DEADLINE)
        .await;
    drop(relay);
    let letters = f.drain(&dlq, 3, DEADLINE).await;
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        let entry = &letter["entry"];
        assert_eq!(entry["EventBusArn"], arn, "{letter}");
        assert!(entry["EventGroupId"]
            .as_str()
            .is_some_and(|g| g.starts_with("agg-")));
        assert_eq!(entry["DeduplicationId"], letter["event_id"]);
        assert_eq!(letter["error_code"], "ResourceNotFoundException");
        if cloudevents {
            assert_eq!(entry["Format"], "cloudevents", "{letter}");
            assert_eq!(entry["ContentType"], "application/json");
            assert!(entry["Metadata"]["traceparent"].is_string(), "{letter}");
            let event: cloudevents::Event =
                serde_json::from_str(entry["Detail"].as_str().expect("text"))
                    .expect("a CloudEvent");
            assert_eq!(
                cloudevents::AttributesReader::id(&event),
                letter["event_id"].as_str().expect("id")
            );
        } else {
            assert_eq!(entry["Format"], "eventbridge", "{letter}");
            assert!(entry.get("ContentType").is_none() && entry.get("Metadata").is_none());
        }
    }
    // drain deleted them: put them back as the relay wrote them, then fix and redrive.
    for letter in &letters {
        f.sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(letter.to_string())
            .send()
            .await
            .expect("requeue");
    }
    bus.register_bus(arn);
    let (code, _, err) = common::relay_cmd(&config, &f.endpoint, &["redrive"]);
    assert_eq!(code, 0, "{err}");
    let events = bus.events(arn);
    let mut dedup: Vec<String> = events.iter().filter_map(|e| e.dedup.clone()).collect();
    dedup.sort();
    let mut written = f.written.clone();
    written.sort();
    assert_eq!(
        dedup, written,
        "redriven with the outbox rows' event ids as dedup ids"
    );
    events
}

/// A group over its rate is throttled entry by entry, another one's entries fail: those groups
/// wait and retry, the other groups of the shard keep flowing, and order holds in every group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_group_waits_while_the_other_groups_flow() {
    let mut f = Fixture::new().await;
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    bus.throttle_group("agg-0", 8);
    bus.fail_group("agg-1", 3, "InternalException");
    let config = f.custom_bus_config(&arn, &bus.endpoint, PER_AGGREGATE);
    // Every row is in the stream before the relay starts (it reads from TRIM_HORIZON), so
    // the other groups' rows are there to flow while agg-0 waits: written one by one while
    // the relay runs, on a loaded machine the last rows could come after agg-0's retries.
    f.write_books(50).await;
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;

    let events = wait_for_events(&bus, &arn, 50).await;
    assert_eq!(
        events.len(),
        50,
        "every row published:\n{}",
        relay.log_text()
    );
    assert_in_order_per_group(&events);
    let retries = relay
        .metric("outbox_relay_put_events_retries_total{error_code=\"ThrottlingException\"}")
        .await;
    assert!(
        retries >= 8.0,
        "the throttled entries were retried ({retries})"
    );
    let internal = relay
        .metric("outbox_relay_put_events_retries_total{error_code=\"InternalException\"}")
        .await;
    assert!(
        internal >= 3.0,
        "the failed entries were retried ({internal})"
    );
    // While agg-0 was held back, the other groups' rows went through: the last of them was
    // stored before agg-0's last row.
    let position = |group: &str| {
        events
            .iter()
            .rposition(|e| e.group.as_deref() == Some(group))
    };
    let last_agg0 = position("agg-0").expect("agg-0 stored");
    let others_done = (2..common::AGGREGATES)
        .filter_map(|g| position(&format!("agg-{g}")))
        .max()
        .expect("other groups stored");
    eprintln!(
        "throttled group: agg-0 finished at position {last_agg0}, the others by {others_done}"
    );
    assert!(
        others_done < last_agg0,
        "the other groups did not wait for agg-0"
    );
}

/// The issue's acceptance: 3 replicas, rows of 50 aggregates written while replicas are killed
/// (-9) at random and replaced: every event is stored exactly once (the re-sent tails come back
/// DEDUPLICATED), and per aggregate the stored order is the order of the outbox rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_at_random_store_every_event_once_in_aggregate_order() {
    let events = replicas_killed_at_random("", false).await;
    assert!(events
        .iter()
        .all(|e| e.content_type == EVENTBRIDGE_CONTENT_TYPE));
}

/// The same with a CloudEvents route (#26): published with PutRawEvents, every event is stored
/// once and in aggregate order, parses with the CloudEvents SDK, and carries its row's
/// `traceparent` both in `Metadata` and as the Distributed Tracing extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_of_replicas_killed_at_random_are_stored_once_in_order_with_their_trace() {
    use cloudevents::AttributesReader;
    let route = "format = \"cloudevents\"\nsubject = \"<$.NewImage.pk>\"";
    let events = replicas_killed_at_random(route, true).await;
    for e in &events {
        assert_eq!(e.content_type, "application/json");
        let event: cloudevents::Event = serde_json::from_slice(&e.data)
            .unwrap_or_else(|err| panic!("not a CloudEvent ({err}): {:?}", e.detail));
        let seq = row_of(e)["eventData"]["seq"].as_u64().expect("seq") as usize;
        let traceparent = common::row_traceparent(seq);
        assert_eq!(Some(event.id()), e.dedup.as_deref(), "id = the dedup id");
        assert_eq!(event.source().as_str(), "OutboxDemo.Books");
        assert_eq!(event.ty(), "BookAdded");
        assert_eq!(event.subject(), Some(event.id()));
        assert!(event.time().is_some(), "the record's creation time");
        let ext = |name: &str| event.extension(name).map(ToString::to_string);
        assert_eq!(ext("traceparent"), Some(traceparent.clone()));
        assert_eq!(ext("tracestate").as_deref(), Some(common::ROW_TRACESTATE));
        assert_eq!(
            ext("partitionkey"),
            e.group.clone(),
            "partitionkey = the group"
        );
        assert_eq!(e.metadata.get("traceparent"), Some(&traceparent));
        assert_eq!(
            e.metadata.get("tracestate").map(String::as_str),
            Some(common::ROW_TRACESTATE)
        );
    }
}

/// Writes rows of 50 aggregates in rounds while one of 3 replicas is killed (-9) each round,
/// the `book-added` route to the Custom Event Bus with `route_extra`; returns what the bus
/// stored once it all settled, checked: every row once, in order per aggregate.
async fn replicas_killed_at_random(route_extra: &str, traced_rows: bool) -> Vec<Stored> {
    const ROUNDS: usize = 6;
    const ROWS_PER_ROUND: usize = 50;
    let mut f = Fixture::new().await;
    f.aggregates = 50;
    f.traced_rows = traced_rows;
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    let config = f
        .relay_config()
        .section_keys(
            "source",
            "trace_context_attribute = \"traceparent\"\ntrace_state_attribute = \"tracestate\"",
        )
        .route_keys(PER_AGGREGATE)
        .route_keys(route_extra)
        .custom_bus(&arn, &bus.endpoint)
        .write();
    let mut relays: Vec<Relay> = (0..3).map(|_| Relay::start(&config, &f.endpoint)).collect();
    for relay in &relays {
        relay.wait_ready(DEADLINE).await;
    }
    // Answers take 300 ms, as over a slow network: a kill of the shard's owner finds calls the
    // bus has served but the owner has not heard back from, and the next owner re-sends them.
    bus.delay_answers(Duration::from_millis(300));
    for round in 0..ROUNDS {
        f.write_books(ROWS_PER_ROUND).await;
        // Kill while this round is being published: once some of its rows are stored.
        let end = Instant::now() + DEADLINE;
        while bus.events(&arn).len() <= round * ROWS_PER_ROUND && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let victim = rand::random::<u32>() as usize % relays.len();
        relays.swap_remove(victim).kill9();
        relays.push(Relay::start(&config, &f.endpoint));
    }
    let total = ROUNDS * ROWS_PER_ROUND;
    let end = Instant::now() + Duration::from_secs(120);
    let distinct_stored = |events: &[Stored]| {
        events
            .iter()
            .filter_map(|e| e.dedup.clone())
            .collect::<HashSet<_>>()
            .len()
    };
    while distinct_stored(&bus.events(&arn)) < total && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then until no replica holds anything unpublished: nothing more can come.
    for relay in &relays {
        wait_idle(relay, end).await;
    }
    let events = bus.events(&arn);
    let logs: String = relays.iter().map(Relay::log_text).collect();
    assert_eq!(
        distinct_stored(&events),
        total,
        "every row delivered:\n{logs}"
    );
    assert_eq!(events.len(), total, "no row stored twice");
    let written: HashSet<String> = f.written.iter().cloned().collect();
    let stored: HashSet<String> = events.iter().filter_map(|e| e.dedup.clone()).collect();
    assert_eq!(stored, written);
    assert_eq!(seqs_per_group(&events).len(), 50);
    assert_in_order_per_group(&events);
    eprintln!(
        "custom bus{}, 3 replicas, {ROUNDS} kills: {total} rows stored once each; {} re-sent \
         entries answered DEDUPLICATED; {} calls, the largest with {} entries",
        if route_extra.is_empty() {
            ""
        } else {
            " (cloudevents)"
        },
        bus.deduplicated(),
        bus.calls().0,
        bus.calls().1
    );
    events
}

/// Entries of 250 KB: five of them (one per aggregate, all heads of their keys) would pass
/// 1 MiB, so calls are cut by size; the bus never refuses one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_cut_at_one_mib() {
    let mut f = Fixture::new().await;
    let bus = CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    let config = f.custom_bus_config(&arn, &bus.endpoint, PER_AGGREGATE);
    // Written first, so the relay's first page holds them all: five heads at once.
    for _ in 0..12 {
        f.write_event("BookAdded", 250_000).await;
    }
    let relay = Relay::start(&config, &f.endpoint);
    let events = wait_for_events(&bus, &arn, 12).await;
    assert_eq!(events.len(), 12, "{}", relay.log_text());
    let (largest, refused) = bus.call_bytes_and_refusals();
    assert_eq!(refused, 0, "no call was refused");
    assert!(largest <= 1024 * 1024, "largest call {largest} bytes");
    assert!(
        largest > 3 * 250_000,
        "calls still carry several entries ({largest} bytes)"
    );
}
