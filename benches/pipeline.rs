//! The in-process pipeline: record -> filter -> transform -> PutEvents entry, and batching.
//! Run: `cargo bench --bench pipeline`. Figures are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outbox_relay::config::Config;
use outbox_relay::pipeline::{Router, TraceContext};
use serde_json::{json, Value};

/// The binary's allocator, so the figures are the relay's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A seed-shaped outbox row INSERT as DynamoDB Streams delivers it (Pipes JSON shape).
fn outbox_insert(event_type: &str) -> Value {
    json!({
        "eventID": "7de3041dd709b024af6f29e4fa13d34c",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_700_000_000,
            "Keys": {"pk": {"S": "2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11"}, "sk": {"S": event_type}},
            "NewImage": {
                "pk": {"S": "2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11"},
                "sk": {"S": event_type},
                "eventType": {"S": event_type},
                "eventData": {"M": {
                    "name": {"S": "Team Topologies"},
                    "authors": {"L": [{"S": "Manuel Pais"}, {"S": "Matthew Skelton"}]},
                    "year": {"N": "2019"}
                }},
                "expiresAt": {"N": "1700604800"}
            },
            "SequenceNumber": "111100000000017454423012",
            "SizeBytes": 231,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/EventsTable/stream/2026-01-01T00:00:00.000"
    })
}

fn router() -> Router {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.toml"))
        .expect("config/local.toml");
    let config = Config::from_toml(&text).expect("valid config");
    config
        .router_for(&config.source.streams()[0])
        .expect("valid patterns")
}

fn pipeline(c: &mut Criterion) {
    let router = router();
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/EventsTable/stream/x";
    let created = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let matching = outbox_insert("BookAdded");
    let other = outbox_insert("SomethingElse");
    let matching_bytes = router.matcher_input(&matching);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_matching_record", |b| {
        b.iter(|| router.route(black_box(&matching), arn, "evt", created));
    });
    // Trace context on (issue #16): the row carries a traceparent; it is parsed and converted
    // to the X-Ray TraceHeader, and travels with the entry.
    let mut traced = matching.clone();
    traced["dynamodb"]["NewImage"]["traceparent"] =
        json!({"S": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
    g.bench_function("route_matching_record_with_trace_context", |b| {
        b.iter(|| {
            let trace = TraceContext::of_record(black_box(&traced), "traceparent")
                .ok()
                .flatten();
            router.route_traced(&traced, arn, "evt", created, trace.as_ref())
        });
    });
    g.bench_function("route_non_matching_record", |b| {
        b.iter(|| router.route(black_box(&other), arn, "evt", created));
    });
    // What the matcher reads: the fields the routes' patterns name (issue #28; before, the
    // whole record, `serde_json::to_vec`, which `serialize_whole_record` still measures).
    g.bench_function("serialize_record", |b| {
        b.iter(|| router.matcher_input(black_box(&matching)));
    });
    g.bench_function("serialize_whole_record", |b| {
        b.iter(|| serde_json::to_vec(black_box(&matching)).expect("json"));
    });
    g.bench_function("match_only", |b| {
        b.iter(|| router.matching(black_box(&matching), black_box(&matching_bytes)));
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
