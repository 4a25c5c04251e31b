//! Keeps this process's leases alive, apart from the coordination round: every
//! `renew_interval`, the worker heartbeat and one renewal of every lease we hold, all at once
//! (at most [`RENEW_CONCURRENCY`] calls), each with its own deadline well inside
//! `lease_duration`. So renewals never wait behind each other, nor behind a scan of the lease
//! table or discovery, and a slow lease table delays them by at most one deadline.
//!
//! It also watches what it cannot fix: a lease a peer now owns stops its reader. And since a
//! peer takes a lease only when both its counter and its owner's heartbeat stood still for
//! `lease_duration`, a lease for which *neither* a renewal nor the heartbeat succeeded for
//! `lease_duration - renew_interval` (a lease table we cannot write) is fenced: its reader
//! stops at a safe point, which checkpoints, before a peer may take it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::{LeaseError, LeaseKey, LeaseStore, WorkerId};
use crate::telemetry::{LeaseEvent, Metrics};

/// Renewals in flight at once: enough for hundreds of leases per interval at tens of
/// milliseconds each, without flooding a throttled table.
pub const RENEW_CONCURRENCY: usize = 16;

/// A lease this process holds, as the keeper sees it.
#[derive(Debug)]
struct Kept {
    /// When the last successful renewal (or take, or checkpoint-free start) was sent.
    renewed_at: Instant,
    /// The reader's token, when one runs: cancelled on loss or fencing.
    reader: Option<CancellationToken>,
    /// The reader was stopped because renewals were late; no new reader until one succeeds.
    fenced: bool,
}

/// The leases this process holds, shared by the supervisor (which takes, sheds and releases
/// them, and starts readers) and the keeper (which renews them).
#[derive(Debug, Clone, Default)]
pub(super) struct HeldLeases(Arc<Mutex<HashMap<LeaseKey, Kept>>>);

/// When the worker heartbeat last succeeded (sent), shared by keeper rounds.
#[derive(Debug, Clone)]
pub(super) struct Heartbeat(Arc<Mutex<Instant>>);

impl Default for Heartbeat {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
}

impl HeldLeases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, Kept>> {
        // A panic while holding this lock is a bug elsewhere; the map itself stays consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// We hold `key` (just taken, or found ours in the table): renew it from now on.
    pub fn hold(&self, key: &LeaseKey) {
        self.lock().entry(key.clone()).or_insert_with(|| Kept {
            renewed_at: Instant::now(),
            reader: None,
            fenced: false,
        });
    }

    /// The reader of `key` now runs under `token`.
    pub fn reading(&self, key: &LeaseKey, token: CancellationToken) {
        if let Some(k) = self.lock().get_mut(key) {
            k.reader = Some(token);
        }
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
        self.keys()
    }

    /// Whether we hold `key`.
    #[cfg(test)]
    pub fn holds(&self, key: &LeaseKey) -> bool {
        self.lock().contains_key(key)
    }

    fn keys(&self) -> Vec<LeaseKey> {
        self.lock().keys().cloned().collect()
    }
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
    /// The deadline of one renewal or heartbeat: within one interval, and a third of the lease.
    fn deadline(&self) -> Duration {
        self.renew_interval.min(self.lease_duration / 3)
    }

    /// Renews every `renew_interval` until `token` is cancelled.
    ///
    /// # Cancel safety
    /// Cancel-safe at any point: a renewal cut short is one not made.
    pub async fn run(self, token: CancellationToken) {
        loop {
            let started = Instant::now();
            self.round().await;
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep_until(started + self.renew_interval) => {}
            }
        }
    }

    /// One renewal round: the heartbeat and every held lease, at once.
    pub async fn round(&self) {
        let deadline = self.deadline();
        let heartbeat = async {
            let sent = Instant::now();
            match tokio::time::timeout(deadline, self.leases.heartbeat(&self.owner)).await {
                Ok(Ok(())) => {
                    let mut at = self
                        .heartbeat
                        .0
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *at = (*at).max(sent);
                }
                Ok(Err(e)) => {
                    self.metrics
                        .lease_table_errors
                        .with_label_values(&["heartbeat", e.code()])
                        .inc();
                    tracing::warn!(error = %e, "Worker heartbeat failed; retrying next interval.");
                }
                Err(_) => {
                    self.metrics
                        .lease_table_errors
                        .with_label_values(&["heartbeat", "Timeout"])
                        .inc();
                    tracing::warn!(
                        ?deadline,
                        "Worker heartbeat timed out; retrying next interval."
                    );
                }
            }
        };
        let renewals = stream::iter(self.held.keys())
            .map(|key| async move {
                let sent = Instant::now();
                let timer = self.metrics.lease_renewal_duration_seconds.start_timer();
                let result =
                    tokio::time::timeout(deadline, self.leases.renew(&key, &self.owner)).await;
                timer.observe_duration();
                (key, sent, result)
            })
            .buffer_unordered(RENEW_CONCURRENCY)
            .collect::<Vec<_>>();
        let ((), results) = tokio::join!(heartbeat, renewals);
        for (key, sent, result) in results {
            self.apply(&key, sent, result);
        }
        self.watch();
    }

    fn apply(
        &self,
        key: &LeaseKey,
        sent: Instant,
        result: Result<Result<(), LeaseError>, tokio::time::error::Elapsed>,
    ) {
        let error = match result {
            Ok(Ok(())) => {
                if let Some(k) = self.held.lock().get_mut(key) {
                    k.renewed_at = k.renewed_at.max(sent);
                    k.fenced = false;
                }
                return;
            }
            Ok(Err(LeaseError::LeaseLost { .. })) => {
                let kept = self.held.lock().remove(key);
                if let Some(k) = kept {
                    LeaseEvent::Lost {
                        key,
                        renewed_ago: sent.duration_since(k.renewed_at),
                    }
                    .emit(&self.metrics);
                    if let Some(reader) = k.reader {
                        reader.cancel();
                    }
                }
                return;
            }
            Ok(Err(e)) => {
                self.metrics
                    .lease_table_errors
                    .with_label_values(&["renew", e.code()])
                    .inc();
                e.to_string()
            }
            Err(_) => {
                self.metrics
                    .lease_table_errors
                    .with_label_values(&["renew", "Timeout"])
                    .inc();
                format!("no answer within {:?}", self.deadline())
            }
        };
        LeaseEvent::RenewFailed { key, error: &error }.emit(&self.metrics);
    }

    /// Fences leases that a peer may soon consider expired (see the module documentation),
    /// and exports the oldest renewal's age.
    fn watch(&self) {
        let now = Instant::now();
        let fence_after = self.lease_duration.saturating_sub(self.renew_interval);
        let heartbeat_age = now.duration_since(
            *self
                .heartbeat
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut oldest = Duration::ZERO;
        let mut fenced = Vec::new();
        {
            let mut held = self.held.lock();
            for (key, k) in held.iter_mut() {
                let age = now.duration_since(k.renewed_at);
                oldest = oldest.max(age);
                if age.min(heartbeat_age) >= fence_after && !k.fenced {
                    k.fenced = true;
                    if let Some(reader) = k.reader.take() {
                        reader.cancel();
                    }
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
