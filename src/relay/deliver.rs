//! Delivery's side of the shard loop, pure like the rest of it: route a record into the
//! window (the one way from a record to its entries, [`crate::pipeline::RecordPolicy::route`]),
//! carry out the verdicts of an answered PutEvents call (`settle::decide`), and make dead
//! letters. A record counts as handled once each of its entries was accepted or
//! dead-lettered; only then may the checkpoint pass it.

use std::time::SystemTime;

use super::limit::Ticket;
use super::schedule::{EntryId, NewEntry, NewRecord, Outcome};
use super::settle::{decide, Failure, Sent, Verdict};
use super::shard_loop::{Command, Held, Now, ShardLoop};
use crate::pipeline::{entry_size, BusKind, Entry, RouteError, Router};
use crate::publish::{Attempts, DeadLetter, Origin, PublishError, PutOutcome};
use crate::stream::StreamRecord;
use crate::telemetry::{CallFailure, ShardEvent};

/// An entry of the window: one to publish, or a record that could not become an entry for a
/// route (dead-lettered at once).
pub(super) enum Work {
    Publish {
        entry: Entry,
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

    /// Notes a send: the first one's time goes into a dead letter.
    pub(super) fn sent(&mut self, at: SystemTime) {
        if let Self::Publish { first_attempt, .. } = self {
            first_attempt.get_or_insert(at);
        }
    }
}

/// A PutEvents call's answer, with the entries it carried.
pub(super) struct Answer {
    pub batch: Vec<EntryId>,
    pub result: Result<PutOutcome, PublishError>,
    /// The call's ticket from the shard's [`CallLimit`], and how long it took.
    pub ticket: Ticket,
    pub round_trip: std::time::Duration,
}

impl ShardLoop {
    /// Routes one record into a window record: its entries with their ordering keys, and its
    /// poison entries (routes it matched but cannot be rendered for).
    pub(super) fn route<'r>(
        &self,
        mut record: StreamRecord,
        router: &'r Router,
        page: u64,
        last_of_page: bool,
        out: &mut Vec<Command<'r>>,
    ) -> NewRecord<Held, Work> {
        let routed = self.settings.records.route(
            router,
            &mut record.json,
            &self.stream_arn,
            record.created_at,
        );
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
                        entry,
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
            bytes: record_bytes(&record),
            payload: Held {
                sequence_number: record.sequence_number,
                created_at: record.created_at,
                json: record.json,
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
    pub(super) fn settle<'r>(
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
        match result {
            Ok(outcome) => {
                for f in &outcome.failed {
                    out.push(Command::Emit(ShardEvent::EntryFailed {
                        code: f.code.clone(),
                    }));
                }
            }
            Err(e) => {
                let next = if verdicts.iter().any(|v| matches!(v, Verdict::Split(_))) {
                    CallFailure::Split
                } else if verdicts.iter().any(|v| matches!(v, Verdict::Retry(_))) {
                    CallFailure::Retry
                } else {
                    CallFailure::GiveUp
                };
                out.push(Command::Emit(ShardEvent::CallFailed {
                    code: e.code.clone(),
                    message: e.to_string(),
                    entries: batch.len(),
                    next,
                }));
            }
        }
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
        let before = self.limit.get();
        self.limit
            .answered(answer.ticket, answer.round_trip, retried);
        if self.limit.get() != before {
            out.push(Command::Emit(ShardEvent::CallsAdapted {
                from: before,
                to: self.limit.get(),
                round_trip: answer.round_trip,
                retried,
            }));
        }
        self.schedule.set_max_in_flight(self.limit.get());
        if !outcomes.iter().all(|o| *o == Outcome::Accepted) {
            out.push(Command::Emit(ShardEvent::NotAllAccepted {
                entries: batch.len(),
            }));
        }
        letters
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
        let origin = Origin {
            stream_arn: &self.stream_arn,
            shard_id: &self.shard_id,
            sequence_number: record.sequence_number.as_str(),
            event_id: &record.event_id,
            record: &record.json,
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

/// A record's size for the read-ahead bound: the stream's own `SizeBytes` when present, else
/// its JSON text's length.
fn record_bytes(record: &StreamRecord) -> usize {
    record.json["dynamodb"]["SizeBytes"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| record.json.to_string().len())
}
