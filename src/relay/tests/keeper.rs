//! The lease keeper against the fake lease store: a held lease is kept by the worker heartbeat
//! alone (no lease write while it works), a lease neither the heartbeat nor a lease write
//! proved live in time stops its reader (fenced) until a confirmation succeeds, confirmations
//! run side by side with their own deadline, and a lease lost to a peer stops its reader. The
//! emulator cannot be made slow or throttled per call, hence the fake.

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
                owner: Some(WorkerId(owner.into())),
                counter: 1,
                ..Lease::new(
                    "arn:s",
                    &ShardId(format!("shard-{i}")),
                    None,
                    Checkpoint::TrimHorizon,
                )
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

/// Liveness is per worker: while the heartbeat succeeds, a hundred held leases cost one write
/// per round, the heartbeat, and no lease item is written.
#[tokio::test(start_paused = true)]
async fn held_leases_are_kept_by_the_heartbeat_alone() {
    let (store, keys) = store_with(100, "me");
    let held = HeldLeases::default();
    for k in &keys {
        held.hold(k);
    }
    let k = keeper(&store, &held);
    for _ in 0..20 {
        k.round().await;
        tokio::time::advance(RENEW).await;
    }
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        20,
        "one heartbeat a round"
    );
    assert!(
        keys.iter().all(|key| counter(&store, key) == 1),
        "no lease written"
    );
    assert!(keys.iter().all(|key| held.may_read(key)), "none fenced");
    let text = k.metrics.render();
    assert!(
        text.contains("outbox_relay_lease_renewal_age_seconds 0\n"),
        "the heartbeat's age (just sent), not the leases' (38 s): {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn confirmations_run_side_by_side_so_a_slow_table_delays_them_by_one_call_not_all() {
    let (store, keys) = store_with(40, "me");
    *store.renew_delay.lock().expect("lock") = Duration::from_millis(900);
    let held = HeldLeases::default();
    for k in &keys {
        held.hold(k);
        held.fence(k);
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
        "every lease confirmed within 3 waves"
    );
    assert!(
        keys.iter().all(|k| held.may_read(k)),
        "and no longer fenced"
    );
}

/// A confirmation slower than a round is not abandoned: the round goes on, no second one for
/// that lease is sent meanwhile, and when the slow one succeeds it still counts.
#[tokio::test(start_paused = true)]
async fn a_slow_confirmation_holds_no_round_back_is_not_repeated_and_still_counts() {
    let (store, keys) = store_with(1, "me");
    *store.renew_delay.lock().expect("lock") = Duration::from_secs(5);
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    held.fence(&keys[0]);
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
        "no second confirmation while the first is in flight"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        counter(&store, &keys[0]) > 1,
        "the slow confirmation landed"
    );
    assert!(held.may_read(&keys[0]));
}

/// A fenced lease a peer took meanwhile: its confirmation fails, and the reader stops.
#[tokio::test(start_paused = true)]
async fn a_fenced_lease_lost_to_a_peer_stops_its_reader() {
    let (store, keys) = store_with(1, "peer");
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    held.fence(&keys[0]);
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

/// The supervisor's scan shows a lease we hold owned by a peer (or by none): its reader stops
/// without a write; the leases still ours are kept.
#[tokio::test(start_paused = true)]
async fn a_lease_the_scan_shows_a_peers_stops_its_reader() {
    let (store, keys) = store_with(3, "me");
    let held = HeldLeases::default();
    let readers: Vec<CancellationToken> = keys
        .iter()
        .map(|k| {
            held.hold(k);
            let t = CancellationToken::new();
            held.reading(k, t.clone());
            t
        })
        .collect();
    {
        let mut table = store.leases.lock().expect("lock");
        table.get_mut(&keys[0]).expect("lease").owner = Some(WorkerId("peer".into()));
        table.get_mut(&keys[1]).expect("lease").owner = None;
    }
    let scan: Vec<Lease> = store
        .leases
        .lock()
        .expect("lock")
        .values()
        .cloned()
        .collect();
    let metrics = Metrics::new();
    let mut dropped = held.drop_taken(&scan, &WorkerId("me".into()), &metrics);
    dropped.sort();
    assert_eq!(dropped, vec![keys[0].clone(), keys[1].clone()]);
    assert!(readers[0].is_cancelled() && readers[1].is_cancelled());
    assert!(!readers[2].is_cancelled() && held.holds(&keys[2]));
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        0,
        "learnt without a write"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_not_proved_live_in_time_is_fenced_until_a_confirmation_succeeds() {
    // The heartbeat fails, and so would any lease write (a lease table we cannot write): a
    // peer would take the lease after lease_duration, so its reader must stop before.
    let (store, keys) = store_with(1, "me");
    store.renew_failing.store(true, Ordering::SeqCst);
    let held = HeldLeases::default();
    held.hold(&keys[0]);
    let reader = CancellationToken::new();
    held.reading(&keys[0], reader.clone());
    let k = keeper(&store, &held);
    // No heartbeat: after lease_duration - renew_interval (4 s), the reader pauses.
    k.round().await;
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(
        !held.is_fenced(&keys[0]),
        "2 s without a heartbeat is not yet late"
    );
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(held.is_fenced(&keys[0]), "4 s without a heartbeat: fenced");
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
    // The table answers again: the heartbeat alone does not lift the fence (a peer may have
    // taken the lease meanwhile); the confirmation of the same round does.
    store.renew_failing.store(false, Ordering::SeqCst);
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert!(held.may_read(&keys[0]) && !held.is_fenced(&keys[0]));
    assert!(
        counter(&store, &keys[0]) > 1,
        "confirmed by a write of the lease"
    );
    let writes = store.writes.load(Ordering::SeqCst);
    tokio::time::advance(RENEW).await;
    k.round().await;
    assert_eq!(
        store.writes.load(Ordering::SeqCst) - writes,
        1,
        "then the heartbeat alone again"
    );
}

/// Lease writes failing alone are not a reason to stop reading: while the heartbeat succeeds,
/// no peer takes the lease (see `lease::coordinator`).
#[tokio::test(start_paused = true)]
async fn failing_lease_writes_with_a_working_heartbeat_do_not_fence() {
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
