//! Scale measurements with fakes (ignored in normal runs; `scripts/bench` runs them in
//! release mode): the relay's memory with 1,000 idle shards, lease-table writes per second at
//! steady state, and how long 5 supervisors take to balance 1,000 shards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Behaviour, FakeDeadLetters, FakeLeases, FakePublisher, FakeShard, FakeStream};
use crate::config::{Config, StartingPosition, StreamSelector};
use crate::lease::WorkerId;
use crate::relay::{Supervisor, SupervisorSettings, WorkerSettings};
use crate::telemetry::{Health, Metrics, PendingRecords};

/// `n` open shards with no records.
fn idle_shards(n: usize) -> FakeStream {
    FakeStream::new(
        "arn:s",
        (0..n)
            .map(|i| FakeShard::new(&format!("shardId-{i:05}"), None, false, Vec::new()))
            .collect(),
        1000,
    )
}

fn supervisor(
    id: &str,
    source: &Arc<FakeStream>,
    leases: &Arc<FakeLeases>,
) -> Supervisor<FakeStream, FakePublisher, FakeLeases, FakeDeadLetters> {
    supervisor_with(id, source, leases, "")
}

/// [`supervisor`] with `source_extra` (TOML keys) in the defaults' `[source]`.
fn supervisor_with(
    id: &str,
    source: &Arc<FakeStream>,
    leases: &Arc<FakeLeases>,
    source_extra: &str,
) -> Supervisor<FakeStream, FakePublisher, FakeLeases, FakeDeadLetters> {
    let config = Config::from_toml(
        "[source]\nstream_arn = \"arn:aws:dynamodb:us-east-1:1:table/T/stream/x\"\n[[routes]]\nname = \"all\"\nevent_bus_name = \"b\"\nsource = \"S\"\ndetail_type = \"T\"\nunmarshall = \"NewImage\"\n",
    )
    .expect("valid");
    let defaults = crate::config::Config::from_toml(&format!("[source]\ntable_name = \"T\"\n{source_extra}\n[[routes]]\nname = \"a\"\nevent_bus_name = \"b\"\nsource = \"S\"\ndetail_type = \"T\"\nunmarshall = \"NewImage\"\n"))
        .expect("valid");
    Supervisor {
        source: Arc::clone(source),
        publisher: Arc::new(FakePublisher::new(Behaviour::AcceptAll, None)),
        leases: Arc::clone(leases),
        dead_letters: Arc::new(FakeDeadLetters {
            stored: Mutex::new(Vec::new()),
            fail_first: AtomicUsize::new(0),
            log: super::EventLog::default(),
        }),
        streams: vec![(
            StreamSelector::Arn("arn:s".into()),
            Arc::new(
                config
                    .router_for(&config.source.streams()[0])
                    .expect("valid"),
            ),
        )],
        metrics: Metrics::new(),
        pending: PendingRecords::default(),
        health: Health::new(Duration::from_secs(3600)),
        // The defaults a user gets: renew every 3 s, expire after 10 s, poll idle shards every 1 s.
        settings: SupervisorSettings {
            starting_position: StartingPosition::TrimHorizon,
            discovery_interval: defaults.source.discovery_interval,
            full_listing_every: crate::relay::supervisor::FULL_LISTING_EVERY,
            lease_duration: defaults.leases.lease_duration,
            renew_interval: defaults.leases.renew_interval,
            initial_backoff: defaults.publisher.initial_backoff,
            max_backoff: defaults.publisher.max_backoff,
            worker: WorkerSettings::from_config(&defaults),
        },
        owner: WorkerId(id.into()),
    }
}

/// A current-thread runtime on paused time (hours pass in seconds).
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn owned_counts(leases: &FakeLeases) -> Vec<usize> {
    let mut by: HashMap<String, usize> = HashMap::new();
    for l in leases.leases.lock().expect("lock").values() {
        if let Some(o) = &l.owner {
            *by.entry(o.0.clone()).or_default() += 1;
        }
    }
    let mut v: Vec<usize> = by.into_values().collect();
    v.sort_unstable();
    v
}

#[test]
#[ignore = "a measurement, run by scripts/bench in release mode"]
fn scale_with_fakes() {
    paused_runtime().block_on(async {
        // One supervisor, 1,000 idle shards: memory and steady-state lease writes.
        let before = rss_kib();
        let source = Arc::new(idle_shards(1000));
        let leases = Arc::new(FakeLeases::default());
        let token = CancellationToken::new();
        let one = tokio::spawn(supervisor("solo", &source, &leases).run(token.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(owned_counts(&leases), vec![1000]);
        let writes_before = leases.writes.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let writes = leases.writes.load(Ordering::Relaxed) - writes_before;
        let after = rss_kib();
        println!(
            "scale: 1 relay, 1000 idle shards: RSS {:.1} MiB (test process; {:.1} MiB before the relay started); lease-table writes {:.1}/s at steady state (renew_interval 3 s)",
            after as f64 / 1024.0,
            before as f64 / 1024.0,
            writes as f64 / 60.0
        );
        token.cancel();
        one.await.expect("no panic");

        // Five supervisors, 1,000 shards: the first alone for 30 s, then four join.
        let leases = Arc::new(FakeLeases::default());
        let token = CancellationToken::new();
        let mut runs = vec![tokio::spawn(supervisor("w0", &source, &leases).run(token.clone()))];
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(owned_counts(&leases), vec![1000]);
        let joined = tokio::time::Instant::now();
        for i in 1..5 {
            runs.push(tokio::spawn(supervisor(&format!("w{i}"), &source, &leases).run(token.clone())));
        }
        while owned_counts(&leases) != vec![200; 5] {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(joined.elapsed() < Duration::from_secs(3600), "no balance within an hour");
        }
        println!(
            "scale: 4 relays joining 1 that holds 1000 shards: balanced 200 each after {:.1} s (renew_interval 3 s)",
            joined.elapsed().as_secs_f64()
        );
        token.cancel();
        for r in runs {
            r.await.expect("no panic");
        }
    });
}

/// #27's measurement: 3 relays share 1,000 idle shards for 10 minutes (after balancing), on
/// paused time: lease-table writes, GetRecords and shard listings per second, with default
/// settings and with `idle_poll_interval = "30s"`.
#[test]
#[ignore = "a measurement, run by scripts/bench in release mode"]
fn idle_fleet_costs_with_fakes() {
    for (label, extra) in [
        ("defaults", ""),
        ("idle_poll_interval = 30s", "idle_poll_interval = \"30s\""),
    ] {
        paused_runtime().block_on(async {
            let source = Arc::new(idle_shards(1000));
            let leases = Arc::new(FakeLeases::default());
            let token = CancellationToken::new();
            let runs: Vec<_> = (0..3)
                .map(|i| {
                    tokio::spawn(
                        supervisor_with(&format!("w{i}"), &source, &leases, extra)
                            .run(token.clone()),
                    )
                })
                .collect();
            while owned_counts(&leases) != vec![333, 333, 334] {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Past every shard's first reads and the first backoff steps.
            tokio::time::sleep(Duration::from_secs(120)).await;
            let (writes, reads, listings, children) = (
                leases.writes.load(Ordering::Relaxed),
                source.get_records_calls.load(Ordering::Relaxed),
                source.listings.load(Ordering::Relaxed),
                source.child_queries.load(Ordering::Relaxed),
            );
            let span = Duration::from_secs(600);
            tokio::time::sleep(span).await;
            let per_sec = |after: usize, before: usize| (after - before) as f64 / span.as_secs_f64();
            println!(
                "idle fleet ({label}): 3 relays, 1000 idle shards, 10 min: lease-table writes {:.2}/s, GetRecords {:.1}/s ({:.3}/s per shard), full shard listings {:.4}/s (each ceil(1000/100) = 10 DescribeStream calls), child queries {:.3}/s (1 DescribeStream call each)",
                per_sec(leases.writes.load(Ordering::Relaxed), writes),
                per_sec(source.get_records_calls.load(Ordering::Relaxed), reads),
                per_sec(source.get_records_calls.load(Ordering::Relaxed), reads) / 1000.0,
                per_sec(source.listings.load(Ordering::Relaxed), listings),
                per_sec(source.child_queries.load(Ordering::Relaxed), children),
            );
            token.cancel();
            for r in runs {
                r.await.expect("no panic");
            }
        });
    }
}

/// `shards` open shards, each written at `per_shard` records/s from `start` for `for_` (a
/// steady stream of rows, record `i` of a shard at `start + i / per_shard`).
fn steady_shards(shards: usize, per_shard: f64, for_: Duration) -> FakeStream {
    let n = (per_shard * for_.as_secs_f64()).ceil() as usize;
    let stream = FakeStream::new(
        "arn:s",
        (0..shards)
            .map(|s| {
                let records = (0..n)
                    .map(|i| crate::stream::StreamRecord::new(
crate::stream::SequenceNumber::new(format!("{}", 100 + i)),
None,
&serde_json::json!({"eventID": format!("e{s}-{i}"), "eventName": "INSERT",
                                     "dynamodb": {"Keys": {"pk": {"S": format!("k{}", i % 50)}},
                                                  "NewImage": {"n": {"N": i.to_string()}}}}),
))
                    .collect();
                FakeShard::new(&format!("shardId-{s:05}"), None, false, records)
            })
            .collect(),
        1000,
    );
    let start = tokio::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / per_shard);
    let mut steady = stream.steady.lock().expect("lock");
    for s in 0..shards {
        steady.insert(format!("shardId-{s:05}"), (start, gap));
    }
    drop(steady);
    stream
}

/// #27's cost model, the busy side: 3 relays share a 12-shard table written at a steady
/// rate for 10 minutes (after a minute of settling), on paused time, with default settings and
/// with `idle_poll_interval = "30s"`:
/// the AWS calls each published event costs (GetRecords, lease-table writes, lease-table
/// scans, PutEvents calls). docs/concepts/cost.md prices them.
#[test]
#[ignore = "a measurement, run by hand: cargo test --release --lib busy_fleet_costs -- --ignored --nocapture"]
fn busy_fleet_costs_with_fakes() {
    const SHARDS: usize = 12;
    let settings = [
        ("defaults", ""),
        ("idle_poll_interval = 30s", "idle_poll_interval = \"30s\""),
    ];
    for ((label, extra), total_rate) in settings
        .iter()
        .flat_map(|s| [1.0, 10.0, 25.0, 50.0, 75.0, 100.0, 1000.0].map(|r| (*s, r)))
    {
        paused_runtime().block_on(async {
            let settle = Duration::from_secs(60);
            let span = Duration::from_secs(600);
            let source = Arc::new(steady_shards(
                SHARDS,
                total_rate / SHARDS as f64,
                settle + span + Duration::from_secs(60),
            ));
            let leases = Arc::new(FakeLeases::default());
            let token = CancellationToken::new();
            let mut publishers = Vec::new();
            let runs: Vec<_> = (0..3)
                .map(|i| {
                    let s = supervisor_with(&format!("w{i}"), &source, &leases, extra);
                    publishers.push(Arc::clone(&s.publisher));
                    tokio::spawn(s.run(token.clone()))
                })
                .collect();
            tokio::time::sleep(settle).await;
            let published = || {
                publishers
                    .iter()
                    .map(|p| p.accepted.lock().expect("lock").len())
                    .sum::<usize>()
            };
            let calls = || {
                publishers
                    .iter()
                    .map(|p| p.calls.load(Ordering::Relaxed))
                    .sum::<usize>()
            };
            let before = (
                published(),
                source.get_records_calls.load(Ordering::Relaxed),
                leases.writes.load(Ordering::Relaxed),
                leases.snapshots.load(Ordering::Relaxed),
                calls(),
            );
            tokio::time::sleep(span).await;
            let events = (published() - before.0) as f64;
            let reads = (source.get_records_calls.load(Ordering::Relaxed) - before.1) as f64;
            let writes = (leases.writes.load(Ordering::Relaxed) - before.2) as f64;
            let scans = (leases.snapshots.load(Ordering::Relaxed) - before.3) as f64;
            let puts = (calls() - before.4) as f64;
            let secs = span.as_secs_f64();
            println!(
                "busy fleet ({label}), {total_rate} events/s over {SHARDS} shards, 3 relays, 10 min: {:.1} events/s published; GetRecords {:.2}/s ({:.4} per event); lease-table writes {:.2}/s ({:.4} per event); lease-table scans {:.2}/s; PutEvents calls {:.2}/s ({:.3} per event)",
                events / secs,
                reads / secs,
                reads / events,
                writes / secs,
                writes / events,
                scans / secs,
                puts / secs,
                puts / events,
            );
            token.cancel();
            for r in runs {
                r.await.expect("no panic");
            }
        });
    }
}
