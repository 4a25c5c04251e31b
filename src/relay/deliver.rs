//! The delivery core: a [`Window`] of records on their way to PutEvents, pure like the shard
//! loop around it. It routes a record into the window (the one way from a record to its
//! entries, [`crate::pipeline::RecordPolicy::route`]), cuts the calls the window makes due
//! ([`Schedule::peek_lane_batch`] under [`crate::pipeline::CallLimits`]), carries out the
//! verdicts of an answered call (`settle::decide`), and makes dead letters. A record counts
//! as handled once each of its entries was accepted or dead-lettered; only then may a
//! checkpoint (the live relay's) or a saved Scan position (backfill's) pass it.
//!
//! The live shard loop ([`super::shard_loop`]) and backfill's pages both settle through it.

use std::time::SystemTime;

use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

use super::limit::{CallLimit, Ticket};
use super::schedule::{EntryId, NewEntry, NewRecord, Order, Outcome, Passed, Schedule};
use super::settle::{decide, Failure, Sent, Verdict};
use super::shard_loop::{Command, Now};
use super::worker::WorkerSettings;
use crate::pipeline::pattern::fields::{Parsed, ReadFields};
use crate::pipeline::routing::set_source_arn;
use crate::pipeline::{entry_size, BusKind, Entry, RouteError, Router};
use crate::publish::{Attempts, DeadLetter, Origin, PublishError, PutOutcome};
use crate::stream::{RecordText, SequenceNumber, StreamRecord};
use crate::telemetry::{CallFailure, ShardEvent};

/// A record held in the window: what a checkpoint and a dead letter need of it.
pub(crate) struct Held {
    pub sequence_number: SequenceNumber,
    pub created_at: Option<SystemTime>,
    /// The record's JSON, parsed again only for a dead letter.
    pub text: RecordText,
    pub event_id: String,
}

/// Records on their way to PutEvents, and the calls they make (see the module documentation).
pub(crate) struct Window {
    settings: Arc<WorkerSettings>,
    /// The stream, for the records' `eventSourceARN` and the dead letters.
    stream_arn: String,
    /// The shard (or `backfill-segment-N`), for the dead letters.
    shard_id: String,
    pub(super) schedule: Schedule<Held, Work>,
    limit: CallLimit,
    page_no: u64,
    /// What routing reads of a record, learnt from the router on the first record (a window
    /// routes for one router, its stream's): a record's tree is parsed with only these parts.
    reads: OnceLock<ReadFields>,
}

/// An entry of the window: one to publish, or a record that could not become an entry for a
/// route (dead-lettered at once).
pub(crate) enum Work {
    Publish {
        /// Shared with the calls that carry it: a call borrows it, no copy is made per send.
        entry: Arc<Entry>,
        /// When it was first sent (for its dead letter).
        first_attempt: Option<SystemTime>,
    },
    Poison(RouteError),
}

impl Work {
    /// The entry to publish, if this is one.
    pub(super) fn entry(&self) -> Option<&Entry> {
        match self {
            Self::Publish { entry, .. } => Some(entry),
            Self::Poison(_) => None,
        }
    }

    /// The entry to publish, shared, if this is one.
    fn shared_entry(&self) -> Option<Arc<Entry>> {
        match self {
            Self::Publish { entry, .. } => Some(Arc::clone(entry)),
            Self::Poison(_) => None,
        }
    }

    /// Notes a send: the first one's time goes into a dead letter.
    pub(super) fn sent(&mut self, at: SystemTime) {
        if let Self::Publish { first_attempt, .. } = self {
            first_attempt.get_or_insert(at);
        }
    }
}

/// A PutEvents call's answer, with the entries it carried.
pub(crate) struct Answer {
    pub batch: Vec<EntryId>,
    pub result: Result<PutOutcome, PublishError>,
    /// The call's ticket from the shard's [`CallLimit`], and how long it took.
    pub ticket: Ticket,
    pub round_trip: std::time::Duration,
}

impl Window {
    /// An empty window with `order`, its calls limited by `settings`.
    pub(crate) fn new(
        settings: Arc<WorkerSettings>,
        stream_arn: String,
        shard_id: String,
        order: Order,
    ) -> Self {
        let limit = CallLimit::new(settings.max_in_flight);
        Self {
            settings,
            stream_arn,
            shard_id,
            schedule: Schedule::new(order),
            limit,
            page_no: 0,
            reads: OnceLock::new(),
        }
    }

    /// Routes a page of records into the window, in order; a record's poison entries (routes
    /// it matched but cannot render for) are dead-lettered at once (`out`).
    pub(crate) fn push_page<'r>(
        &mut self,
        records: Vec<StreamRecord>,
        router: &'r Router,
        now: Now,
        out: &mut Vec<Command<'r>>,
    ) {
        if records.is_empty() {
            return;
        }
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            let new = self.route(record, router, self.page_no, i + 1 == count, out);
            for id in self.schedule.push(new) {
                let letter = self.letter(id, None, router, now.wall);
                out.push(Command::WriteLetter(id, Box::new(letter)));
            }
        }
        self.page_no += 1;
    }

    /// The next call that may go out now, if any.
    pub(crate) fn next_call(&self, now: Instant) -> Option<Vec<EntryId>> {
        let settings = &self.settings;
        self.schedule
            .peek_lane_batch(now, |lane| settings.call_limits(lane))
    }

    /// Marks `batch` (from [`Window::next_call`], unchanged since) in flight: its entries
    /// (shared with the window, which keeps them for a retry or a dead letter), and the call's
    /// ticket for the call limit.
    pub(crate) fn start_call(
        &mut self,
        batch: &[EntryId],
        at: SystemTime,
    ) -> (Vec<Arc<Entry>>, Ticket) {
        self.schedule.start(batch);
        let entries = batch
            .iter()
            .filter_map(|&id| {
                let work = self.schedule.entry_mut(id);
                work.sent(at);
                work.shared_entry()
            })
            .collect();
        (entries, self.limit.start())
    }

    /// An answered call: its entries settled (see [`Window::settle`]); the dead letters to
    /// write go to `out`.
    pub(crate) fn answered<'r>(
        &mut self,
        answer: &Answer,
        router: &'r Router,
        now: Now,
        out: &mut Vec<Command<'r>>,
    ) {
        for (id, letter) in self.settle(answer, router, now, out) {
            out.push(Command::WriteLetter(id, Box::new(letter)));
        }
    }

    /// The dead letter of entry `id` is stored.
    pub(crate) fn letter_stored(&mut self, id: EntryId) {
        self.schedule.dead_lettered(id);
    }

    /// Drops the settled records at the window's front; the last one, if any.
    pub(crate) fn advance(&mut self) -> Option<Passed<Held>> {
        self.schedule.advance()
    }

    /// Starts no more records: those after the last one started are dropped.
    pub(crate) fn stop(&mut self) {
        self.schedule.stop();
    }

    /// Whether nothing is held, under way or being dead-lettered.
    pub(crate) fn is_empty(&self) -> bool {
        self.schedule.is_empty()
    }

    pub(crate) fn held_records(&self) -> usize {
        self.schedule.held_records()
    }

    pub(crate) fn held_bytes(&self) -> usize {
        self.schedule.held_bytes()
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.schedule.next_retry()
    }

    /// Creation time of the window's oldest record.
    pub(crate) fn oldest_created_at(&self) -> Option<SystemTime> {
        self.schedule.oldest_record().and_then(|r| r.created_at)
    }

    /// Routes one record into a window record: its entries with their ordering keys, and its
    /// poison entries (routes it matched but cannot be rendered for).
    pub(super) fn route<'r>(
        &self,
        record: StreamRecord,
        router: &'r Router,
        page: u64,
        last_of_page: bool,
        out: &mut Vec<Command<'r>>,
    ) -> NewRecord<Held, Work> {
        // The record's tree, of only what routing reads, lives only while it is routed; the
        // window holds its text.
        let policy = &self.settings.records;
        let reads = self.reads.get_or_init(|| policy.reads(router));
        let Parsed { mut tree, images } = reads
            .parse(record.text.as_str())
            .expect("a record's text is JSON this crate wrote");
        let routed = policy.route(
            router,
            &mut tree,
            images,
            &self.stream_arn,
            record.created_at,
        );
        drop(tree);
        if let Some(error) = routed.trace_ignored {
            out.push(Command::Emit(ShardEvent::TraceIgnored { error }));
        }
        let (event_id, results) = (routed.event_id, routed.results);
        if results.is_empty() {
            out.push(Command::Emit(ShardEvent::Filtered));
        }
        let entries = results
            .into_iter()
            .map(|result| match result {
                Ok(entry) => NewEntry {
                    lane: router.call_lane(entry.route),
                    key: Some(entry.ordering_key.clone()),
                    size: entry_size(&entry),
                    payload: Work::Publish {
                        entry: Arc::new(entry),
                        first_attempt: None,
                    },
                    poison: false,
                },
                Err(e) => NewEntry {
                    lane: 0,
                    key: None,
                    size: 0,
                    payload: Work::Poison(e),
                    poison: true,
                },
            })
            .collect();
        NewRecord {
            bytes: record.bytes(),
            payload: Held {
                sequence_number: record.sequence_number,
                created_at: record.created_at,
                text: record.text,
                event_id,
            },
            page,
            last_of_page,
            entries,
        }
    }

    /// Settles an answered call: decides each entry's fate, applies it to the window, and
    /// tells the shard's call limit how the call fared. Returns the dead letters to write,
    /// with their entries; what happened goes to `out`.
    fn settle<'r>(
        &mut self,
        answer: &Answer,
        router: &'r Router,
        now: Now,
        out: &mut Vec<Command<'r>>,
    ) -> Vec<(EntryId, DeadLetter)> {
        let batch = &answer.batch;
        let result = &answer.result;
        let schedule = &self.schedule;
        let sent: Vec<Sent> = batch
            .iter()
            .map(|&id| Sent {
                attempts: schedule.attempts(id),
                created_at: schedule.record_of(id).created_at,
            })
            .collect();
        let verdicts = decide(result, &sent, self.settings.retry, now.wall);
        let entry_of = |i: usize| batch.get(i).and_then(|&id| schedule.entry(id).entry());
        // A Custom Event Bus throttles per event group: an entry's own failure slows its key
        // (it waits for its retry, and the keys after it), not the shard's calls.
        let custom_bus = entry_of(0).is_some_and(|e| e.bus.kind() == BusKind::Custom);
        let deduplicated: &[usize] = result.as_ref().map_or(&[], |o| o.deduplicated.as_slice());
        out.extend(call_events(result, &verdicts, batch.len()));
        // One delay for the call's retries, growing with the attempts made.
        let retries = sent.iter().map(|s| s.attempts).max().unwrap_or(1);
        let retry_at = now.instant
            + super::backoff::delay(
                self.settings.initial_backoff,
                self.settings.max_backoff,
                retries,
            );
        let mut dead: Vec<(EntryId, Failure)> = Vec::new();
        let outcomes: Vec<Outcome> = batch
            .iter()
            .zip(verdicts)
            .enumerate()
            .map(|(i, (&id, verdict))| match verdict {
                Verdict::Accepted => {
                    if let Some(entry) = schedule.entry(id).entry() {
                        let route = route_name(router, entry);
                        out.push(Command::Emit(if deduplicated.contains(&i) {
                            ShardEvent::Deduplicated { route }
                        } else {
                            ShardEvent::Published {
                                route,
                                created: entry.time,
                            }
                        }));
                    }
                    Outcome::Accepted
                }
                Verdict::Retry(f) => {
                    out.push(Command::Emit(ShardEvent::Retried { code: f.code }));
                    Outcome::RetryAt(retry_at)
                }
                Verdict::Split(_) => Outcome::Split,
                Verdict::DeadLetter(f) => {
                    dead.push((id, f));
                    Outcome::DeadLetter
                }
            })
            .collect();
        // The letters are made before the window changes, while the entries are in it.
        let letters = dead
            .into_iter()
            .map(|(id, failure)| (id, self.letter(id, Some(failure), router, now.wall)))
            .collect();
        self.schedule.answered(batch, &outcomes);
        let retried = match result {
            Err(_) => outcomes.iter().any(|o| matches!(o, Outcome::RetryAt(_))),
            Ok(_) if custom_bus => false,
            Ok(_) => outcomes.iter().any(|o| matches!(o, Outcome::RetryAt(_))),
        };
        out.extend(self.adapt_limit(answer, retried));
        self.schedule.set_max_in_flight(self.limit.get());
        if !outcomes.iter().all(|o| *o == Outcome::Accepted) {
            out.push(Command::Emit(ShardEvent::NotAllAccepted {
                entries: batch.len(),
            }));
        }
        letters
    }

    /// Tells the shard's call limit how a call fared; the event if the limit moved.
    fn adapt_limit<'r>(&mut self, answer: &Answer, retried: bool) -> Option<Command<'r>> {
        let before = self.limit.get();
        self.limit
            .answered(answer.ticket, answer.round_trip, retried);
        (self.limit.get() != before).then(|| {
            Command::Emit(ShardEvent::CallsAdapted {
                from: before,
                to: self.limit.get(),
                round_trip: answer.round_trip,
                retried,
            })
        })
    }

    /// The dead letter of entry `id`: for a poison entry its routing error, else `failure`
    /// (the last answer about it).
    pub(super) fn letter(
        &self,
        id: EntryId,
        failure: Option<Failure>,
        router: &Router,
        now: SystemTime,
    ) -> DeadLetter {
        let schedule = &self.schedule;
        let record = schedule.record_of(id);
        let mut json = record.text.json();
        set_source_arn(&mut json, &self.stream_arn);
        let origin = Origin {
            stream_arn: &self.stream_arn,
            shard_id: &self.shard_id,
            sequence_number: record.sequence_number.as_str(),
            event_id: &record.event_id,
            record: &json,
        };
        match schedule.entry(id) {
            Work::Poison(e) => DeadLetter::transform(origin, e, now),
            Work::Publish {
                entry,
                first_attempt,
            } => {
                let failure = failure.unwrap_or_else(|| Failure {
                    code: "Unknown".to_owned(),
                    message: "no answer recorded".to_owned(),
                });
                DeadLetter::publish(
                    origin,
                    route_name(router, entry),
                    entry,
                    (&failure.code, &failure.message),
                    Attempts {
                        count: schedule.attempts(id),
                        first: first_attempt.unwrap_or(now),
                        last: now,
                    },
                )
            }
        }
    }
}

/// The name of the route an entry was rendered for (its metrics label).
pub(super) fn route_name<'r>(router: &'r Router, entry: &Entry) -> &'r str {
    router
        .routes()
        .get(entry.route)
        .map_or("unknown", crate::pipeline::Route::name)
}

/// What a call's answer tells at once: each failed entry's code, or the whole call's failure
/// and what comes next for its entries.
fn call_events<'r>(
    result: &Result<PutOutcome, PublishError>,
    verdicts: &[Verdict],
    entries: usize,
) -> Vec<Command<'r>> {
    match result {
        Ok(outcome) => outcome
            .failed
            .iter()
            .map(|f| {
                Command::Emit(ShardEvent::EntryFailed {
                    code: f.code.clone(),
                })
            })
            .collect(),
        Err(e) => {
            let next = if verdicts.iter().any(|v| matches!(v, Verdict::Split(_))) {
                CallFailure::Split
            } else if verdicts.iter().any(|v| matches!(v, Verdict::Retry(_))) {
                CallFailure::Retry
            } else {
                CallFailure::GiveUp
            };
            vec![Command::Emit(ShardEvent::CallFailed {
                code: e.code.clone(),
                message: e.to_string(),
                entries,
                next,
            })]
        }
    }
}
