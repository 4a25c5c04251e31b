//! Delivering one page of records: route every record, publish the entries batch by batch
//! (batch N+1 only after batch N is settled), and dead-letter what cannot be delivered. A
//! record counts as handled once each of its entries was accepted or dead-lettered; only then
//! may the checkpoint pass it.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde_json::Value;
use tracing::{debug, error, warn};

use super::progress::settled_through;
use super::worker::{backoff, PageEnd, Worker};
use crate::lease::LeaseStore;
use crate::pipeline::router::stable_event_id;
use crate::pipeline::{Batches, Entry};
use crate::publish::{
    classify, rfc3339, DeadLetter, DeadLetterEntry, DeadLetterSink, Disposition, EventPublisher,
    Stage,
};
use crate::stream::{SequenceNumber, ShardSource, StreamRecord};

/// A record made ready for routing (its JSON now has `eventSourceARN`) and its stable id.
struct Prepared<'a> {
    record: &'a StreamRecord,
    event_id: String,
}

/// Why an entry is given up on.
struct Failure {
    code: String,
    message: String,
}

/// Per-entry delivery attempts, for dead letters.
#[derive(Clone, Copy)]
struct Attempts {
    count: u32,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

impl Attempts {
    const NONE: Self = Self {
        count: 0,
        first: None,
        last: None,
    };

    fn record(&mut self, at: SystemTime) {
        self.count += 1;
        self.first.get_or_insert(at);
        self.last = Some(at);
    }
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Worker<S, P, L, D> {
    /// Routes and publishes one page. Returns how it ended and the last record fully handled.
    ///
    /// # Cancel safety
    /// Checks the token only between batches; a batch in flight (and any dead letter being
    /// written) is always settled first.
    pub(super) async fn relay_page(
        &self,
        records: &mut [StreamRecord],
    ) -> (PageEnd, Option<SequenceNumber>) {
        let shard = self.lease.key.0.as_str();
        if let Some(created) = records.iter().filter_map(|r| r.created_at).min() {
            self.pending.set(shard, created);
        }
        for record in records.iter_mut() {
            if let Some(obj) = record.json.as_object_mut() {
                obj.insert(
                    "eventSourceARN".to_owned(),
                    Value::String(self.lease.stream_arn.clone()),
                );
            }
        }
        let records: &[StreamRecord] = records;
        let prepared: Vec<Prepared<'_>> = records
            .iter()
            .map(|record| Prepared {
                record,
                event_id: stable_event_id(
                    &record.json,
                    self.settings.event_id_attribute.as_deref(),
                ),
            })
            .collect();
        let (entries, entry_records) = self.route_page(&prepared).await;
        let mut settled = 0;
        let mut end = PageEnd::Done;
        for range in Batches::new(&entries, self.settings.max_batch_entries) {
            if self.token.is_cancelled() {
                end = PageEnd::Cancelled;
                break;
            }
            self.publish_batch(
                &entries[range.clone()],
                &entry_records[range.clone()],
                &prepared,
            )
            .await;
            settled = range.end;
            // Records before the first unsettled entry's record are handled.
            if let Some(created) = entry_records
                .get(settled)
                .and_then(|&i| records[i..].iter().filter_map(|r| r.created_at).min())
            {
                self.pending.set(shard, created);
            }
        }
        self.pending.clear(shard);
        let last = settled_through(&entry_records, settled, records.len())
            .map(|i| records[i].sequence_number.clone());
        (end, last)
    }

    /// Every entry the page's records produce, with the index of each entry's record. Records
    /// that fail to render for a route are dead-lettered here, before anything is published.
    async fn route_page(&self, prepared: &[Prepared<'_>]) -> (Vec<Entry>, Vec<usize>) {
        let mut entries = Vec::new();
        let mut entry_records = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let results = self.router.route(
                &p.record.json,
                &self.lease.stream_arn,
                &p.event_id,
                p.record.created_at,
            );
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
                        let now = SystemTime::now();
                        let mut attempts = Attempts::NONE;
                        attempts.record(now);
                        let failure = Failure {
                            code: e.code().to_owned(),
                            message: e.to_string(),
                        };
                        let letter =
                            self.letter(p, e.route(), Stage::Transform, &failure, None, attempts);
                        self.dead_letter(&letter).await;
                    }
                }
            }
        }
        (entries, entry_records)
    }

    /// Publishes one batch until every entry is accepted or dead-lettered. Retries only the
    /// failed entries, in their original order, with backoff and jitter. A whole call that
    /// fails for a reason that is about the events (e.g. a bus that does not exist) is split
    /// into single-entry calls so only the culprit is dead-lettered.
    async fn publish_batch(
        &self,
        batch: &[Entry],
        entry_records: &[usize],
        prepared: &[Prepared<'_>],
    ) {
        self.metrics.publish_in_flight_batches.inc();
        self.publish_batch_inner(batch, entry_records, prepared)
            .await;
        self.metrics.publish_in_flight_batches.dec();
    }

    async fn publish_batch_inner(
        &self,
        batch: &[Entry],
        entry_records: &[usize],
        prepared: &[Prepared<'_>],
    ) {
        let mut attempts = vec![Attempts::NONE; batch.len()];
        let mut groups: VecDeque<Vec<usize>> = VecDeque::from([(0..batch.len()).collect()]);
        while let Some(mut pending) = groups.pop_front() {
            let mut pause = backoff(&self.settings);
            loop {
                // The first attempt sends the batch as it is; retries send the failed entries.
                let retried: Vec<Entry>;
                let request: &[Entry] = if pending.len() == batch.len() {
                    batch
                } else {
                    retried = pending.iter().map(|&i| batch[i].clone()).collect();
                    &retried
                };
                let now = SystemTime::now();
                for &i in &pending {
                    attempts[i].record(now);
                }
                self.metrics.put_events_requests.inc();
                let timer = self.metrics.put_events_duration_seconds.start_timer();
                let result = {
                    // Held only for the call, never across a backoff sleep, so shards that
                    // keep failing cannot starve healthy ones. The semaphore is never closed.
                    let _permit = self.settings.publish_permits.acquire().await;
                    self.publisher.put_events(request).await
                };
                self.health
                    .publish_call_result(&self.lease.key.0, result.is_ok());
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
                            let failure = Failure {
                                code: f.code,
                                message: f.message,
                            };
                            let ctx = (&batch[i], &prepared[entry_records[i]], attempts[i]);
                            if self.settle_failure(ctx, &failure).await {
                                retry.push(i);
                            }
                        }
                    }
                    Err(e) => {
                        self.metrics
                            .put_events_errors
                            .with_label_values(&[e.code.as_str()])
                            .inc();
                        match classify(&e.code) {
                            Disposition::Retry => {
                                warn!(error = %e, entries = pending.len(), "PutEvents failed; retrying with backoff.");
                                let failure = Failure {
                                    code: e.code.clone(),
                                    message: e.message.clone(),
                                };
                                for &i in &pending {
                                    let ctx = (&batch[i], &prepared[entry_records[i]], attempts[i]);
                                    if self.settle_failure(ctx, &failure).await {
                                        retry.push(i);
                                    }
                                }
                            }
                            Disposition::GiveUp if pending.len() > 1 => {
                                warn!(error = %e, entries = pending.len(), "PutEvents rejected the request; sending its entries one by one to find the culprit.");
                                for &i in pending.iter().rev() {
                                    groups.push_front(vec![i]);
                                }
                                break;
                            }
                            Disposition::GiveUp => {
                                let i = pending[0];
                                let failure = Failure {
                                    code: e.code,
                                    message: e.message,
                                };
                                let ctx = (&batch[i], &prepared[entry_records[i]], attempts[i]);
                                self.settle_failure(ctx, &failure).await;
                            }
                        }
                    }
                }
                if retry.is_empty() {
                    break;
                }
                pending = retry;
                let delay = pause.next().unwrap_or(self.settings.max_backoff);
                debug!(entries = pending.len(), ?delay, "Retrying failed entries.");
                // Not cancellable: the in-flight batch is settled before shutdown proceeds.
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Decides a failed entry's fate: `true` = retry it (retryable and within `max_attempts`
    /// and `max_record_age`); otherwise it is dead-lettered here and `false` is returned.
    async fn settle_failure(
        &self,
        (entry, record, attempts): (&Entry, &Prepared<'_>, Attempts),
        failure: &Failure,
    ) -> bool {
        if classify(&failure.code) == Disposition::Retry && !self.exhausted(entry, attempts) {
            self.metrics
                .put_events_retries
                .with_label_values(&[failure.code.as_str()])
                .inc();
            return true;
        }
        self.give_up(entry, record, failure, attempts).await;
        false
    }

    /// Whether a retryable failure of `entry` has used up `max_attempts` or `max_record_age`.
    fn exhausted(&self, entry: &Entry, attempts: Attempts) -> bool {
        let too_many = self
            .settings
            .max_attempts
            .is_some_and(|max| attempts.count >= max);
        let too_old = match (self.settings.max_record_age, entry.time) {
            (Some(max), Some(created)) => SystemTime::now()
                .duration_since(created)
                .is_ok_and(|age| age >= max),
            _ => false,
        };
        too_many || too_old
    }

    async fn give_up(
        &self,
        entry: &Entry,
        p: &Prepared<'_>,
        failure: &Failure,
        attempts: Attempts,
    ) {
        let route = self.route_name(entry).to_owned();
        let letter = self.letter(p, &route, Stage::Publish, failure, Some(entry), attempts);
        self.dead_letter(&letter).await;
    }

    fn letter(
        &self,
        p: &Prepared<'_>,
        route: &str,
        stage: Stage,
        failure: &Failure,
        entry: Option<&Entry>,
        attempts: Attempts,
    ) -> DeadLetter {
        let now = SystemTime::now();
        DeadLetter {
            version: 1,
            route: route.to_owned(),
            stage,
            error_code: failure.code.clone(),
            error_message: failure.message.clone(),
            stream_arn: self.lease.stream_arn.clone(),
            shard_id: self.lease.shard_id.0.clone(),
            sequence_number: p.record.sequence_number.as_str().to_owned(),
            event_id: p.event_id.clone(),
            attempts: attempts.count,
            first_attempt_at: rfc3339(attempts.first.unwrap_or(now)),
            last_attempt_at: rfc3339(attempts.last.unwrap_or(now)),
            record: p.record.json.clone(),
            entry: entry.map(DeadLetterEntry::from),
            truncated: false,
        }
    }

    /// Writes a dead letter, retrying until the sink takes it: the checkpoint must not pass
    /// a record whose dead letter is not stored.
    async fn dead_letter(&self, letter: &DeadLetter) {
        let mut pause = backoff(&self.settings);
        loop {
            match self.dead_letters.send(letter).await {
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
                    return;
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

    fn route_name(&self, entry: &Entry) -> &str {
        self.router
            .routes()
            .get(entry.route)
            .map_or("unknown", crate::pipeline::Route::name)
    }
}
