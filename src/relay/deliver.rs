//! Delivery's side of the shard worker: route a record into the window, carry out the
//! verdicts of an answered PutEvents call (`settle::decide`), and write dead letters. A record
//! counts as handled once each of its entries was accepted or dead-lettered; only then may the
//! checkpoint pass it.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::limit::{CallLimit, Ticket};
use super::schedule::{EntryId, NewEntry, NewRecord, Outcome, Schedule};
use super::settle::{decide, Failure, Sent, Verdict};
use super::worker::{backoff, Held, Worker};
use crate::lease::{LeaseStore, StreamGap};
use crate::pipeline::{entry_size, BusKind, Entry, RouteError};
use crate::publish::{
    rfc3339, Attempts, DeadLetter, DeadLetterSink, EventPublisher, Origin, PublishError, PutOutcome,
};
use crate::stream::{ShardSource, StreamRecord};

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

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Worker<S, P, L, D> {
    /// Routes one record into a window record: its entries with their ordering keys, and its
    /// poison entries (routes it matched but cannot be rendered for).
    pub(super) fn route(
        &self,
        mut record: StreamRecord,
        page: u64,
        last_of_page: bool,
    ) -> NewRecord<Held, Work> {
        let routed = self.settings.records.route(
            &self.router,
            &mut record.json,
            &self.lease.stream_arn,
            record.created_at,
        );
        if let Some(e) = &routed.trace_ignored {
            self.metrics.trace_context_invalid.inc();
            warn!(error = %e, "Trace context ignored for this record.");
        }
        let (event_id, results) = (routed.event_id, routed.results);
        if results.is_empty() {
            self.metrics.records_filtered.inc();
        }
        let entries = results
            .into_iter()
            .map(|result| match result {
                Ok(entry) => NewEntry {
                    lane: self.router.call_lane(entry.route),
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

    /// Carries out an answered call: counts it, decides each entry's fate, applies it to the
    /// window, and tells the shard's call limit how the call fared. Returns the dead letters
    /// to write, with their entries.
    pub(super) fn settle(
        &self,
        schedule: &mut Schedule<Held, Work>,
        limit: &mut CallLimit,
        answer: &Answer,
    ) -> Vec<(EntryId, DeadLetter)> {
        let batch = &answer.batch;
        let result = &answer.result;
        let now = SystemTime::now();
        let sent: Vec<Sent> = batch
            .iter()
            .map(|&id| Sent {
                attempts: schedule.attempts(id),
                created_at: schedule.record_of(id).created_at,
            })
            .collect();
        let verdicts = decide(result, &sent, self.settings.retry, now);
        let entry_of = |i: usize| batch.get(i).and_then(|&id| schedule.entry(id).entry());
        // A Custom Event Bus throttles per event group: an entry's own failure slows its key
        // (it waits for its retry, and the keys after it), not the shard's calls.
        let custom_bus = entry_of(0).is_some_and(|e| e.bus.kind() == BusKind::Custom);
        let deduplicated: Vec<usize> = result
            .as_ref()
            .map(|o| o.deduplicated.clone())
            .unwrap_or_default();
        match result {
            Ok(outcome) => {
                for f in &outcome.failed {
                    self.metrics
                        .put_events_failed_entries
                        .with_label_values(&[f.code.as_str()])
                        .inc();
                }
            }
            Err(e) => {
                self.metrics
                    .put_events_errors
                    .with_label_values(&[e.code.as_str()])
                    .inc();
                if verdicts.iter().any(|v| matches!(v, Verdict::Split(_))) {
                    warn!(error = %e, entries = batch.len(), "PutEvents rejected the request; sending its entries one by one to find the culprit.");
                } else if verdicts.iter().any(|v| matches!(v, Verdict::Retry(_))) {
                    warn!(error = %e, entries = batch.len(), "PutEvents failed; retrying with backoff.");
                }
            }
        }
        // One delay for the call's retries, growing with the attempts made.
        let retries = sent.iter().map(|s| s.attempts).max().unwrap_or(1);
        let retry_at = Instant::now()
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
                        if deduplicated.contains(&i) {
                            self.metrics
                                .events_deduplicated
                                .with_label_values(&[self.route_name(entry)])
                                .inc();
                        } else {
                            self.accepted(entry);
                        }
                    }
                    Outcome::Accepted
                }
                Verdict::Retry(f) => {
                    self.metrics
                        .put_events_retries
                        .with_label_values(&[f.code.as_str()])
                        .inc();
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
            .map(|(id, failure)| (id, self.letter(schedule, id, Some(failure))))
            .collect();
        schedule.answered(batch, &outcomes);
        let retried = match result {
            Err(_) => outcomes.iter().any(|o| matches!(o, Outcome::RetryAt(_))),
            Ok(_) if custom_bus => false,
            Ok(_) => outcomes.iter().any(|o| matches!(o, Outcome::RetryAt(_))),
        };
        let before = limit.get();
        limit.answered(answer.ticket, answer.round_trip, retried);
        if limit.get() != before {
            debug!(
                from = before,
                to = limit.get(),
                round_trip = ?answer.round_trip,
                retried,
                "Calls in flight for this shard adapted."
            );
        }
        schedule.set_max_in_flight(limit.get());
        if !outcomes.iter().all(|o| *o == Outcome::Accepted) {
            debug!(
                entries = batch.len(),
                "Some entries of the call will be retried or dead-lettered."
            );
        }
        letters
    }

    /// The dead letter of entry `id`: for a poison entry its routing error, else `failure`
    /// (the last answer about it).
    pub(super) fn letter(
        &self,
        schedule: &Schedule<Held, Work>,
        id: EntryId,
        failure: Option<Failure>,
    ) -> DeadLetter {
        let record = schedule.record_of(id);
        let now = SystemTime::now();
        let origin = Origin {
            stream_arn: &self.lease.stream_arn,
            shard_id: &self.lease.shard_id.0,
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
                    self.route_name(entry),
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

    /// Writes a dead letter, retrying until the sink takes it (the checkpoint must not pass a
    /// record whose dead letter is not stored), then yields `id`.
    pub(super) async fn write_letter(&self, letter: DeadLetter, id: EntryId) -> EntryId {
        let mut pause = backoff(&self.settings);
        loop {
            match self.dead_letters.send(&letter).await {
                Ok(()) => {
                    self.metrics
                        .events_dead_lettered
                        .with_label_values(&[
                            letter.route.as_str(),
                            letter.stage.as_str(),
                            letter.error_code.as_str(),
                        ])
                        .inc();
                    error!(
                        route = %letter.route,
                        stage = letter.stage.as_str(),
                        error_code = %letter.error_code,
                        error = %letter.error_message,
                        sequence_number = %letter.sequence_number,
                        event_id = %letter.event_id,
                        "Event not delivered; written to the dead-letter sink."
                    );
                    return id;
                }
                Err(e) => {
                    self.metrics
                        .dead_letter_write_errors
                        .with_label_values(&[e.code.as_str()])
                        .inc();
                    let delay = pause.next().unwrap_or(self.settings.max_backoff);
                    error!(error = %e, retry_in = ?delay, sequence_number = %letter.sequence_number,
                        "Writing a dead letter failed; retrying (the checkpoint waits).");
                    tokio::time::sleep(delay).await;
                }
            }
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

    /// A gap found by the reader: counted, logged at ERROR with the backfill that recovers
    /// it, and stored in the lease table (for `outbox-relay status`) by a task of its own, so
    /// the shard goes on meanwhile.
    pub(super) fn record_gap(&self, gap: StreamGap) {
        let source = crate::config::table_or_arn(&gap.stream_arn).to_owned();
        self.metrics
            .stream_gaps
            .with_label_values(&[source.as_str()])
            .inc();
        error!(
            source,
            shard = %gap.shard_id.0,
            since = gap.since.map(rfc3339).as_deref().unwrap_or("unknown"),
            until = gap.until.map(rfc3339).as_deref().unwrap_or("unknown"),
            recover = %gap.recovery(),
            "Records were trimmed from the stream before they were relayed: a gap. The rows are still in the table (until their TTL); run the backfill shown to publish them."
        );
        let leases = self.leases.clone();
        tokio::spawn(async move {
            if let Err(e) = leases.record_gap(&gap).await {
                warn!(error = %e, "Recording the gap in the lease table failed; it is in this log line only.");
            }
        });
    }

    pub(super) fn route_name(&self, entry: &Entry) -> &str {
        self.router
            .routes()
            .get(entry.route)
            .map_or("unknown", crate::pipeline::Route::name)
    }
}

/// A record's size for the read-ahead bound: the stream's own `SizeBytes` when present, else
/// its JSON text's length.
fn record_bytes(record: &StreamRecord) -> usize {
    record.json["dynamodb"]["SizeBytes"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| record.json.to_string().len())
}
