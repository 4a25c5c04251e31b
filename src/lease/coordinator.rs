//! Lease planning: from the leases and live workers observed, this worker's id and the time
//! elapsed, decide what to take, keep, shed and release. Pure: the supervisor's loop only
//! executes the plan.
//!
//! - **Liveness is per worker.** A worker's heartbeat (its registry item's counter) keeps all
//!   its leases alive; a lease item is written only when its owner changes (take, shed,
//!   release) or its checkpoint moves. So the rule below never needs a lease's own counter to
//!   move while its owner lives: the heartbeat decides.
//!
//! - Expiry is judged on the local monotonic clock: a lease (or a worker's registry item) is
//!   expired when *we* have seen its counter stand still for `lease_duration`; wall clocks of
//!   different hosts are never compared.
//! - **A live owner keeps its leases.** A lease is taken from its owner only when its counter
//!   stood still for `lease_duration` *and* the owner looks dead: its registry heartbeat also
//!   stood still for `lease_duration`, or it is not registered. Slowness is not death: an
//!   owner whose checkpoints are late (a throttled lease table, a saturated CPU) but whose
//!   heartbeat moves keeps its shards, so live replicas never trade leases; between live
//!   workers, leases move only by shedding, which checkpoints and releases first.
//! - Fair share: `target = ceil(active leases / live workers)`. Live workers are the
//!   registered workers whose heartbeat moves, owners of live leases, and ourselves.
//! - Below target, a worker takes free or expired leases (lineage permitting: a child waits
//!   until its parent reached `SHARD_END`).
//! - Balancing never revokes a live lease. Instead, the most loaded worker (ties: smallest id)
//!   *sheds* leases down to the fair share (at least one) while it holds at least two more
//!   than the least loaded worker and no lease is free: it stops those shards at a safe point,
//!   checkpoints and releases them, and under-loaded peers take them. No record is re-sent by
//!   rebalancing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::model::{Checkpoint, Lease, LeaseKey, WorkerId};

/// What to do with one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Take a free or expired lease (conditional on its observed counter).
    Take(Lease),
    /// A lease we hold: keep reading it. Nothing is written for it: our heartbeat keeps it
    /// (liveness is per worker, see `relay::keeper`).
    Keep(LeaseKey),
    /// Stop reading a lease we hold, checkpoint and release it, so a less loaded peer can
    /// take it.
    Shed(LeaseKey),
    /// Let go of a lease we hold whose shard is finished.
    Release(LeaseKey),
}

/// A relay process as the lease table's registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub id: WorkerId,
    /// Bumped by every heartbeat.
    pub counter: u64,
}

/// When each counter (of a lease or a worker's registry item) was last seen to change.
#[derive(Debug, Default)]
pub struct LeaseObservations {
    seen: HashMap<String, (u64, Instant)>,
}

impl LeaseObservations {
    /// Records the counters seen at `now`; forgets items no longer listed.
    pub fn observe(&mut self, leases: &[Lease], workers: &[WorkerRecord], now: Instant) {
        let items = leases
            .iter()
            .map(|l| (l.key.0.as_str(), l.counter))
            .chain(workers.iter().map(|w| (w.id.0.as_str(), w.counter)));
        let mut next = HashMap::with_capacity(leases.len() + workers.len());
        for (key, counter) in items {
            let since = match self.seen.get(key) {
                Some(&(seen, since)) if seen == counter => since,
                _ => now,
            };
            next.insert(key.to_owned(), (counter, since));
        }
        self.seen = next;
    }

    /// Whether the item's counter has stood still for at least `lease_duration`.
    fn stale(&self, key: &str, counter: u64, now: Instant, lease_duration: Duration) -> bool {
        self.seen.get(key).is_some_and(|&(seen, since)| {
            seen == counter && now.duration_since(since) >= lease_duration
        })
    }

    /// Whether `lease` is expired.
    #[must_use]
    pub fn expired(&self, lease: &Lease, now: Instant, lease_duration: Duration) -> bool {
        self.stale(&lease.key.0, lease.counter, now, lease_duration)
    }

    /// How long the item's counter has stood still at `counter`, as we saw it.
    #[must_use]
    pub fn still_for(&self, key: &str, counter: u64, now: Instant) -> Option<Duration> {
        self.seen
            .get(key)
            .filter(|&&(seen, _)| seen == counter)
            .map(|&(_, since)| now.duration_since(since))
    }
}

/// What a lease's owner looks like to a worker that might take the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousOwner {
    /// Nobody owns it (new, released, or shed).
    None,
    /// Its owner still holds it: the counter moved within `lease_duration`, or the owner's
    /// heartbeat did.
    Holding,
    /// Its counter and its owner's heartbeat both stood still for `lease_duration` (or the
    /// owner is not registered): the owner is gone, the lease may be taken.
    Dead,
}

impl PreviousOwner {
    /// A bounded label for metrics (`alive` for a lease still held).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Holding => "alive",
            Self::Dead => "dead",
        }
    }
}

/// Whether `lease` is free, held by a live owner, or left by a dead one (see the module
/// documentation for the rule).
#[must_use]
pub fn previous_owner(
    lease: &Lease,
    workers: &[WorkerRecord],
    observations: &LeaseObservations,
    now: Instant,
    lease_duration: Duration,
) -> PreviousOwner {
    let Some(owner) = &lease.owner else {
        return PreviousOwner::None;
    };
    if !observations.expired(lease, now, lease_duration) {
        return PreviousOwner::Holding;
    }
    let heartbeat_moves = workers
        .iter()
        .any(|w| &w.id == owner && !observations.stale(&w.id.0, w.counter, now, lease_duration));
    if heartbeat_moves {
        PreviousOwner::Holding
    } else {
        PreviousOwner::Dead
    }
}

/// Plans one coordination round.
#[must_use]
pub fn plan<'a>(
    leases: &'a [Lease],
    workers: &[WorkerRecord],
    me: &WorkerId,
    observations: &LeaseObservations,
    now: Instant,
    lease_duration: Duration,
) -> Vec<LeaseAction> {
    let by_shard: HashMap<_, _> = leases
        .iter()
        .map(|l| ((l.stream_arn.as_str(), &l.shard_id), l))
        .collect();
    let active: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
        .collect();
    // The owner of a lease that is held: owned, and not both expired and owned by a dead
    // worker.
    let holder = |l: &'a Lease, o: &LeaseObservations, now: Instant, d: Duration| {
        l.owner
            .as_ref()
            .filter(|_| previous_owner(l, workers, o, now, d) == PreviousOwner::Holding)
    };

    // Live workers and how many active leases each holds (BTreeMap: deterministic ties).
    let mut load: BTreeMap<&WorkerId, usize> = BTreeMap::new();
    load.insert(me, 0);
    for w in workers {
        if !observations.stale(&w.id.0, w.counter, now, lease_duration) {
            load.entry(&w.id).or_insert(0);
        }
    }
    for l in &active {
        if let Some(owner) = holder(l, observations, now, lease_duration) {
            *load.entry(owner).or_insert(0) += 1;
        }
    }
    let target = active.len().div_ceil(load.len());

    let mut actions = Vec::new();
    for lease in leases {
        if lease.owner.as_ref() == Some(me) {
            actions.push(if lease.checkpoint == Checkpoint::ShardEnd {
                LeaseAction::Release(lease.key.clone())
            } else {
                LeaseAction::Keep(lease.key.clone())
            });
        }
    }

    let free: Vec<&Lease> = active
        .iter()
        .copied()
        .filter(|l| {
            holder(l, observations, now, lease_duration).is_none() && l.owner.as_ref() != Some(me)
        })
        .filter(|l| !l.waits_for_parent(|arn, shard| by_shard.get(&(arn, shard)).copied()))
        .collect();
    let mine = load[me];
    for lease in free.iter().take(target.saturating_sub(mine)) {
        actions.push(LeaseAction::Take((*lease).clone()));
    }

    // Shed: only the most loaded worker, only when nothing is free to take, only when the
    // spread is at least two; down to the fair share (at least one lease) in one round, so
    // a fleet that grows from 1 to 5 workers over 1,000 shards settles in a few rounds.
    let most = load.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
    let least = load.values().min().copied().unwrap_or(0);
    if let Some((&worker, &count)) = most {
        if worker == me && free.is_empty() && count >= least + 2 {
            let excess = count.saturating_sub(target).max(1);
            let mut mine: Vec<&Lease> = leases
                .iter()
                .filter(|l| l.owner.as_ref() == Some(me) && l.checkpoint != Checkpoint::ShardEnd)
                .collect();
            mine.sort_by(|a, b| b.key.cmp(&a.key));
            for lease in mine.into_iter().take(excess) {
                actions.push(LeaseAction::Shed(lease.key.clone()));
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests;
