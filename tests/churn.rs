//! Recovering from faults (issues #13 and #17), against the emulator with the real binary and
//! three replicas over three tables:
//! - crash churn: rows written first, a replica killed (-9) and restarted every 4 s for a
//!   while, then no more faults: every row arrives, duplicates stay bounded by the checkpoint
//!   interval, and once the replicas have balanced no lease moves between them;
//! - a slow lease table: a proxy holds every DynamoDB call (the lease table's) for a random
//!   0–2 s; three healthy replicas never move a lease after balancing, and every row arrives.
//!
//! The CI runs are short; `scripts/bench` runs the issue's full scenario (`--ignored`) and
//! BENCHMARKS.md has its figures.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{distinct, republished, Fixture, Relay};

/// The shipped `config/local.toml` lease settings.
const LEASE_ENV: [(&str, &str); 2] = [
    ("OUTBOX_RELAY__LEASES__LEASE_DURATION", "6s"),
    ("OUTBOX_RELAY__LEASES__RENEW_INTERVAL", "2s"),
];
const LEASE_DURATION: Duration = Duration::from_secs(6);

/// Three outbox tables and a config reading all of them.
async fn three_tables(f: &Fixture) -> (Vec<String>, std::path::PathBuf) {
    let tables = vec![
        f.events_table.clone(),
        f.another_events_table().await,
        f.another_events_table().await,
    ];
    let config = f.config(&format!(
        r#"table_names = ["{}", "{}"]"#,
        tables[1], tables[2]
    ));
    (tables, config)
}

/// How often a log line appears in a relay's log.
fn count(relay: &Relay, message: &str) -> usize {
    relay
        .log_lines()
        .iter()
        .filter(|l| l["message"] == message)
        .count()
}

const FENCED: &str =
    "Lease not renewed in time; pausing its reader and checkpointing before a peer may take it.";
const LOST: &str =
    "Lease lost to a peer; stopping its reader (a peer continues from the last checkpoint).";

/// "Lease taken" lines in a relay's log so far, and those that took from a live owner.
fn takes(relay: &Relay) -> (usize, usize) {
    let lines = relay.log_lines();
    let taken = lines
        .iter()
        .filter(|l| l["message"] == "Lease taken.")
        .count();
    let from_live = lines
        .iter()
        .filter(|l| l["message"] == "Lease taken from an owner that still looked alive.")
        .count();
    (taken, from_live)
}

fn total_takes(relays: &[Relay]) -> (usize, usize) {
    relays
        .iter()
        .map(takes)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// What a churn run saw.
struct Churn {
    rows: usize,
    kills: usize,
    /// Deliveries of an event seen before (the relay's re-sends and SQS's own redeliveries).
    duplicates: usize,
    /// Events the relay published more than once.
    republished: usize,
    /// Lease takes logged after the replicas balanced (after the last kill).
    takes_after_balance: usize,
    /// Takes from an owner that still looked alive, over the whole run.
    takes_from_live: usize,
    /// Seconds from the last kill until every row had arrived.
    drained_after: f64,
    /// (seconds since start, distinct rows, duplicates), every `sample` seconds.
    timeline: Vec<(u64, usize, usize)>,
    /// Every row arrived within the run's time.
    complete: bool,
    /// Fenced and lost leases over the run, on the replicas alive at the end.
    fenced: usize,
    lost: usize,
}

/// Writes `rows_per_table` rows into each of three tables, starts three replicas, kills and
/// restarts one every 4 s for `kill_for`, then waits until every row has arrived and watches
/// the lease table for `calm_for` more.
async fn churn(
    rows_per_table: usize,
    kill_for: Duration,
    calm_for: Duration,
    sample: u64,
    max_run: Duration,
) -> Churn {
    let mut f = Fixture::new().await;
    let (tables, config) = three_tables(&f).await;
    let mut ids = Vec::new();
    for t in &tables {
        ids.extend(f.put_rows(t, rows_per_table).await);
    }
    let rows = ids.len();
    let start = || Relay::start_with_env(&config, &f.endpoint, &LEASE_ENV);
    let mut relays: Vec<Relay> = (0..3).map(|_| start()).collect();
    let mut retired = (0, 0); // takes logged by replicas that were killed
    let started = Instant::now();
    let mut received = Vec::new();
    let mut timeline = Vec::new();
    let mut next_sample = sample;
    let mut kills = 0;
    let mut next_kill = Duration::from_secs(4);
    let mut complete = true;
    let mut last_kill = started;
    loop {
        let now = started.elapsed();
        if now < kill_for && now >= next_kill {
            let victim = relays.remove(kills % relays.len());
            let t = takes(&victim);
            retired = (retired.0 + t.0, retired.1 + t.1);
            victim.kill9();
            relays.push(start());
            kills += 1;
            last_kill = Instant::now();
            next_kill += Duration::from_secs(4);
        }
        received.extend(f.receive_batch(1).await);
        if now.as_secs() >= next_sample {
            let (seen, dups) = distinct(&received);
            timeline.push((now.as_secs(), seen.len(), dups));
            next_sample += sample;
        }
        if now >= kill_for && distinct(&received).0.len() >= rows {
            break;
        }
        if now >= max_run {
            complete = false;
            break;
        }
    }
    let drained_after = last_kill.elapsed().as_secs_f64();
    // Balanced: a killed replica's leases expire (lease_duration) and are taken within a few
    // rounds. From then on, no lease moves.
    let balanced_at = last_kill + LEASE_DURATION * 3;
    while Instant::now() < balanced_at {
        received.extend(f.receive_batch(1).await);
    }
    let before = total_takes(&relays);
    let calm_until = Instant::now() + calm_for;
    while Instant::now() < calm_until {
        received.extend(f.receive_batch(1).await);
    }
    let after = total_takes(&relays);
    let (seen, duplicates) = distinct(&received);
    complete &= ids.iter().all(|id| seen.contains(id));
    let fenced = relays.iter().map(|r| count(r, FENCED)).sum();
    let lost = relays.iter().map(|r| count(r, LOST)).sum();
    Churn {
        rows,
        kills,
        duplicates,
        republished: republished(&received),
        takes_after_balance: after.0 - before.0,
        takes_from_live: retired.1 + after.1,
        drained_after,
        timeline,
        complete,
        fenced,
        lost,
    }
}

fn report(name: &str, c: &Churn) {
    eprintln!(
        "churn {name}: complete={}, {} rows, {} kills, {} re-published by the relay ({:.1} per kill), {} duplicate deliveries; every row arrived {:.1} s after the last kill; lease takes after balancing: {}; takes from live owners: {}; on the last replicas: {} fenced, {} lost",
        c.complete,
        c.rows,
        c.kills,
        c.republished,
        c.republished as f64 / c.kills.max(1) as f64,
        c.duplicates,
        c.drained_after,
        c.takes_after_balance,
        c.takes_from_live,
        c.fenced,
        c.lost
    );
    for (secs, rows, dups) in &c.timeline {
        eprintln!("churn {name}: t={secs}s delivered={rows} duplicates={dups}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_churn_then_calm_delivers_every_row_and_live_replicas_stop_moving_leases() {
    let c = churn(
        150,
        Duration::from_secs(20),
        Duration::from_secs(12),
        10,
        Duration::from_secs(300),
    )
    .await;
    report("ci", &c);
    assert!(c.complete, "every row delivered");
    assert_eq!(
        c.takes_after_balance, 0,
        "no lease moves between live replicas"
    );
    assert_eq!(c.takes_from_live, 0, "no lease taken from a live owner");
    // A kill re-sends what its shards published past their last checkpoint: at most about a
    // checkpoint interval of the emulator's rate (~50 events/s) plus the calls in flight
    // (10 calls of 10), per shard it held.
    assert!(
        c.republished <= c.kills * 3 * (50 + 100),
        "{} re-published for {} kills",
        c.republished,
        c.kills
    );
}

/// The issue's scenario: 3,000 rows over 3 tables, a kill every 4 s for 2 minutes, then calm.
/// With `OUTBOX_RELAY_TEST_BINARY` (another build) it only reports, for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about 4 minutes), run by scripts/bench"]
async fn crash_churn_full_scenario() {
    let c = churn(
        1000,
        Duration::from_secs(120),
        Duration::from_secs(60),
        30,
        Duration::from_secs(600),
    )
    .await;
    report("full", &c);
    if std::env::var("OUTBOX_RELAY_TEST_BINARY").is_err() {
        assert!(c.complete);
        assert_eq!(c.takes_after_balance, 0);
        assert_eq!(c.takes_from_live, 0);
    }
}

/// Every DynamoDB call (the lease table's) held 0–2 s at random by a proxy; the streams,
/// EventBridge and SQS go straight to the emulator.
async fn slow_lease_table(rows_per_table: usize, watch_for: Duration) -> (usize, usize, usize) {
    let mut f = Fixture::new().await;
    let (tables, config) = three_tables(&f).await;
    let proxy = Proxy::delaying(&f.endpoint, Duration::from_secs(2)).await;
    let mut env = LEASE_ENV.to_vec();
    env.push((
        "OUTBOX_RELAY__AWS__ENDPOINTS__DYNAMODB",
        proxy.endpoint.as_str(),
    ));
    let relays: Vec<Relay> = (0..3)
        .map(|_| Relay::start_with_env(&config, &f.endpoint, &env))
        .collect();
    // Balanced when every shard has an owner and the three replicas hold one each.
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let owners: Vec<String> = f
            .leases()
            .await
            .iter()
            .filter_map(|l| l.get("leaseOwner").and_then(|o| o.as_s().ok()).cloned())
            .collect();
        let distinct_owners: std::collections::HashSet<_> = owners.iter().collect();
        if owners.len() == 3 && distinct_owners.len() == 3 {
            break;
        }
        assert!(Instant::now() < end, "never balanced: {owners:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = total_takes(&relays);
    let mut ids = Vec::new();
    for t in &tables {
        ids.extend(f.put_rows(t, rows_per_table).await);
    }
    let mut received = Vec::new();
    let watch_until = Instant::now() + watch_for;
    f.receive_until(&mut received, Duration::from_secs(300), |r| {
        distinct(r).0.len() >= ids.len()
    })
    .await;
    while Instant::now() < watch_until {
        received.extend(f.receive_batch(1).await);
    }
    let after = total_takes(&relays);
    let (seen, _) = distinct(&received);
    assert!(
        ids.iter().all(|id| seen.contains(id)),
        "every row delivered"
    );
    drop(proxy);
    (after.0 - before.0, after.1, republished(&received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lease_table_moves_no_lease_between_healthy_replicas() {
    let (moves, from_live, dups) = slow_lease_table(100, Duration::from_secs(20)).await;
    eprintln!("slow lease table: {moves} lease moves after balancing, {from_live} from live owners, {dups} re-published");
    assert_eq!(moves, 0, "no lease moves after balancing");
    assert_eq!(from_live, 0);
    assert_eq!(dups, 0, "nothing re-sent without a fault");
}
