//! The in-process pipeline: record -> filter -> transform -> PutEvents entry, and batching.
//! Also one GetRecords answer of 1,000 records into our records, both ways, and one PutEvents
//! call through the SDK on each kind of bus (what a call costs the relay besides the network).
//! Run: `cargo bench --bench pipeline`. Figures are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outbox_relay::config::Config;
use outbox_relay::pipeline::pattern::fields::Parsed;
use outbox_relay::pipeline::{Bus, Entry, ImageTexts, RecordPolicy, Router, TraceContext};
use outbox_relay::publish::{EventBridgePublisher, EventPublisher};
use outbox_relay::stream::{to_stream_record, DynamoDbStreams, ParsedBy};
use serde_json::{json, Value};

mod common;

use common::{custom_bus_answer, get_records_body, outbox_insert};

/// The binary's allocator, so the figures are the relay's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A record of the seed's books table as DynamoDB Streams delivers it: a book's INSERT (issue
/// #28's workload, `config/cdc.toml`).
fn seed_insert() -> Value {
    json!({
        "eventID": "s0-e1", "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "eu-north-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_764_547_200,
            "Keys": {"name": {"S": "Book 0-1"}},
            "NewImage": {
                "name": {"S": "Book 0-1"},
                "authors": {"SS": ["Manuel Pais", "Matthew Skelton"]},
                "year": {"N": "2019"}
            },
            "SequenceNumber": "1000001", "SizeBytes": 120,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

fn router() -> Router {
    router_of("config/local.toml")
}

fn router_of(file: &str) -> Router {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .expect("the config file");
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
            router.route_traced(
                &traced,
                ImageTexts::default(),
                arn,
                "evt",
                created,
                trace.as_ref(),
            )
        });
    });
    // The seed's job (`config/cdc.toml`): BookAdded's detail is a template reading three
    // attributes of the new image.
    let seed_router = router_of("config/cdc.toml");
    let seed = seed_insert();
    g.bench_function("route_seed_insert_template", |b| {
        b.iter(|| seed_router.route(black_box(&seed), arn, "evt", created));
    });
    // The window's way (issue #28): the record's text parsed with only what routing reads, then
    // routed. `NewImage` is read only unmarshalled, so its text is kept and unmarshalled straight
    // from it; `..._typed_image` parses it into a typed tree first, as before.
    let policy = RecordPolicy::default();
    let seed_text = seed.to_string();
    let reads = policy.reads(&seed_router);
    let mut reads_typed = reads.clone();
    reads_typed.add_path(&["dynamodb", "NewImage"]);
    for (name, reads) in [
        ("parse_and_route_seed_insert", &reads),
        ("parse_and_route_seed_insert_typed_image", &reads_typed),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let Parsed { mut tree, images } = reads.parse(black_box(&seed_text)).expect("json");
                policy.route(&seed_router, &mut tree, images, arn, created)
            });
        });
    }
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

/// An HTTP client that answers every call with `body` (status 200): the SDK's whole reading
/// of a GetRecords answer, without a network.
#[derive(Debug, Clone)]
struct Canned(bytes::Bytes);

impl HttpConnector for Canned {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        let status = 200.try_into().expect("a status");
        HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(self.0.clone()))))
    }
}

/// One GetRecords answer into our records (issue #28): the SDK's deserializer then
/// `to_stream_record` (before), and `stream::wire`'s one parse of the body (now).
fn get_records(c: &mut Criterion) {
    let body = bytes::Bytes::from(get_records_body());
    let canned = Canned(body);
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("id", "secret", None, None, "bench"))
        .endpoint_url("http://127.0.0.1:9")
        .http_client(http_client_fn(move |_, _| {
            SharedHttpConnector::new(canned.clone())
        }))
        .build();
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(config);
    let tables = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build(),
    );
    let source = DynamoDbStreams::new(streams.clone(), tables);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let mut g = c.benchmark_group("get_records_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("sdk_then_to_stream_record", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let out = streams
                    .get_records()
                    .shard_iterator("it")
                    .send()
                    .await
                    .expect("an answer");
                let records: Vec<_> = out.records().iter().filter_map(to_stream_record).collect();
                assert_eq!(records.len(), 1000);
                records
            })
        });
    });
    g.bench_function("wire_parse", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (page, by) = source.read_page("it", 1000).await.expect("an answer");
                assert_eq!((page.records.len(), by), (1000, ParsedBy::Relay));
                page
            })
        });
    });
    // Records are held as text and parsed into a tree when routed: the two together are what
    // `wire_parse` measured when it built the trees itself.
    g.bench_function("wire_parse_then_trees", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (page, _) = source.read_page("it", 1000).await.expect("an answer");
                for record in &page.records {
                    drop(black_box(record.json()));
                }
                page
            })
        });
    });
    g.finish();
}

/// One PutEvents call through the SDK, answered at once by an in-process HTTP client (issue
/// #28): the SDK's per-call work (endpoint, SigV4, serialization, the answer's parse) and the
/// relay's translation, without a network. A classic bus takes 10 entries per call, a Custom
/// Event Bus 100; figures are per entry. The call of one entry shows the part of a call that
/// does not grow with its entries.
fn put_events(c: &mut Criterion) {
    let router = router();
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/EventsTable/stream/x";
    let created = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let entry: Entry = router
        .route(&outbox_insert("BookAdded"), arn, "evt", created)
        .into_iter()
        .next()
        .expect("a route")
        .expect("an entry");
    let custom = Entry {
        bus: Bus::Custom(
            "arn:aws:events:us-east-1:123456789012:event-busv2/b/abcdefghij0123456789abcde".into(),
        ),
        ..entry.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("put_events");
    for (name, entries) in [
        ("classic_bus_1_entry", vec![entry.clone()]),
        ("classic_bus_10_entries", vec![entry; 10]),
        ("custom_bus_100_entries", vec![custom; 100]),
    ] {
        let publisher = answering_publisher(entries.len());
        g.throughput(Throughput::Elements(entries.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let outcome = publisher.put_events(&entries).await.expect("an answer");
                    assert!(outcome.failed.is_empty());
                    outcome
                })
            });
        });
    }
    g.finish();
}

/// A publisher whose clients answer every PutEvents call with `n` published entries: JSON on
/// the classic bus, Smithy RPC v2 CBOR on a Custom Event Bus.
fn answering_publisher(n: usize) -> EventBridgePublisher {
    let classic = json!({
        "FailedEntryCount": 0,
        "Entries": (0..n).map(|i| json!({"EventId": format!("id-{i}")})).collect::<Vec<_>>(),
    });
    let custom = custom_bus_answer((0..n).map(|i| format!("id-{i}")));
    let classic = Canned(bytes::Bytes::from(classic.to_string()));
    let custom = Canned(bytes::Bytes::from(custom));
    let credentials = Credentials::new("id", "secret", None, None, "bench");
    EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::Config::builder()
                .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials.clone())
                .endpoint_url("http://127.0.0.1:9")
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(classic.clone())
                }))
                .build(),
        ),
        aws_sdk_eventbridgev2::Client::from_conf(
            aws_sdk_eventbridgev2::Config::builder()
                .behavior_version(aws_sdk_eventbridgev2::config::BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials)
                .endpoint_url("http://127.0.0.1:9")
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(custom.clone())
                }))
                .build(),
        ),
    )
}

criterion_group!(benches, pipeline, get_records, put_events);
criterion_main!(benches);
