//! The per-shard loop. A reader fetches GetRecords pages ahead (bounded in records and bytes),
//! delivery routes them into the shard's window ([`Schedule`]), up to `max_in_flight`
//! PutEvents calls go out at once with order kept per ordering key, and the checkpoint
//! follows the watermark: written when it passes a page's end, or when it moved and
//! `checkpoint_interval` has passed. The shard ends at `SHARD_END`.
//!
//! Every decision is the schedule's or `settle::decide`'s; this loop only waits for the next
//! thing to happen (a page, an answer, a stored dead letter, a retry or checkpoint becoming
//! due, a permit, cancellation) and carries the decisions out.
//!
//! Cancellation (shutdown, shedding) stops reading and starting records; every record up to
//! the last one started is finished and checkpointed, so a clean stop re-sends nothing. A
//! lost lease stops at once, without a checkpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use super::deliver::{Answer, Work};
use super::keeper::HeldLeases;
use super::limit::{CallLimit, Ticket};
use super::schedule::{CallLimits, EntryId, Lane, Order, Schedule};
use crate::config::StartingPosition;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore, StreamGap, WorkerId};

use crate::pipeline::{BusKind, Entry, Router};
use crate::publish::{DeadLetterSink, EventPublisher};
use crate::stream::{IteratorPosition, SequenceNumber, ShardSource, SourceError, StreamRecord};
use crate::telemetry::{spans, Health, Metrics, PendingRecords};

/// The most one GetRecords call returns (DynamoDB Streams API reference, `GetRecords`: "a
/// maximum of 1 MB of data or 1000 stream records").
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// How often a paused (fenced) reader looks whether its fence lifted.
const FENCE_CHECK: Duration = Duration::from_millis(200);

/// How a worker reads and publishes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub poll_interval: Duration,
    pub busy_poll_interval: Duration,
    pub max_records_per_poll: usize,
    /// Records and bytes a shard may hold before it stops reading ahead.
    pub read_ahead_records: usize,
    pub read_ahead_bytes: usize,
    /// Entries per PutEvents call, within each bus kind's own maximum (`None`: that maximum).
    pub max_batch_entries: Option<usize>,
    /// PutEvents calls in flight for this shard (`1`: strict per-shard order).
    pub max_in_flight: usize,
    /// How long a moved watermark may wait before it is written (page ends write at once).
    pub checkpoint_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How a row gives its event id and trace context (`source.*_attribute`).
    pub records: crate::pipeline::RecordPolicy,
    /// How far a retryable failure is retried before it is dead-lettered.
    pub retry: super::settle::RetryPolicy,
    /// Shared by every shard: bounds the PutEvents calls in flight at once.
    pub publish_permits: Arc<tokio::sync::Semaphore>,
}

impl WorkerSettings {
    /// The settings a config asks for, with a fresh permit pool of
    /// `publisher.max_concurrent_batches` (one pool per process).
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            poll_interval: config.source.poll_interval,
            busy_poll_interval: config.source.busy_poll_interval,
            max_records_per_poll: config.source.max_records_per_poll.get(),
            read_ahead_records: config.source.read_ahead_records,
            read_ahead_bytes: config.source.read_ahead_bytes,
            max_batch_entries: config
                .publisher
                .max_batch_entries
                .map(std::num::NonZeroUsize::get),
            max_in_flight: config.publisher.max_in_flight_per_shard.get(),
            checkpoint_interval: config.leases.checkpoint_interval,
            initial_backoff: config.publisher.initial_backoff,
            max_backoff: config.publisher.max_backoff,
            records: config.source.record_policy(),
            retry: super::settle::RetryPolicy::of(&config.publisher),
            publish_permits: Arc::new(tokio::sync::Semaphore::new(
                config.publisher.max_concurrent_batches.get(),
            )),
        }
    }
}

impl WorkerSettings {
    /// What one call of `lane` may carry: lane 0 is the classic buses', every other lane a
    /// Custom Event Bus's (see [`crate::pipeline::Router::call_lane`]).
    #[must_use]
    pub fn call_limits(&self, lane: Lane) -> CallLimits {
        let kind = if lane == 0 {
            BusKind::Classic
        } else {
            BusKind::Custom
        };
        CallLimits::of(kind, self.max_batch_entries)
    }
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
    /// A checkpoint bumps the lease's counter: the keeper counts it as a renewal.
    pub held: HeldLeases,
}

/// A record held in the window: what a checkpoint and a dead letter need of it.
pub(super) struct Held {
    pub sequence_number: SequenceNumber,
    pub created_at: Option<SystemTime>,
    pub json: serde_json::Value,
    pub event_id: String,
}

/// The retry delays of this worker's settings (see `super::backoff`).
pub(super) fn backoff(settings: &WorkerSettings) -> impl Iterator<Item = Duration> {
    super::backoff::backoff(settings.initial_backoff, settings.max_backoff)
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A page being read; the reader comes back with it.
type Reading<'a, S, P, L, D> = Boxed<'a, (Read, Reader<'a, S, P, L, D>)>;

/// What one page read brought: records, and whether the shard ended after them (a closed
/// shard read to its end).
struct Read {
    records: Vec<StreamRecord>,
    ended: bool,
    /// Records were trimmed before this page: the gap to record.
    gap: Option<StreamGap>,
}

/// The checkpoint's state: the watermark, what was last written, and when.
struct Progress {
    /// The last record the watermark passed, and when it was created.
    watermark: Option<SequenceNumber>,
    watermark_created_at: Option<SystemTime>,
    written: Option<SequenceNumber>,
    /// Records the watermark passed that no written checkpoint covers yet: they count
    /// against the read-ahead, so a slow lease table slows reading instead of letting the
    /// re-sends after a crash grow.
    unwritten: usize,
    /// `unwritten` when the checkpoint being written was sent (what its success covers).
    covering: usize,
    /// The watermark passed a page's end since the last write.
    page_end: bool,
    last_write: Instant,
}

impl Progress {
    /// Whether the watermark should be written now (see the module documentation).
    fn due(&self, now: Instant, interval: Duration) -> bool {
        self.watermark != self.written
            && (self.page_end || now.duration_since(self.last_write) >= interval)
    }

    /// When a moved watermark becomes due without a page end.
    fn due_at(&self, interval: Duration) -> Option<Instant> {
        (self.watermark != self.written).then_some(self.last_write + interval)
    }
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
        let exit = self.drive(start).await;
        // Whatever its last call did, this shard no longer holds readiness down.
        self.health.publish_call_result(&self.lease.key.0, true);
        self.pending.clear(&self.lease.key.0);
        info!(?exit, "Shard reader stopped.");
        exit
    }

    #[allow(clippy::too_many_lines)] // one select loop; every branch only applies a decision
    async fn drive(&self, start: IteratorPosition) -> WorkerExit {
        let settings = &*self.settings;
        let mut reader_home = Some(Reader {
            worker: self,
            position: start,
            iterator: None,
            pause: None,
            read_backoff: Box::new(backoff(settings)),
            last_created_at: self.lease.checkpoint_created_at,
            trimmed_after: None,
        });
        let mut schedule: Schedule<Held, Work> =
            Schedule::new(Order::for_in_flight(settings.max_in_flight));
        let mut limit = CallLimit::new(settings.max_in_flight);
        let mut reading: Option<Reading<'_, S, P, L, D>> = None;
        let mut calls: FuturesUnordered<Boxed<'_, Answer>> = FuturesUnordered::new();
        let mut letters: FuturesUnordered<Boxed<'_, EntryId>> = FuturesUnordered::new();
        let mut checkpointing: Option<Boxed<'_, Result<(), LeaseError>>> = None;
        let mut checkpoint_sent = Instant::now();
        let mut writing: Option<Checkpoint> = None;
        let mut checkpoint_retry = backoff(settings);
        let mut checkpoint_not_before: Option<Instant> = None;
        let mut progress = Progress {
            watermark: None,
            watermark_created_at: None,
            written: None,
            unwritten: 0,
            covering: 0,
            page_end: false,
            last_write: Instant::now(),
        };
        let mut spare_permit: Option<OwnedSemaphorePermit> = None;
        let mut waiting_for_permit: Option<Boxed<'_, Option<OwnedSemaphorePermit>>> = None;
        let mut page_no: u64 = 0;
        let mut ended = false;
        let mut stopping = false;

        loop {
            let now = Instant::now();
            // A safe point: between an answer and the next call.
            if !stopping && self.token.is_cancelled() {
                debug!("Stopping: finishing the records already started.");
                stopping = true;
                reading = None;
                schedule.stop();
            }
            // A fenced lease (renewals late, a peer may soon take it): no new call, no new
            // page, until the fence lifts; calls in flight settle and the checkpoint is written.
            let fenced = self.held.is_fenced(&self.lease.key);
            // Send every call that may go out now.
            while let Some(batch) = (!fenced)
                .then(|| schedule.peek_lane_batch(now, |lane| settings.call_limits(lane)))
                .flatten()
            {
                let permit = match spare_permit.take() {
                    Some(p) => p,
                    None => match Arc::clone(&settings.publish_permits).try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            if waiting_for_permit.is_none() {
                                let permits = Arc::clone(&settings.publish_permits);
                                waiting_for_permit =
                                    Some(Box::pin(
                                        async move { permits.acquire_owned().await.ok() },
                                    ));
                            }
                            break;
                        }
                    },
                };
                schedule.start(&batch);
                let sent_at = SystemTime::now();
                let entries: Vec<Entry> = batch
                    .iter()
                    .filter_map(|&id| {
                        let work = schedule.entry_mut(id);
                        work.sent(sent_at);
                        work.entry().cloned()
                    })
                    .collect();
                calls.push(Box::pin(self.call(batch, entries, permit, limit.start())));
            }
            self.pending_age(&schedule);

            // Write the checkpoint when due (one write at a time).
            if checkpointing.is_none() && checkpoint_not_before.is_none_or(|t| t <= now) {
                let target = if ended && !stopping && schedule.is_empty() && reading.is_none() {
                    if progress.watermark != progress.written {
                        progress.watermark.clone().map(Checkpoint::Sequence)
                    } else {
                        Some(Checkpoint::ShardEnd)
                    }
                } else if progress.due(now, settings.checkpoint_interval)
                    || (stopping && schedule.is_empty() && progress.watermark != progress.written)
                {
                    progress.watermark.clone().map(Checkpoint::Sequence)
                } else {
                    None
                };
                if let Some(checkpoint) = target {
                    let leases = &self.leases;
                    let key = &self.lease.key;
                    let owner = &self.owner;
                    let c = checkpoint.clone();
                    let created_at = progress.watermark_created_at;
                    checkpointing = Some(Box::pin(
                        async move { leases.checkpoint(key, owner, &c, created_at).await }
                            .instrument(spans::call("checkpoint")),
                    ));
                    progress.covering = progress.unwritten;
                    checkpoint_sent = Instant::now();
                    writing = Some(checkpoint);
                }
            }

            // Done?
            if checkpointing.is_none() && schedule.is_empty() {
                if stopping && progress.watermark == progress.written {
                    return WorkerExit::Cancelled;
                }
                if ended && !stopping && reading.is_none() && progress.written_end() {
                    return WorkerExit::ShardEnded;
                }
            }

            // Read ahead while the window has room.
            if reading.is_none() && !stopping && !ended && !fenced {
                let room =
                    schedule.held_records() + progress.unwritten + settings.max_records_per_poll
                        <= settings.read_ahead_records
                        && schedule.held_bytes() + MAX_PAGE_BYTES
                            <= settings.read_ahead_bytes.max(MAX_PAGE_BYTES);
                if room {
                    if let Some(mut r) = reader_home.take() {
                        reading = Some(Box::pin(async move {
                            let read = r.next_page().await;
                            (read, r)
                        }));
                    }
                }
            }

            // Timers only for the future: a retry that is due but cannot go out (calls or
            // permits exhausted) waits for an answer or a permit instead.
            let retry_at = schedule.next_retry().filter(|&t| t > now);
            let checkpoint_at = if checkpointing.is_none() {
                match checkpoint_not_before {
                    Some(t) => Some(t),
                    None => progress.due_at(settings.checkpoint_interval),
                }
            } else {
                None
            }
            .filter(|&t| t > now);
            tokio::select! {
                biased;
                () = self.token.cancelled(), if !stopping => {} // handled at the loop's top
                Some(answer) = calls.next() => {
                    for (id, letter) in self.settle(&mut schedule, &mut limit, &answer) {
                        letters.push(Box::pin(self.write_letter(letter, id)));
                    }
                }
                Some(id) = letters.next() => schedule.dead_lettered(id),
                result = async { checkpointing.as_mut().expect("guarded").await }, if checkpointing.is_some() => {
                    checkpointing = None;
                    let checkpoint = writing.take().expect("set with checkpointing");
                    match result {
                        Ok(()) => {
                            self.metrics.checkpoints.inc();
                            self.held.renewed(&self.lease.key, checkpoint_sent);
                            debug!(%checkpoint, "Checkpoint written.");
                            checkpoint_retry = backoff(settings);
                            checkpoint_not_before = None;
                            progress.last_write = Instant::now();
                            match checkpoint {
                                Checkpoint::Sequence(s) => {
                                    if progress.watermark.as_ref() == Some(&s) {
                                        progress.page_end = false;
                                    }
                                    progress.written = Some(s);
                                    progress.unwritten -=
                                        progress.covering.min(progress.unwritten);
                                    progress.covering = 0;
                                }
                                Checkpoint::ShardEnd => {
                                    info!("Shard ended and fully relayed.");
                                    return WorkerExit::ShardEnded;
                                }
                                _ => {}
                            }
                        }
                        Err(LeaseError::LeaseLost { .. }) => {
                            info!(%checkpoint, "Lease lost before checkpointing; a peer continues from its last checkpoint.");
                            return WorkerExit::LeaseLost;
                        }
                        Err(e) => {
                            self.metrics
                                .lease_table_errors
                                .with_label_values(&["checkpoint", e.code()])
                                .inc();
                            warn!(error = %e, %checkpoint, "Checkpoint failed; retrying.");
                            // Keep trying while we may own the lease; on shutdown, give up
                            // after the grace period (the process exits) and let the next
                            // owner re-send.
                            let delay = checkpoint_retry.next().unwrap_or(settings.max_backoff);
                            checkpoint_not_before = Some(Instant::now() + delay);
                        }
                    }
                }
                (read, r) = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                    reading = None;
                    reader_home = Some(r);
                    let Read { records, ended: last, gap } = read;
                    if let Some(gap) = gap {
                        self.record_gap(gap);
                    }
                    if !records.is_empty() {
                        self.metrics.records_read.inc_by(records.len() as u64);
                        let count = records.len();
                        for (i, record) in records.into_iter().enumerate() {
                            let new = self.route(record, page_no, i + 1 == count);
                            for id in schedule.push(new) {
                                let letter = self.letter(&schedule, id, None);
                                letters.push(Box::pin(self.write_letter(letter, id)));
                            }
                        }
                        page_no += 1;
                    }
                    ended = last;
                }
                permit = async { waiting_for_permit.as_mut().expect("guarded").await }, if waiting_for_permit.is_some() => {
                    waiting_for_permit = None;
                    spare_permit = permit;
                }
                () = sleep_until(retry_at), if retry_at.is_some() => {}
                () = sleep_until(checkpoint_at), if checkpoint_at.is_some() => {}
                () = tokio::time::sleep(FENCE_CHECK), if fenced => {}
            }
            if let Some(passed) = schedule.advance() {
                progress.watermark = Some(passed.record.sequence_number);
                progress.watermark_created_at = passed.record.created_at;
                progress.page_end |= passed.page_end;
                progress.unwritten += passed.count;
            }
        }
    }

    /// Sets the age of this shard's oldest unpublished record (the window's oldest record).
    fn pending_age(&self, schedule: &Schedule<Held, Work>) {
        let shard = self.lease.key.0.as_str();
        match schedule.oldest_record().and_then(|r| r.created_at) {
            Some(created) => self.pending.set(shard, created),
            None => self.pending.clear(shard),
        }
    }

    /// One PutEvents call; the permit is held for the call only, never across a backoff, so
    /// shards that keep failing cannot starve healthy ones.
    async fn call(
        &self,
        batch: Vec<EntryId>,
        entries: Vec<Entry>,
        permit: OwnedSemaphorePermit,
        ticket: Ticket,
    ) -> Answer {
        self.metrics.publish_in_flight_batches.inc();
        self.metrics.put_events_requests.inc();
        let sent = Instant::now();
        let result = self
            .publisher
            .put_events(&entries)
            .instrument(spans::publish_batch(&entries))
            .await;
        let round_trip = sent.elapsed();
        self.metrics
            .put_events_duration_seconds
            .observe(round_trip.as_secs_f64());
        drop(permit);
        self.metrics.publish_in_flight_batches.dec();
        self.health
            .publish_call_result(&self.lease.key.0, result.is_ok());
        Answer {
            batch,
            result,
            ticket,
            round_trip,
        }
    }
}

/// Sleeps until `at` (never, for `None`: the select arm is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Progress {
    /// Whether nothing past the last write is waiting (the watermark is written).
    fn written_end(&self) -> bool {
        self.watermark == self.written
    }
}

/// The GetRecords side of a worker: iterators, adaptive polling, read errors.
struct Reader<'a, S, P, L, D> {
    worker: &'a Worker<S, P, L, D>,
    /// Where a new iterator starts: the checkpoint at first, then after the last record read.
    position: IteratorPosition,
    iterator: Option<String>,
    /// The pause before the next call (none after a full page).
    pause: Option<Duration>,
    read_backoff: Box<dyn Iterator<Item = Duration> + Send + 'a>,
    /// Creation time of the last record read (at first, of the checkpointed record).
    last_created_at: Option<SystemTime>,
    /// Set when records were trimmed: the gap starts after this (`Some(None)`: at an
    /// unknown time) and ends at the next record read.
    trimmed_after: Option<Option<SystemTime>>,
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Reader<'_, S, P, L, D> {
    /// The next page with records, or the end of a closed shard. Retries read errors with
    /// backoff; polls an idle shard every `poll_interval`.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping it loses no record (none is handed out before it returns).
    async fn next_page(&mut self) -> Read {
        let w = self.worker;
        let settings = &*w.settings;
        let stream_arn = w.lease.stream_arn.as_str();
        let shard = &w.lease.shard_id;
        loop {
            if let Some(pause) = self.pause.take() {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            let it = match self.iterator.take() {
                Some(it) => it,
                None => match w
                    .source
                    .shard_iterator(stream_arn, shard, &self.position)
                    .await
                {
                    Ok(it) => it,
                    Err(e) => {
                        self.on_read_error(&e);
                        continue;
                    }
                },
            };
            w.metrics.get_records_requests.inc();
            let page = match w
                .source
                .get_records(&it, settings.max_records_per_poll)
                .instrument(spans::call("GetRecords"))
                .await
            {
                Ok(page) => page,
                Err(SourceError::IteratorExpired) => {
                    w.metrics
                        .stream_errors
                        .with_label_values(&["ExpiredIteratorException"])
                        .inc();
                    debug!("Shard iterator expired; getting a new one after the last record read.");
                    continue;
                }
                Err(e) => {
                    self.on_read_error(&e);
                    continue;
                }
            };
            self.read_backoff = Box::new(backoff(settings));
            let mut gap = None;
            if let Some(first) = page.records.first() {
                if let Some(since) = self.trimmed_after.take() {
                    gap = Some(StreamGap {
                        stream_arn: stream_arn.to_owned(),
                        shard_id: shard.clone(),
                        since,
                        until: first.created_at,
                        detected_at: SystemTime::now(),
                        recovered_at: None,
                    });
                }
            }
            if let Some(last) = page.records.last() {
                self.position = IteratorPosition::AfterSequenceNumber(last.sequence_number.clone());
                self.last_created_at = last.created_at.or(self.last_created_at);
            }
            self.pause = Some(if page.records.len() >= settings.max_records_per_poll {
                Duration::ZERO
            } else if page.records.is_empty() {
                settings.poll_interval
            } else {
                settings.busy_poll_interval
            });
            match page.next_iterator {
                None => {
                    return Read {
                        records: page.records,
                        ended: true,
                        gap,
                    }
                }
                Some(next) => {
                    self.iterator = Some(next);
                    if !page.records.is_empty() {
                        return Read {
                            records: page.records,
                            ended: false,
                            gap,
                        };
                    }
                }
            }
        }
    }

    /// Counts and logs a read error and sets the backoff pause; trimmed data moves the
    /// position to the trim horizon.
    fn on_read_error(&mut self, e: &SourceError) {
        let w = self.worker;
        w.metrics.stream_errors.with_label_values(&[e.code()]).inc();
        match e {
            SourceError::TrimmedData => {
                error!(
                    error = %e,
                    position = ?self.position,
                    "Records were trimmed before they were relayed (older than the 24 h retention); resuming at TRIM_HORIZON. The gap is recorded when the first record still in the stream is read."
                );
                self.position = IteratorPosition::TrimHorizon;
                // A second trim before a record was read keeps the first one's start.
                self.trimmed_after.get_or_insert(self.last_created_at);
            }
            _ => warn!(error = %e, "Reading the shard failed; retrying with backoff."),
        }
        self.pause = Some(self.read_backoff.next().unwrap_or(w.settings.max_backoff));
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
