//! What this process does with leases, each happening in one place with its log line and its
//! metric, so what is emitted when something happens is written once.

use std::time::Duration;

use tracing::{info, warn};

use super::Metrics;
use crate::lease::{Lease, LeaseKey, PreviousOwner, WorkerId};

/// A lease happening of this process.
#[derive(Debug)]
pub enum LeaseEvent<'a> {
    /// We took `lease` (as now stored) from `previous_owner`.
    Taken {
        lease: &'a Lease,
        previous_owner: Option<&'a WorkerId>,
        previous: PreviousOwner,
        /// How long we saw its counter stand still before taking it.
        counter_still: Option<Duration>,
        /// How long we saw the previous owner's heartbeat stand still.
        heartbeat_still: Option<Duration>,
    },
    /// A peer owns a lease we held (a renewal or checkpoint found another owner).
    Lost {
        key: &'a LeaseKey,
        /// Since our last successful renewal of it.
        renewed_ago: Duration,
    },
    /// We could not renew a lease within `lease_duration - renew_interval`: its reader pauses
    /// (no new call, no new page) and checkpoints, before a peer may take it.
    Fenced {
        key: &'a LeaseKey,
        renewed_ago: Duration,
    },
    /// A renewal failed or timed out (retried next interval).
    RenewFailed { key: &'a LeaseKey, error: &'a str },
    /// We shed a lease to a less loaded peer: checkpointed and released.
    Shed { key: &'a LeaseKey },
    /// We released a lease (shutdown, or a finished shard).
    Released { key: &'a LeaseKey },
}

impl LeaseEvent<'_> {
    /// The `event` label of `outbox_relay_lease_events_total`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Taken { .. } => "taken",
            Self::Lost { .. } => "lost",
            Self::Fenced { .. } => "fenced",
            Self::RenewFailed { .. } => "renew_failed",
            Self::Shed { .. } => "shed",
            Self::Released { .. } => "released",
        }
    }

    /// Writes the log line and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .lease_events
            .with_label_values(&[self.label()])
            .inc();
        match self {
            Self::Taken {
                lease,
                previous_owner,
                previous,
                counter_still,
                heartbeat_still,
            } => {
                metrics
                    .leases_taken
                    .with_label_values(&[previous.label()])
                    .inc();
                let previous_owner = previous_owner.map(|o| o.0.as_str());
                // A lease taken from an owner that still looks alive is what turns a slow
                // dependency into a storm of moves: say so loudly (the planner never plans it).
                if *previous == PreviousOwner::Holding {
                    warn!(shard.id = %lease.shard_id, stream.arn = %lease.stream_arn, ?previous_owner,
                        counter_still = ?counter_still, owner_heartbeat_still = ?heartbeat_still,
                        "Lease taken from an owner that still looked alive.");
                } else {
                    info!(shard.id = %lease.shard_id, stream.arn = %lease.stream_arn, ?previous_owner,
                        previous_owner_state = previous.label(), counter_still = ?counter_still,
                        owner_heartbeat_still = ?heartbeat_still, "Lease taken.");
                }
            }
            Self::Lost { key, renewed_ago } => {
                warn!(lease = %key, last_renewed_ago = ?renewed_ago,
                    "Lease lost to a peer; stopping its reader (a peer continues from the last checkpoint).");
            }
            Self::Fenced { key, renewed_ago } => {
                warn!(lease = %key, last_renewed_ago = ?renewed_ago,
                    "Lease not renewed in time; pausing its reader and checkpointing before a peer may take it.");
            }
            Self::RenewFailed { key, error } => {
                warn!(lease = %key, error = %error, "Renewing a lease failed; retrying next interval.");
            }
            Self::Shed { key } => {
                info!(lease = %key, "Lease shed: checkpointed and released for a peer.");
            }
            Self::Released { key } => {
                info!(lease = %key, "Lease released.");
            }
        }
    }
}
