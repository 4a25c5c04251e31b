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

use common::proxy::{CountingProxy, Proxy};
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

/// Four receives at once: the emulator's PutEvents into SQS slows down as the queue grows, so
/// the reader of the queue must keep up for the relay's rate to show.
async fn receive(f: &Fixture) -> Vec<common::Received> {
    let (a, b, c, d) = tokio::join!(
        f.receive_batch(1),
        f.receive_batch(1),
        f.receive_batch(1),
        f.receive_batch(1)
    );
    [a, b, c, d].concat()
}

/// Warnings and errors in a relay's log, by message (and error code for failed calls).
fn warnings(log: &str, into: &mut std::collections::BTreeMap<String, usize>) {
    for line in log.lines() {
        let Ok(l) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if l["level"] != "WARN" && l["level"] != "ERROR" {
            continue;
        }
        let error = l["error"].as_str().unwrap_or_default();
        let code = error
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map_or("", |(code, _)| code);
        let key = format!("{} [{}]", l["message"].as_str().unwrap_or_default(), code);
        *into.entry(key).or_default() += 1;
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The run's timeline by publication time (SQS's `SentTimestamp`): every `sample` seconds
/// since `started_ms`, the distinct rows and the relay's re-sends (a new message for an event
/// already published) so far; and when the last row was first published.
fn by_publication(
    received: &[common::Received],
    started_ms: u64,
    sample: u64,
) -> (Vec<(u64, usize, usize)>, u64) {
    let mut messages: Vec<&common::Received> = received.iter().collect();
    messages.sort_by_key(|r| r.sent_ms);
    let mut ids = std::collections::HashSet::new();
    let mut events = std::collections::HashSet::new();
    let (mut rows, mut resent, mut last_row_ms) = (0, 0, 0);
    let mut timeline = Vec::new();
    let mut bucket_end = sample;
    for r in messages {
        if !ids.insert(r.message_id.as_str()) {
            continue; // SQS delivered the same message again
        }
        let at = r.sent_ms.saturating_sub(started_ms) / 1000;
        while at >= bucket_end {
            timeline.push((bucket_end, rows, resent));
            bucket_end += sample;
        }
        if events.insert(r.event_id()) {
            rows += 1;
            last_row_ms = r.sent_ms;
        } else {
            resent += 1;
        }
    }
    timeline.push((bucket_end, rows, resent));
    (timeline, last_row_ms)
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

/// A "Lease taken" line: when (ms since the epoch), and the previous owner's state as the
/// taker saw it ("none", "dead" or "alive").
struct Take {
    at_ms: u64,
    previous: String,
}

fn lease_takes(log: &str) -> Vec<Take> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|l| {
            let previous = match l["message"].as_str()? {
                "Lease taken." => l["previous_owner_state"].as_str()?.to_owned(),
                "Lease taken from an owner that still looked alive." => "alive".to_owned(),
                _ => return None,
            };
            let at = humantime::parse_rfc3339(l["timestamp"].as_str()?).ok()?;
            let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
            Some(Take {
                at_ms: u64::try_from(at_ms).ok()?,
                previous,
            })
        })
        .collect()
}

/// Lease takes in the replicas' logs so far, and those from a live owner.
fn total_takes(relays: &[Relay]) -> (usize, usize) {
    let takes: Vec<Take> = relays
        .iter()
        .flat_map(|r| lease_takes(&r.log_text()))
        .collect();
    let from_live = takes.iter().filter(|t| t.previous == "alive").count();
    (takes.len(), from_live)
}

/// What a churn run saw.
struct Churn {
    rows: usize,
    kills: usize,
    /// Deliveries of an event seen before (the relay's re-sends and SQS's own redeliveries).
    duplicates: usize,
    /// Events the relay published more than once.
    republished: usize,
    /// Seconds from the last kill until the last lease of a killed replica was taken over.
    balanced_after: f64,
    /// Lease takes logged after the replicas balanced.
    takes_after_balance: usize,
    /// Takes from an owner that still looked alive, over the whole run.
    takes_from_live: usize,
    /// Seconds from the last kill until every row had been published.
    drained_after: f64,
    /// (seconds since start, distinct rows published, re-sends published), every `sample`
    /// seconds, by when PutEvents delivered each message to the queue (not when the test read
    /// it: the queue may lag behind).
    timeline: Vec<(u64, usize, usize)>,
    /// Every row arrived within the run's time.
    complete: bool,
    /// Fenced and lost leases over the run, on the replicas alive at the end.
    fenced: usize,
    lost: usize,
    /// GetRecords calls all replicas made, killed ones included (counted by a proxy in front
    /// of the streams endpoint), and the run's length until every row was read from the queue.
    get_records: usize,
    run_secs: f64,
    /// For every re-sent event, ms from its first publication to the first kill after it
    /// (how old the victim's unwritten tail was), sorted.
    resend_ages_ms: Vec<u64>,
    /// Kills made before the last row was first published (while records still flowed).
    kills_while_flowing: usize,
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
    let streams = CountingProxy::start(&f.endpoint, "DynamoDBStreams_20120810.GetRecords").await;
    let mut env = LEASE_ENV.to_vec();
    env.push((
        "OUTBOX_RELAY__AWS__ENDPOINTS__DYNAMODBSTREAMS",
        streams.endpoint.as_str(),
    ));
    let start = || Relay::start_with_env(&config, &f.endpoint, &env);
    let relays: Vec<Relay> = (0..3).map(|_| start()).collect();
    let started = Instant::now();
    let started_ms = epoch_ms();
    // Kills keep their schedule while the queue is read (reading the emulator's queue can take
    // seconds per call), so the two run side by side.
    let killing = async {
        let mut relays = relays;
        let mut killed_logs = Vec::new();
        let mut kills = 0;
        let mut last_kill = (started, started_ms);
        let mut kill_times = Vec::new();
        loop {
            let at = started + Duration::from_secs(4) * (kills + 1);
            if at.duration_since(started) >= kill_for {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            let victim = relays.remove(kills as usize % relays.len());
            killed_logs.push(victim.kill9());
            relays.push(start());
            kills += 1;
            last_kill = (Instant::now(), epoch_ms());
            kill_times.push(last_kill.1);
        }
        (relays, killed_logs, kills as usize, last_kill, kill_times)
    };
    let reading = async {
        let mut received = Vec::new();
        loop {
            received.extend(receive(&f).await);
            let now = started.elapsed();
            if now >= kill_for && distinct(&received).0.len() >= rows {
                return (received, true);
            }
            if now >= max_run {
                return (received, false);
            }
        }
    };
    let ((relays, mut logs, kills, last_kill, kill_times), (mut received, mut complete)) =
        tokio::join!(killing, reading);
    let (get_records, run_secs) = (streams.count(), started.elapsed().as_secs_f64());
    let calm_until = Instant::now() + calm_for;
    while Instant::now() < calm_until {
        received.extend(receive(&f).await);
    }
    let (seen, duplicates) = distinct(&received);
    complete &= ids.iter().all(|id| seen.contains(id));
    let fenced = relays.iter().map(|r| count(r, FENCED)).sum();
    let lost = relays.iter().map(|r| count(r, LOST)).sum();
    logs.extend(relays.iter().map(Relay::log_text));
    let mut warned = std::collections::BTreeMap::new();
    for log in &logs {
        warnings(log, &mut warned);
    }
    for (message, n) in &warned {
        eprintln!("churn warnings: {n} x {message}");
    }
    // Balanced: every lease the killed replicas held has been taken over (no sooner than
    // lease_duration after the last kill). From then on, no lease may move.
    let takes: Vec<Take> = logs.iter().flat_map(|l| lease_takes(l)).collect();
    let lease_ms = u64::try_from(LEASE_DURATION.as_millis()).unwrap_or(0);
    let balanced_ms = takes
        .iter()
        .filter(|t| t.previous == "dead" && t.at_ms > last_kill.1)
        .map(|t| t.at_ms)
        .fold(last_kill.1 + lease_ms, u64::max);
    let (timeline, last_row_ms) = by_publication(&received, started_ms, sample);
    let drained_after = last_row_ms.saturating_sub(last_kill.1) as f64 / 1000.0;
    Churn {
        rows,
        kills,
        duplicates,
        republished: republished(&received),
        balanced_after: balanced_ms.saturating_sub(last_kill.1) as f64 / 1000.0,
        takes_after_balance: takes.iter().filter(|t| t.at_ms > balanced_ms).count(),
        takes_from_live: takes.iter().filter(|t| t.previous == "alive").count(),
        drained_after,
        timeline,
        complete,
        fenced,
        lost,
        get_records,
        run_secs,
        resend_ages_ms: resend_ages(&received, &kill_times),
        kills_while_flowing: kill_times.iter().filter(|k| **k < last_row_ms).count(),
    }
}

/// For every re-sent event, ms from its first publication to the first kill after it.
fn resend_ages(received: &[common::Received], kill_times: &[u64]) -> Vec<u64> {
    let mut messages: Vec<&common::Received> = received.iter().collect();
    messages.sort_by_key(|r| r.sent_ms);
    let mut ids = std::collections::HashSet::new();
    let mut first = std::collections::HashMap::new();
    let mut ages = Vec::new();
    for r in messages {
        if !ids.insert(r.message_id.as_str()) {
            continue;
        }
        let Some(&at) = first.get(r.event_id()) else {
            first.insert(r.event_id(), r.sent_ms);
            continue;
        };
        if let Some(kill) = kill_times.iter().find(|k| **k >= at) {
            ages.push(kill - at);
        }
    }
    ages.sort_unstable();
    ages
}

fn report(name: &str, c: &Churn) {
    eprintln!(
        "churn {name}: complete={}, {} rows, {} kills, {} re-published by the relay ({:.1} per kill), {} duplicate deliveries; every row published {:.1} s after the last kill; killed replicas' leases all taken over {:.1} s after the last kill; lease takes after that: {}; takes from live owners: {}; on the last replicas: {} fenced, {} lost",
        c.complete,
        c.rows,
        c.kills,
        c.republished,
        c.republished as f64 / c.kills.max(1) as f64,
        c.duplicates,
        c.drained_after,
        c.balanced_after,
        c.takes_after_balance,
        c.takes_from_live,
        c.fenced,
        c.lost
    );
    eprintln!(
        "churn {name}: {} GetRecords calls in {:.0} s ({:.2}/s per replica), {:.3} per published event ({} events published)",
        c.get_records,
        c.run_secs,
        c.get_records as f64 / c.run_secs / 3.0,
        c.get_records as f64 / (c.rows + c.republished) as f64,
        c.rows + c.republished
    );
    let a = &c.resend_ages_ms;
    let pick = |q: f64| {
        a.get(((a.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "churn {name}: re-sent events were first published before the next kill by p10 {} / p50 {} / p90 {} / max {} ms ({} measured); {} kills while rows flowed ({:.1} re-sends per such kill)",
        pick(0.1), pick(0.5), pick(0.9), pick(1.0), a.len(), c.kills_while_flowing,
        c.republished as f64 / c.kills_while_flowing.max(1) as f64
    );
    for (secs, rows, resent) in &c.timeline {
        eprintln!("churn {name}: published by t={secs}s: {rows} rows, {resent} re-sends");
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
        received.extend(receive(&f).await);
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
