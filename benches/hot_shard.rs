//! One hot shard through the whole process: the real release binary reads a shard that holds
//! N outbox records and publishes them, with a fixed delay added to every AWS call as a real
//! network round trip would. Events per second from one shard, CPU-seconds per 100k events and
//! peak RSS, at 0, 30 and 60 ms of added delay. CPU is given twice: the whole process's life
//! (start-up included) over all records, and the steady part alone (the CPU spent between the
//! call that passed 10 % of the records and the last call, over the events in between: the
//! cost of an event once the relay runs, which is what a million events cost).
//!
//! First the issue's own setup: 2,000 rows in a table on the emulator, every AWS call through
//! a proxy that adds the delay (the ratio between delays). Then figures beyond that:
//! moto cannot serve more (its PutEvents takes ~20 ms of its own and it has one thread), so a
//! fast local stand-in answers the two hot APIs, DynamoDB Streams (DescribeStream,
//! GetShardIterator, GetRecords over pre-built records) and EventBridge PutEvents (counts the
//! entries), behind the real SDK clients through `endpoint_url`. The lease table is moto's
//! (calls forwarded, delayed the same way). Used only by this benchmark. The stand-in also
//! answers the Custom Event Bus's PutEvents (eventsv2, Smithy RPC v2 CBOR, up to 100 entries
//! per call), for the same shard published to a Custom Event Bus beside the classic one, and
//! its PutRawEvents, for the same shard published there as CloudEvents (`format =
//! "cloudevents"`, #26) beside the `eventbridge` format.
//!
//! ```sh
//! export DEV_STACK_DIR=$PWD/target/bench-stack OUTBOX_RELAY_TEST_ENDPOINT=$(scripts/dev-stack up)
//! cargo bench --bench hot_shard                    # this build
//! OUTBOX_RELAY_BENCH_BASELINE=path/to/old/outbox-relay cargo bench --bench hot_shard
//! OUTBOX_RELAY_BENCH_BEFORE=path/to/recent/outbox-relay cargo bench --bench hot_shard
//! # some backends and delays, a bigger shard:
//! OUTBOX_RELAY_BENCH_BACKENDS=stand-in,custom-bus OUTBOX_RELAY_BENCH_DELAYS=0 \
//!   OUTBOX_RELAY_BENCH_RECORDS=100000 cargo bench --bench hot_shard
//! ```
//! `scripts/bench` does all of it, building the baseline from the commit before issue #13.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

mod common;

const STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/Hot/stream/2026-01-01T00:00:00.000";
const SHARD: &str = "shardId-00000001700000000000-hot00001";

/// The stand-in's state: the shard's records, and when each PutEvents entry arrived.
struct StandIn {
    /// `true`: a delaying proxy in front of moto for every API (the issue's own setup); the
    /// records are a real table's stream and PutEvents goes to moto's bus.
    emulator: bool,
    records: Vec<Value>,
    delay: Duration,
    moto: String,
    http: reqwest::Client,
    published: AtomicUsize,
    /// The relay's process id, once started (0 before): its CPU is read at every call.
    relay_pid: AtomicU32,
    /// (entries published so far, when, the relay's CPU seconds so far) after every PutEvents
    /// call.
    progress: Mutex<Vec<(usize, Instant, f64)>>,
}

fn record(i: usize) -> Value {
    let id = format!("evt-{i:08}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "eventID": format!("e{i}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {"pk": {"S": id}, "sk": {"S": "BookAdded"}},
            "NewImage": {
                "pk": {"S": id}, "sk": {"S": "BookAdded"}, "eventType": {"S": "BookAdded"},
                "eventData": {"M": {
                    "name": {"S": format!("Book {i}")},
                    "authors": {"L": [{"S": "A. Author"}, {"S": "B. Author"}]},
                    "year": {"N": "2019"},
                    "aggregate": {"S": format!("agg-{}", i % 50)}
                }},
                "expiresAt": {"N": "1900000000"}
            },
            "SequenceNumber": format!("{}", 100_000_000 + i),
            "SizeBytes": 180,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

fn answer(content_type: &'static str, body: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", content_type)],
        body.to_string(),
    )
        .into_response()
}

/// Counts `n` entries published now.
fn published(state: &StandIn, n: usize) -> usize {
    let total = state.published.fetch_add(n, Ordering::SeqCst) + n;
    let cpu = proc_cpu_secs(state.relay_pid.load(Ordering::SeqCst));
    state
        .progress
        .lock()
        .expect("lock")
        .push((total, Instant::now(), cpu));
    total
}

/// The Custom Event Bus's PutEvents or PutRawEvents (Smithy RPC v2 CBOR, the same answer):
/// every entry `PUBLISHED`.
fn custom_bus_put_events(state: &StandIn, body: &Bytes) -> Response {
    use ciborium::Value as Cbor;
    let request: Cbor = ciborium::from_reader(&body[..]).unwrap_or(Cbor::Null);
    let n = request
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("Entries")))
        .and_then(|(_, v)| v.as_array())
        .map_or(0, Vec::len);
    let total = published(state, n);
    let bytes = common::custom_bus_answer((0..n).map(|i| format!("id-{total}-{i}")));
    (
        StatusCode::OK,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        bytes,
    )
        .into_response()
}

async fn handle(
    state: Arc<StandIn>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/v1/traces" {
        // The relay's spans (OUTBOX_RELAY_BENCH_OTLP=1): accepted and dropped, undelayed.
        return (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            Vec::new(),
        )
            .into_response();
    }
    tokio::time::sleep(state.delay).await;
    if uri.path() == "/service/AWSEventsV2/operation/PutEvents"
        || uri.path() == "/service/AWSEventsV2/operation/PutRawEvents"
    {
        return custom_bus_put_events(&state, &body);
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if state.emulator {
        let (status, content_type, bytes) = forward(&state, &headers, &body).await;
        if target == "AWSEvents.PutEvents" && status == StatusCode::OK {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let sent = request["Entries"].as_array().map_or(0, Vec::len);
            let failed = answer["FailedEntryCount"]
                .as_u64()
                .map_or(0, |n| usize::try_from(n).unwrap_or(0));
            published(&state, sent.saturating_sub(failed));
        }
        return (status, [("content-type", content_type)], bytes).into_response();
    }
    let streams = "application/x-amz-json-1.0";
    match target.as_str() {
        "DynamoDBStreams_20120810.DescribeStream" => answer(
            streams,
            &json!({"StreamDescription": {
                "StreamArn": STREAM_ARN, "StreamLabel": "2026-01-01T00:00:00.000",
                "StreamStatus": "ENABLED", "StreamViewType": "NEW_AND_OLD_IMAGES",
                "TableName": "Hot",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "Shards": [{"ShardId": SHARD, "SequenceNumberRange": {"StartingSequenceNumber": "100000000"}}]
            }}),
        ),
        "DynamoDBStreams_20120810.GetShardIterator" => {
            let start = match request["ShardIteratorType"].as_str() {
                Some("AFTER_SEQUENCE_NUMBER") => request["SequenceNumber"]
                    .as_str()
                    .and_then(|s| s.parse::<usize>().ok())
                    .map_or(0, |s| s - 100_000_000 + 1),
                Some("LATEST") => state.records.len(),
                _ => 0,
            };
            answer(streams, &json!({"ShardIterator": format!("it-{start}")}))
        }
        "DynamoDBStreams_20120810.GetRecords" => {
            let start: usize = request["ShardIterator"]
                .as_str()
                .and_then(|s| s.strip_prefix("it-"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let limit = request["Limit"].as_u64().map_or(1000, |l| l as usize);
            let end = (start + limit).min(state.records.len());
            answer(
                streams,
                &json!({"Records": &state.records[start.min(end)..end],
                        "NextShardIterator": format!("it-{end}")}),
            )
        }
        "AWSEvents.PutEvents" => {
            let n = request["Entries"].as_array().map_or(0, Vec::len);
            let total = published(&state, n);
            let entries: Vec<Value> = (0..n)
                .map(|i| json!({"EventId": format!("id-{total}-{i}")}))
                .collect();
            answer(
                "application/x-amz-json-1.1",
                &json!({"FailedEntryCount": 0, "Entries": entries}),
            )
        }
        // The lease table: moto's.
        _ => {
            let (status, content_type, bytes) = forward(&state, &headers, &body).await;
            (status, [("content-type", content_type)], bytes).into_response()
        }
    }
}

/// Forwards a request to moto: its status, content type and body.
async fn forward(
    state: &StandIn,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, String, Bytes) {
    let mut forward = state.http.post(&state.moto).body(body.to_vec());
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    match forward.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/x-amz-json-1.0")
                .to_owned();
            (status, content_type, r.bytes().await.unwrap_or_default())
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            "text/plain".to_owned(),
            Bytes::from(e.to_string()),
        ),
    }
}

/// One call to moto's JSON API.
async fn moto_call(
    http: &reqwest::Client,
    moto: &str,
    target: &str,
    version: &str,
    body: &Value,
) -> Value {
    let service = if target.starts_with("AWSEvents") {
        "events"
    } else {
        "dynamodb"
    };
    let r = http
        .post(moto)
        .header("x-amz-target", target)
        .header("content-type", format!("application/x-amz-json-{version}"))
        // moto tells the service from the credential scope of the signature.
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto call");
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{target}: {status} {answer}");
    answer
}

/// The issue's setup on the emulator: a table with a stream holding `rows` outbox rows, and a
/// bus. Returns the stream's ARN and the bus name.
async fn emulator_table(http: &reqwest::Client, moto: &str, rows: usize) -> (String, String) {
    let name = format!("hot-{:08x}", rand::random::<u32>());
    let created = moto_call(http, moto, "DynamoDB_20120810.CreateTable", "1.0", &json!({
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    })).await;
    let stream_arn = created["TableDescription"]["LatestStreamArn"]
        .as_str()
        .expect("stream arn")
        .to_owned();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(25) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"PutRequest": {"Item": record(i)["dynamodb"]["NewImage"].clone()}}))
            .collect();
        moto_call(
            http,
            moto,
            "DynamoDB_20120810.BatchWriteItem",
            "1.0",
            &json!({"RequestItems": {name.clone(): items}}),
        )
        .await;
    }
    moto_call(
        http,
        moto,
        "AWSEvents.CreateEventBus",
        "1.1",
        &json!({"Name": name}),
    )
    .await;
    (stream_arn, name)
}

/// One run's figures.
struct Figures {
    events_per_sec: f64,
    cpu_secs_per_100k: f64,
    steady_cpu_secs_per_100k: f64,
    peak_rss_mib: f64,
}

fn proc_cpu_secs(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/PID/stat: user and system time in clock ticks (USER_HZ, 100).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        })
        .unwrap_or(0.0)
}

/// Where the shard's records and PutEvents are served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The fast stand-in (the lease table is moto's).
    StandIn,
    /// moto for everything, behind the delaying proxy: a real table's stream and bus.
    Emulator,
    /// The stand-in, publishing to a Custom Event Bus (100 entries per call).
    StandInCustomBus,
    /// The same, as CloudEvents (PutRawEvents).
    StandInCloudEvents,
}

impl Backend {
    fn stand_in(self) -> bool {
        self != Self::Emulator
    }
}

async fn run(
    binary: &str,
    backend: Backend,
    delay: Duration,
    records: usize,
    moto: &str,
) -> Figures {
    let http = reqwest::Client::new();
    let (stream_arn, bus) = if backend.stand_in() {
        (STREAM_ARN.to_owned(), "bus".to_owned())
    } else {
        emulator_table(&http, moto, records).await
    };
    const CUSTOM_BUS: &str = "event_bus_arn = \"arn:aws:events:us-east-1:123456789012:event-busv2/hot/abcdefghij0123456789abcde\"";
    let target = match backend {
        Backend::StandInCustomBus => CUSTOM_BUS.to_owned(),
        Backend::StandInCloudEvents => format!("{CUSTOM_BUS}\nformat = \"cloudevents\""),
        Backend::StandIn | Backend::Emulator => format!("event_bus_name = \"{bus}\""),
    };
    let state = Arc::new(StandIn {
        emulator: backend == Backend::Emulator,
        records: if backend.stand_in() {
            (0..records).map(record).collect()
        } else {
            Vec::new()
        },
        delay,
        moto: moto.to_owned(),
        http,
        published: AtomicUsize::new(0),
        relay_pid: AtomicU32::new(0),
        progress: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().fallback({
        let state = Arc::clone(&state);
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            handle(Arc::clone(&state), uri, headers, body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // OUTBOX_RELAY_BENCH_OTLP=1: the relay exports its spans to the stand-in (the cost of OTLP).
    let telemetry = if std::env::var("OUTBOX_RELAY_BENCH_OTLP").is_ok_and(|v| v == "1") {
        format!("[telemetry]\notlp_endpoint = \"{endpoint}\"")
    } else {
        String::new()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hot.toml");
    let lease_table = format!("bench-leases-{:08x}", rand::random::<u32>());
    std::fs::write(
        &config,
        format!(
            r#"
[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
[source]
stream_arn = "{stream_arn}"
event_id_attribute = "pk"
[leases]
table_name = "{lease_table}"
[[routes]]
name = "book-added"
filters = ['{{"eventName": ["INSERT"]}}']
{target}
source = "OutboxDemo.Books"
detail_type = "BookAdded"
unmarshall = "NewImage"
[http]
listen = "127.0.0.1:0"
[log]
level = "warn"
{telemetry}
"#
        ),
    )
    .expect("write config");
    let mut child: Child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay");
    let pid = child.id();
    state.relay_pid.store(pid, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(600);
    while state.published.load(Ordering::SeqCst) < records {
        assert!(
            Instant::now() < deadline,
            "{binary}: not done in 10 minutes"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{binary} exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = proc_cpu_secs(pid);
    let rss = peak_rss_mib(pid);
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    server.abort();
    // The steady rate: from the call that passed 10 % of the records to the last one.
    let progress = state.progress.lock().expect("lock").clone();
    let from = progress
        .iter()
        .find(|(n, _, _)| *n >= records / 10)
        .copied()
        .expect("progress");
    let to = *progress.last().expect("progress");
    let secs = to.1.duration_since(from.1).as_secs_f64().max(1e-6);
    #[allow(clippy::cast_precision_loss)]
    let events_per_sec = (to.0 - from.0) as f64 / secs;
    #[allow(clippy::cast_precision_loss)]
    let cpu_secs_per_100k = cpu * 100_000.0 / records as f64;
    // The same window's CPU: what an event costs once the relay runs, start-up left out.
    #[allow(clippy::cast_precision_loss)]
    let steady_cpu_secs_per_100k = (to.2 - from.2) * 100_000.0 / (to.0 - from.0).max(1) as f64;
    Figures {
        events_per_sec,
        cpu_secs_per_100k,
        steady_cpu_secs_per_100k,
        peak_rss_mib: rss,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` builds this but must not run it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(moto) = std::env::var("OUTBOX_RELAY_TEST_ENDPOINT") else {
        eprintln!("hot_shard: set OUTBOX_RELAY_TEST_ENDPOINT (scripts/dev-stack up); skipped");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut builds = vec![("this build", env!("CARGO_BIN_EXE_outbox-relay").to_owned())];
    if let Ok(baseline) = std::env::var("OUTBOX_RELAY_BENCH_BASELINE") {
        builds.insert(0, ("baseline", baseline));
    }
    // A recent build to set beside this one (same records, every backend), e.g. the commit
    // before a change of the hot path.
    if let Ok(before) = std::env::var("OUTBOX_RELAY_BENCH_BEFORE") {
        builds.insert(0, ("before", before));
    }
    println!("| backend | build | added delay | records | events/s (one shard) | CPU s per 100k events | the same, steady | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|");
    // The issue's own setup first (2,000 rows on the emulator, a delaying proxy in front of
    // it: the ratio), then the stand-in (figures beyond what the emulator serves).
    // Only some backends, e.g. `OUTBOX_RELAY_BENCH_BACKENDS=custom-bus,stand-in`.
    let wanted = std::env::var("OUTBOX_RELAY_BENCH_BACKENDS").ok();
    // The stand-in's shard size, e.g. `OUTBOX_RELAY_BENCH_RECORDS=100000` for finer CPU figures
    // (the relay's CPU is counted in ticks of 10 ms).
    let stand_in_records = std::env::var("OUTBOX_RELAY_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    // Only some added delays, e.g. `OUTBOX_RELAY_BENCH_DELAYS=0`.
    let delays: Vec<u64> = std::env::var("OUTBOX_RELAY_BENCH_DELAYS").ok().map_or_else(
        || vec![0, 30, 60],
        |d| {
            d.split(',')
                .filter_map(|ms| ms.trim().parse().ok())
                .collect()
        },
    );
    for (backend, label, key) in [
        (Backend::Emulator, "emulator + proxy", "emulator"),
        (Backend::StandIn, "stand-in", "stand-in"),
        (
            Backend::StandInCustomBus,
            "stand-in, Custom Event Bus",
            "custom-bus",
        ),
        (
            Backend::StandInCloudEvents,
            "stand-in, Custom Event Bus, CloudEvents",
            "cloudevents",
        ),
    ] {
        if wanted
            .as_deref()
            .is_some_and(|w| !w.split(',').any(|k| k == key))
        {
            continue;
        }
        for (name, binary) in &builds {
            let records = match (backend, *name) {
                (Backend::Emulator, _) => 2_000,
                // The baseline knows no Custom Event Bus; builds before #26 no CloudEvents.
                (Backend::StandInCustomBus, "baseline") => continue,
                (Backend::StandInCloudEvents, "baseline" | "before") => continue,
                (Backend::StandIn, "baseline") => 3_000,
                (Backend::StandIn | Backend::StandInCustomBus | Backend::StandInCloudEvents, _) => {
                    stand_in_records
                }
            };
            for &delay_ms in &delays {
                let f = runtime.block_on(run(
                    binary,
                    backend,
                    Duration::from_millis(delay_ms),
                    records,
                    &moto,
                ));
                println!(
                    "| {label} | {name} | {delay_ms} ms | {records} | {:.0} | {:.2} | {:.2} | {:.1} MiB |",
                    f.events_per_sec,
                    f.cpu_secs_per_100k,
                    f.steady_cpu_secs_per_100k,
                    f.peak_rss_mib
                );
            }
        }
    }
}
