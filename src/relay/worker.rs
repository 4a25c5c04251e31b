//! The per-shard loop: get an iterator, read a page, hand it to delivery (`deliver.rs`), then
//! checkpoint the last fully handled record; poll adaptively; end on `SHARD_END`.
//!
//! Cancellation (shutdown, lease lost) is honoured between batches and while idle; a batch in
//! flight is always settled first, so a clean stop re-sends nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::StartingPosition;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore, WorkerId};
use crate::pipeline::Router;
use crate::publish::{DeadLetterSink, EventPublisher};
use crate::stream::{IteratorPosition, ShardSource, SourceError};
use crate::telemetry::{Health, Metrics, PendingRecords};

/// How a worker reads and publishes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub poll_interval: Duration,
    pub busy_poll_interval: Duration,
    pub max_records_per_poll: usize,
    pub max_batch_entries: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub event_id_attribute: Option<String>,
    /// Attempts per entry before a retryable failure is dead-lettered (`None` = unbounded).
    pub max_attempts: Option<u32>,
    /// Record age after which a retryable failure is dead-lettered (`None` = unbounded).
    pub max_record_age: Option<Duration>,
    /// Shared by every shard: bounds the PutEvents batches in flight at once.
    pub publish_permits: Arc<tokio::sync::Semaphore>,
}

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Shutdown or the supervisor asked it to stop; its progress is checkpointed.
    Cancelled,
    /// The shard is closed and fully relayed; `SHARD_END` is checkpointed.
    ShardEnded,
    /// A peer owns the lease now; nothing more was checkpointed.
    LeaseLost,
}

/// The seams and shared state a worker uses.
pub(super) struct Worker<S, P, L, D> {
    pub source: Arc<S>,
    pub publisher: Arc<P>,
    pub leases: Arc<L>,
    pub dead_letters: Arc<D>,
    pub router: Arc<Router>,
    pub metrics: Metrics,
    pub pending: PendingRecords,
    pub health: Health,
    pub settings: Arc<WorkerSettings>,
    pub owner: WorkerId,
    pub lease: Lease,
    pub token: CancellationToken,
}

/// How a page ended.
pub(super) enum PageEnd {
    /// Every entry settled.
    Done,
    /// Cancelled between batches.
    Cancelled,
}

/// The retry delays of this worker's settings (see `super::backoff`).
pub(super) fn backoff(settings: &WorkerSettings) -> impl Iterator<Item = Duration> {
    super::backoff::backoff(settings.initial_backoff, settings.max_backoff)
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Worker<S, P, L, D> {
    /// Runs until the shard ends, the lease is lost or the token is cancelled.
    ///
    /// # Cancel safety
    /// Meant to be spawned; it watches its own token and stops at safe points.
    pub async fn run(self) -> WorkerExit {
        let start = match &self.lease.checkpoint {
            Checkpoint::ShardEnd => return WorkerExit::ShardEnded,
            Checkpoint::TrimHorizon => IteratorPosition::TrimHorizon,
            Checkpoint::Latest => IteratorPosition::Latest,
            Checkpoint::Sequence(s) => IteratorPosition::AfterSequenceNumber(s.clone()),
        };
        info!(checkpoint = %self.lease.checkpoint, "Shard reader started.");
        let exit = self.read_loop(start).await;
        // Whatever its last call did, this shard no longer holds readiness down.
        self.health.publish_call_result(&self.lease.key.0, true);
        self.pending.clear(&self.lease.key.0);
        info!(?exit, "Shard reader stopped.");
        exit
    }

    async fn read_loop(&self, mut position: IteratorPosition) -> WorkerExit {
        let stream_arn = self.lease.stream_arn.as_str();
        let shard = &self.lease.shard_id;
        let mut iterator: Option<String> = None;
        let mut read_backoff = backoff(&self.settings);
        loop {
            if self.token.is_cancelled() {
                return WorkerExit::Cancelled;
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => match self
                    .source
                    .shard_iterator(stream_arn, shard, &position)
                    .await
                {
                    Ok(it) => it,
                    Err(e) => {
                        self.on_read_error(&e, &mut position);
                        if !self.sleep(read_backoff.next()).await {
                            return WorkerExit::Cancelled;
                        }
                        continue;
                    }
                },
            };
            self.metrics.get_records_requests.inc();
            let page = match self
                .source
                .get_records(&it, self.settings.max_records_per_poll)
                .await
            {
                Ok(page) => page,
                Err(SourceError::IteratorExpired) => {
                    self.metrics
                        .stream_errors
                        .with_label_values(&["ExpiredIteratorException"])
                        .inc();
                    debug!("Shard iterator expired; getting a new one from the checkpoint.");
                    continue;
                }
                Err(e) => {
                    self.on_read_error(&e, &mut position);
                    if !self.sleep(read_backoff.next()).await {
                        return WorkerExit::Cancelled;
                    }
                    continue;
                }
            };
            read_backoff = backoff(&self.settings);
            let mut page = page;
            let got_records = !page.records.is_empty();
            if got_records {
                self.metrics.records_read.inc_by(page.records.len() as u64);
                let (end, last) = self.relay_page(&mut page.records).await;
                if let Some(last) = last {
                    if let Err(exit) = self.checkpoint(&Checkpoint::Sequence(last.clone())).await {
                        return exit;
                    }
                    position = IteratorPosition::AfterSequenceNumber(last);
                }
                if matches!(end, PageEnd::Cancelled) {
                    return WorkerExit::Cancelled;
                }
            }
            match page.next_iterator {
                None => {
                    info!("Shard ended and fully relayed.");
                    return match self.checkpoint(&Checkpoint::ShardEnd).await {
                        Ok(()) => WorkerExit::ShardEnded,
                        Err(exit) => exit,
                    };
                }
                Some(next) => iterator = Some(next),
            }
            let pause = if got_records {
                self.settings.busy_poll_interval
            } else {
                self.settings.poll_interval
            };
            if !self.sleep(Some(pause)).await {
                return WorkerExit::Cancelled;
            }
        }
    }

    /// Counts and logs a read error; trimmed data moves the position to the trim horizon.
    fn on_read_error(&self, e: &SourceError, position: &mut IteratorPosition) {
        self.metrics
            .stream_errors
            .with_label_values(&[e.code()])
            .inc();
        match e {
            SourceError::TrimmedData => {
                error!(
                    error = %e,
                    position = ?position,
                    "Records were trimmed before they were relayed (older than the 24 h retention); resuming at TRIM_HORIZON."
                );
                *position = IteratorPosition::TrimHorizon;
            }
            _ => warn!(error = %e, "Reading the shard failed; retrying with backoff."),
        }
    }

    /// Sleeps for `pause` unless cancelled first. `false` when cancelled.
    async fn sleep(&self, pause: Option<Duration>) -> bool {
        let pause = pause.unwrap_or(self.settings.max_backoff);
        if pause.is_zero() {
            return !self.token.is_cancelled();
        }
        tokio::select! {
            biased;
            () = self.token.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    /// Writes a checkpoint; `Err` tells the loop to stop (the lease is gone or the store is
    /// down for good).
    async fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), WorkerExit> {
        let mut pause = backoff(&self.settings);
        loop {
            match self
                .leases
                .checkpoint(&self.lease.key, &self.owner, checkpoint)
                .await
            {
                Ok(()) => {
                    self.metrics.checkpoints.inc();
                    debug!(%checkpoint, "Checkpoint written.");
                    return Ok(());
                }
                Err(LeaseError::LeaseLost { .. }) => {
                    info!(%checkpoint, "Lease lost before checkpointing; a peer continues from its last checkpoint.");
                    return Err(WorkerExit::LeaseLost);
                }
                Err(e) => {
                    self.metrics
                        .lease_table_errors
                        .with_label_values(&["checkpoint", e.code()])
                        .inc();
                    warn!(error = %e, %checkpoint, "Checkpoint failed; retrying.");
                    // Keep trying while we may own the lease; on shutdown, give up after the
                    // grace period (the process exits) and let the next owner re-send.
                    tokio::time::sleep(pause.next().unwrap_or(self.settings.max_backoff)).await;
                }
            }
        }
    }
}

/// The checkpoint a new lease starts from.
#[must_use]
pub fn initial_checkpoint(start: StartingPosition, has_known_parent: bool) -> Checkpoint {
    // A child of a shard we relay must be read from its start, or records written between
    // the split and our first read of the child would be skipped (KCL does the same).
    if has_known_parent {
        return Checkpoint::TrimHorizon;
    }
    match start {
        StartingPosition::TrimHorizon => Checkpoint::TrimHorizon,
        StartingPosition::Latest => Checkpoint::Latest,
    }
}
