//! Lease planning: from the leases and live workers observed, this worker's id and the time
//! elapsed, decide what to take, renew, shed and release. Pure: the supervisor's loop only
//! executes the plan.
//!
//! - Expiry is judged on the local monotonic clock: a lease (or a worker's registry item) is
//!   expired when *we* have seen its counter stand still for `lease_duration`; wall clocks of
//!   different hosts are never compared.
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
    /// Renew a lease we hold.
    Renew(LeaseKey),
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
}

/// Plans one coordination round.
#[must_use]
pub fn plan(
    leases: &[Lease],
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
    // The owner of a lease that is held (owned and not expired).
    fn holder<'a>(
        l: &'a Lease,
        o: &LeaseObservations,
        now: Instant,
        d: Duration,
    ) -> Option<&'a WorkerId> {
        l.owner.as_ref().filter(|_| !o.expired(l, now, d))
    }

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
                LeaseAction::Renew(lease.key.clone())
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
