//! The per-shard loop: read a page, route it, publish its entries batch by batch (each batch
//! settled before the next is sent), then checkpoint the last fully handled record.
//!
//! Cancellation (shutdown, lease lost) is honoured between batches and while idle; a batch in
//! flight is always settled first, so a clean stop re-sends nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::progress::settled_through;
use crate::config::StartingPosition;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore, WorkerId};
use crate::pipeline::route::stable_event_id;
use crate::pipeline::{Batches, Entry, Router};
use crate::publish::{is_retryable_entry_code, Disposition, EventPublisher};
use crate::stream::{IteratorPosition, SequenceNumber, ShardSource, SourceError, StreamRecord};
use crate::telemetry::Metrics;

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
pub(super) struct Worker<S, P, L> {
    pub source: Arc<S>,
    pub publisher: Arc<P>,
    pub leases: Arc<L>,
    pub router: Arc<Router>,
    pub metrics: Metrics,
    pub settings: Arc<WorkerSettings>,
    pub owner: WorkerId,
    pub lease: Lease,
    pub token: CancellationToken,
}

/// How a page ended.
enum PageEnd {
    /// Every entry settled.
    Done,
    /// Cancelled between batches.
    Cancelled,
}

fn backoff(settings: &WorkerSettings) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(settings.initial_backoff)
        .with_max_delay(settings.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore> Worker<S, P, L> {
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
            let got_records = !page.records.is_empty();
            if got_records {
                self.metrics.records_read.inc_by(page.records.len() as u64);
                let (end, last) = self.relay_page(page.records).await;
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

    /// Routes and publishes one page. Returns how it ended and the last record fully handled.
    async fn relay_page(&self, records: Vec<StreamRecord>) -> (PageEnd, Option<SequenceNumber>) {
        let (entries, entry_records) = self.route_page(&records);
        let mut settled = 0;
        let mut end = PageEnd::Done;
        for range in Batches::new(&entries, self.settings.max_batch_entries) {
            if self.token.is_cancelled() {
                end = PageEnd::Cancelled;
                break;
            }
            self.publish_batch(
                &entries[range.clone()],
                &records,
                &entry_records[range.clone()],
            )
            .await;
            settled = range.end;
        }
        let last = settled_through(&entry_records, settled, records.len())
            .map(|i| records[i].sequence_number.clone());
        (end, last)
    }

    /// Every entry the page's records produce, with the index of each entry's record.
    fn route_page(&self, records: &[StreamRecord]) -> (Vec<Entry>, Vec<usize>) {
        let mut entries = Vec::new();
        let mut entry_records = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let mut json = record.json.clone();
            if let Some(obj) = json.as_object_mut() {
                obj.insert(
                    "eventSourceARN".to_owned(),
                    serde_json::Value::String(self.lease.stream_arn.clone()),
                );
            }
            let event_id = stable_event_id(&json, self.settings.event_id_attribute.as_deref());
            let results =
                self.router
                    .route(&json, &self.lease.stream_arn, &event_id, record.created_at);
            if results.is_empty() {
                self.metrics.records_filtered.inc();
            }
            for result in results {
                match result {
                    Ok(entry) => {
                        entries.push(entry);
                        entry_records.push(i);
                    }
                    Err(e) => {
                        self.metrics
                            .events_failed
                            .with_label_values(&[e.route(), "transform"])
                            .inc();
                        error!(
                            error = %e,
                            sequence_number = %record.sequence_number,
                            record = %json,
                            "Record could not be turned into an event; skipping it for this route."
                        );
                    }
                }
            }
        }
        (entries, entry_records)
    }

    /// Publishes one batch until every entry is accepted or given up on (non-retryable).
    /// Retries only the failed entries, in their original order, with backoff and jitter.
    async fn publish_batch(
        &self,
        batch: &[Entry],
        records: &[StreamRecord],
        entry_records: &[usize],
    ) {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut retry_backoff = backoff(&self.settings);
        loop {
            let request: Vec<Entry> = pending.iter().map(|&i| batch[i].clone()).collect();
            self.metrics.put_events_requests.inc();
            let timer = self.metrics.put_events_duration_seconds.start_timer();
            let result = self.publisher.put_events(&request).await;
            timer.observe_duration();
            let mut retry = Vec::new();
            match result {
                Ok(outcome) => {
                    let mut failed = outcome.failed.into_iter().peekable();
                    for (pos, &i) in pending.iter().enumerate() {
                        let Some(f) = failed.next_if(|f| f.index == pos) else {
                            self.accepted(&batch[i]);
                            continue;
                        };
                        self.metrics
                            .put_events_failed_entries
                            .with_label_values(&[f.code.as_str()])
                            .inc();
                        match is_retryable_entry_code(&f.code) {
                            Disposition::Retry => retry.push(i),
                            Disposition::GiveUp => {
                                let entry = &batch[i];
                                let record = &records[entry_records[i]];
                                self.metrics
                                    .events_failed
                                    .with_label_values(&[self.route_name(entry), "publish"])
                                    .inc();
                                error!(
                                    error_code = %f.code,
                                    error_message = %f.message,
                                    route = self.route_name(entry),
                                    sequence_number = %record.sequence_number,
                                    detail = %entry.detail,
                                    "EventBridge rejected the event for good; skipping it."
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    // A whole call failing is about the environment (network, credentials,
                    // permissions), not the entries: keep every entry and retry.
                    self.metrics
                        .put_events_errors
                        .with_label_values(&[e.code.as_str()])
                        .inc();
                    warn!(error = %e, entries = pending.len(), "PutEvents failed; retrying with backoff.");
                    retry = pending.clone();
                }
            }
            if retry.is_empty() {
                return;
            }
            pending = retry;
            let pause = retry_backoff.next().unwrap_or(self.settings.max_backoff);
            debug!(entries = pending.len(), ?pause, "Retrying failed entries.");
            // Not cancellable: the in-flight batch is settled before shutdown proceeds.
            tokio::time::sleep(pause).await;
        }
    }

    fn accepted(&self, entry: &Entry) {
        self.metrics
            .events_published
            .with_label_values(&[self.route_name(entry)])
            .inc();
        if let Some(created) = entry.time {
            let lag = SystemTime::now()
                .duration_since(created)
                .unwrap_or_default();
            self.metrics.lag_seconds.observe(lag.as_secs_f64());
        }
    }

    fn route_name(&self, entry: &Entry) -> &str {
        self.router
            .routes()
            .get(entry.route)
            .map_or("unknown", |r| r.name.as_str())
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
