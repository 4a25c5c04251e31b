//! The shard loop's decisions, as a state machine: every choice the per-shard loop makes,
//! and nothing it awaits. [`super::worker`] only carries out the [`Command`]s it returns and
//! feeds back what happened as [`Event`]s (the shape of kube-runtime's `watcher`: one state,
//! driven by small steps).
//!
//! The state: the window of records and entries ([`Schedule`]), the calls this shard may have
//! in flight ([`CallLimit`]), the checkpoint's progress and its retry, and whether the loop is
//! reading, stopping or at the shard's end.
//!
//! The rules, listed once:
//! - **read** one page at a time, while the window has room: the records held, the records
//!   the watermark passed that no written checkpoint covers yet, and one more page must fit
//!   in `read_ahead_records` (so a slow lease table slows reading instead of letting the
//!   re-sends after a crash grow), and the bytes held plus a full page (1 MB) in
//!   `read_ahead_bytes`; never while fenced, stopping or at the end;
//! - **send** the calls the window makes due ([`Schedule::peek_lane_batch`]), under each
//!   lane's [`crate::pipeline::CallLimits`]; none while fenced;
//! - an **answer** is settled by `settle::decide`; its entries are accepted, retried after a
//!   backoff that grows with their attempts, split, or dead-lettered;
//! - the **checkpoint** follows the watermark: written (one write at a time) when it moved
//!   and `checkpoint_interval` passed, or at once when it passed a page's end and either the
//!   read-ahead has no room for another page or [`PAGE_END_WRITE_RECORDS`] records wait for
//!   it (a shard catching up or a burst is not held back, and a crash re-sends little); a
//!   shard that keeps up with a trickle writes once per interval, not once per page, since
//!   each write is billed; when stopping, once the
//!   window is empty; at a closed shard's end, the last record and then `SHARD_END`. A failed
//!   write is retried after a backoff; a fenced write ends the loop (the lease is lost);
//! - **stop** when cancelled: no new page and no new record; the records up to the last one
//!   started are finished and checkpointed, then the loop exits. It also exits once
//!   `SHARD_END` is written.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::deliver::{Answer, Window};
use super::limit::Ticket;
use super::schedule::{EntryId, Order};
use super::worker::{WorkerExit, WorkerSettings};
use crate::lease::{Checkpoint, LeaseError};
use crate::pipeline::{Entry, Router};
use crate::publish::DeadLetter;
use crate::stream::{SequenceNumber, StreamRecord};
use crate::telemetry::ShardEvent;

/// The most one GetRecords call returns (DynamoDB Streams API reference, `GetRecords`: "a
/// maximum of 1 MB of data or 1000 stream records").
pub(super) const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The clock as the loop reads it: the monotonic instant (timers) and the wall time (record
/// ages, dead letters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub(crate) fn read() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What happened, fed back to the loop.
pub(super) enum Event {
    /// Shutdown or shedding: finish what started, read and start nothing more.
    Cancelled,
    /// A page was read, and whether the shard ended after it.
    PageRead {
        records: Vec<StreamRecord>,
        ended: bool,
    },
    /// A PutEvents call was answered.
    Answered(Answer),
    /// A dead letter is stored.
    LetterStored(EntryId),
    /// The checkpoint write (from [`Command::WriteCheckpoint`]) finished.
    CheckpointWritten(Result<(), LeaseError>),
}

/// What the loop asks to be done.
#[derive(Debug)]
pub(crate) enum Command<'r> {
    /// Read the next page, and feed it back as [`Event::PageRead`].
    Read,
    /// Store this dead letter (retrying until it is stored), then [`Event::LetterStored`].
    WriteLetter(EntryId, Box<DeadLetter>),
    /// Write this checkpoint, then [`Event::CheckpointWritten`].
    WriteCheckpoint {
        checkpoint: Checkpoint,
        created_at: Option<SystemTime>,
    },
    /// A checkpoint was written: it renews the lease as of when it was sent.
    Renewed { sent: Instant },
    /// Log and count this.
    Emit(ShardEvent<'r>),
    /// The loop is done.
    Exit(WorkerExit),
}

/// A page's end writes the checkpoint at once when at least this many records wait for it
/// (below, the watermark waits for `checkpoint_interval`): a burst or a backlog is made
/// durable as soon as it is delivered, a trickle costs one write per interval.
const PAGE_END_WRITE_RECORDS: usize = 100;

/// The checkpoint's state: the watermark, what was last written, and when.
#[derive(Debug)]
struct Progress {
    /// The last record the watermark passed, and when it was created.
    watermark: Option<SequenceNumber>,
    watermark_created_at: Option<SystemTime>,
    written: Option<SequenceNumber>,
    /// Records the watermark passed that no written checkpoint covers yet.
    unwritten: usize,
    /// `unwritten` when the checkpoint being written was sent (what its success covers).
    covering: usize,
    /// The watermark passed a page's end since the last write.
    page_end: bool,
    last_write: Instant,
}

impl Progress {
    /// Whether the watermark moved past the last write.
    fn moved(&self) -> bool {
        self.watermark != self.written
    }

    /// Whether the watermark should be written now (see the module documentation):
    /// `blocked` is whether the read-ahead has no room for another page.
    fn due(&self, now: Instant, interval: Duration, blocked: bool) -> bool {
        let page_end_due = self.page_end && (blocked || self.unwritten >= PAGE_END_WRITE_RECORDS);
        self.moved() && (page_end_due || now.duration_since(self.last_write) >= interval)
    }

    /// When a moved watermark becomes due without a page end.
    fn due_at(&self, interval: Duration) -> Option<Instant> {
        self.moved().then_some(self.last_write + interval)
    }
}

/// A checkpoint write in flight.
#[derive(Debug)]
struct Writing {
    checkpoint: Checkpoint,
    sent: Instant,
}

/// One shard's loop state (see the module documentation).
pub(super) struct ShardLoop {
    pub(super) settings: Arc<WorkerSettings>,
    /// The records read and their entries, until settled.
    pub(super) window: Window,
    progress: Progress,
    writing: Option<Writing>,
    checkpoint_not_before: Option<Instant>,
    checkpoint_failures: u32,
    reading: bool,
    ended: bool,
    stopping: bool,
}

impl ShardLoop {
    pub(super) fn new(
        settings: Arc<WorkerSettings>,
        stream_arn: String,
        shard_id: String,
        now: Instant,
    ) -> Self {
        let order = Order::for_in_flight(settings.max_in_flight);
        Self {
            window: Window::new(Arc::clone(&settings), stream_arn, shard_id, order),
            settings,
            progress: Progress {
                watermark: None,
                watermark_created_at: None,
                written: None,
                unwritten: 0,
                covering: 0,
                page_end: false,
                last_write: now,
            },
            writing: None,
            checkpoint_not_before: None,
            checkpoint_failures: 0,
            reading: false,
            ended: false,
            stopping: false,
        }
    }

    /// Whether the loop is stopping (cancelled).
    pub(super) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Creation time of the window's oldest record (the shard's oldest unpublished one).
    pub(super) fn oldest_created_at(&self) -> Option<SystemTime> {
        self.window.oldest_created_at()
    }

    /// Feeds one happening; returns what to do about it.
    pub(super) fn on<'r>(
        &mut self,
        event: Event,
        now: Now,
        router: &'r Router,
    ) -> Vec<Command<'r>> {
        let mut out = Vec::new();
        match event {
            Event::Cancelled => {
                if !self.stopping {
                    self.stopping = true;
                    self.reading = false;
                    self.window.stop();
                    out.push(Command::Emit(ShardEvent::Stopping));
                }
            }
            Event::PageRead { records, ended } => {
                self.reading = false;
                // A page read while stopping is not started (a later reader reads it again).
                if !self.stopping {
                    if !records.is_empty() {
                        out.push(Command::Emit(ShardEvent::PageRead {
                            records: records.len(),
                        }));
                    }
                    self.window.push_page(records, router, now, &mut out);
                    self.ended = ended;
                }
            }
            Event::Answered(answer) => self.window.answered(&answer, router, now, &mut out),
            Event::LetterStored(id) => self.window.letter_stored(id),
            Event::CheckpointWritten(result) => self.checkpoint_written(result, now, &mut out),
        }
        if let Some(passed) = self.window.advance() {
            self.progress.watermark = Some(passed.record.sequence_number);
            self.progress.watermark_created_at = passed.record.created_at;
            self.progress.page_end |= passed.page_end;
            self.progress.unwritten += passed.count;
        }
        out
    }

    fn checkpoint_written<'r>(
        &mut self,
        result: Result<(), LeaseError>,
        now: Now,
        out: &mut Vec<Command<'r>>,
    ) {
        let Some(Writing { checkpoint, sent }) = self.writing.take() else {
            return;
        };
        match result {
            Ok(()) => {
                out.push(Command::Renewed { sent });
                out.push(Command::Emit(ShardEvent::CheckpointWritten {
                    checkpoint: checkpoint.clone(),
                }));
                self.checkpoint_failures = 0;
                self.checkpoint_not_before = None;
                self.progress.last_write = now.instant;
                match checkpoint {
                    Checkpoint::Sequence(s) => {
                        let p = &mut self.progress;
                        if p.watermark.as_ref() == Some(&s) {
                            p.page_end = false;
                        }
                        p.written = Some(s);
                        p.unwritten -= p.covering.min(p.unwritten);
                        p.covering = 0;
                    }
                    Checkpoint::ShardEnd => {
                        out.push(Command::Emit(ShardEvent::ShardEnded));
                        out.push(Command::Exit(WorkerExit::ShardEnded));
                    }
                    Checkpoint::TrimHorizon | Checkpoint::Latest => {}
                }
            }
            Err(LeaseError::LeaseLost { .. }) => {
                out.push(Command::Emit(ShardEvent::CheckpointFenced { checkpoint }));
                out.push(Command::Exit(WorkerExit::LeaseLost));
            }
            Err(e) => {
                // Keep trying while we may own the lease; on shutdown, the process exits after
                // its grace period and the next owner re-sends.
                self.checkpoint_failures += 1;
                let retry_in = super::backoff::delay(
                    self.settings.initial_backoff,
                    self.settings.max_backoff,
                    self.checkpoint_failures,
                );
                self.checkpoint_not_before = Some(now.instant + retry_in);
                out.push(Command::Emit(ShardEvent::CheckpointFailed {
                    checkpoint,
                    code: e.code().to_owned(),
                    error: e.to_string(),
                    retry_in,
                }));
            }
        }
    }

    /// The next call that may go out now, if any (the driver takes a permit for it, then
    /// [`Window::start_call`]; without a permit, it asks again later). None while fenced.
    pub(super) fn next_call(&self, now: Instant, fenced: bool) -> Option<Vec<EntryId>> {
        if fenced {
            return None;
        }
        self.window.next_call(now)
    }

    /// Marks `batch` (from [`ShardLoop::next_call`], unchanged since) in flight.
    pub(super) fn start_call(
        &mut self,
        batch: &[EntryId],
        at: SystemTime,
    ) -> (Vec<Arc<Entry>>, Ticket) {
        self.window.start_call(batch, at)
    }

    /// What to do now besides sending: write the checkpoint, exit, or read the next page.
    pub(super) fn poll(&mut self, now: Instant, fenced: bool) -> Vec<Command<'static>> {
        let mut out = Vec::new();
        if self.writing.is_none() && self.checkpoint_not_before.is_none_or(|t| t <= now) {
            if let Some(checkpoint) = self.checkpoint_target(now) {
                self.progress.covering = self.progress.unwritten;
                self.writing = Some(Writing {
                    checkpoint: checkpoint.clone(),
                    sent: now,
                });
                out.push(Command::WriteCheckpoint {
                    checkpoint,
                    created_at: self.progress.watermark_created_at,
                });
            }
        }
        // A stopped loop exits once its last checkpoint is written. (A closed shard exits
        // only once `SHARD_END` is written, retried like any checkpoint: exiting before it
        // would leave the lease short of it, and the shard's children waiting.)
        if self.writing.is_none()
            && self.window.is_empty()
            && self.stopping
            && !self.progress.moved()
        {
            out.push(Command::Exit(WorkerExit::Cancelled));
            return out;
        }
        if !self.reading && !self.stopping && !self.ended && !fenced && self.has_room() {
            self.reading = true;
            out.push(Command::Read);
        }
        out
    }

    /// The checkpoint to write now, if one is due (see the module documentation).
    fn checkpoint_target(&self, now: Instant) -> Option<Checkpoint> {
        let p = &self.progress;
        let settled = self.window.is_empty();
        if self.ended && !self.stopping && settled && !self.reading {
            if p.moved() {
                p.watermark.clone().map(Checkpoint::Sequence)
            } else {
                Some(Checkpoint::ShardEnd)
            }
        } else if p.due(now, self.settings.checkpoint_interval, !self.has_room())
            || (self.stopping && settled && p.moved())
        {
            p.watermark.clone().map(Checkpoint::Sequence)
        } else {
            None
        }
    }

    /// Whether one more page fits the read-ahead (see the module documentation).
    fn has_room(&self) -> bool {
        let s = &self.settings;
        self.window.held_records() + self.progress.unwritten + s.max_records_per_poll
            <= s.read_ahead_records
            && self.window.held_bytes() + MAX_PAGE_BYTES <= s.read_ahead_bytes.max(MAX_PAGE_BYTES)
    }

    /// When the loop must look again if nothing happens: a retry or a checkpoint becoming
    /// due. Only future times: a retry that is due but cannot go out (calls or permits
    /// exhausted) waits for an answer or a permit instead.
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let retry_at = self.window.next_retry();
        let checkpoint_at = if self.writing.is_none() {
            self.checkpoint_not_before
                .or_else(|| self.progress.due_at(self.settings.checkpoint_interval))
        } else {
            None
        };
        [retry_at, checkpoint_at]
            .into_iter()
            .flatten()
            .filter(|&t| t > now)
            .min()
    }
}

#[cfg(test)]
mod tests;
