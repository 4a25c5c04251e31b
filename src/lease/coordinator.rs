//! Lease planning: from the leases observed, this worker's id and the time elapsed, decide
//! what to take, renew and release. Pure: the supervisor's loop only executes the plan.
//!
//! Expiry is judged on the local monotonic clock: a lease is expired when *we* have seen its
//! counter stand still for `lease_duration`; wall clocks of different hosts are never compared.
//! This first planner takes every free or expired lease it may read (lineage permitting);
//! balancing across replicas comes with the multi-replica work.

use std::collections::HashMap;
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
    /// Let go of a lease we hold whose shard is finished.
    Release(LeaseKey),
}

/// When each lease's counter was last seen to change, on our monotonic clock.
#[derive(Debug, Default)]
pub struct LeaseObservations {
    seen: HashMap<LeaseKey, (u64, Instant)>,
}

impl LeaseObservations {
    /// Records the counters of `leases` as seen at `now`; forgets leases no longer listed.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        let mut next = HashMap::with_capacity(leases.len());
        for lease in leases {
            let since = match self.seen.get(&lease.key) {
                Some(&(counter, since)) if counter == lease.counter => since,
                _ => now,
            };
            next.insert(lease.key.clone(), (lease.counter, since));
        }
        self.seen = next;
    }

    /// Whether `lease`'s counter has stood still for at least `lease_duration`.
    #[must_use]
    pub fn expired(&self, lease: &Lease, now: Instant, lease_duration: Duration) -> bool {
        self.seen.get(&lease.key).is_some_and(|&(counter, since)| {
            counter == lease.counter && now.duration_since(since) >= lease_duration
        })
    }
}

/// Plans one coordination round.
#[must_use]
pub fn plan(
    leases: &[Lease],
    me: &WorkerId,
    observations: &LeaseObservations,
    now: Instant,
    lease_duration: Duration,
) -> Vec<LeaseAction> {
    let by_shard: HashMap<_, _> = leases.iter().map(|l| (&l.shard_id, l)).collect();
    let mut actions = Vec::new();
    for lease in leases {
        let mine = lease.owner.as_ref() == Some(me);
        if lease.checkpoint == Checkpoint::ShardEnd {
            if mine {
                actions.push(LeaseAction::Release(lease.key.clone()));
            }
            continue;
        }
        if mine {
            actions.push(LeaseAction::Renew(lease.key.clone()));
            continue;
        }
        // A child waits until its parent's lease reached SHARD_END. A parent with no lease was
        // trimmed from the stream (or finished and cleaned up): nothing to wait for.
        let parent_pending = lease
            .parent_shard_id
            .as_ref()
            .and_then(|p| by_shard.get(p))
            .is_some_and(|parent| parent.checkpoint != Checkpoint::ShardEnd);
        if parent_pending {
            continue;
        }
        let free = lease.owner.is_none() || observations.expired(lease, now, lease_duration);
        if free {
            actions.push(LeaseAction::Take(lease.clone()));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{SequenceNumber, ShardId};

    fn lease(shard: &str, owner: Option<&str>, counter: u64, checkpoint: Checkpoint) -> Lease {
        Lease {
            key: LeaseKey(format!("arn#{shard}")),
            stream_arn: "arn".into(),
            shard_id: ShardId(shard.into()),
            owner: owner.map(|o| WorkerId(o.into())),
            counter,
            checkpoint,
            parent_shard_id: None,
            owner_switches_since_checkpoint: 0,
        }
    }

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn takes_free_leases_and_renews_its_own() {
        let me = WorkerId("me".into());
        let leases = [
            lease("a", None, 0, Checkpoint::TrimHorizon),
            lease("b", Some("me"), 3, Checkpoint::Latest),
        ];
        let mut obs = LeaseObservations::default();
        let now = Instant::now();
        obs.observe(&leases, now);
        assert_eq!(
            plan(&leases, &me, &obs, now, D),
            vec![
                LeaseAction::Take(leases[0].clone()),
                LeaseAction::Renew(leases[1].key.clone())
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn takes_another_workers_lease_only_after_its_counter_stood_still_for_the_lease_duration()
    {
        let me = WorkerId("me".into());
        let mut obs = LeaseObservations::default();
        let held = [lease("a", Some("peer"), 5, Checkpoint::TrimHorizon)];
        obs.observe(&held, Instant::now());
        tokio::time::advance(D - Duration::from_millis(1)).await;
        obs.observe(&held, Instant::now());
        assert!(
            plan(&held, &me, &obs, Instant::now(), D).is_empty(),
            "not yet expired"
        );

        // The peer renews: the clock starts again.
        let renewed = [lease("a", Some("peer"), 6, Checkpoint::TrimHorizon)];
        tokio::time::advance(Duration::from_millis(5)).await;
        obs.observe(&renewed, Instant::now());
        tokio::time::advance(D - Duration::from_millis(1)).await;
        obs.observe(&renewed, Instant::now());
        assert!(
            plan(&renewed, &me, &obs, Instant::now(), D).is_empty(),
            "renewed lease is alive"
        );

        tokio::time::advance(Duration::from_millis(1)).await;
        obs.observe(&renewed, Instant::now());
        assert_eq!(
            plan(&renewed, &me, &obs, Instant::now(), D),
            vec![LeaseAction::Take(renewed[0].clone())]
        );
    }

    #[test]
    fn children_wait_for_their_parent_to_reach_shard_end() {
        let me = WorkerId("me".into());
        let parent = lease(
            "p",
            Some("peer"),
            1,
            Checkpoint::Sequence(SequenceNumber::new("5")),
        );
        let mut child = lease("c", None, 0, Checkpoint::TrimHorizon);
        child.parent_shard_id = Some(ShardId("p".into()));
        let mut obs = LeaseObservations::default();
        let now = Instant::now();
        let leases = [parent.clone(), child.clone()];
        obs.observe(&leases, now);
        assert!(plan(&leases, &me, &obs, now, D).is_empty());

        let mut done = parent;
        done.checkpoint = Checkpoint::ShardEnd;
        let leases = [done, child.clone()];
        assert_eq!(
            plan(&leases, &me, &obs, now, D),
            vec![LeaseAction::Take(child)]
        );
    }

    #[test]
    fn a_finished_shard_we_hold_is_released_and_never_taken() {
        let me = WorkerId("me".into());
        let leases = [
            lease("a", Some("me"), 1, Checkpoint::ShardEnd),
            lease("b", None, 1, Checkpoint::ShardEnd),
        ];
        let obs = LeaseObservations::default();
        assert_eq!(
            plan(&leases, &me, &obs, Instant::now(), D),
            vec![LeaseAction::Release(leases[0].key.clone())]
        );
    }
}
