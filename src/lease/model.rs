//! The lease of one shard: owner, counter, checkpoint. Pure data.

use std::fmt;

use crate::stream::{SequenceNumber, ShardId};

/// Identifies a relay process in lease ownership (`hostname:uuid`-like, unique per start).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub String);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lease table's partition key: stream ARN and shard id, because shard ids repeat across
/// streams (the emulator gives every table's shard the same id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey(pub String);

impl LeaseKey {
    #[must_use]
    pub fn new(stream_arn: &str, shard: &ShardId) -> Self {
        Self(format!("{stream_arn}#{shard}"))
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far a shard has been relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing relayed yet; start at the oldest record.
    TrimHorizon,
    /// Nothing relayed yet; start at records written from now on.
    Latest,
    /// Every record up to and including this one is relayed.
    Sequence(SequenceNumber),
    /// The shard is closed and every record in it is relayed.
    ShardEnd,
}

impl Checkpoint {
    /// The stored form: a sequence number or one of the sentinel names.
    #[must_use]
    pub fn as_stored(&self) -> &str {
        match self {
            Self::TrimHorizon => "TRIM_HORIZON",
            Self::Latest => "LATEST",
            Self::ShardEnd => "SHARD_END",
            Self::Sequence(s) => s.as_str(),
        }
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "TRIM_HORIZON" => Self::TrimHorizon,
            "LATEST" => Self::Latest,
            "SHARD_END" => Self::ShardEnd,
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Self::Sequence(SequenceNumber::new(digits))
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_stored())
    }
}

/// One lease item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: LeaseKey,
    pub stream_arn: String,
    pub shard_id: ShardId,
    /// `None` when free (never taken, or released on shutdown).
    pub owner: Option<WorkerId>,
    /// Bumped by every renewal, take and release: a lease whose counter stands still for
    /// `lease_duration` belongs to a dead worker.
    pub counter: u64,
    /// Bumped by every take only: a checkpoint is written only by the take it belongs to
    /// (owner *and* epoch), so a stale reader of an earlier take — even by the same worker —
    /// can never move it. 0 for a lease never taken since epochs were introduced.
    pub epoch: u64,
    pub checkpoint: Checkpoint,
    pub parent_shard_id: Option<ShardId>,
    /// Takes since the last checkpoint: a shard that keeps changing hands without progress
    /// points at a poison record or a crash loop.
    pub owner_switches_since_checkpoint: u64,
    /// When the lease was last written (RFC 3339, the writer's wall clock). For operators'
    /// eyes only: expiry is judged by the counter on the observer's monotonic clock.
    pub updated_at: Option<String>,
    /// When the record the checkpoint points at was created (its `ApproximateCreationDateTime`),
    /// if known: where a gap starts when the records after it were trimmed from the stream.
    pub checkpoint_created_at: Option<std::time::SystemTime>,
}

impl Lease {
    /// A free lease of `shard` of `stream_arn` at `checkpoint`, never taken: what discovery
    /// creates.
    #[must_use]
    pub fn new(
        stream_arn: &str,
        shard: &ShardId,
        parent: Option<ShardId>,
        checkpoint: Checkpoint,
    ) -> Self {
        Self {
            key: LeaseKey::new(stream_arn, shard),
            stream_arn: stream_arn.to_owned(),
            shard_id: shard.clone(),
            owner: None,
            counter: 0,
            epoch: 0,
            checkpoint,
            parent_shard_id: parent,
            owner_switches_since_checkpoint: 0,
            updated_at: None,
            checkpoint_created_at: None,
        }
    }

    /// Whether this shard must not be read yet: its parent still has a lease that has not
    /// reached `SHARD_END` (DynamoDB Streams' order: a child's records follow all of its
    /// parent's). A parent with no lease was trimmed from the stream, or finished and was
    /// cleaned up: nothing to wait for. `lease_of` finds a lease by stream ARN and shard.
    #[must_use]
    pub fn waits_for_parent<'a>(
        &self,
        lease_of: impl FnOnce(&str, &ShardId) -> Option<&'a Lease>,
    ) -> bool {
        self.parent_shard_id
            .as_ref()
            .and_then(|parent| lease_of(&self.stream_arn, parent))
            .is_some_and(|parent| parent.checkpoint != Checkpoint::ShardEnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_through_their_stored_form() {
        for c in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::ShardEnd,
            Checkpoint::Sequence(SequenceNumber::new("000123")),
        ] {
            assert_eq!(Checkpoint::from_stored(c.as_stored()), Some(c));
        }
        assert_eq!(Checkpoint::from_stored("12a"), None);
        assert_eq!(Checkpoint::from_stored(""), None);
    }
}

/// Records trimmed from a shard's stream before they were relayed (a stream keeps 24 hours):
/// the window of creation times they fall in. The rows are still in the table (until their
/// TTL); `outbox-relay backfill` publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGap {
    pub stream_arn: String,
    pub shard_id: ShardId,
    /// Creation time of the last record read before the gap; `None` when unknown (a
    /// checkpoint written before this was recorded).
    pub since: Option<std::time::SystemTime>,
    /// Creation time of the first record still in the stream after it.
    pub until: Option<std::time::SystemTime>,
    pub detected_at: std::time::SystemTime,
    /// When a relay with `source.recover_gaps` finished its backfill.
    pub recovered_at: Option<std::time::SystemTime>,
}

/// How far a gap's backfill window reaches past the gap on each side: a row's own creation
/// time (`source.created_at_attribute`, the writer's clock) and its stream record's
/// `ApproximateCreationDateTime` differ by the write's latency and the clocks' skew.
pub const GAP_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The backfill that publishes the rows of a gap: its table and its window widened by
/// [`GAP_MARGIN`] on each side (at least once: rows also relayed live are sent again with the
/// same event id). Without a known start, from the table's beginning. `status`, the relay's
/// gap log line and `source.recover_gaps` all take it from [`StreamGap::recovery`]; its
/// `Display` is the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRecovery {
    /// The source table (the stream ARN when it names none).
    pub table: String,
    pub since: Option<std::time::SystemTime>,
    pub until: Option<std::time::SystemTime>,
}

impl StreamGap {
    /// The backfill that recovers this gap.
    #[must_use]
    pub fn recovery(&self) -> GapRecovery {
        GapRecovery {
            table: crate::config::table_or_arn(&self.stream_arn).to_owned(),
            since: self.since.and_then(|s| s.checked_sub(GAP_MARGIN)),
            until: self.until.and_then(|u| u.checked_add(GAP_MARGIN)),
        }
    }
}

impl std::fmt::Display for GapRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t);
        write!(
            f,
            "outbox-relay backfill --config CONFIG --table {}",
            self.table
        )?;
        if let Some(since) = self.since {
            write!(f, " --since {}", time(since))?;
        }
        if let Some(until) = self.until {
            write!(f, " --until {}", time(until))?;
        }
        Ok(())
    }
}
