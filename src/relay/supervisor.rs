//! The supervisor: start-up (lease table, stream), shard discovery, lease coordination, and
//! one worker task per owned shard; on shutdown it waits for the workers to checkpoint and
//! releases its leases so peers resume at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::worker::{initial_checkpoint, Worker, WorkerExit, WorkerSettings};
use crate::config::StartingPosition;
use crate::lease::{
    plan, Lease, LeaseAction, LeaseError, LeaseKey, LeaseObservations, LeaseStore, WorkerId,
};
use crate::pipeline::Router;
use crate::publish::{DeadLetterSink, EventPublisher};
use crate::stream::{lineage_order, ShardSource};
use crate::telemetry::{Health, Metrics, PendingRecords};

/// Where the stream comes from.
#[derive(Debug, Clone)]
pub enum StreamSelector {
    /// The latest stream of this table.
    Table(String),
    /// This stream.
    Arn(String),
}

/// How the supervisor coordinates.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub stream: StreamSelector,
    pub starting_position: StartingPosition,
    pub discovery_interval: Duration,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub worker: WorkerSettings,
}

/// Runs the relay for one stream.
pub struct Supervisor<S, P, L, D> {
    pub source: Arc<S>,
    pub publisher: Arc<P>,
    pub leases: Arc<L>,
    pub dead_letters: Arc<D>,
    pub router: Arc<Router>,
    pub metrics: Metrics,
    pub pending: PendingRecords,
    pub health: Health,
    pub settings: SupervisorSettings,
    pub owner: WorkerId,
}

struct Running {
    token: CancellationToken,
    handle: JoinHandle<WorkerExit>,
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Supervisor<S, P, L, D> {
    /// Runs until `token` is cancelled, then stops every worker (each checkpoints what it
    /// settled) and releases the leases.
    ///
    /// # Cancel safety
    /// Not cancel-safe: cancel `token` and await the future instead of dropping it.
    pub async fn run(self, token: CancellationToken) {
        let Some(stream_arn) = self.start_up(&token).await else {
            return;
        };
        let span = info_span!("stream", stream.arn = %stream_arn);
        self.coordinate(&stream_arn, &token).instrument(span).await;
    }

    /// Waits for the lease table and the stream, retrying with backoff. `None` if cancelled.
    async fn start_up(&self, token: &CancellationToken) -> Option<String> {
        let mut pause =
            super::backoff::backoff(self.settings.initial_backoff, self.settings.max_backoff);
        loop {
            self.health.tick();
            let attempt = async {
                self.leases
                    .ensure_table()
                    .await
                    .map_err(|e| e.to_string())?;
                match &self.settings.stream {
                    StreamSelector::Arn(arn) => Ok(arn.clone()),
                    StreamSelector::Table(table) => self
                        .source
                        .latest_stream_arn(table)
                        .await
                        .map_err(|e| e.to_string()),
                }
            };
            match attempt.await {
                Ok(arn) => {
                    info!(stream.arn = %arn, owner = %self.owner, "Relay started.");
                    return Some(arn);
                }
                Err(reason) => {
                    let delay = pause.next().unwrap_or(self.settings.max_backoff);
                    warn!(error = %reason, retry_in = ?delay, "Start-up failed (lease table or stream unreachable); retrying.");
                    tokio::select! {
                        () = token.cancelled() => return None,
                        () = sleep_ticking(delay, &self.health) => {}
                    }
                }
            }
        }
    }

    async fn coordinate(&self, stream_arn: &str, token: &CancellationToken) {
        let mut running: HashMap<LeaseKey, Running> = HashMap::new();
        let mut observations = LeaseObservations::default();
        let mut next_discovery = Instant::now();
        let mut discovered_once = false;
        loop {
            self.health.tick();
            if Instant::now() >= next_discovery {
                match self.discover(stream_arn).await {
                    Ok(()) => {
                        discovered_once = true;
                        next_discovery = Instant::now() + self.settings.discovery_interval;
                    }
                    Err(e) => {
                        warn!(error = %e, "Shard discovery failed; retrying next round.");
                    }
                }
            }
            match self.leases.list(stream_arn).await {
                Ok(leases) => {
                    observations.observe(&leases, Instant::now());
                    let actions = plan(
                        &leases,
                        &self.owner,
                        &observations,
                        Instant::now(),
                        self.settings.lease_duration,
                    );
                    self.execute(actions, &leases, &mut running, token).await;
                    self.health.set_ready(discovered_once);
                }
                Err(e) => {
                    warn!(error = %e, "Listing leases failed; retrying next round.");
                    self.health.set_ready(false);
                }
            }
            self.reap(&mut running).await;
            self.metrics.leases_owned.set(running.len() as i64);
            self.metrics.oldest_unpublished_record_age_seconds.set(
                self.pending
                    .oldest_age(std::time::SystemTime::now())
                    .as_secs_f64(),
            );
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(self.settings.renew_interval) => {}
            }
        }
        self.shut_down(running).await;
    }

    /// Creates a lease for every shard that has none, parents first.
    async fn discover(&self, stream_arn: &str) -> Result<(), String> {
        let shards = self.source.list_shards(stream_arn).await.map_err(|e| {
            self.metrics
                .stream_errors
                .with_label_values(&[e.code()])
                .inc();
            e.to_string()
        })?;
        self.metrics.shards_known.set(shards.len() as i64);
        let known: HashSet<_> = shards.iter().map(|s| s.id.clone()).collect();
        let existing: HashSet<_> = self
            .leases
            .list(stream_arn)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|l| l.shard_id)
            .collect();
        for shard in lineage_order(&shards) {
            if existing.contains(&shard.id) {
                continue;
            }
            let has_known_parent = shard
                .parent
                .as_ref()
                .is_some_and(|p| known.contains(p) || existing.contains(p));
            let lease = Lease {
                key: LeaseKey::new(stream_arn, &shard.id),
                stream_arn: stream_arn.to_owned(),
                shard_id: shard.id.clone(),
                owner: None,
                counter: 0,
                checkpoint: initial_checkpoint(self.settings.starting_position, has_known_parent),
                parent_shard_id: shard.parent.clone(),
                owner_switches_since_checkpoint: 0,
            };
            if self
                .leases
                .create(&lease)
                .await
                .map_err(|e| e.to_string())?
            {
                info!(shard.id = %shard.id, checkpoint = %lease.checkpoint, "New shard found; lease created.");
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        actions: Vec<LeaseAction>,
        leases: &[Lease],
        running: &mut HashMap<LeaseKey, Running>,
        token: &CancellationToken,
    ) {
        for action in actions {
            match action {
                LeaseAction::Take(observed) => match self.leases.take(&observed, &self.owner).await
                {
                    Ok(lease) => {
                        self.metrics
                            .lease_events
                            .with_label_values(&["taken"])
                            .inc();
                        info!(shard.id = %lease.shard_id, previous_owner = ?observed.owner.as_ref().map(|o| o.0.as_str()), "Lease taken.");
                        self.spawn(lease, running, token);
                    }
                    Err(LeaseError::LeaseLost { .. }) => {
                        debug!(shard.id = %observed.shard_id, "A peer took the lease first.");
                    }
                    Err(e) => warn!(error = %e, "Taking a lease failed."),
                },
                LeaseAction::Renew(key) => match self.leases.renew(&key, &self.owner).await {
                    Ok(()) => {
                        if !running.contains_key(&key) {
                            // Ours but not being read (its worker stopped): read it again.
                            if let Some(lease) = leases.iter().find(|l| l.key == key) {
                                self.spawn(lease.clone(), running, token);
                            }
                        }
                    }
                    Err(LeaseError::LeaseLost { .. }) => {
                        self.metrics.lease_events.with_label_values(&["lost"]).inc();
                        info!(lease = %key, "Lease lost to a peer; stopping its reader.");
                        if let Some(r) = running.get(&key) {
                            r.token.cancel();
                        }
                    }
                    Err(e) => warn!(error = %e, lease = %key, "Renewing a lease failed."),
                },
                LeaseAction::Release(key) => {
                    if running.contains_key(&key) {
                        continue; // its worker is still writing SHARD_END
                    }
                    match self.leases.release(&key, &self.owner).await {
                        Ok(()) => {
                            self.metrics
                                .lease_events
                                .with_label_values(&["released"])
                                .inc();
                        }
                        Err(e) => {
                            debug!(error = %e, lease = %key, "Releasing a finished lease failed.")
                        }
                    }
                }
            }
        }
    }

    fn spawn(
        &self,
        lease: Lease,
        running: &mut HashMap<LeaseKey, Running>,
        token: &CancellationToken,
    ) {
        let child = token.child_token();
        let span = info_span!("shard", shard.id = %lease.shard_id);
        let key = lease.key.clone();
        let worker = Worker {
            source: Arc::clone(&self.source),
            publisher: Arc::clone(&self.publisher),
            leases: Arc::clone(&self.leases),
            dead_letters: Arc::clone(&self.dead_letters),
            router: Arc::clone(&self.router),
            metrics: self.metrics.clone(),
            pending: self.pending.clone(),
            health: self.health.clone(),
            settings: Arc::new(self.settings.worker.clone()),
            owner: self.owner.clone(),
            lease,
            token: child.clone(),
        };
        let handle = tokio::spawn(worker.run().instrument(span));
        running.insert(
            key,
            Running {
                token: child,
                handle,
            },
        );
    }

    /// Collects finished workers; a panicked worker marks the process unhealthy.
    async fn reap(&self, running: &mut HashMap<LeaseKey, Running>) {
        let finished: Vec<LeaseKey> = running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for key in finished {
            let Some(r) = running.remove(&key) else {
                continue;
            };
            match r.handle.await {
                Ok(exit) => debug!(lease = %key, ?exit, "Shard reader finished."),
                Err(e) => {
                    error!(lease = %key, error = %e, "Shard reader panicked; the process is unhealthy and should be restarted.");
                    self.health.fail();
                }
            }
        }
    }

    /// Stops every worker (they checkpoint what they settled), then releases our leases.
    async fn shut_down(&self, running: HashMap<LeaseKey, Running>) {
        info!(
            leases = running.len(),
            "Shutting down: settling in-flight batches."
        );
        let mut released = 0;
        for (key, r) in running {
            r.token.cancel();
            let exit = match r.handle.await {
                Ok(exit) => exit,
                Err(e) => {
                    error!(lease = %key, error = %e, "Shard reader panicked during shutdown.");
                    self.health.fail();
                    continue;
                }
            };
            if exit == WorkerExit::LeaseLost {
                continue;
            }
            match self.leases.release(&key, &self.owner).await {
                Ok(()) => {
                    released += 1;
                    self.metrics
                        .lease_events
                        .with_label_values(&["released"])
                        .inc();
                }
                Err(e) => {
                    warn!(error = %e, lease = %key, "Releasing a lease failed; a peer takes it after it expires.")
                }
            }
        }
        self.metrics.leases_owned.set(0);
        info!(released, "Leases released; shutdown complete.");
    }
}

/// Sleeps while keeping the liveness tick fresh (start-up backoff can exceed the stall limit).
async fn sleep_ticking(total: Duration, health: &Health) {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        health.tick();
        tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(1))).await;
    }
}
