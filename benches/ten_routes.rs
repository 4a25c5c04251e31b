//! The full in-process pipeline with 10 routes, as issue #3 measures it: an SDK stream record
//! (a seed-shaped outbox row INSERT) → Pipes JSON → stable event id → one automaton over the
//! 10 routes' filters → detail rendered for each matching route → PutEvents entry.
//! Run: `cargo bench --bench ten_routes`. Figures are recorded in BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;

use aws_sdk_dynamodbstreams::primitives::DateTime;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, StreamRecord, StreamViewType};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outbox_relay::config::Config;
use outbox_relay::pipeline::router::stable_event_id;
use outbox_relay::pipeline::Router;
use outbox_relay::stream::to_stream_record;

/// Ten routes of an outbox table: eight event types (half unmarshalled, half templated), a
/// `$or` route and an `anything-but` audit route that matches every event type but one.
fn config() -> String {
    let mut text =
        String::from("[source]\ntable_name = \"EventsTable\"\nevent_id_attribute = \"pk\"\n");
    let types = [
        "BookAdded",
        "BookRemoved",
        "AuthorAdded",
        "AuthorRemoved",
        "LoanStarted",
        "LoanEnded",
        "ReviewPosted",
        "ReviewRemoved",
    ];
    for (i, t) in types.iter().enumerate() {
        let detail = if i % 2 == 0 {
            "unmarshall = \"NewImage\"".to_owned()
        } else {
            "template = '{\"eventId\": <outbox.event-id>, \"name\": <$.NewImage.eventData.name>, \
             \"authors\": <$.NewImage.eventData.authors>, \"year\": <$.NewImage.eventData.year>}'"
                .to_owned()
        };
        text.push_str(&format!(
            "[[routes]]\nname = \"{t}\"\n\
             filters = ['{{\"eventName\": [\"INSERT\"], \"dynamodb\": {{\"NewImage\": {{\"eventType\": {{\"S\": [\"{t}\"]}}}}}}}}']\n\
             event_bus_name = \"default\"\nsource = \"OutboxDemo.Books\"\ndetail_type = \"{t}\"\n{detail}\n"
        ));
    }
    text.push_str(
        "[[routes]]\nname = \"loans\"\n\
         filters = ['{\"$or\": [{\"dynamodb\": {\"NewImage\": {\"eventType\": {\"S\": [{\"prefix\": \"Loan\"}]}}}}, {\"dynamodb\": {\"NewImage\": {\"sk\": {\"S\": [\"loan\"]}}}}]}']\n\
         event_bus_name = \"loans\"\nsource = \"OutboxDemo.Loans\"\ndetail_type = \"LoanEvent\"\nunmarshall = \"NewImage\"\n\
         [[routes]]\nname = \"audit\"\n\
         filters = ['{\"eventName\": [\"INSERT\"], \"dynamodb\": {\"NewImage\": {\"eventType\": {\"S\": [{\"anything-but\": [\"Heartbeat\", \"BookAdded\"]}]}}}}']\n\
         event_bus_name = \"audit\"\nsource = \"OutboxDemo.Audit\"\ndetail_type = \"Change\"\n\
         template = '{\"id\": <outbox.event-id>, \"type\": \"<$.dynamodb.NewImage.eventType.S>\", \"route\": \"<aws.pipes.pipe-name>\"}'\n",
    );
    text
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A seed-shaped outbox row INSERT, as the SDK hands it to the relay.
fn sdk_record(event_type: &str) -> Record {
    let data = HashMap::from([
        ("name".to_owned(), s("Team Topologies")),
        (
            "authors".to_owned(),
            AttributeValue::L(vec![s("Manuel Pais"), s("Matthew Skelton")]),
        ),
        ("year".to_owned(), AttributeValue::N("2019".into())),
    ]);
    let image = HashMap::from([
        ("pk".to_owned(), s("2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11")),
        ("sk".to_owned(), s(event_type)),
        ("eventType".to_owned(), s(event_type)),
        ("eventData".to_owned(), AttributeValue::M(data)),
        (
            "expiresAt".to_owned(),
            AttributeValue::N("1700604800".into()),
        ),
    ]);
    Record::builder()
        .event_id("7de3041dd709b024af6f29e4fa13d34c")
        .event_name(aws_sdk_dynamodbstreams::types::OperationType::Insert)
        .event_version("1.1")
        .event_source("aws:dynamodb")
        .aws_region("us-east-1")
        .dynamodb(
            StreamRecord::builder()
                .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
                .keys("pk", s("2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11"))
                .keys("sk", s(event_type))
                .set_new_image(Some(image))
                .sequence_number("111100000000017454423012")
                .size_bytes(231)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build(),
        )
        .build()
}

/// The binary's allocator, so the figures are the relay's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/EventsTable/stream/x";

/// What the worker does per record, minus the network.
fn full(router: &Router, record: &Record) -> usize {
    let converted = to_stream_record(record).expect("has a sequence number");
    let json = converted.json();
    let id = stable_event_id(&json, Some("pk"));
    router.route(&json, ARN, &id, converted.created_at).len()
}

fn ten_routes(c: &mut Criterion) {
    let config = Config::from_toml(&config()).expect("valid config");
    assert_eq!(config.routes.len(), 10);
    let router = config
        .router_for(&config.source.streams()[0])
        .expect("valid patterns");
    // BookRemoved: its own route + audit. LoanStarted: its own, loans and audit. Heartbeat:
    // no route.
    let cases = [
        ("matching_2_routes", sdk_record("BookRemoved"), 2),
        ("matching_3_routes", sdk_record("LoanStarted"), 3),
        ("matching_none", sdk_record("Heartbeat"), 0),
    ];
    let mut g = c.benchmark_group("ten_routes");
    g.throughput(Throughput::Elements(1));
    for (name, record, expected) in &cases {
        assert_eq!(full(&router, record), *expected, "{name}");
        g.bench_function(format!("full/{name}"), |b| {
            b.iter(|| full(&router, black_box(record)));
        });
    }
    // The cost split, on the 2-route record.
    let record = &cases[0].1;
    let converted = to_stream_record(record).expect("has a sequence number");
    let json = converted.json();
    let bytes = router.matcher_input(&json);
    g.bench_function("split/record_to_json", |b| {
        b.iter(|| to_stream_record(black_box(record)));
    });
    g.bench_function("split/serialize_for_matcher", |b| {
        b.iter(|| router.matcher_input(black_box(&json)));
    });
    g.bench_function("split/match", |b| {
        b.iter(|| router.matching(black_box(&json), black_box(&bytes)));
    });
    let id = stable_event_id(&json, Some("pk"));
    g.bench_function("split/match_and_render", |b| {
        b.iter(|| router.route(black_box(&json), ARN, &id, converted.created_at));
    });
    g.finish();
}

criterion_group!(benches, ten_routes);
criterion_main!(benches);
