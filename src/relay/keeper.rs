//! Keeps this process's leases alive, apart from the coordination round. **Liveness is per
//! worker, not per lease**: every `renew_interval` the keeper sends the worker heartbeat, one
//! write however many leases the worker holds, and that heartbeat keeps them all. A lease item
//! is written only when its owner changes (take, hand-off, release) or its checkpoint moves,
//! so an idle fleet's lease-table writes do not grow with its shards. Peers take a lease only
//! when both its counter and its owner's heartbeat stood still for `lease_duration` (see
//! `lease::coordinator`), so a moving heartbeat is all a live owner needs.
//!
//! Fencing stays sound without per-lease writes. A lease whose owner proved neither its
//! heartbeat nor a write of the lease itself (a checkpoint, which bumps its counter) for
//! `lease_duration - renew_interval` is **fenced** (a lease table we cannot write, or one so
//! slow that none of our writes came back): its reader pauses — sends no new PutEvents call and
//! reads no new page — while its calls in flight settle and its checkpoint is written, before a
//! peer may take it. A fenced lease is the one kind the keeper writes: each round it sends a
//! **confirmation** (a renewal conditional on our ownership), and only a successful one (or a
//! checkpoint) lifts the fence, because a heartbeat alone cannot tell whether a peer took the
//! lease meanwhile. If a peer did, the confirmation fails and the reader stops.
//!
//! Calls of a round are sent at once (at most [`RENEW_CONCURRENCY`] in flight); a round waits
//! for them at most `min(renew_interval, lease_duration / 3)`; a slower call is not abandoned
//! but left to finish, and still counts when it succeeds, and no second call for the same lease
//! (or a second heartbeat) is sent while one is in flight: a slow table gets no extra load from
//! us.
//!
//! A lease a peer now owns stops its reader: a failed confirmation or checkpoint says so, and
//! so does the supervisor's (strongly consistent) scan of the lease table every round
//! ([`HeldLeases::drop_taken`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lease::{LeaseError, LeaseKey, LeaseStore, WorkerId};
use crate::telemetry::{LeaseEvent, Metrics};

/// Renewals in flight at once: enough for hundreds of leases per interval at tens of
/// milliseconds each, without flooding a throttled table.
pub const RENEW_CONCURRENCY: usize = 16;

/// A lease this process holds, as the keeper sees it.
#[derive(Debug)]
struct Kept {
    /// When the last successful write that bumped its counter (take, renewal, checkpoint)
    /// was sent.
    renewed_at: Instant,
    /// The reader's token, when one runs: cancelled when the lease is lost.
    reader: Option<CancellationToken>,
    /// Renewals were late: the reader pauses, and no new reader starts, until one succeeds.
    fenced: bool,
    /// A renewal is in flight (no second one is sent).
    renewing: bool,
}

/// The leases this process holds, shared by the supervisor (which takes, sheds and releases
/// them, and starts readers), the readers (whose checkpoints renew) and the keeper.
#[derive(Debug, Clone, Default)]
pub struct HeldLeases(Arc<Mutex<HashMap<LeaseKey, Kept>>>);

/// When the worker heartbeat last succeeded (sent), and whether one is in flight.
#[derive(Debug, Clone)]
pub(super) struct Heartbeat(Arc<Mutex<(Instant, bool)>>);

impl Default for Heartbeat {
    fn default() -> Self {
        Self(Arc::new(Mutex::new((Instant::now(), false))))
    }
}

impl Heartbeat {
    fn lock(&self) -> MutexGuard<'_, (Instant, bool)> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a heartbeat was sent and not yet answered.
    pub(super) fn in_flight(&self) -> bool {
        self.lock().1
    }
}

impl HeldLeases {
    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseKey, Kept>> {
        // A panic while holding this lock is a bug elsewhere; the map itself stays consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// We hold `key` (just taken, or found ours in the table): renew it from now on.
    pub fn hold(&self, key: &LeaseKey) {
        self.lock().entry(key.clone()).or_insert_with(|| Kept {
            renewed_at: Instant::now(),
            reader: None,
            fenced: false,
            renewing: false,
        });
    }

    /// The reader of `key` now runs under `token`.
    pub fn reading(&self, key: &LeaseKey, token: CancellationToken) {
        if let Some(k) = self.lock().get_mut(key) {
            k.reader = Some(token);
        }
    }

    /// A write sent at `sent` bumped `key`'s counter (a renewal, or a reader's checkpoint).
    pub fn renewed(&self, key: &LeaseKey, sent: Instant) {
        if let Some(k) = self.lock().get_mut(key) {
            k.renewed_at = k.renewed_at.max(sent);
            k.fenced = false;
        }
    }

    /// Whether `key`'s reader must pause (see the module documentation).
    pub fn is_fenced(&self, key: &LeaseKey) -> bool {
        self.lock().get(key).is_some_and(|k| k.fenced)
    }

    /// Whether a reader may be started for `key`: held, and not fenced.
    pub fn may_read(&self, key: &LeaseKey) -> bool {
        self.lock().get(key).is_some_and(|k| !k.fenced)
    }

    /// We no longer hold `key` (released, shed, lost).
    pub fn forget(&self, key: &LeaseKey) {
        self.lock().remove(key);
    }

    /// Every lease we hold.
    pub fn all(&self) -> Vec<LeaseKey> {
        self.lock().keys().cloned().collect()
    }

    /// Fences `key` as the keeper would.
    #[cfg(test)]
    pub fn fence(&self, key: &LeaseKey) {
        if let Some(k) = self.lock().get_mut(key) {
            k.fenced = true;
        }
    }

    /// Whether we hold `key`.
    #[cfg(test)]
    pub fn holds(&self, key: &LeaseKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Marks every fenced lease without a confirmation in flight as renewing, and returns
    /// them (see the module documentation: only fenced leases are written by the keeper).
    fn start_confirmations(&self) -> Vec<LeaseKey> {
        let mut held = self.lock();
        held.iter_mut()
            .filter(|(_, k)| k.fenced && !k.renewing)
            .map(|(key, k)| {
                k.renewing = true;
                key.clone()
            })
            .collect()
    }

    fn renewal_done(&self, key: &LeaseKey) {
        if let Some(k) = self.lock().get_mut(key) {
            k.renewing = false;
        }
    }

    /// Drops every lease we hold that `leases` (a strongly consistent scan of the lease table)
    /// shows owned by another worker or by none, stopping its reader: what a failed
    /// confirmation would tell us, learnt without a write. Returns the keys dropped.
    pub fn drop_taken(
        &self,
        leases: &[crate::lease::Lease],
        me: &WorkerId,
        metrics: &Metrics,
    ) -> Vec<LeaseKey> {
        let taken: Vec<LeaseKey> = {
            let held = self.lock();
            leases
                .iter()
                .filter(|l| held.contains_key(&l.key) && l.owner.as_ref() != Some(me))
                .map(|l| l.key.clone())
                .collect()
        };
        let now = Instant::now();
        for key in &taken {
            self.lose(key, now, metrics);
        }
        taken
    }

    /// We learnt at `now` that a peer holds `key`: forget it and stop its reader.
    fn lose(&self, key: &LeaseKey, now: Instant, metrics: &Metrics) {
        let kept = self.lock().remove(key);
        if let Some(k) = kept {
            LeaseEvent::Lost {
                key,
                renewed_ago: now.saturating_duration_since(k.renewed_at),
            }
            .emit(metrics);
            if let Some(reader) = k.reader {
                reader.cancel();
            }
        }
    }
}

/// Whether a lease must pause its reader: neither a write of the lease (`lease_age` since the
/// last one was sent) nor the worker heartbeat (`heartbeat_age`) succeeded for
/// `lease_duration - renew_interval`, so a peer may take it within one more interval.
#[must_use]
pub fn must_fence(
    lease_age: Duration,
    heartbeat_age: Duration,
    lease_duration: Duration,
    renew_interval: Duration,
) -> bool {
    lease_age.min(heartbeat_age) >= lease_duration.saturating_sub(renew_interval)
}

/// What the keeper needs.
pub(super) struct Keeper<L> {
    pub leases: Arc<L>,
    pub held: HeldLeases,
    pub heartbeat: Heartbeat,
    pub owner: WorkerId,
    pub metrics: Metrics,
    pub renew_interval: Duration,
    pub lease_duration: Duration,
}

impl<L: LeaseStore> Keeper<L> {
    /// How long a round waits for its calls: within one interval, and a third of the lease.
    fn deadline(&self) -> Duration {
        self.renew_interval.min(self.lease_duration / 3)
    }

    /// Renews every `renew_interval` until `token` is cancelled.
    ///
    /// # Cancel safety
    /// Cancel-safe at any point: calls still in flight finish on their own.
    pub async fn run(self, token: CancellationToken) {
        loop {
            let started = Instant::now();
            self.round()
                .instrument(crate::telemetry::spans::call("lease renewals"))
                .await;
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep_until(started + self.renew_interval) => {}
            }
        }
    }

    /// One round: the heartbeat and a confirmation of every fenced lease without one in
    /// flight, all sent at once; waits for them at most [`Keeper::deadline`], then checks for
    /// fencing.
    pub async fn round(&self) {
        let mut calls = JoinSet::new();
        let permits = Arc::new(Semaphore::new(RENEW_CONCURRENCY));
        let start_heartbeat = {
            let mut hb = self.heartbeat.lock();
            !std::mem::replace(&mut hb.1, true)
        };
        if start_heartbeat {
            let (leases, owner, heartbeat, metrics) = (
                Arc::clone(&self.leases),
                self.owner.clone(),
                self.heartbeat.clone(),
                self.metrics.clone(),
            );
            calls.spawn(async move {
                let sent = Instant::now();
                let result = leases.heartbeat(&owner).await;
                let mut hb = heartbeat.lock();
                hb.1 = false;
                match result {
                    Ok(()) => hb.0 = hb.0.max(sent),
                    Err(e) => {
                        metrics
                            .lease_table_errors
                            .with_label_values(&["heartbeat", e.code()])
                            .inc();
                        tracing::warn!(error = %e, "Worker heartbeat failed; retrying next interval.");
                    }
                }
            });
        }
        for key in self.held.start_confirmations() {
            let (leases, owner, held, metrics, permits) = (
                Arc::clone(&self.leases),
                self.owner.clone(),
                self.held.clone(),
                self.metrics.clone(),
                Arc::clone(&permits),
            );
            calls.spawn(async move {
                // The semaphore is never closed.
                let _permit = permits.acquire_owned().await;
                let sent = Instant::now();
                let timer = metrics.lease_renewal_duration_seconds.start_timer();
                let result = leases.renew(&key, &owner).await;
                timer.observe_duration();
                held.renewal_done(&key);
                settle_renewal(&held, &metrics, &key, sent, result);
            });
        }
        let deadline = self.deadline();
        let all_done = async { while calls.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all_done).await.is_err() {
            // Slow calls finish on their own and still count; the round goes on.
            tracing::debug!(
                ?deadline,
                "Lease-table calls slower than a round; not waiting."
            );
            calls.detach_all();
        }
        self.watch();
    }

    /// Fences leases that a peer may soon consider expired (see the module documentation),
    /// and exports the age of the oldest proof of liveness among held leases (the heartbeat's,
    /// or a write of the lease, whichever is younger).
    fn watch(&self) {
        let now = Instant::now();
        let heartbeat_age = now.duration_since(self.heartbeat.lock().0);
        let mut oldest = Duration::ZERO;
        let mut fenced = Vec::new();
        {
            let mut held = self.held.lock();
            for (key, k) in held.iter_mut() {
                let age = now.duration_since(k.renewed_at);
                oldest = oldest.max(age.min(heartbeat_age));
                if must_fence(age, heartbeat_age, self.lease_duration, self.renew_interval)
                    && !k.fenced
                {
                    k.fenced = true;
                    fenced.push((key.clone(), age));
                }
            }
        }
        for (key, renewed_ago) in fenced {
            LeaseEvent::Fenced {
                key: &key,
                renewed_ago,
            }
            .emit(&self.metrics);
        }
        self.metrics
            .lease_renewal_age_seconds
            .set(oldest.as_secs_f64());
    }
}

/// Applies a renewal's answer.
fn settle_renewal(
    held: &HeldLeases,
    metrics: &Metrics,
    key: &LeaseKey,
    sent: Instant,
    result: Result<(), LeaseError>,
) {
    match result {
        Ok(()) => held.renewed(key, sent),
        Err(LeaseError::LeaseLost { .. }) => held.lose(key, sent, metrics),
        Err(e) => {
            metrics
                .lease_table_errors
                .with_label_values(&["renew", e.code()])
                .inc();
            LeaseEvent::RenewFailed {
                key,
                error: &e.to_string(),
            }
            .emit(metrics);
        }
    }
}
