//! The per-shard loop. A reader fetches GetRecords pages ahead (bounded in records and bytes),
//! delivery routes them into the shard's window ([`Schedule`]), up to `max_in_flight`
//! PutEvents calls go out at once with order kept per ordering key, and the checkpoint
//! follows the watermark: written when it moved and `checkpoint_interval` has passed, or at a
//! page's end that leaves many records unwritten or the read-ahead full. The shard ends at `SHARD_END`.
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
use tracing::{info, warn, Instrument};

use super::deliver::Answer;
use super::keeper::HeldLeases;
use super::limit::Ticket;
use super::polling::{PollIntervals, Polling};
use super::schedule::{CallLimits, EntryId, Lane};
use super::shard_loop::{Command, Event, Now, ShardLoop};
use crate::config::StartingPosition;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore, StreamGap, WorkerId};
use crate::pipeline::{BusKind, Entry, Router};
use crate::publish::{DeadLetter, DeadLetterSink, EventPublisher};
use crate::stream::{IteratorPosition, ShardSource, SourceError, StreamRecord};
use crate::telemetry::{spans, Health, Metrics, PendingRecords, ShardEvent};

/// How often a paused (fenced) reader looks whether its fence lifted.
const FENCE_CHECK: Duration = Duration::from_millis(200);

/// How a worker reads and publishes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub poll_interval: Duration,
    pub busy_poll_interval: Duration,
    /// What an idle shard's poll backs off to (`source.idle_poll_interval`; `None`: no backoff).
    pub idle_poll_interval: Option<Duration>,
    pub max_records_per_poll: usize,
    /// Records and bytes a shard may hold before it stops reading ahead.
    pub read_ahead_records: usize,
    pub read_ahead_bytes: usize,
    /// Entries per PutEvents call, within each bus kind's own maximum (`None`: that maximum).
    pub max_batch_entries: Option<usize>,
    /// PutEvents calls in flight for this shard (`1`: strict per-shard order).
    pub max_in_flight: usize,
    /// How long a moved watermark may wait before it is written (a page's end with 100
    /// records unwritten, or a full read-ahead, writes at once).
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
            idle_poll_interval: config.source.idle_poll_interval,
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

/// What a worker has under way: the page being read (or the reader, at rest), the calls, the
/// dead letters being written, the checkpoint being written, and publish permits.
struct Io<'w, S, P, L, D> {
    reader_home: Option<Reader<'w, S, P, L, D>>,
    reading: Option<Reading<'w, S, P, L, D>>,
    calls: FuturesUnordered<Boxed<'w, Answer>>,
    letters: FuturesUnordered<Boxed<'w, EntryId>>,
    checkpointing: Option<Boxed<'w, Result<(), LeaseError>>>,
    spare_permit: Option<OwnedSemaphorePermit>,
    waiting_for_permit: Option<Boxed<'w, Option<OwnedSemaphorePermit>>>,
}

impl<S, P, L, D> Io<'_, S, P, L, D> {
    /// A publish permit now, if one is free; else `None`, and a wait for one starts (its
    /// permit is kept for the next call).
    fn permit(&mut self, permits: &Arc<tokio::sync::Semaphore>) -> Option<OwnedSemaphorePermit> {
        if let Some(p) = self.spare_permit.take() {
            return Some(p);
        }
        match Arc::clone(permits).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if self.waiting_for_permit.is_none() {
                    let permits = Arc::clone(permits);
                    self.waiting_for_permit =
                        Some(Box::pin(async move { permits.acquire_owned().await.ok() }));
                }
                None
            }
        }
    }
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

    /// Carries out the shard loop's commands ([`ShardLoop`]) and feeds back what happened,
    /// until it exits.
    async fn drive(&self, start: IteratorPosition) -> WorkerExit {
        let settings = &*self.settings;
        let mut machine = ShardLoop::new(
            Arc::clone(&self.settings),
            self.lease.stream_arn.clone(),
            self.lease.shard_id.0.clone(),
            Instant::now(),
        );
        let mut io = Io {
            reader_home: Some(Reader {
                worker: self,
                position: start,
                iterator: None,
                pause: None,
                polling: Polling::default(),
                read_backoff: Box::new(backoff(settings)),
                last_created_at: self.lease.checkpoint_created_at,
                trimmed_after: None,
            }),
            reading: None,
            calls: FuturesUnordered::new(),
            letters: FuturesUnordered::new(),
            checkpointing: None,
            spare_permit: None,
            waiting_for_permit: None,
        };
        loop {
            let now = Instant::now();
            // A safe point: between an answer and the next call.
            if !machine.stopping() && self.token.is_cancelled() {
                io.reading = None;
                let commands = machine.on(Event::Cancelled, Now::read(), &self.router);
                if let Some(exit) = self.carry_out(&mut io, commands) {
                    return exit;
                }
            }
            // A fenced lease (renewals late, a peer may soon take it): no new call, no new
            // page, until the fence lifts; calls in flight settle and the checkpoint is written.
            let fenced = self.held.is_fenced(&self.lease.key);
            while let Some(batch) = machine.next_call(now, fenced) {
                let Some(permit) = io.permit(&settings.publish_permits) else {
                    break;
                };
                let (entries, ticket) = machine.start_call(&batch, SystemTime::now());
                io.calls
                    .push(Box::pin(self.call(batch, entries, permit, ticket)));
            }
            self.pending_age(machine.oldest_created_at());
            let commands = machine.poll(now, fenced);
            if let Some(exit) = self.carry_out(&mut io, commands) {
                return exit;
            }
            let wake_at = machine.wake_at(now);
            let event = tokio::select! {
                biased;
                () = self.token.cancelled(), if !machine.stopping() => continue, // at the top
                Some(answer) = io.calls.next() => Event::Answered(answer),
                Some(id) = io.letters.next() => Event::LetterStored(id),
                result = async { io.checkpointing.as_mut().expect("guarded").await }, if io.checkpointing.is_some() => {
                    io.checkpointing = None;
                    Event::CheckpointWritten(result)
                }
                (read, r) = async { io.reading.as_mut().expect("guarded").await }, if io.reading.is_some() => {
                    io.reading = None;
                    io.reader_home = Some(r);
                    if let Some(gap) = read.gap {
                        self.record_gap(gap);
                    }
                    Event::PageRead { records: read.records, ended: read.ended }
                }
                permit = async { io.waiting_for_permit.as_mut().expect("guarded").await }, if io.waiting_for_permit.is_some() => {
                    io.waiting_for_permit = None;
                    io.spare_permit = permit;
                    continue;
                }
                () = sleep_until(wake_at), if wake_at.is_some() => continue,
                () = tokio::time::sleep(FENCE_CHECK), if fenced => continue,
            };
            let commands = machine.on(event, Now::read(), &self.router);
            if let Some(exit) = self.carry_out(&mut io, commands) {
                return exit;
            }
        }
    }

    /// Starts what `commands` ask for; the exit, if one is asked for.
    fn carry_out<'w>(
        &'w self,
        io: &mut Io<'w, S, P, L, D>,
        commands: Vec<Command<'_>>,
    ) -> Option<WorkerExit> {
        for command in commands {
            match command {
                Command::Read => {
                    if let Some(mut r) = io.reader_home.take() {
                        io.reading = Some(Box::pin(async move {
                            let read = r.next_page().await;
                            (read, r)
                        }));
                    }
                }
                Command::WriteLetter(id, letter) => {
                    io.letters.push(Box::pin(self.write_letter(*letter, id)));
                }
                Command::WriteCheckpoint {
                    checkpoint,
                    created_at,
                } => {
                    let (leases, key, owner) = (&self.leases, &self.lease.key, &self.owner);
                    let epoch = self.lease.epoch;
                    io.checkpointing = Some(Box::pin(
                        async move {
                            leases
                                .checkpoint(key, owner, epoch, &checkpoint, created_at)
                                .await
                        }
                        .instrument(spans::call("checkpoint")),
                    ));
                }
                Command::Renewed { sent } => self.held.renewed(&self.lease.key, sent),
                Command::Emit(event) => event.emit(&self.metrics),
                Command::Exit(exit) => return Some(exit),
            }
        }
        None
    }

    /// Sets the age of this shard's oldest unpublished record (the window's oldest record).
    fn pending_age(&self, oldest: Option<SystemTime>) {
        let shard = self.lease.key.0.as_str();
        match oldest {
            Some(created) => self.pending.set(shard, created),
            None => self.pending.clear(shard),
        }
    }

    /// Writes a dead letter, retrying until the sink takes it (the checkpoint must not pass a
    /// record whose dead letter is not stored), then yields `id`.
    async fn write_letter(&self, letter: DeadLetter, id: EntryId) -> EntryId {
        let mut pause = backoff(&self.settings);
        loop {
            match self.dead_letters.send(&letter).await {
                Ok(()) => {
                    ShardEvent::DeadLettered { letter: &letter }.emit(&self.metrics);
                    return id;
                }
                Err(e) => {
                    let retry_in = pause.next().unwrap_or(self.settings.max_backoff);
                    ShardEvent::DeadLetterFailed {
                        letter: &letter,
                        code: &e.code,
                        error: e.to_string(),
                        retry_in,
                    }
                    .emit(&self.metrics);
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    /// A gap found by the reader: counted, logged at ERROR with the backfill that recovers
    /// it, and stored in the lease table (for `outbox-relay status`) by a task of its own, so
    /// the shard goes on meanwhile.
    fn record_gap(&self, gap: StreamGap) {
        let source = crate::config::table_or_arn(&gap.stream_arn).to_owned();
        ShardEvent::Gap {
            gap: &gap,
            source: &source,
        }
        .emit(&self.metrics);
        let leases = self.leases.clone();
        tokio::spawn(async move {
            if let Err(e) = leases.record_gap(&gap).await {
                warn!(error = %e, "Recording the gap in the lease table failed; it is in this log line only.");
            }
        });
    }

    /// One PutEvents call; the permit is held for the call only, never across a backoff, so
    /// shards that keep failing cannot starve healthy ones.
    async fn call(
        &self,
        batch: Vec<EntryId>,
        entries: Vec<Arc<Entry>>,
        permit: OwnedSemaphorePermit,
        ticket: Ticket,
    ) -> Answer {
        ShardEvent::CallStarted.emit(&self.metrics);
        let sent = Instant::now();
        let result = self
            .publisher
            .put_events(&entries)
            .instrument(spans::publish_batch(&entries))
            .await;
        let round_trip = sent.elapsed();
        drop(permit);
        ShardEvent::CallAnswered { round_trip }.emit(&self.metrics);
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

/// The GetRecords side of a worker: iterators, adaptive polling, read errors.
struct Reader<'a, S, P, L, D> {
    worker: &'a Worker<S, P, L, D>,
    /// Where a new iterator starts: the checkpoint at first, then after the last record read.
    position: IteratorPosition,
    iterator: Option<String>,
    /// The pause before the next call (none after a full page).
    pause: Option<Duration>,
    /// Empty pages in a row, for the idle backoff (`super::polling`).
    polling: Polling,
    read_backoff: Box<dyn Iterator<Item = Duration> + Send + 'a>,
    /// Creation time of the last record read (at first, of the checkpointed record).
    last_created_at: Option<SystemTime>,
    /// Set when records were trimmed: the gap starts after this (`Some(None)`: at an
    /// unknown time) and ends at the next record read.
    trimmed_after: Option<Option<SystemTime>>,
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Reader<'_, S, P, L, D> {
    /// The next page with records, or the end of a closed shard. Retries read errors with
    /// backoff; polls an idle shard every `poll_interval`, backing off toward
    /// `idle_poll_interval` (`super::polling`).
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
            ShardEvent::GetRecords.emit(&w.metrics);
            let page = match w
                .source
                .get_records(&it, settings.max_records_per_poll)
                .instrument(spans::call("GetRecords"))
                .await
            {
                Ok(page) => page,
                Err(SourceError::IteratorExpired) => {
                    ShardEvent::IteratorExpired.emit(&w.metrics);
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
            self.pause = Some(self.polling.after_page(
                page.records.len(),
                &PollIntervals {
                    idle: settings.poll_interval,
                    busy: settings.busy_poll_interval,
                    idle_ceiling: settings.idle_poll_interval,
                    full_page: settings.max_records_per_poll,
                },
            ));
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
        let trimmed = matches!(e, SourceError::TrimmedData);
        ShardEvent::ReadFailed {
            code: e.code(),
            error: e.to_string(),
            trimmed,
            position: format!("{:?}", self.position),
        }
        .emit(&w.metrics);
        if trimmed {
            self.position = IteratorPosition::TrimHorizon;
            // A second trim before a record was read keeps the first one's start.
            self.trimmed_after.get_or_insert(self.last_created_at);
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
