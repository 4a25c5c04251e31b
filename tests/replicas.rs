//! Several relay processes sharing the shards of several tables through one lease table.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{distinct, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(90);

/// Owner of each lease (`None` when free), from the lease table.
async fn owners(f: &Fixture) -> Vec<Option<String>> {
    f.leases()
        .await
        .iter()
        .map(|l| l.get("leaseOwner").and_then(|o| o.as_s().ok()).cloned())
        .collect()
}

/// Waits until the lease table shows `shards` leases, every one owned, with these per-owner
/// counts (sorted); returns the owners.
async fn wait_for_distribution(
    f: &Fixture,
    shards: usize,
    counts: &[usize],
) -> HashMap<String, usize> {
    let end = Instant::now() + DEADLINE;
    loop {
        let owners = owners(f).await;
        let mut by_owner: HashMap<String, usize> = HashMap::new();
        for o in owners.iter().flatten() {
            *by_owner.entry(o.clone()).or_default() += 1;
        }
        let mut got: Vec<usize> = by_owner.values().copied().collect();
        got.sort_unstable();
        if owners.len() == shards && owners.iter().all(Option::is_some) && got == counts {
            return by_owner;
        }
        assert!(
            Instant::now() < end,
            "distribution {got:?} (of {} leases) never became {counts:?}",
            owners.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes one row into every table; returns their ids.
async fn one_row_each(f: &mut Fixture, tables: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for t in tables {
        ids.push(f.write_event_in(t, "BookAdded", 0).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_six_tables_survive_kill_9_and_hand_over_on_sigterm() {
    let mut f = Fixture::new().await;
    let mut tables = vec![f.events_table.clone()];
    for _ in 0..5 {
        tables.push(f.another_events_table().await);
    }
    let extra = format!(
        "table_names = [{}]",
        tables[1..]
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = f.config(&extra);
    let mut relays: Vec<Relay> = (0..3).map(|_| Relay::start(&config, &f.endpoint)).collect();

    // Balanced 2/2/2 within a few lease periods; every shard owned exactly once.
    let started = Instant::now();
    wait_for_distribution(&f, 6, &[2, 2, 2]).await;
    eprintln!(
        "replicas: 3 relays x 6 shards balanced 2/2/2 after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut received = Vec::new();
    let first = one_row_each(&mut f, &tables).await;
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 6)
        .await;

    // kill -9 one: its two shards are resumed by the others; nothing is lost.
    let killed = relays.remove(0);
    killed.kill9();
    let killed_at = Instant::now();
    let second = one_row_each(&mut f, &tables).await;
    wait_for_distribution(&f, 6, &[3, 3]).await;
    eprintln!(
        "replicas: kill -9 -> its shards owned again after {:.1} s (lease_duration 3 s)",
        killed_at.elapsed().as_secs_f64()
    );
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 12)
        .await;
    let (ids, dups) = distinct(&received);
    assert!(
        first.iter().chain(&second).all(|id| ids.contains(id)),
        "every row delivered"
    );
    eprintln!("replicas: kill -9 duplicates: {dups}");

    // SIGTERM one: it checkpoints and releases; the last relay takes over in about a renew
    // interval, and nothing is re-sent.
    let before = received.len();
    let survivor_count = received.len();
    let third = one_row_each(&mut f, &tables).await;
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 18)
        .await;
    let stopping = relays.remove(0);
    let stop_at = Instant::now();
    let (status, log) = stopping.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
    let released_after = stop_at.elapsed();
    wait_for_distribution(&f, 6, &[6]).await;
    let handed_over = stop_at.elapsed();
    eprintln!(
        "replicas: SIGTERM -> exited after {:.2} s, all 6 shards owned by the last relay after {:.2} s",
        released_after.as_secs_f64(),
        handed_over.as_secs_f64()
    );
    let fourth = one_row_each(&mut f, &tables).await;
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 24)
        .await;
    received.extend(f.receive_batch(1).await);
    let after_sigterm = &received[before..];
    let (ids, dups) = distinct(after_sigterm);
    assert!(third.iter().chain(&fourth).all(|id| ids.contains(id)));
    assert_eq!(dups, 0, "a clean hand-over re-sends nothing");
    assert!(survivor_count > 0);
    drop(relays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_does_not_hold_back_the_others_and_is_picked_up_once_created() {
    let mut f = Fixture::new().await;
    let missing = common::unique("later");
    let relay = Relay::start(
        &f.config(&format!("table_names = [\"{missing}\"]")),
        &f.endpoint,
    );
    relay.wait_ready(DEADLINE).await;
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains(&format!("outbox_relay_source_up{{source=\"{missing}\"}} 0")),
        "the missing source is reported down:\n{metrics}"
    );
    let existing = f.events_table.clone();
    let first = f.write_event_in(&existing, "BookAdded", 0).await;
    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| !r.is_empty())
        .await;
    assert_eq!(received[0].event_id(), first);

    f.create_events_table(&missing).await;
    let end = Instant::now() + DEADLINE;
    while !relay
        .get("/metrics")
        .await
        .1
        .contains(&format!("outbox_relay_source_up{{source=\"{missing}\"}} 1"))
    {
        assert!(
            Instant::now() < end,
            "the new table was never picked up:\n{}",
            relay.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay
        .wait_metric("outbox_relay_leases_owned", 2.0, DEADLINE)
        .await;
    let later = f.write_event_in(&missing, "BookAdded", 0).await;
    f.receive_until(&mut received, DEADLINE, |r| r.len() >= 2)
        .await;
    assert_eq!(received[1].event_id(), later);
}

/// The lease store on the emulator: a checkpoint is conditional on owner *and* epoch (#27). A
/// stale reader of an earlier take cannot move the checkpoint, even when the same worker took
/// the lease again (ABA), nor can another worker; the current take can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_needs_the_owner_and_the_epoch_of_its_take() {
    use outbox_relay::lease::{
        Checkpoint, DynamoDbLeaseStore, Lease, LeaseError, LeaseStore, WorkerId,
    };
    use outbox_relay::stream::{SequenceNumber, ShardId};

    let f = Fixture::new().await;
    let store = DynamoDbLeaseStore::new(f.ddb.clone(), f.lease_table.clone(), true);
    store.ensure_table().await.expect("lease table");
    let free = Lease::new(
        "arn:s",
        &ShardId("shard-1".into()),
        None,
        Checkpoint::TrimHorizon,
    );
    assert!(store.create(&free).await.expect("created"));
    let me = WorkerId("me".into());
    let first = store.take(&free, &me).await.expect("taken");
    assert_eq!(first.epoch, 1);
    let at = |n: &str| Checkpoint::Sequence(SequenceNumber::new(n));
    store
        .checkpoint(&first.key, &me, first.epoch, &at("100"), None)
        .await
        .expect("the take's own checkpoint");
    // Released and taken again by the same worker: a new epoch.
    store.release(&first.key, &me).await.expect("released");
    let snapshot = store.snapshot().await.expect("scan");
    let released = snapshot
        .leases
        .iter()
        .find(|l| l.key == first.key)
        .expect("lease");
    let second = store.take(released, &me).await.expect("taken again");
    assert_eq!(second.epoch, 2);
    let stale = store
        .checkpoint(&first.key, &me, first.epoch, &at("50"), None)
        .await;
    assert!(
        matches!(stale, Err(LeaseError::LeaseLost { .. })),
        "a stale reader of the same worker: {stale:?}"
    );
    let other = store
        .checkpoint(
            &first.key,
            &WorkerId("peer".into()),
            second.epoch,
            &at("50"),
            None,
        )
        .await;
    assert!(
        matches!(other, Err(LeaseError::LeaseLost { .. })),
        "{other:?}"
    );
    store
        .checkpoint(&second.key, &me, second.epoch, &at("200"), None)
        .await
        .expect("the current take");
    let snapshot = store.snapshot().await.expect("scan");
    let lease = snapshot
        .leases
        .iter()
        .find(|l| l.key == first.key)
        .expect("lease");
    assert_eq!(lease.checkpoint, at("200"), "the stale write moved nothing");
}
