//! Resharding through the real supervisor, with a fake source: a parent shard split into two
//! children. The emulator never splits shards (its one shard per table never closes), so the
//! split is made here, behind the same `ShardSource` trait the SDK implementation has.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Behaviour, FakeDeadLetters, FakeLeases, FakePublisher, FakeShard, FakeStream};
use crate::config::{Config, StartingPosition, StreamSelector};
use crate::lease::{Checkpoint, WorkerId};
use crate::relay::supervisor::FULL_LISTING_EVERY;
use crate::relay::{Supervisor, SupervisorSettings};
use crate::stream::{SequenceNumber, ShardSource, StreamRecord};
use crate::telemetry::{Health, Metrics, PendingRecords};

fn record(n: u64) -> StreamRecord {
    StreamRecord::new(
        SequenceNumber::new(format!("{}", 1000 + n)),
        None,
        &json!({"eventID": format!("e{n}"), "eventName": "INSERT",
                     "dynamodb": {"Keys": {"pk": {"S": "same-key"}}, "NewImage": {"n": {"N": n.to_string()}}}}),
    )
}

/// Closed shards with fixed records, listed children first (DescribeStream gives no order
/// guarantee), served two records per GetRecords call: a parent split into two children.
fn split_source() -> FakeStream {
    FakeStream::new(
        "arn:s",
        vec![
            FakeShard::new(
                "child-a",
                Some("parent"),
                true,
                (20..30).map(record).collect(),
            ),
            FakeShard::new(
                "child-b",
                Some("parent"),
                true,
                (30..40).map(record).collect(),
            ),
            FakeShard::new("parent", None, true, (0..20).map(record).collect()),
        ],
        2,
    )
}

/// Runs a supervisor over `source` (stream `arn:s`), listing it in full every
/// `full_listing_every` discoveries.
fn run_split(
    source: &Arc<FakeStream>,
    full_listing_every: u32,
) -> (
    Arc<FakePublisher>,
    Arc<FakeLeases>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let publisher = Arc::new(FakePublisher::new(Behaviour::AcceptAll, None));
    let leases = Arc::new(FakeLeases::default());
    let mut supervisor = supervise(
        source,
        &publisher,
        &leases,
        StreamSelector::Arn("arn:s".into()),
    );
    supervisor.settings.full_listing_every = full_listing_every;
    let token = CancellationToken::new();
    let run = tokio::spawn(supervisor.run(token.clone()));
    (publisher, leases, token, run)
}

#[tokio::test(start_paused = true)]
async fn children_are_read_only_after_their_parent_reached_shard_end() {
    let source = Arc::new(split_source());
    let (publisher, leases, token, run) = run_split(&source, FULL_LISTING_EVERY);
    eventually("all 40 records relayed", || {
        publisher.accepted.lock().expect("lock").len() >= 40
    })
    .await;
    // Every lease reaches SHARD_END; then the parent leaves the stream and its lease goes.
    eventually("all shards finish", || {
        leases
            .leases
            .lock()
            .expect("lock")
            .values()
            .all(|l| l.checkpoint == Checkpoint::ShardEnd)
    })
    .await;
    assert_eq!(
        leases.leases.lock().expect("lock").len(),
        3,
        "a listed parent keeps its lease"
    );
    source.unlist("parent");
    eventually("the trimmed parent's lease is deleted", || {
        leases.leases.lock().expect("lock").len() <= 2
    })
    .await;
    token.cancel();
    run.await.expect("no panic");

    let accepted = publisher.accepted.lock().expect("lock").clone();
    let mut sorted = accepted.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..40).collect::<Vec<u64>>(),
        "every record exactly once"
    );
    let last_parent = accepted
        .iter()
        .rposition(|&n| n < 20)
        .expect("parent records");
    let first_child = accepted
        .iter()
        .position(|&n| n >= 20)
        .expect("child records");
    assert!(
        last_parent < first_child,
        "the parent is done before any child: {accepted:?}"
    );
    for (lo, hi) in [(0, 20), (20, 30), (30, 40)] {
        let shard: Vec<u64> = accepted
            .iter()
            .copied()
            .filter(|&n| n >= lo && n < hi)
            .collect();
        assert!(
            shard.windows(2).all(|w| w[0] < w[1]),
            "order within a shard: {shard:?}"
        );
    }
    let first_reads = source.first_reads.lock().expect("lock").clone();
    assert_eq!(first_reads[0], "parent", "{first_reads:?}");
    // The parent's lease was deleted once it left the stream; the children's remain.
    let all = leases.leases.lock().expect("lock").clone();
    let mut kept: Vec<&str> = all.values().map(|l| l.shard_id.0.as_str()).collect();
    kept.sort_unstable();
    assert_eq!(kept, vec!["child-a", "child-b"]);
}

/// Children that appear after start-up (a split while the relay runs) are found by asking the
/// finished parent for its children (DescribeStream with a `CHILD_SHARDS` filter), not by
/// listing the whole stream again: one full listing in the whole run, at start-up (#27).
#[tokio::test(start_paused = true)]
async fn children_born_after_start_up_are_found_without_listing_the_stream_again() {
    let source = Arc::new(split_source());
    source.unlist("child-a");
    source.unlist("child-b");
    let (publisher, leases, token, run) = run_split(&source, 1_000_000);
    eventually("the parent is read to its end", || {
        leases
            .leases
            .lock()
            .expect("lock")
            .values()
            .any(|l| l.checkpoint == Checkpoint::ShardEnd)
    })
    .await;
    // The parent is finished and has no children yet: it is asked, and asked again.
    let asked = source.child_queries.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(source.child_queries.load(Ordering::SeqCst) > asked);
    assert_eq!(publisher.accepted.lock().expect("lock").len(), 20);
    // The split: both children appear; the next discovery finds them.
    source.relist("child-a");
    source.relist("child-b");
    eventually("all 40 records relayed", || {
        publisher.accepted.lock().expect("lock").len() >= 40
    })
    .await;
    let asked = source.child_queries.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    token.cancel();
    run.await.expect("no panic");
    assert_eq!(
        source.listings.load(Ordering::SeqCst),
        1,
        "the stream was listed in full once, at start-up"
    );
    // Both children are closed too in this fake, and have no children: each is asked in turn,
    // the parent no more (it has its children).
    let after = source.child_queries.load(Ordering::SeqCst) - asked;
    assert!(after > 0 && after <= 2 * 11, "{after} child queries in 2 s");
    let mut accepted = publisher.accepted.lock().expect("lock").clone();
    accepted.sort_unstable();
    assert_eq!(
        accepted,
        (0..40).collect::<Vec<u64>>(),
        "every record exactly once"
    );
}

/// The listing every `full_listing_every` discoveries still runs: it is what cleans up a
/// trimmed parent's lease, and the safety net for a child that appears after its sibling.
#[tokio::test(start_paused = true)]
async fn the_stream_is_still_listed_in_full_every_few_discoveries() {
    let source = Arc::new(split_source());
    let (_, _, token, run) = run_split(&source, FULL_LISTING_EVERY);
    // 10 s of discoveries every 200 ms, a full listing every 10 of them: about 5 listings.
    tokio::time::sleep(Duration::from_secs(10)).await;
    token.cancel();
    run.await.expect("no panic");
    let listings = source.listings.load(Ordering::SeqCst);
    assert!(
        (4..=6).contains(&listings),
        "{listings} full listings in 10 s"
    );
}

#[test]
fn a_child_of_a_known_parent_starts_at_trim_horizon_whatever_the_config_says() {
    use crate::relay::worker::initial_checkpoint;
    assert_eq!(
        initial_checkpoint(StartingPosition::Latest, true),
        Checkpoint::TrimHorizon
    );
    assert_eq!(
        initial_checkpoint(StartingPosition::Latest, false),
        Checkpoint::Latest
    );
    assert_eq!(
        initial_checkpoint(StartingPosition::TrimHorizon, false),
        Checkpoint::TrimHorizon
    );
}

/// A table whose stream is replaced (disabled and re-enabled): `latest_stream_arn` answers the
/// old ARN until switched, then the new one. Each stream has one closed shard of 5 records
/// (records 0-4 on the old one, 5-9 on the new).
fn replaced_stream() -> FakeStream {
    let shard = |arn: &str, base: u64| {
        let records = (0..5)
            .map(|i| {
                let mut r = record(base + i);
                r.sequence_number = SequenceNumber::new(format!("{}", 1000 + i));
                r
            })
            .collect();
        (
            arn.to_owned(),
            vec![FakeShard::new(&format!("{arn}-shard"), None, true, records)],
        )
    };
    FakeStream::replaced(vec![shard("arn:old", 0), shard("arn:new", 5)], 5)
}

#[tokio::test(start_paused = true)]
async fn a_replaced_stream_is_followed_and_the_old_one_read_to_its_end() {
    let source = Arc::new(replaced_stream());
    let publisher = Arc::new(FakePublisher::new(Behaviour::AcceptAll, None));
    let leases = Arc::new(FakeLeases::default());
    let supervisor = supervise(
        &source,
        &publisher,
        &leases,
        StreamSelector::Table("T".into()),
    );
    let token = CancellationToken::new();
    let run = tokio::spawn(supervisor.run(token.clone()));
    let wait_for = |n: usize| {
        let publisher = Arc::clone(&publisher);
        async move {
            eventually("records relayed", || {
                publisher.accepted.lock().expect("lock").len() >= n
            })
            .await;
        }
    };
    wait_for(5).await;
    source.switch_to(1);
    wait_for(10).await;
    token.cancel();
    run.await.expect("no panic");
    let mut accepted = publisher.accepted.lock().expect("lock").clone();
    accepted.sort_unstable();
    assert_eq!(accepted, (0..10).collect::<Vec<u64>>());
    let arns: std::collections::BTreeSet<String> = leases
        .leases
        .lock()
        .expect("lock")
        .values()
        .map(|l| l.stream_arn.clone())
        .collect();
    assert_eq!(
        arns.into_iter().collect::<Vec<_>>(),
        vec!["arn:new", "arn:old"]
    );
}

fn no_dead_letters() -> FakeDeadLetters {
    FakeDeadLetters {
        stored: Mutex::new(Vec::new()),
        fail_first: AtomicUsize::new(0),
        log: super::EventLog::default(),
    }
}

/// A supervisor over `source` with one route that unmarshalls every record.
fn supervise<S: ShardSource>(
    source: &Arc<S>,
    publisher: &Arc<FakePublisher>,
    leases: &Arc<FakeLeases>,
    selector: StreamSelector,
) -> Supervisor<S, FakePublisher, FakeLeases, FakeDeadLetters> {
    let config = Config::from_toml(
        "[source]\ntable_name = \"T\"\n[[routes]]\nname = \"all\"\nevent_bus_name = \"b\"\nsource = \"S\"\ndetail_type = \"T\"\nunmarshall = \"NewImage\"\n",
    )
    .expect("valid");
    Supervisor {
        source: Arc::clone(source),
        publisher: Arc::clone(publisher),
        leases: Arc::clone(leases),
        dead_letters: Arc::new(no_dead_letters()),
        streams: vec![(
            selector,
            Arc::new(
                config
                    .router_for(&config.source.streams()[0])
                    .expect("valid"),
            ),
        )],
        metrics: Metrics::new(),
        pending: PendingRecords::default(),
        health: Health::new(Duration::from_secs(30)),
        settings: settings(),
        owner: WorkerId("me".into()),
    }
}

/// Supervisor settings for these tests: short intervals on paused time.
fn settings() -> SupervisorSettings {
    SupervisorSettings {
        starting_position: StartingPosition::TrimHorizon,
        discovery_interval: Duration::from_millis(200),
        full_listing_every: FULL_LISTING_EVERY,
        lease_duration: Duration::from_millis(300),
        renew_interval: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        worker: super::worker_settings(),
    }
}

/// Waits (on paused time: instantly) until `done` holds; a minute of simulated time means the
/// relay is stuck.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}
