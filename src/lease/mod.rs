//! Leases and checkpoints in a DynamoDB table (KCL-style): who reads which shard, and how far.

mod backfill;
mod coordinator;
mod dynamodb;
mod gaps;
mod model;
mod store;

pub use backfill::{BackfillPositions, BackfillRun, SegmentProgress};
pub use coordinator::{
    plan, previous_owner, LeaseAction, LeaseObservations, PreviousOwner, WorkerRecord,
};
pub use dynamodb::DynamoDbLeaseStore;
pub use gaps::{claim_gap, gap_label, mark_gap_recovered, read_gaps};
pub use model::{Checkpoint, GapRecovery, Lease, LeaseKey, StreamGap, WorkerId, GAP_MARGIN};
pub use store::{LeaseError, LeaseSnapshot, LeaseStore};
