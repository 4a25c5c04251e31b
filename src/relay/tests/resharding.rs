//! Resharding through the real supervisor, with a fake source: a parent shard split into two
//! children. The emulator never splits shards (its one shard per table never closes), so the
//! split is made here, behind the same `ShardSource` trait the SDK implementation has.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Behaviour, FakeDeadLetters, FakeLeases, FakePublisher};
use crate::config::{Config, StartingPosition, StreamSelector};
use crate::lease::{Checkpoint, WorkerId};
use crate::relay::{Supervisor, SupervisorSettings};
use crate::stream::{
    IteratorPosition, RecordsPage, SequenceNumber, Shard, ShardId, ShardSource, SourceError,
    StreamRecord,
};
use crate::telemetry::{Health, Metrics, PendingRecords};

/// Closed shards with fixed records, listed children first (DescribeStream gives no order
/// guarantee), served two records per GetRecords call.
struct SplitSource {
    shards: Vec<Shard>,
    /// Cleared when the parent is trimmed from the stream (DescribeStream stops listing it).
    list_parent: std::sync::atomic::AtomicBool,
    records: HashMap<String, Vec<StreamRecord>>,
    /// Shard ids in the order their first GetRecords happened.
    first_reads: Mutex<Vec<String>>,
}

fn record(n: u64) -> StreamRecord {
    StreamRecord {
        sequence_number: SequenceNumber::new(format!("{}", 1000 + n)),
        created_at: None,
        json: json!({"eventID": format!("e{n}"), "eventName": "INSERT",
                     "dynamodb": {"Keys": {"pk": {"S": "same-key"}}, "NewImage": {"n": {"N": n.to_string()}}}}),
    }
}

impl SplitSource {
    fn new() -> Self {
        let shard = |id: &str, parent: Option<&str>| Shard {
            id: ShardId(id.into()),
            parent: parent.map(|p| ShardId(p.into())),
            ending_sequence_number: Some(SequenceNumber::new("9999")),
        };
        Self {
            shards: vec![
                shard("child-a", Some("parent")),
                shard("child-b", Some("parent")),
                shard("parent", None),
            ],
            list_parent: std::sync::atomic::AtomicBool::new(true),
            records: HashMap::from([
                ("parent".to_owned(), (0..20).map(record).collect()),
                ("child-a".to_owned(), (20..30).map(record).collect()),
                ("child-b".to_owned(), (30..40).map(record).collect()),
            ]),
            first_reads: Mutex::new(Vec::new()),
        }
    }
}

impl ShardSource for SplitSource {
    async fn latest_stream_arn(&self, _: &str) -> Result<String, SourceError> {
        Ok("arn:s".into())
    }
    async fn list_shards(&self, _: &str) -> Result<Vec<Shard>, SourceError> {
        let listed = self.list_parent.load(std::sync::atomic::Ordering::SeqCst);
        Ok(self
            .shards
            .iter()
            .filter(|s| listed || s.id.0 != "parent")
            .cloned()
            .collect())
    }
    async fn shard_iterator(
        &self,
        _: &str,
        shard: &ShardId,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        let records = &self.records[&shard.0];
        let start = match position {
            IteratorPosition::TrimHorizon => 0,
            IteratorPosition::Latest => records.len(),
            IteratorPosition::AfterSequenceNumber(seq) => records
                .iter()
                .position(|r| &r.sequence_number == seq)
                .map_or(0, |i| i + 1),
        };
        Ok(format!("{shard}:{start}"))
    }
    async fn get_records(&self, iterator: &str, _: usize) -> Result<RecordsPage, SourceError> {
        let (shard, start) = iterator.rsplit_once(':').expect("our iterator");
        let start: usize = start.parse().expect("index");
        {
            let mut first = self.first_reads.lock().expect("lock");
            if !first.iter().any(|s| s == shard) {
                first.push(shard.to_owned());
            }
        }
        let records = &self.records[shard];
        let end = (start + 2).min(records.len());
        Ok(RecordsPage {
            records: records[start..end].to_vec(),
            next_iterator: (end < records.len()).then(|| format!("{shard}:{end}")),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn children_are_read_only_after_their_parent_reached_shard_end() {
    let source = Arc::new(SplitSource::new());
    let publisher = Arc::new(FakePublisher::new(Behaviour::AcceptAll, None));
    let leases = Arc::new(FakeLeases::default());
    let supervisor = supervise(
        &source,
        &publisher,
        &leases,
        StreamSelector::Arn("arn:s".into()),
    );
    let token = CancellationToken::new();
    let run = tokio::spawn(supervisor.run(token.clone()));
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
    source
        .list_parent
        .store(false, std::sync::atomic::Ordering::SeqCst);
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
/// old ARN until `switched`, then the new one. Each stream has one closed shard.
struct ReplacedStream {
    switched: std::sync::atomic::AtomicBool,
}

impl ShardSource for ReplacedStream {
    async fn latest_stream_arn(&self, _: &str) -> Result<String, SourceError> {
        Ok(if self.switched.load(std::sync::atomic::Ordering::SeqCst) {
            "arn:new".into()
        } else {
            "arn:old".into()
        })
    }
    async fn list_shards(&self, arn: &str) -> Result<Vec<Shard>, SourceError> {
        Ok(vec![Shard {
            id: ShardId(format!("{arn}-shard")),
            parent: None,
            ending_sequence_number: Some(SequenceNumber::new("9999")),
        }])
    }
    async fn shard_iterator(
        &self,
        _: &str,
        shard: &ShardId,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        let start = match position {
            IteratorPosition::AfterSequenceNumber(seq) => {
                seq.as_str().parse::<u64>().map_or(0, |s| s - 999)
            }
            _ => 0,
        };
        Ok(format!("{shard}:{start}"))
    }
    async fn get_records(&self, iterator: &str, _: usize) -> Result<RecordsPage, SourceError> {
        let (shard, start) = iterator.rsplit_once(':').expect("ours");
        let start: u64 = start.parse().expect("index");
        let base = if shard.starts_with("arn:old") { 0 } else { 5 };
        // Record n = base + i sits at position i of its shard (sequence number 1000 + i).
        let records: Vec<StreamRecord> = (start..5)
            .map(|i| StreamRecord {
                sequence_number: SequenceNumber::new(format!("{}", 1000 + i)),
                ..record(base + i)
            })
            .collect();
        Ok(RecordsPage {
            records,
            next_iterator: None,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_replaced_stream_is_followed_and_the_old_one_read_to_its_end() {
    let source = Arc::new(ReplacedStream {
        switched: std::sync::atomic::AtomicBool::new(false),
    });
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
    source
        .switched
        .store(true, std::sync::atomic::Ordering::SeqCst);
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
