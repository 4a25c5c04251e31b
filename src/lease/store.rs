//! The [`LeaseStore`] seam: conditional reads and writes of lease items.
//!
//! Every write by an owner is conditional on still being the owner; a take is conditional on
//! the counter the taker observed. So two workers can never both believe they own a shard: the
//! loser's write fails with [`LeaseError::LeaseLost`].

use std::future::Future;

use super::coordinator::WorkerRecord;
use super::model::{Checkpoint, Lease, LeaseKey, StreamGap, WorkerId};

/// Everything in the lease table: every lease (of every stream) and every registered worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseSnapshot {
    pub leases: Vec<Lease>,
    pub workers: Vec<WorkerRecord>,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The condition failed: someone else owns the lease now (or took it first).
    #[error("lease {key} is no longer ours")]
    LeaseLost { key: LeaseKey },
    /// The lease table does not exist and `create_table` is off.
    #[error("lease table {table} does not exist (set leases.create_table = true to create it)")]
    TableMissing { table: String },
    /// A lease item that cannot be parsed (edited by hand?).
    #[error("lease item {key} is malformed: {reason}")]
    Malformed { key: String, reason: String },
    /// The call failed (network, throttling, 5xx): retried by the caller.
    #[error("{operation} on the lease table failed ({code}): {message}")]
    CallFailed {
        operation: &'static str,
        code: String,
        message: String,
    },
}

impl LeaseError {
    /// A bounded label for metrics.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::LeaseLost { .. } => "ConditionalCheckFailedException",
            Self::TableMissing { .. } => "ResourceNotFoundException",
            Self::Malformed { .. } => "MalformedLease",
            Self::CallFailed { code, .. } => code,
        }
    }
}

/// Lease table operations.
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the table if missing (and allowed), then waits until it is usable.
    fn ensure_table(&self) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Every lease and registered worker in the table (one consistent scan).
    fn snapshot(&self) -> impl Future<Output = Result<LeaseSnapshot, LeaseError>> + Send;

    /// Registers `worker` (first call) or bumps its heartbeat counter, so peers count it in
    /// the fair share even while it holds no lease.
    fn heartbeat(&self, worker: &WorkerId) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Removes `worker` from the registry (clean shutdown), so peers rebalance at once.
    fn deregister(&self, worker: &WorkerId) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Creates `lease` unless one with its key exists. `true` if created.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Takes `observed` for `owner`, if its counter is still the observed one. Returns the lease
    /// as now stored.
    fn take(
        &self,
        observed: &Lease,
        owner: &WorkerId,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Bumps the counter of a lease `owner` holds.
    fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Records `checkpoint` on a lease `owner` holds from its take of `epoch` (a stale reader
    /// of an earlier take cannot), with the creation time of the record it points at when
    /// known (where a gap would start, see [`StreamGap`]).
    fn checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        epoch: u64,
        checkpoint: &Checkpoint,
        created_at: Option<std::time::SystemTime>,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Records a gap: records trimmed from the stream before they were relayed.
    fn record_gap(&self, gap: &StreamGap) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Operator reset: sets `checkpoint` and clears the owner, if the lease's counter is still
    /// `observed.counter` (an owner that keeps reading loses its next conditional write and
    /// stops; the next owner starts from the new checkpoint).
    fn reset(
        &self,
        observed: &Lease,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Deletes a finished lease, if its counter is still `observed.counter`. `true` if
    /// deleted.
    fn delete(&self, observed: &Lease) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Gives up a lease `owner` holds, so a peer can take it at once.
    fn release(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;
}
