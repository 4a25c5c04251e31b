//! The lease keeper against the fake lease store: renewals run side by side with their own
//! deadline, a lease lost to a peer stops its reader, and a lease that cannot be renewed in
//! time stops its reader (fenced) until a renewal succeeds again. The emulator cannot be made
//! slow or throttled per call, hence the fake.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FakeLeases;
use crate::lease::{Checkpoint, Lease, LeaseKey, WorkerId};
use crate::relay::keeper::{Heartbeat, HeldLeases, Keeper};
use crate::stream::ShardId;
use crate::telemetry::Metrics;

const LEASE: Duration = Duration::from_secs(6);
const RENEW: Duration = Duration::from_secs(2);

fn store_with(n: usize, owner: &str) -> (Arc<FakeLeases>, Vec<LeaseKey>) {
    let store = FakeLeases::default();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = LeaseKey(format!("arn:s#shard-{i}"));
        store.leases.lock().expect("lock").insert(
            key.clone(),
            Lease {
                key: key.clone(),
                stream_arn: "arn:s".into(),
                shard_id: ShardId(format!("shard-{i}")),
                owner: Some(WorkerId(owner.into())),
                counter: 1,
                checkpoint: Checkpoint::TrimHorizon,
                parent_shard_id: None,
                owner_switches_since_checkpoint: 0,
                updated_at: None,
                checkpoint_created_at: None,
            },
        );
        keys.push(key);
    }
    (Arc::new(store), keys)
}

fn keeper(store: &Arc<FakeLeases>, held: &HeldLeases) -> Keeper<FakeLeases> {
    Keeper {
        leases: Arc::clone(store),
        held: held.clone(),
        heartbeat: Heartbeat::default(),
        owner: WorkerId("me".into()),
        metrics: Metrics::new(),
        renew_interval: RENEW,
        lease_duration: LEASE,
    }
}

fn counter(store: &FakeLeases, key: &LeaseKey) -> u64 {
    store.leases.lock().expect("lock")[key].counter
}

#[tokio::test(start_paused = true)]
async fn renewals_run_side_by_side_so_a_slow_table_delays_them_by_one_call_not_all() {
    let (store, keys) = store_with(40, "me");
    *store.renew_delay.lock().expect("lock") = Duration::from_millis(900);
    let held = HeldLeases::default();
    for k in &keys {
        held.hold(k);
    }
    let started = Instant::now();
    keeper(&store, &held).round().await;
    // 40 renewals of 0.9 s each, 16 at a time: 3 waves (2.7 s), not 36 s one after another;
    // the round itself waits at most its deadline (2 s), the last wave finishes on its own.
    assert_eq!(started.elapsed(), RENEW);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        store.renewing_peak.load(Ordering::SeqCst),
        super::super::keeper::RENEW_CONCURRENCY
    );
    assert!(
        keys.iter().all(|k| counter(&store, k) > 1),
        "every lease renewed within 3 waves"
    );
}

/// A renewal slower than a round is not abandoned: the round goes on, no second renewal of
/// that lease is sent meanwhile, and when the slow one succeeds it still counts.
#[tokio::test(start_paused = true)]
async fn a_slow_renewal_holds_no_round_back_is_not_repeated_and_still_counts() {
    let (store, keys) = store_with(1, "me");
    *store.renew_delay.lock().expect("lock") = Duration::from_secs(5);
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    let k = keeper(&store, &held);
    let started = Instant::now();
    k.round().await;
    assert_eq!(
        started.elapsed(),
        RENEW,
        "the round waited one deadline, not 5 s"
    );
    k.round().await;
    assert_eq!(
        store.renewing_peak.load(Ordering::SeqCst),
        1,
        "no second renewal while the first is in flight"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(counter(&store, &keys[0]) > 1, "the slow renewal landed");
    assert!(held.may_read(&keys[0]));
}

#[tokio::test(start_paused = true)]
async fn a_lease_lost_to_a_peer_stops_its_reader() {
    let (store, keys) = store_with(1, "peer");
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    let reader = CancellationToken::new();
    held.reading(&keys[0], reader.clone());
    let k = keeper(&store, &held);
    k.round().await;
    assert!(reader.is_cancelled());
    assert!(!held.holds(&keys[0]));
    assert!(k
        .metrics
        .render()
        .contains("outbox_relay_lease_events_total{event=\"lost\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn a_lease_not_renewed_in_time_is_fenced_until_a_renewal_succeeds() {
    // Renewals and the heartbeat fail alike (a lease table we cannot write): a peer would
    // take the lease after lease_duration, so its reader must stop before.
    let (store, keys) = store_with(1, "me");
    store.renew_failing.store(true, Ordering::SeqCst);
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    let reader = CancellationToken::new();
    held.reading(&keys[0], reader.clone());
    let k = keeper(&store, &held);
    // Failing renewals: after lease_duration - renew_interval (4 s), the reader pauses.
    k.round().await;
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(
        !held.is_fenced(&keys[0]),
        "2 s without a renewal is not yet late"
    );
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(held.is_fenced(&keys[0]), "4 s without a renewal: fenced");
    assert!(
        !reader.is_cancelled(),
        "the reader pauses; it is not stopped"
    );
    assert!(held.holds(&keys[0]) && !held.may_read(&keys[0]));
    let text = k.metrics.render();
    assert!(
        text.contains("outbox_relay_lease_events_total{event=\"fenced\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outbox_relay_lease_renewal_age_seconds 4"),
        "{text}"
    );
    // The table answers again: the lease may be read again.
    store.renew_failing.store(false, Ordering::SeqCst);
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(held.may_read(&keys[0]) && !held.is_fenced(&keys[0]));
}

/// Late renewals alone are not a reason to stop reading: while the heartbeat succeeds, no peer
/// takes the lease (see `lease::coordinator`).
#[tokio::test(start_paused = true)]
async fn late_renewals_with_a_working_heartbeat_do_not_fence() {
    let (store, keys) = store_with(1, "me");
    store.renew_failing.store(true, Ordering::SeqCst);
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    let reader = CancellationToken::new();
    held.reading(&keys[0], reader.clone());
    let k = keeper(&store, &held);
    for _ in 0..10 {
        // Renewals fail, but the heartbeat (answered separately below) succeeds.
        store.heartbeat_ok_once.store(true, Ordering::SeqCst);
        k.round().await;
        tokio::time::advance(RENEW).await;
    }
    assert!(!reader.is_cancelled() && !held.is_fenced(&keys[0]));
    assert!(held.may_read(&keys[0]));
}
