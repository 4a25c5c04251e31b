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
//! - the **checkpoint** follows the watermark: written (one write at a time) when it passed a
//!   page's end, or when it moved and `checkpoint_interval` passed; when stopping, once the
//!   window is empty; at a closed shard's end, the last record and then `SHARD_END`. A failed
//!   write is retried after a backoff; a fenced write ends the loop (the lease is lost);
//! - **stop** when cancelled: no new page and no new record; the records up to the last one
//!   started are finished and checkpointed, then the loop exits. It also exits once
//!   `SHARD_END` is written.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::deliver::{Answer, Work};
use super::limit::{CallLimit, Ticket};
use super::schedule::{EntryId, NewRecord, Order, Schedule};
use super::worker::{WorkerExit, WorkerSettings};
use crate::lease::{Checkpoint, LeaseError};
use crate::pipeline::{Entry, Router};
use crate::publish::DeadLetter;
use crate::stream::{SequenceNumber, StreamRecord};
use crate::telemetry::ShardEvent;

/// The most one GetRecords call returns (DynamoDB Streams API reference, `GetRecords`: "a
/// maximum of 1 MB of data or 1000 stream records").
pub(super) const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// A record held in the window: what a checkpoint and a dead letter need of it.
pub(super) struct Held {
    pub sequence_number: SequenceNumber,
    pub created_at: Option<SystemTime>,
    pub json: serde_json::Value,
    pub event_id: String,
}

/// The clock as the loop reads it: the monotonic instant (timers) and the wall time (record
/// ages, dead letters).
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub(super) fn read() -> Self {
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
pub(super) enum Command<'r> {
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

    /// Whether the watermark should be written now (see the module documentation).
    fn due(&self, now: Instant, interval: Duration) -> bool {
        self.moved() && (self.page_end || now.duration_since(self.last_write) >= interval)
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
    /// The stream and shard, for the records' `eventSourceARN` and the dead letters.
    pub(super) stream_arn: String,
    pub(super) shard_id: String,
    pub(super) schedule: Schedule<Held, Work>,
    pub(super) limit: CallLimit,
    progress: Progress,
    writing: Option<Writing>,
    checkpoint_not_before: Option<Instant>,
    checkpoint_failures: u32,
    reading: bool,
    page_no: u64,
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
        let schedule = Schedule::new(Order::for_in_flight(settings.max_in_flight));
        let limit = CallLimit::new(settings.max_in_flight);
        Self {
            settings,
            stream_arn,
            shard_id,
            schedule,
            limit,
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
            page_no: 0,
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
        self.schedule.oldest_record().and_then(|r| r.created_at)
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
                    self.schedule.stop();
                    out.push(Command::Emit(ShardEvent::Stopping));
                }
            }
            Event::PageRead { records, ended } => {
                self.reading = false;
                // A page read while stopping is not started (a later reader reads it again).
                if !self.stopping {
                    self.page_read(records, router, now, &mut out);
                    self.ended = ended;
                }
            }
            Event::Answered(answer) => {
                for (id, letter) in self.settle(&answer, router, now, &mut out) {
                    out.push(Command::WriteLetter(id, Box::new(letter)));
                }
            }
            Event::LetterStored(id) => self.schedule.dead_lettered(id),
            Event::CheckpointWritten(result) => self.checkpoint_written(result, now, &mut out),
        }
        if let Some(passed) = self.schedule.advance() {
            self.progress.watermark = Some(passed.record.sequence_number);
            self.progress.watermark_created_at = passed.record.created_at;
            self.progress.page_end |= passed.page_end;
            self.progress.unwritten += passed.count;
        }
        out
    }

    fn page_read<'r>(
        &mut self,
        records: Vec<StreamRecord>,
        router: &'r Router,
        now: Now,
        out: &mut Vec<Command<'r>>,
    ) {
        if records.is_empty() {
            return;
        }
        out.push(Command::Emit(ShardEvent::PageRead {
            records: records.len(),
        }));
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            let new: NewRecord<Held, Work> =
                self.route(record, router, self.page_no, i + 1 == count, out);
            for id in self.schedule.push(new) {
                let letter = self.letter(id, None, router, now.wall);
                out.push(Command::WriteLetter(id, Box::new(letter)));
            }
        }
        self.page_no += 1;
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
    /// [`ShardLoop::start_call`]; without a permit, it asks again later).
    pub(super) fn next_call(&self, now: Instant, fenced: bool) -> Option<Vec<EntryId>> {
        if fenced {
            return None;
        }
        let settings = &self.settings;
        self.schedule
            .peek_lane_batch(now, |lane| settings.call_limits(lane))
    }

    /// Marks `batch` (from [`ShardLoop::next_call`], unchanged since) in flight: its entries,
    /// and the call's ticket for the shard's call limit.
    pub(super) fn start_call(&mut self, batch: &[EntryId], at: SystemTime) -> (Vec<Entry>, Ticket) {
        self.schedule.start(batch);
        let entries = batch
            .iter()
            .filter_map(|&id| {
                let work = self.schedule.entry_mut(id);
                work.sent(at);
                work.entry().cloned()
            })
            .collect();
        (entries, self.limit.start())
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
            && self.schedule.is_empty()
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
        let settled = self.schedule.is_empty();
        if self.ended && !self.stopping && settled && !self.reading {
            if p.moved() {
                p.watermark.clone().map(Checkpoint::Sequence)
            } else {
                Some(Checkpoint::ShardEnd)
            }
        } else if p.due(now, self.settings.checkpoint_interval)
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
        self.schedule.held_records() + self.progress.unwritten + s.max_records_per_poll
            <= s.read_ahead_records
            && self.schedule.held_bytes() + MAX_PAGE_BYTES <= s.read_ahead_bytes.max(MAX_PAGE_BYTES)
    }

    /// When the loop must look again if nothing happens: a retry or a checkpoint becoming
    /// due. Only future times: a retry that is due but cannot go out (calls or permits
    /// exhausted) waits for an answer or a permit instead.
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let retry_at = self.schedule.next_retry();
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
