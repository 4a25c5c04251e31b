//! End-to-end tests against the moto emulator: the real binary reads a real (emulated)
//! DynamoDB stream and publishes to a bus whose rule feeds an SQS queue we read back.

mod common;

use std::time::Duration;

use common::{distinct, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_outbox_rows_arrive_once_each_in_stream_order() {
    let mut f = Fixture::new().await;
    // Strict per-shard order: one PutEvents call in flight.
    let config = f.strict_config("", "");
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    // The image's HEALTHCHECK command answers healthy for a running relay (the test config
    // listens on port 0, so the probe is pointed at the port the relay logged).
    let healthcheck = std::process::Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["healthcheck", "--config"])
        .arg(&config)
        .env(
            "OUTBOX_RELAY__HTTP__LISTEN",
            relay.http.trim_start_matches("http://"),
        )
        .output()
        .expect("run healthcheck");
    assert!(
        healthcheck.status.success(),
        "{}",
        String::from_utf8_lossy(&healthcheck.stderr)
    );
    // Ready means reading: the new shard's lease was taken in the round that found it.
    let leases = f.leases().await;
    assert!(
        leases.len() == 1 && leases[0].contains_key("leaseOwner"),
        "owned when ready: {leases:?}"
    );
    let started = std::time::Instant::now();
    let ids = f.write_books(200).await;

    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 200)
        .await;
    let elapsed = started.elapsed();
    // Nothing extra arrives after the 200th: one more (empty) receive.
    received.extend(f.receive_batch(1).await);

    assert_eq!(
        received.len(),
        200,
        "exactly once in a run without restarts"
    );
    let got: Vec<&str> = received.iter().map(common::Received::event_id).collect();
    assert_eq!(
        got,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "stream order"
    );
    let first = &received[0].body;
    assert_eq!(first["source"], "OutboxDemo.Books");
    assert_eq!(first["detail-type"], "BookAdded");
    assert_eq!(first["detail"]["eventType"], "BookAdded");
    assert_eq!(first["detail"]["eventData"]["name"], "Book 0");
    assert_eq!(first["detail"]["eventData"]["year"], 2019);
    assert_eq!(first["detail"]["eventData"]["authors"][0], "A. Author");

    // The telemetry contract: what happened is what the metrics say.
    assert_eq!(relay.metric("outbox_relay_records_read_total").await, 200.0);
    assert_eq!(
        relay.metric("outbox_relay_events_published_total").await,
        200.0
    );
    assert_eq!(relay.metric("outbox_relay_lag_seconds_count").await, 200.0);
    assert!(relay.metric("outbox_relay_put_events_requests_total").await >= 20.0);
    assert_eq!(relay.metric("outbox_relay_leases_owned").await, 1.0);
    assert!(relay.metric("outbox_relay_checkpoints_total").await >= 1.0);

    // Figures for BENCHMARKS.md: write (client clock) -> enqueued by PutEvents (moto clock).
    let mut lags: Vec<u64> = received
        .iter()
        .map(|r| r.sent_ms.saturating_sub(r.written_ms()))
        .collect();
    lags.sort_unstable();
    eprintln!(
        "e2e: 200 rows in {:.2}s ({:.0} rows/s incl. writes); lag p50 {} ms, p99 {} ms, max {} ms",
        elapsed.as_secs_f64(),
        200.0 / elapsed.as_secs_f64(),
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1]
    );
}

/// Starts a relay, writes 60 rows and returns once 20 of them arrived: a relay mid-flow.
async fn relay_mid_flow(
    f: &mut Fixture,
    config: &std::path::Path,
) -> (Relay, Vec<common::Received>) {
    let relay = Relay::start(config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(60).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 20)
        .await;
    (relay, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flow_checkpoints_releases_and_resumes_without_resending() {
    sigterm_mid_flow(true).await;
}

/// The same with calls in flight per aggregate: per aggregate, first deliveries in order, and
/// still nothing re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flow_with_calls_in_flight_per_aggregate_resends_nothing() {
    sigterm_mid_flow(false).await;
}

/// `strict`: one call in flight per shard, and the whole shard's order is checked.
async fn sigterm_mid_flow(strict: bool) {
    let mut f = Fixture::new().await;
    let config = if strict {
        f.strict_config("", "")
    } else {
        f.per_aggregate_config("")
    };
    let (relay, mut received) = relay_mid_flow(&mut f, &config).await;

    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "clean shutdown exits 0:\n{log}");
    assert!(log.contains("Leases released; shutdown complete."), "{log}");
    let leases = f.leases().await;
    assert_eq!(leases.len(), 1);
    let workers = f.lease_table_items().await.len() - leases.len();
    assert_eq!(workers, 0, "the stopped relay left the worker registry");
    assert!(
        !leases[0].contains_key("leaseOwner"),
        "lease released: {leases:?}"
    );

    f.write_books(40).await;
    let relay = Relay::start(&config, &f.endpoint);
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 100)
        .await;
    received.extend(f.receive_batch(1).await);
    let (ids, dups) = distinct(&received);
    assert_eq!(ids.len(), 100, "every row delivered");
    assert_eq!(
        dups, 0,
        "a clean stop re-sends nothing before its checkpoint"
    );
    if strict {
        let seqs: Vec<u64> = received.iter().map(common::Received::seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order kept across the restart"
        );
    } else {
        assert_eq!(
            common::first_deliveries_in_order_per_aggregate(&received),
            common::AGGREGATES
        );
    }
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flow_loses_nothing() {
    kill_9_mid_flow(true).await;
}

/// The same with calls in flight per aggregate: nothing lost, per aggregate first deliveries
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flow_with_calls_in_flight_per_aggregate_loses_nothing() {
    kill_9_mid_flow(false).await;
}

async fn kill_9_mid_flow(strict: bool) {
    let mut f = Fixture::new().await;
    let config = if strict {
        f.strict_config("", "")
    } else {
        f.per_aggregate_config("")
    };
    let (relay, mut received) = relay_mid_flow(&mut f, &config).await;
    relay.kill9();

    f.write_books(40).await;
    // The dead owner's lease expires after lease_duration (3 s), then the new process takes it.
    let relay = Relay::start(&config, &f.endpoint);
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 100)
        .await;
    let (ids, dups) = distinct(&received);
    assert_eq!(ids.len(), 100, "every row delivered");
    let expected: std::collections::HashSet<_> = f.written.iter().cloned().collect();
    assert_eq!(ids, expected);
    eprintln!("kill -9 (strict: {strict}): {dups} duplicate deliveries (the uncheckpointed tail)");
    assert!(relay.log_text().contains("Lease taken."));
    if !strict {
        assert_eq!(
            common::first_deliveries_in_order_per_aggregate(&received),
            common::AGGREGATES
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_position_applies_to_a_shard_without_checkpoint() {
    // TRIM_HORIZON: rows written before the relay first started are relayed.
    let mut f = Fixture::new().await;
    f.write_books(5).await;
    let relay = Relay::start(
        &f.config("starting_position = \"TRIM_HORIZON\""),
        &f.endpoint,
    );
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 5)
        .await;
    drop(relay);

    // LATEST: they are not; only rows written after the reader got its iterator are.
    let mut f = Fixture::new().await;
    f.write_books(5).await;
    let relay = Relay::start(&f.config("starting_position = \"LATEST\""), &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    // The reader has its iterator once it has polled.
    relay
        .wait_metric("outbox_relay_get_records_requests_total", 1.0, DEADLINE)
        .await;
    let later = f.write_books(3).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 3)
        .await;
    received.extend(f.receive_batch(1).await);
    let got: Vec<_> = received.iter().map(|r| r.event_id().to_owned()).collect();
    assert_eq!(got, later);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_emulator_keeps_the_relay_unready_until_it_comes_up() {
    // A port with nothing listening (bound, then released).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        r#"
[source]
table_name = "EventsLater"
[publisher]
initial_backoff = "100ms"
max_backoff = "1s"
[[routes]]
name = "all"
event_bus_name = "bus"
source = "S"
detail_type = "T"
unmarshall = "NewImage"
[http]
listen = "127.0.0.1:0"
[log]
format = "json"
"#,
    )
    .expect("write config");
    let relay = Relay::start_with_env(&config, &endpoint, &[("AWS_REGION", "us-east-1")]);

    // Not ready, alive, and saying why, while nothing answers.
    let end = std::time::Instant::now() + DEADLINE;
    while !relay.log_text().contains("Start-up failed") {
        assert!(
            std::time::Instant::now() < end,
            "no start-up failure logged:\n{}",
            relay.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.get("/readyz").await.0, 503);
    assert_eq!(relay.get("/healthz").await.0, 200);

    // Bring up an emulator on that very port, then the table the relay waits for.
    let moto = std::process::Command::new(
        std::path::Path::new(common::REPO).join(".venv/bin/moto_server"),
    )
    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start moto (installed by scripts/dev-stack)");
    let _moto = KillOnDrop(moto);
    let f = loop {
        // The fixture's first call fails until moto listens.
        if reqwest::get(format!("{endpoint}/moto-api/data.json"))
            .await
            .is_ok()
        {
            break Fixture::at(&endpoint).await;
        }
        assert!(std::time::Instant::now() < end, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    f.ddb
        .create_table()
        .table_name("EventsLater")
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
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewImage)
                .build()
                .expect("complete"),
        )
        .send()
        .await
        .expect("create table");
    relay.wait_ready(DEADLINE).await;
    assert!(!relay.log_text().contains("panicked"));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about 15 s), run by scripts/bench"]
async fn steady_low_rate_lag() {
    let mut f = Fixture::new().await;
    let relay = Relay::start_with_env(
        &f.config(""),
        &f.endpoint,
        &[("OUTBOX_RELAY__SOURCE__POLL_INTERVAL", "250ms")],
    );
    relay.wait_ready(DEADLINE).await;
    // 60 rows at 5 rows/s: the pacing is the load, not an assertion.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for _ in 0..60 {
        tick.tick().await;
        f.write_books(1).await;
    }
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 60)
        .await;
    let mut lags: Vec<u64> = received
        .iter()
        .map(|r| r.sent_ms.saturating_sub(r.written_ms()))
        .collect();
    lags.sort_unstable();
    println!(
        "emulator steady: 60 rows at 5 rows/s, poll_interval 250ms: lag p50 {} ms, p99 {} ms, max {} ms",
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1]
    );
}

/// `[aws.endpoints]` win over `aws.endpoint_url`: with the global endpoint pointing at nothing
/// and every service the relay uses overridden to the emulator, rows still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_service_endpoints_override_the_global_endpoint() {
    let mut f = Fixture::new().await;
    let config = f.config("");
    let endpoint = f.endpoint.clone();
    let relay = Relay::start_with_env(
        &config,
        "http://127.0.0.1:9",
        &[
            ("OUTBOX_RELAY__AWS__ENDPOINTS__DYNAMODB", endpoint.as_str()),
            (
                "OUTBOX_RELAY__AWS__ENDPOINTS__DYNAMODBSTREAMS",
                endpoint.as_str(),
            ),
            (
                "OUTBOX_RELAY__AWS__ENDPOINTS__EVENTBRIDGE",
                endpoint.as_str(),
            ),
            ("OUTBOX_RELAY__AWS__ENDPOINTS__SQS", endpoint.as_str()),
        ],
    );
    relay.wait_ready(DEADLINE).await;
    let ids = f.write_books(3).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 3)
        .await;
    let (got, _) = distinct(&received);
    assert_eq!(got, ids.into_iter().collect());
}

/// EventBridge took 1 MB payloads on 2026-01-29 (256 KiB before): a 600 KB entry, which the
/// relay used to dead-letter as too large, is published to a classic bus whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_600_kb_entry_is_published_to_a_classic_bus() {
    let mut f = Fixture::new().await;
    // A 300 KiB row (DynamoDB items stop at 400 KB) whose template repeats it: a 600 KiB entry.
    let large_route = format!(
        r#"
[[routes]]
name = "large"
filters = ['{{"dynamodb": {{"NewImage": {{"eventType": {{"S": ["Large"]}}}}}}}}']
event_bus_name = "{bus}"
source = "OutboxDemo.Books"
detail_type = "Large"
template = '{{"id": <outbox.event-id>, "a": <$.NewImage.eventData.padding>, "b": <$.NewImage.eventData.padding>}}'
"#,
        bus = f.bus
    );
    let config = f.config_with("", &large_route);
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    let padding = 300 * 1024;
    let id = f.write_event("Large", padding).await;

    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| !r.is_empty())
        .await;
    let event = &received[0].body;
    assert_eq!(event["detail-type"], "Large");
    assert_eq!(event["detail"]["id"], id.as_str());
    let detail_bytes = event["detail"].to_string().len();
    assert!(
        detail_bytes > 2 * padding,
        "the whole 600 KiB detail arrived: {detail_bytes} bytes"
    );
    assert_eq!(
        relay
            .metric("outbox_relay_events_dead_lettered_total")
            .await,
        0.0
    );
    let (status, log) = relay.terminate(DEADLINE);
    assert!(status.success(), "{log}");
}

/// Issue #27: every request the relay makes to AWS is counted, by service, operation and
/// outcome (`outbox_relay_aws_requests_total`), from the SDK's own names: the stream reads,
/// the lease table's reads and writes, and PutEvents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_request_is_counted_by_service_operation_and_outcome() {
    let mut f = Fixture::new().await;
    let relay = Relay::start(&f.config(""), &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    f.write_books(3).await;
    relay
        .wait_metric("outbox_relay_events_published_total", 3.0, DEADLINE)
        .await;
    let (_, text) = relay.get("/metrics").await;
    let requests = |service: &str, operation: &str, outcome: &str| -> f64 {
        let labels = [
            format!("operation=\"{operation}\""),
            format!("outcome=\"{outcome}\""),
            format!("service=\"{service}\""),
        ];
        text.lines()
            .filter(|l| l.starts_with("outbox_relay_aws_requests_total{"))
            .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    for (service, operation) in [
        ("DynamoDB Streams", "DescribeStream"),
        ("DynamoDB Streams", "GetShardIterator"),
        ("DynamoDB Streams", "GetRecords"),
        ("DynamoDB", "Scan"),
        ("DynamoDB", "UpdateItem"),
        ("EventBridge", "PutEvents"),
    ] {
        assert!(
            requests(service, operation, "ok") >= 1.0,
            "{service} {operation} not counted:\n{text}"
        );
    }
    // Three rows: at most three PutEvents calls, none of them failed.
    let put_events = requests("EventBridge", "PutEvents", "ok");
    assert!(
        put_events <= 3.0,
        "{put_events} PutEvents requests for 3 rows"
    );
    assert_eq!(requests("EventBridge", "PutEvents", "error"), 0.0);
}

/// A `cloudevents` route on a classic bus (#26): each row arrives through moto's bus, rule and
/// queue as an EventBridge event whose detail is a CloudEvent, parsed here by the CloudEvents
/// SDK, carrying the row's trace as the Distributed Tracing extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudevents_route_on_a_classic_bus_delivers_cloudevents_in_the_detail() {
    use cloudevents::AttributesReader;
    let mut f = Fixture::new().await;
    f.traced_rows = true;
    let config = f
        .relay_config()
        .section_keys("source", "trace_context_attribute = \"traceparent\"")
        .route_keys("format = \"cloudevents\"\nsubject = \"<$.NewImage.eventData.name>\"")
        .write();
    let relay = Relay::start(&config, &f.endpoint);
    relay.wait_ready(DEADLINE).await;
    let ids = f.write_books(20).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 20)
        .await;
    assert_eq!(received.len(), 20, "{}", relay.log_text());
    // Each row its own key: arrival order is not stream order (calls in flight per shard).
    let mut got = Vec::new();
    for r in &received {
        assert_eq!(r.body["detail-type"], "BookAdded");
        let event: cloudevents::Event = serde_json::from_value(r.body["detail"].clone())
            .unwrap_or_else(|e| panic!("not a CloudEvent ({e}): {}", r.body));
        assert_eq!(event.ty(), "BookAdded");
        assert_eq!(event.source().as_str(), "OutboxDemo.Books");
        let Some(cloudevents::Data::Json(data)) = event.data() else {
            panic!("JSON data: {}", r.body);
        };
        let seq = data["eventData"]["seq"].as_u64().expect("seq") as usize;
        assert_eq!(event.id(), ids[seq], "id = the row's event id");
        assert_eq!(event.subject(), Some(format!("Book {seq}").as_str()));
        assert_eq!(
            event.extension("traceparent").map(ToString::to_string),
            Some(common::row_traceparent(seq))
        );
        got.push(event.id().to_owned());
    }
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every row once");
    let (status, log) = relay.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}

/// GetRecords' body is parsed by the relay itself (`stream/wire.rs`), not by the SDK: on the
/// emulator's real answer, with every attribute type, an update and a delete, the page read
/// through `DynamoDbStreams` equals what the SDK's own deserializer and `to_stream_record`
/// make of the same bytes, and the wire parse of those bytes alone gives it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_reads_the_answer_as_the_sdk_does() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::config_bag::ConfigBag;
    use outbox_relay::stream::{
        to_stream_record, wire, DynamoDbStreams, IteratorPosition, ParsedBy, ShardSource,
    };
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Keeps the answer's body as received (read after the SDK loaded it).
    #[derive(Debug, Clone, Default)]
    struct Body(Arc<Mutex<Vec<u8>>>);
    impl Intercept for Body {
        fn name(&self) -> &'static str {
            "Body"
        }
        fn read_after_attempt(
            &self,
            context: &FinalizerInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
            if let Some(bytes) = context.response().and_then(|r| r.body().bytes()) {
                *self.0.lock().expect("not poisoned") = bytes.to_vec();
            }
            Ok(())
        }
    }

    let f = Fixture::new().await;
    let blob = |b: &[u8]| aws_smithy_types::Blob::new(b.to_vec());
    let item = HashMap::from([
        ("pk".to_owned(), A::S("every-type".into())),
        ("sk".to_owned(), A::S("é \"quoted\"\n".into())),
        (
            "n".to_owned(),
            A::N("12345678901234567890.000000000000000001".into()),
        ),
        ("b".to_owned(), A::B(blob(b"\x00\xffbytes"))),
        ("bs".to_owned(), A::Bs(vec![blob(b"x"), blob(b"yz")])),
        ("ss".to_owned(), A::Ss(vec!["a".into(), "b".into()])),
        ("ns".to_owned(), A::Ns(vec!["1".into(), "-2.5E3".into()])),
        ("t".to_owned(), A::Bool(true)),
        ("z".to_owned(), A::Null(true)),
        (
            "m".to_owned(),
            A::M(HashMap::from([(
                "l".to_owned(),
                A::L(vec![
                    A::S("nested".into()),
                    A::N("0".into()),
                    A::M(HashMap::new()),
                ]),
            )])),
        ),
    ]);
    f.ddb
        .put_item()
        .table_name(&f.events_table)
        .set_item(Some(item.clone()))
        .send()
        .await
        .expect("put");
    let mut changed = item.clone();
    changed.insert("n".into(), A::N("1".into()));
    f.ddb
        .put_item()
        .table_name(&f.events_table)
        .set_item(Some(changed))
        .send()
        .await
        .expect("update");
    f.ddb
        .delete_item()
        .table_name(&f.events_table)
        .key("pk", item["pk"].clone())
        .key("sk", item["sk"].clone())
        .send()
        .await
        .expect("delete");

    let config = common::sdk_config(&f.endpoint);
    let sdk = aws_sdk_dynamodbstreams::Client::new(&config);
    let source = DynamoDbStreams::new(sdk.clone(), f.ddb.clone());
    let arn = source
        .latest_stream_arn(&f.events_table)
        .await
        .expect("stream");
    let shards = source.list_shards(&arn).await.expect("shards");
    let shard = &shards.first().expect("a shard").id;
    let iterator = source
        .shard_iterator(&arn, shard, &IteratorPosition::TrimHorizon)
        .await
        .expect("iterator");

    let (ours, parsed_by) = source.read_page(&iterator, 1000).await.expect("records");
    assert_eq!(
        parsed_by,
        ParsedBy::Relay,
        "the body was parsed by stream::wire"
    );
    let body = Body::default();
    let theirs = sdk
        .get_records()
        .shard_iterator(&iterator)
        .limit(1000)
        .customize()
        .interceptor(body.clone())
        .send()
        .await
        .expect("records through the SDK");
    let names: Vec<_> = ours
        .records
        .iter()
        .map(|r| {
            r.json()["eventName"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
    let sdk_records: Vec<_> = theirs
        .records()
        .iter()
        .filter_map(to_stream_record)
        .collect();
    assert_eq!(ours.records, sdk_records);
    // Each answer has its own next iterator (moto, like AWS, issues a new token every time).
    assert!(ours.next_iterator.is_some() && theirs.next_shard_iterator().is_some());
    let raw = body.0.lock().expect("not poisoned").clone();
    let parsed = wire::records_page(&raw).expect("parses");
    assert_eq!(parsed.records, ours.records);
    assert_eq!(
        parsed.next_iterator.as_deref(),
        theirs.next_shard_iterator()
    );
    let image = &ours.records[0].json()["dynamodb"]["NewImage"];
    assert_eq!(image["n"]["N"], "12345678901234567890.000000000000000001");
    assert_eq!(image["sk"]["S"], "é \"quoted\"\n");
}
