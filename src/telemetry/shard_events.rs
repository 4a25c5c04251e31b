//! What a shard's reader and delivery do, each happening in one place with its log line and
//! its counters (as [`super::LeaseEvent`] does for leases): the shard loop says what happened,
//! this file says how it shows. Logs carry the shard's span (stream and shard).

use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn};

use super::Metrics;
use crate::lease::{Checkpoint, StreamGap};
use crate::pipeline::TraceError;
use crate::publish::{rfc3339, DeadLetter};

/// What the loop does next after a whole PutEvents call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// Refused because of some entry: each is sent again alone to find the culprit.
    Split,
    /// Transient: the entries are retried with backoff.
    Retry,
    /// Given up on: the entries are dead-lettered.
    GiveUp,
}

/// A happening of one shard's loop.
#[derive(Debug)]
pub enum ShardEvent<'a> {
    /// A GetRecords page brought `records` records.
    PageRead { records: usize },
    /// A record matched no route.
    Filtered,
    /// A row's trace context is malformed: the record goes on without it (a trace is never a
    /// reason to hold an event back).
    TraceIgnored { error: TraceError },
    /// An entry of `route` was accepted; `created` is its record's creation time.
    Published {
        route: &'a str,
        created: Option<SystemTime>,
    },
    /// An entry of `route` was dropped by the Custom Event Bus as a duplicate of one it took.
    Deduplicated { route: &'a str },
    /// An entry of an answered call failed with `code`.
    EntryFailed { code: String },
    /// A whole call failed with `code`.
    CallFailed {
        code: String,
        message: String,
        entries: usize,
        next: CallFailure,
    },
    /// An entry's failure `code` is retried.
    Retried { code: String },
    /// The calls this shard may have in flight changed.
    CallsAdapted {
        from: usize,
        to: usize,
        round_trip: Duration,
        retried: bool,
    },
    /// Some entries of an answered call will be retried or dead-lettered.
    NotAllAccepted { entries: usize },
    /// The checkpoint was written.
    CheckpointWritten { checkpoint: Checkpoint },
    /// Writing the checkpoint failed (`code`); it is retried after `retry_in`.
    CheckpointFailed {
        checkpoint: Checkpoint,
        code: String,
        error: String,
        retry_in: Duration,
    },
    /// The checkpoint found another owner: the lease is lost, nothing more is written.
    CheckpointFenced { checkpoint: Checkpoint },
    /// A closed shard was relayed to its end and `SHARD_END` is written.
    ShardEnded,
    /// Stopping: the records already started are finished, nothing more is read.
    Stopping,
    /// A dead letter was stored.
    DeadLettered { letter: &'a DeadLetter },
    /// Storing a dead letter failed; it is retried after `retry_in` (the checkpoint waits).
    DeadLetterFailed {
        letter: &'a DeadLetter,
        code: &'a str,
        error: String,
        retry_in: Duration,
    },
    /// Records were trimmed before they were relayed.
    Gap { gap: &'a StreamGap, source: &'a str },
    /// A GetRecords call goes out.
    GetRecords,
    /// The shard iterator expired; a new one is taken after the last record read.
    IteratorExpired,
    /// Reading the shard failed (retried with backoff); `trimmed`: records were trimmed
    /// before they were relayed, and reading resumes at `TRIM_HORIZON` (from `position`).
    ReadFailed {
        code: &'a str,
        error: String,
        trimmed: bool,
        position: String,
    },
    /// A PutEvents call goes out.
    CallStarted,
    /// A PutEvents call came back after `round_trip`.
    CallAnswered { round_trip: Duration },
}

impl ShardEvent<'_> {
    /// Writes the log line and counts it.
    #[allow(clippy::too_many_lines)] // one arm per happening, each a few lines
    pub fn emit(&self, metrics: &Metrics) {
        match self {
            Self::PageRead { records } => metrics.records_read.inc_by(*records as u64),
            Self::Filtered => metrics.records_filtered.inc(),
            Self::TraceIgnored { error } => {
                metrics.trace_context_invalid.inc();
                warn!(error = %error, "Trace context ignored for this record.");
            }
            Self::Published { route, created } => {
                metrics.events_published.with_label_values(&[route]).inc();
                if let Some(created) = created {
                    let lag = SystemTime::now()
                        .duration_since(*created)
                        .unwrap_or_default();
                    metrics.lag_seconds.observe(lag.as_secs_f64());
                }
            }
            Self::Deduplicated { route } => {
                metrics
                    .events_deduplicated
                    .with_label_values(&[route])
                    .inc();
            }
            Self::EntryFailed { code } => {
                metrics
                    .put_events_failed_entries
                    .with_label_values(&[code.as_str()])
                    .inc();
            }
            Self::CallFailed {
                code,
                message,
                entries,
                next,
            } => {
                metrics
                    .put_events_errors
                    .with_label_values(&[code.as_str()])
                    .inc();
                match next {
                    CallFailure::Split => warn!(error = %message, error_code = %code, entries,
                        "PutEvents rejected the request; sending its entries one by one to find the culprit."),
                    CallFailure::Retry => warn!(error = %message, error_code = %code, entries,
                        "PutEvents failed; retrying with backoff."),
                    CallFailure::GiveUp => {}
                }
            }
            Self::Retried { code } => {
                metrics
                    .put_events_retries
                    .with_label_values(&[code.as_str()])
                    .inc();
            }
            Self::CallsAdapted {
                from,
                to,
                round_trip,
                retried,
            } => {
                debug!(from, to, round_trip = ?round_trip, retried,
                    "Calls in flight for this shard adapted.");
            }
            Self::NotAllAccepted { entries } => {
                debug!(
                    entries,
                    "Some entries of the call will be retried or dead-lettered."
                );
            }
            Self::CheckpointWritten { checkpoint } => {
                metrics.checkpoints.inc();
                debug!(%checkpoint, "Checkpoint written.");
            }
            Self::CheckpointFailed {
                checkpoint,
                code,
                error,
                retry_in,
            } => {
                metrics
                    .lease_table_errors
                    .with_label_values(&["checkpoint", code.as_str()])
                    .inc();
                warn!(error = %error, %checkpoint, retry_in = ?retry_in, "Checkpoint failed; retrying.");
            }
            Self::CheckpointFenced { checkpoint } => {
                info!(%checkpoint, "Lease lost before checkpointing; a peer continues from its last checkpoint.");
            }
            Self::ShardEnded => info!("Shard ended and fully relayed."),
            Self::Stopping => debug!("Stopping: finishing the records already started."),
            Self::DeadLettered { letter } => {
                metrics
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
            }
            Self::DeadLetterFailed {
                letter,
                code,
                error,
                retry_in,
            } => {
                metrics
                    .dead_letter_write_errors
                    .with_label_values(&[code])
                    .inc();
                error!(error = %error, retry_in = ?retry_in, sequence_number = %letter.sequence_number,
                    "Writing a dead letter failed; retrying (the checkpoint waits).");
            }
            Self::Gap { gap, source } => {
                metrics.stream_gaps.with_label_values(&[source]).inc();
                error!(
                    source,
                    shard = %gap.shard_id.0,
                    since = gap.since.map(rfc3339).as_deref().unwrap_or("unknown"),
                    until = gap.until.map(rfc3339).as_deref().unwrap_or("unknown"),
                    recover = %gap.recovery(),
                    "Records were trimmed from the stream before they were relayed: a gap. The rows are still in the table (until their TTL); run the backfill shown to publish them."
                );
            }
            Self::GetRecords => metrics.get_records_requests.inc(),
            Self::IteratorExpired => {
                metrics
                    .stream_errors
                    .with_label_values(&["ExpiredIteratorException"])
                    .inc();
                debug!("Shard iterator expired; getting a new one after the last record read.");
            }
            Self::ReadFailed {
                code,
                error,
                trimmed,
                position,
            } => {
                metrics.stream_errors.with_label_values(&[code]).inc();
                if *trimmed {
                    error!(
                        error = %error,
                        position,
                        "Records were trimmed before they were relayed (older than the 24 h retention); resuming at TRIM_HORIZON. The gap is recorded when the first record still in the stream is read."
                    );
                } else {
                    warn!(error = %error, "Reading the shard failed; retrying with backoff.");
                }
            }
            Self::CallStarted => {
                metrics.publish_in_flight_batches.inc();
                metrics.put_events_requests.inc();
            }
            Self::CallAnswered { round_trip } => {
                metrics
                    .put_events_duration_seconds
                    .observe(round_trip.as_secs_f64());
                metrics.publish_in_flight_batches.dec();
            }
        }
    }
}
