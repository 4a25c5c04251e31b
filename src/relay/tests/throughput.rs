//! Relay cost with in-process fakes (no network): records/s on one core and the latency the
//! relay adds per page (GetRecords answered → checkpoint written), at 10, 100 and 1,000
//! shards. Ignored in normal runs; `scripts/bench` runs it in release mode and BENCHMARKS.md
//! records the figures.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Behaviour, FakeDeadLetters, FakeLeases, FakePublisher, FakeShard, FakeStream};
use crate::config::Config;
use crate::lease::{Checkpoint, Lease, LeaseKey, WorkerId};
use crate::relay::worker::{Worker, WorkerExit, WorkerSettings};
use crate::stream::{SequenceNumber, ShardId, StreamRecord};
use crate::telemetry::{Health, Metrics, PendingRecords};

fn record(shard: usize, i: usize) -> StreamRecord {
    StreamRecord::new(
        SequenceNumber::new(format!("{}", 1_000_000 + i)),
        None,
        &json!({
            "eventID": format!("s{shard}-e{i}"), "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"pk": {"S": format!("evt-{shard}-{i}")}, "sk": {"S": "BookAdded"}},
                "NewImage": {
                    "pk": {"S": format!("evt-{shard}-{i}")}, "sk": {"S": "BookAdded"},
                    "eventType": {"S": "BookAdded"},
                    "eventData": {"M": {"name": {"S": "Team Topologies"},
                        "authors": {"L": [{"S": "Manuel Pais"}, {"S": "Matthew Skelton"}]},
                        "year": {"N": "2019"}}}
                },
                "SequenceNumber": format!("{}", 1_000_000 + i), "SizeBytes": 231,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        }),
    )
}

/// A record of the seed's books table (issue #28's workload): 80 % INSERT of a book
/// (`name` S, `authors` SS, `year` N, key `name`), 20 % REMOVE of one (keys and old image),
/// as DynamoDB Streams gives them to the relay.
fn seed_record(shard: usize, i: usize) -> StreamRecord {
    let name = format!("Book {shard}-{i}");
    let image = json!({
        "name": {"S": name},
        "authors": {"SS": ["Manuel Pais", "Matthew Skelton"]},
        "year": {"N": "2019"}
    });
    let remove = i % 5 == 4;
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": 1_764_547_200,
        "Keys": {"name": {"S": name}},
        "SequenceNumber": format!("{}", 1_000_000 + i),
        "SizeBytes": 120,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    dynamodb[if remove { "OldImage" } else { "NewImage" }] = image;
    StreamRecord::new(
        SequenceNumber::new(format!("{}", 1_000_000 + i)),
        None,
        &json!({
            "eventID": format!("s{shard}-e{i}"),
            "eventName": if remove { "REMOVE" } else { "INSERT" },
            "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "eu-north-1",
            "dynamodb": dynamodb
        }),
    )
}

/// Which records, through which config's routes.
#[derive(Clone, Copy)]
enum Workload {
    /// Outbox rows through `config/local.toml`'s two routes.
    Outbox,
    /// The seed's books table through `config/cdc.toml` (issue #28).
    Seed,
}

/// Relays `total` records spread over `shards` shards on a single-threaded runtime.
fn run(shards: usize, total: usize) -> (f64, Duration, Duration) {
    run_workload(Workload::Outbox, shards, total)
}

fn run_workload(workload: Workload, shards: usize, total: usize) -> (f64, Duration, Duration) {
    // As the binary does: without it the kernel zeroes fresh huge pages for the churned heap.
    crate::app::small_pages_only();
    let per_shard = total / shards;
    let (file, make): (&str, fn(usize, usize) -> StreamRecord) = match workload {
        Workload::Outbox => ("config/local.toml", record),
        Workload::Seed => ("config/cdc.toml", seed_record),
    };
    let config = Config::from_toml(&config_text(file)).expect("valid");
    let router = Arc::new(
        config
            .router_for(&config.source.streams()[0])
            .expect("valid"),
    );
    let source = Arc::new(FakeStream::new(
        "arn:s",
        (0..shards)
            .map(|s| {
                let records = (0..per_shard).map(|i| make(s, i)).collect();
                FakeShard::new(&format!("shard-{s}"), None, true, records)
            })
            .collect(),
        1000,
    ));
    let publisher = Arc::new(FakePublisher::new(Behaviour::CountOnly, None));
    let leases = Arc::new(FakeLeases::default());
    let dead_letters = Arc::new(FakeDeadLetters::default());
    let settings = Arc::new(WorkerSettings {
        poll_interval: Duration::from_millis(250),
        busy_poll_interval: Duration::ZERO,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        records: crate::pipeline::RecordPolicy {
            event_id_attribute: match workload {
                Workload::Outbox => Some("pk".into()),
                Workload::Seed => None,
            },
            trace_context_attribute: None,
            trace_state_attribute: None,
        },
        ..WorkerSettings::from_config(&config)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..shards {
            let key = LeaseKey(format!("shard-{s}"));
            let lease = Lease {
                key: key.clone(),
                owner: Some(WorkerId("bench".into())),
                counter: 1,
                ..Lease::new(
                    "arn:s",
                    &ShardId(key.0.clone()),
                    None,
                    Checkpoint::TrimHorizon,
                )
            };
            leases.insert(lease.clone());
            let worker = Worker {
                source: Arc::clone(&source),
                publisher: Arc::clone(&publisher),
                leases: Arc::clone(&leases),
                dead_letters: Arc::clone(&dead_letters),
                router: Arc::clone(&router),
                metrics: Metrics::new(),
                pending: PendingRecords::default(),
                health: Health::new(Duration::from_secs(30)),
                settings: Arc::clone(&settings),
                owner: WorkerId("bench".into()),
                lease,
                token: CancellationToken::new(),
                held: crate::relay::keeper::HeldLeases::default(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        for t in tasks {
            assert_eq!(t.await.expect("no panic"), WorkerExit::ShardEnded);
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(
        publisher.counted.load(Ordering::Relaxed),
        shards * per_shard
    );
    assert!(dead_letters.stored.lock().expect("lock").is_empty());
    let read_at = source.read_at.lock().expect("lock");
    let written = leases.checkpointed_at.lock().expect("lock");
    // Per page: from its answer to the first checkpoint at or past its last record (with
    // pages read ahead, one checkpoint may cover several pages).
    let mut latencies: Vec<Duration> = read_at
        .iter()
        .map(|((shard, last), read)| {
            let last = SequenceNumber::new(last.clone());
            let (_, at) = written[&LeaseKey(shard.clone())]
                .iter()
                .find(|(c, _)| match c {
                    Checkpoint::Sequence(s) => *s >= last,
                    Checkpoint::ShardEnd => true,
                    _ => false,
                })
                .expect("every page is checkpointed");
            at.into_std().duration_since(*read)
        })
        .collect();
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    #[allow(clippy::cast_precision_loss)]
    let rate = (shards * per_shard) as f64 / elapsed.as_secs_f64();
    (rate, pct(50), pct(99))
}

#[test]
#[ignore = "a measurement, run by scripts/bench in release mode"]
fn relay_throughput_with_fakes() {
    for shards in [10, 100, 1000] {
        let (rate, p50, p99) = run(shards, 200_000);
        println!(
            "fakes: {shards:>5} shards, 200000 records, 1 core: {rate:>9.0} records/s; \
             added latency per page (read -> checkpointed) p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

/// Issue #28's workload: the seed's job (INSERT and REMOVE of its books table to BookAdded
/// and BookRemoved, `config/cdc.toml`) on one core. Its Node logic does about 115,000
/// records/s per core on the same records.
#[test]
#[ignore = "a measurement: cargo test --release --lib relay_throughput_seed -- --ignored --nocapture"]
fn relay_throughput_seed_records() {
    for shards in [1, 10] {
        let (rate, _, _) = run_workload(Workload::Seed, shards, 200_000);
        println!(
            "fakes, seed records: {shards:>3} shard(s), 200000 records, 1 core: {rate:>9.0} records/s ({:.2} us per record)",
            1e6 / rate
        );
    }
}

/// The window's way from a record's text to its entries, for the seed's records: `reads` as the
/// window reads them. Not inlined, so that `valgrind --tool=callgrind` counts it by name.
#[inline(never)]
fn parse_and_route(
    records: &[StreamRecord],
    router: &crate::pipeline::Router,
    policy: &crate::pipeline::RecordPolicy,
    reads: &crate::pipeline::pattern::fields::ReadFields,
) -> usize {
    let mut entries = 0;
    for record in records {
        let parsed = reads.parse(record.text.as_str()).expect("json");
        let (mut tree, images) = (parsed.tree, parsed.images);
        let routed = policy.route(router, &mut tree, images, "arn:s", record.created_at);
        entries += routed.results.iter().filter(|r| r.is_ok()).count();
    }
    entries
}

/// The routing parse alone, for the seed's records: the trees' objects counted.
#[inline(never)]
fn parse_only(
    records: &[StreamRecord],
    reads: &crate::pipeline::pattern::fields::ReadFields,
) -> usize {
    records
        .iter()
        .map(|record| {
            let parsed = reads.parse(record.text.as_str()).expect("json");
            parsed.tree.as_object().map_or(0, serde_json::Map::len)
        })
        .sum()
}

/// [`parse_and_route`] with the image read typed, as before the images were kept as text.
#[inline(never)]
fn parse_and_route_typed_image(
    records: &[StreamRecord],
    router: &crate::pipeline::Router,
    reads: &crate::pipeline::pattern::fields::ReadFields,
) -> usize {
    let mut reads = reads.clone();
    reads.add_path(&["dynamodb", "NewImage"]);
    let policy = crate::pipeline::RecordPolicy::default();
    parse_and_route(records, router, &policy, &reads)
}

/// The router of `config` (a file of this repository) for its first stream, and its source's
/// record policy.
fn routing_of(config: &str) -> (crate::pipeline::Router, crate::pipeline::RecordPolicy) {
    routing_of_text(&config_text(config))
}

/// The text of `config`, a file of this repository.
fn config_text(config: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(config))
        .expect("the config")
}

/// [`routing_of`] a config's text.
fn routing_of_text(text: &str) -> (crate::pipeline::Router, crate::pipeline::RecordPolicy) {
    let config = Config::from_toml(text).expect("valid");
    let router = config
        .router_for(&config.source.streams()[0])
        .expect("valid");
    (router, config.source.record_policy())
}

/// Instructions per record of the routing part of the loop, counted (this VM has no hardware
/// counters, and its timings swing by a third): `valgrind --tool=callgrind` on this test, then
/// `callgrind_annotate --inclusive=yes` for the two functions above (BENCHMARKS.md).
#[test]
#[ignore = "a measurement under valgrind, see BENCHMARKS.md"]
fn seed_records_parse_and_route() {
    let (router, policy) = routing_of("config/cdc.toml");
    assert_eq!(policy, crate::pipeline::RecordPolicy::default());
    let reads = policy.reads(&router);
    let records: Vec<StreamRecord> = (0..10_000).map(|i| seed_record(0, i)).collect();
    assert_eq!(parse_only(&records, &reads), 30_000);
    let text = parse_and_route(&records, &router, &policy, &reads);
    let typed = parse_and_route_typed_image(&records, &router, &reads);
    assert_eq!((text, typed), (10_000, 10_000));
}

/// [`seed_records_parse_and_route`] for outbox rows through `config/local.toml` (an unmarshalled
/// `NewImage`, the event id read from the row's `pk`): the hot-shard bench's kind of record.
#[test]
#[ignore = "a measurement under valgrind, see BENCHMARKS.md"]
fn outbox_records_parse_and_route() {
    let (router, policy) = routing_of("config/local.toml");
    let reads = policy.reads(&router);
    let records: Vec<StreamRecord> = (0..10_000).map(|i| record(0, i)).collect();
    assert_eq!(parse_and_route(&records, &router, &policy, &reads), 10_000);
}

/// [`seed_records_parse_and_route`] with filters that also name each record's `eventID`, so
/// that what quamina reads is new for every record: its remembered answers
/// (`pipeline::pattern::answers`) never help, and callgrind shows what remembering costs then
/// (`answers::with_answer` less quamina's `matches_for_event`, BENCHMARKS.md).
#[test]
#[ignore = "a measurement under valgrind, see BENCHMARKS.md"]
fn seed_records_parse_and_route_each_filter_text_new() {
    let text = config_text("config/cdc.toml").replace(
        r#"{"eventName": ["#,
        r#"{"eventID": [{"prefix": "s"}], "eventName": ["#,
    );
    assert_eq!(
        text.matches(r#""eventID": [{"prefix""#).count(),
        2,
        "both routes' filters"
    );
    let (router, policy) = routing_of_text(&text);
    let reads = policy.reads(&router);
    let records: Vec<StreamRecord> = (0..10_000).map(|i| seed_record(0, i)).collect();
    assert_eq!(parse_and_route(&records, &router, &policy, &reads), 10_000);
}
