//! The books demo end to end, for both seed variants: rows written by the demo's API (the
//! `book-api` handler) or by a plain table write (CDC), relayed by the real `outbox-relay`
//! binary with the shipped configs (`config/outbox.toml`, `config/cdc.toml`), published to a
//! bus whose rule feeds a queue, and applied by the `book-consumer` handler, asserted from the
//! tables.

mod common;

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use book_consumer::{settings, Consumer, Handled};
use common::{unique, Fixture, Relay, RelayConfig};
use lambda_http::http::{Method, StatusCode};

const DEADLINE: Duration = Duration::from_secs(60);

/// The trace of the demo's POST (the W3C recommendation's example).
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A shipped config pointed at this fixture's tables and bus (the emulator is one region).
fn shipped_config(f: &Fixture, file: &str, source_table: &str) -> RelayConfig {
    RelayConfig::from_file(&std::path::Path::new(common::REPO).join(file), f.dir.path())
        .set("aws", "region", "us-east-1")
        .source("table_name", source_table)
        .set("leases", "table_name", f.lease_table.as_str())
        .retarget_routes("event_bus_name", "default", &f.bus)
        .set("http", "listen", "127.0.0.1:0")
}

async fn table(ddb: &aws_sdk_dynamodb::Client, prefix: &str, key: &str, stream: bool) -> String {
    let name = unique(prefix);
    let mut create = ddb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("complete"),
        );
    if stream {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("complete"),
        );
    }
    create.send().await.expect("create table");
    name
}

/// The consumer side: PresentationTable, the idempotency table, the handler.
struct ConsumerSide {
    presentation: String,
    consumer: Consumer,
}

impl ConsumerSide {
    async fn new(f: &Fixture) -> Self {
        let presentation = table(&f.ddb, "presentation", "name", false).await;
        let idempotency = table(&f.ddb, "idempotency", "id", false).await;
        let consumer = Consumer::new(
            f.ddb.clone(),
            &presentation,
            idempotency,
            settings(Duration::from_secs(30)),
        );
        Self {
            presentation,
            consumer,
        }
    }

    /// Receives the next event of `detail_type` from the queue (what the local runner does)
    /// and hands it to the consumer; returns the event and what the consumer did.
    async fn next(
        &self,
        f: &Fixture,
        detail_type: &str,
    ) -> (EventBridgeEvent<serde_json::Value>, Handled) {
        let end = Instant::now() + DEADLINE;
        loop {
            for received in f.receive_batch(1).await {
                let event: EventBridgeEvent<serde_json::Value> =
                    serde_json::from_value(received.body).expect("an EventBridge event");
                if event.detail_type == detail_type {
                    let handled = self.consumer.handle(&event).await.expect("handled");
                    return (event, handled);
                }
            }
            assert!(Instant::now() < end, "no {detail_type} within {DEADLINE:?}");
        }
    }

    async fn book(
        &self,
        f: &Fixture,
        name: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        f.ddb
            .get_item()
            .table_name(&self.presentation)
            .key("name", AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }
}

fn request(method: Method, body: &str) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri("/book")
        .body(lambda_http::Body::from(body))
        .expect("request")
}

/// `POST /book` with the demo's `input.json` and a `traceparent` header: the 201's body.
async fn post_demo_book(api: &book_api::Api) -> serde_json::Value {
    let input = std::fs::read_to_string(
        std::path::Path::new(common::REPO).join("lambdas/book-api/input.json"),
    )
    .expect("input.json");
    let mut post = request(Method::POST, &input);
    post.headers_mut().insert(
        "traceparent",
        lambda_http::http::HeaderValue::from_static(TRACEPARENT),
    );
    let response = api.handle(post).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    serde_json::from_slice(response.body().as_ref()).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_variant_post_relay_consume_delete() {
    let f = Fixture::new().await;
    let side = ConsumerSide::new(&f).await;
    let config = shipped_config(&f, "config/outbox.toml", &f.events_table).write();
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    let api = book_api::Api::new(f.ddb.clone(), &f.books_table, &f.events_table);

    let created = post_demo_book(&api).await;

    let (event, handled) = side.next(&f, "BookAdded").await;
    // The request's trace went through the outbox row and the relay into the event.
    assert_eq!(event.detail["traceparent"], TRACEPARENT);
    assert_eq!(
        book_consumer::trace_id(&event).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the consumer continues the API's trace"
    );
    assert_eq!(
        handled,
        Handled::Applied(
            "Team Topologies (2019) by Manuel Pais, Matthew Skelton was added!".into()
        )
    );
    // The event id the API returned is the one the consumer deduplicates on.
    assert_eq!(event.detail["eventId"], created["eventId"]);
    let book = side.book(&f, "Team Topologies").await.expect("presented");
    assert_eq!(book["year"], AttributeValue::N("2019".into()));
    // The same event delivered again: no second side effect.
    assert_eq!(
        side.consumer.handle(&event).await.expect("handled"),
        Handled::Duplicate
    );
    assert_eq!(book["timesApplied"], AttributeValue::N("1".into()));
    assert_eq!(
        side.book(&f, "Team Topologies").await.expect("presented")["timesApplied"],
        AttributeValue::N("1".into())
    );

    let response = api
        .handle(request(Method::DELETE, r#"{"name": "Team Topologies"}"#))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, handled) = side.next(&f, "BookRemoved").await;
    assert_eq!(
        handled,
        Handled::Applied("Team Topologies was removed!".into())
    );
    assert!(side.book(&f, "Team Topologies").await.is_none());

    // A row whose trace context is malformed still goes out, without it, and is counted.
    f.ddb
        .put_item()
        .table_name(&f.events_table)
        .item("pk", AttributeValue::S("evt-bad-trace".into()))
        .item("sk", AttributeValue::S("BookAdded".into()))
        .item("eventType", AttributeValue::S("BookAdded".into()))
        .item(
            "eventData",
            AttributeValue::M(std::collections::HashMap::from([
                ("name".to_owned(), AttributeValue::S("Dune".into())),
                ("year".to_owned(), AttributeValue::N("1965".into())),
                (
                    "authors".to_owned(),
                    AttributeValue::L(vec![AttributeValue::S("Frank Herbert".into())]),
                ),
            ])),
        )
        .item("traceparent", AttributeValue::S("not-a-trace".into()))
        .send()
        .await
        .expect("put row");
    let (event, _) = side.next(&f, "BookAdded").await;
    assert_eq!(event.detail["eventId"], "evt-bad-trace");
    // The unmarshalled row shows its own attribute as it is; the relay added no trace.
    relay
        .wait_metric("outbox_relay_trace_context_invalid_total", 1.0, DEADLINE)
        .await;
    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}

/// What a subscriber of the Custom Event Bus with the `RAW` transformer gets for a stored
/// entry: its data as published (here a CloudEvent).
fn delivered(stored: &common::eventsv2::Stored) -> serde_json::Value {
    serde_json::from_slice(&stored.data).expect("JSON data")
}

/// The outbox variant with `config/custom-bus.toml`: the API's rows reach the Custom Event Bus
/// emulator as CloudEvents (PutRawEvents) with the book as the group and the row's event id as
/// the dedup id and CloudEvent id, the request's trace in Metadata and as the extension, and
/// the consumer applies what the bus stored, in the group's order, continuing the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_variant_on_a_custom_event_bus() {
    let f = Fixture::new().await;
    let side = ConsumerSide::new(&f).await;
    let bus = common::eventsv2::CustomBusEmulator::start().await;
    let arn = bus.create_bus("books");
    let config = shipped_config(&f, "config/custom-bus.toml", &f.events_table)
        .retarget_routes(
            "event_bus_arn",
            "arn:aws:events:eu-north-1:123456789012:event-busv2/books/abcdefghij0123456789abcde",
            &arn,
        )
        .eventsv2_endpoint(&bus.endpoint)
        .write();
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    let api = book_api::Api::new(f.ddb.clone(), &f.books_table, &f.events_table);
    let created = post_demo_book(&api).await;
    let response = api
        .handle(request(Method::DELETE, r#"{"name": "Team Topologies"}"#))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let end = Instant::now() + DEADLINE;
    while bus.events(&arn).len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = bus.events(&arn);
    assert_eq!(stored.len(), 2, "{}", relay.log_text());
    // One group, the book; added before removed; the dedup id is the row's event id.
    assert!(stored
        .iter()
        .all(|e| e.group.as_deref() == Some("Team Topologies")));
    let events: Vec<cloudevents::Event> = stored
        .iter()
        .map(|e| serde_json::from_slice(&e.data).expect("a CloudEvent"))
        .collect();
    {
        use cloudevents::AttributesReader;
        assert_eq!(events[0].ty(), "BookAdded");
        assert_eq!(events[1].ty(), "BookRemoved");
        assert_eq!(Some(events[0].id()), created["eventId"].as_str());
        assert_eq!(stored[0].dedup.as_deref(), created["eventId"].as_str());
        assert_eq!(events[0].subject(), Some("Team Topologies"));
        // The request's trace: in Metadata and as the Distributed Tracing extension.
        assert_eq!(
            events[0].extension("traceparent").map(ToString::to_string),
            Some(TRACEPARENT.to_owned())
        );
    }
    assert!(stored.iter().all(|e| e.content_type == "application/json"));
    assert_eq!(
        stored[0].metadata.get("traceparent").map(String::as_str),
        Some(TRACEPARENT)
    );
    assert!(stored[0].sequence < stored[1].sequence);

    // A FIFO subscriber (RAW transformer) hands them to the consumer in that order.
    let added = delivered(&stored[0]);
    assert_eq!(
        side.consumer
            .handle_json(added.clone())
            .await
            .expect("handled"),
        Handled::Applied(
            "Team Topologies (2019) by Manuel Pais, Matthew Skelton was added!".into()
        )
    );
    assert_eq!(
        side.consumer.handle_json(added).await.expect("handled"),
        Handled::Duplicate
    );
    assert!(side.book(&f, "Team Topologies").await.is_some());
    assert_eq!(
        side.consumer
            .handle_json(delivered(&stored[1]))
            .await
            .expect("handled"),
        Handled::Applied("Team Topologies was removed!".into())
    );
    assert!(side.book(&f, "Team Topologies").await.is_none());
    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_variant_insert_relay_consume_remove() {
    let f = Fixture::new().await;
    let side = ConsumerSide::new(&f).await;
    let books = table(&f.ddb, "cdc-books", "name", true).await;
    let config = shipped_config(&f, "config/cdc.toml", &books).write();
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;

    f.ddb
        .put_item()
        .table_name(&books)
        .item("name", AttributeValue::S("Accelerate".into()))
        .item(
            "authors",
            AttributeValue::L(
                ["Nicole Forsgren", "Jez Humble", "Gene Kim"]
                    .map(|a| AttributeValue::S(a.into()))
                    .to_vec(),
            ),
        )
        .item("year", AttributeValue::N("2018".into()))
        .send()
        .await
        .expect("put book");
    let (event, handled) = side.next(&f, "BookAdded").await;
    assert_eq!(
        handled,
        Handled::Applied(
            "Accelerate (2018) by Nicole Forsgren, Jez Humble, Gene Kim was added!".into()
        )
    );
    assert_eq!(event.detail["publishedYear"], 2018);
    assert_eq!(
        side.consumer.handle(&event).await.expect("handled"),
        Handled::Duplicate
    );

    f.ddb
        .delete_item()
        .table_name(&books)
        .key("name", AttributeValue::S("Accelerate".into()))
        .send()
        .await
        .expect("delete book");
    let (_, handled) = side.next(&f, "BookRemoved").await;
    assert_eq!(handled, Handled::Applied("Accelerate was removed!".into()));
    assert!(side.book(&f, "Accelerate").await.is_none());
    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}

/// The CDC variant's first load: the books a table holds now become `BookAdded` events
/// (`outbox-relay backfill`, with the shipped config), each applied once by the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_variant_backfill_publishes_every_book_the_table_holds() {
    let f = Fixture::new().await;
    let side = ConsumerSide::new(&f).await;
    let books = table(&f.ddb, "cdc-books", "name", true).await;
    for n in 0..300 {
        f.ddb
            .put_item()
            .table_name(&books)
            .item("name", AttributeValue::S(format!("Book {n:03}")))
            .item(
                "authors",
                AttributeValue::L(vec![AttributeValue::S("A. Author".into())]),
            )
            .item("year", AttributeValue::N("2019".into()))
            .send()
            .await
            .expect("put book");
    }
    let config = shipped_config(&f, "config/cdc.toml", &books).write();
    let (code, out, err) = common::relay_cmd(&config, &f.endpoint, &["backfill"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("300 scanned, published 300"), "{err}");
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 300)
        .await;
    received.extend(f.receive_batch(1).await);
    assert_eq!(received.len(), 300, "each book once");
    let mut applied = std::collections::BTreeSet::new();
    for r in &received {
        let event: EventBridgeEvent<serde_json::Value> =
            serde_json::from_value(r.body.clone()).expect("an EventBridge event");
        assert_eq!(event.detail_type, "BookAdded");
        match side.consumer.handle(&event).await.expect("handled") {
            Handled::Applied(message) => assert!(applied.insert(message)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(applied.len(), 300);
    assert!(side.book(&f, "Book 299").await.is_some());
}
