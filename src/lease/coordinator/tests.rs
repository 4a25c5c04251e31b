use super::*;
use crate::stream::{SequenceNumber, ShardId};
use proptest::prelude::*;

const D: Duration = Duration::from_secs(10);

fn lease(shard: &str, owner: Option<&str>, counter: u64, checkpoint: Checkpoint) -> Lease {
    Lease {
        owner: owner.map(|o| WorkerId(o.into())),
        counter,
        ..Lease::new("arn", &ShardId(shard.into()), None, checkpoint)
    }
}

fn worker(id: &str, counter: u64) -> WorkerRecord {
    WorkerRecord {
        id: WorkerId(id.into()),
        counter,
    }
}

fn me(id: &str) -> WorkerId {
    WorkerId(id.into())
}

fn takes(actions: &[LeaseAction]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            LeaseAction::Take(l) => Some(l.shard_id.0.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lone_worker_takes_every_free_lease_and_renews_its_own() {
    let leases = [
        lease("a", None, 0, Checkpoint::TrimHorizon),
        lease("b", Some("me"), 3, Checkpoint::Latest),
    ];
    let mut obs = LeaseObservations::default();
    let now = Instant::now();
    obs.observe(&leases, &[], now);
    assert_eq!(
        plan(&leases, &[], &me("me"), &obs, now, D),
        vec![
            LeaseAction::Keep(leases[1].key.clone()),
            LeaseAction::Take(leases[0].clone()),
        ]
    );
}

#[test]
fn takes_only_up_to_the_fair_share_when_peers_are_registered() {
    let leases: Vec<_> = (0..6)
        .map(|i| lease(&format!("s{i}"), None, 0, Checkpoint::TrimHorizon))
        .collect();
    let workers = [worker("a", 1), worker("b", 1), worker("c", 1)];
    let mut obs = LeaseObservations::default();
    let now = Instant::now();
    obs.observe(&leases, &workers, now);
    assert_eq!(
        takes(&plan(&leases, &workers, &me("a"), &obs, now, D)),
        vec!["s0", "s1"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_of_another_worker_is_taken_only_after_its_counter_stood_still() {
    let mut obs = LeaseObservations::default();
    let held = [lease("a", Some("peer"), 5, Checkpoint::TrimHorizon)];
    obs.observe(&held, &[], Instant::now());
    tokio::time::advance(D - Duration::from_millis(1)).await;
    obs.observe(&held, &[], Instant::now());
    assert!(takes(&plan(&held, &[], &me("me"), &obs, Instant::now(), D)).is_empty());

    // The peer renews: the clock starts again.
    let renewed = [lease("a", Some("peer"), 6, Checkpoint::TrimHorizon)];
    tokio::time::advance(Duration::from_millis(5)).await;
    obs.observe(&renewed, &[], Instant::now());
    tokio::time::advance(D - Duration::from_millis(1)).await;
    obs.observe(&renewed, &[], Instant::now());
    assert!(takes(&plan(&renewed, &[], &me("me"), &obs, Instant::now(), D)).is_empty());

    tokio::time::advance(Duration::from_millis(1)).await;
    obs.observe(&renewed, &[], Instant::now());
    assert_eq!(
        takes(&plan(&renewed, &[], &me("me"), &obs, Instant::now(), D)),
        vec!["a"]
    );
}

/// Issue #17: live replicas must not trade leases. A lease whose renewals are late (its
/// counter stands still) but whose owner's heartbeat moves stays with its owner; once the
/// heartbeat stands still too, the owner is dead and the lease is taken.
#[tokio::test(start_paused = true)]
async fn a_late_owner_whose_heartbeat_moves_keeps_its_lease() {
    let held = [lease("a", Some("slow"), 5, Checkpoint::TrimHorizon)];
    let mut obs = LeaseObservations::default();
    let mut heartbeat = 1;
    obs.observe(&held, &[worker("slow", heartbeat)], Instant::now());
    for _ in 0..10 {
        tokio::time::advance(D).await;
        heartbeat += 1;
        let workers = [worker("slow", heartbeat)];
        obs.observe(&held, &workers, Instant::now());
        assert_eq!(
            previous_owner(&held[0], &workers, &obs, Instant::now(), D),
            PreviousOwner::Holding
        );
        assert!(
            takes(&plan(&held, &workers, &me("me"), &obs, Instant::now(), D)).is_empty(),
            "a live owner's lease is not taken, however late its renewals"
        );
    }
    // The heartbeat stops: after lease_duration the owner is dead.
    let workers = [worker("slow", heartbeat)];
    tokio::time::advance(D).await;
    obs.observe(&held, &workers, Instant::now());
    assert_eq!(
        previous_owner(&held[0], &workers, &obs, Instant::now(), D),
        PreviousOwner::Dead
    );
    assert_eq!(
        takes(&plan(&held, &workers, &me("me"), &obs, Instant::now(), D)),
        vec!["a"]
    );
    assert_eq!(
        obs.still_for(&held[0].key.0, 5, Instant::now()),
        Some(D * 11)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_registry_item_stops_counting_towards_the_fair_share() {
    let leases: Vec<_> = (0..4)
        .map(|i| lease(&format!("s{i}"), None, 0, Checkpoint::TrimHorizon))
        .collect();
    let workers = [worker("dead", 7)];
    let mut obs = LeaseObservations::default();
    obs.observe(&leases, &workers, Instant::now());
    assert_eq!(
        takes(&plan(&leases, &workers, &me("me"), &obs, Instant::now(), D)).len(),
        2
    );
    tokio::time::advance(D).await;
    obs.observe(&leases, &workers, Instant::now());
    assert_eq!(
        takes(&plan(&leases, &workers, &me("me"), &obs, Instant::now(), D)).len(),
        4
    );
}

#[test]
fn children_wait_for_their_parent_to_reach_shard_end() {
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
    obs.observe(&leases, &[], now);
    assert!(takes(&plan(&leases, &[], &me("me"), &obs, now, D)).is_empty());

    let mut done = parent;
    done.checkpoint = Checkpoint::ShardEnd;
    let leases = [done, child];
    assert_eq!(
        takes(&plan(&leases, &[], &me("me"), &obs, now, D)),
        vec!["c"]
    );
}

#[test]
fn a_finished_shard_we_hold_is_released_and_never_taken() {
    let leases = [
        lease("a", Some("me"), 1, Checkpoint::ShardEnd),
        lease("b", None, 1, Checkpoint::ShardEnd),
    ];
    let obs = LeaseObservations::default();
    assert_eq!(
        plan(&leases, &[], &me("me"), &obs, Instant::now(), D),
        vec![LeaseAction::Release(leases[0].key.clone())]
    );
}

#[test]
fn only_the_most_loaded_worker_sheds_down_to_its_share_and_only_when_nothing_is_free() {
    // 4 / 0: "a" holds everything, "b" just joined.
    let leases: Vec<_> = (0..4)
        .map(|i| lease(&format!("s{i}"), Some("a"), 1, Checkpoint::TrimHorizon))
        .collect();
    let workers = [worker("a", 1), worker("b", 1)];
    let mut obs = LeaseObservations::default();
    let now = Instant::now();
    obs.observe(&leases, &workers, now);
    let a = plan(&leases, &workers, &me("a"), &obs, now, D);
    let sheds: Vec<_> = a
        .iter()
        .filter_map(|x| match x {
            LeaseAction::Shed(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sheds,
        vec![leases[3].key.clone(), leases[2].key.clone()],
        "down to the fair share of 2"
    );
    let b = plan(&leases, &workers, &me("b"), &obs, now, D);
    assert!(b.is_empty(), "b never revokes a live lease: {b:?}");

    // While a lease is free, a waits for b to take it instead of shedding more.
    let mut shed = leases.clone();
    shed[3].owner = None;
    obs.observe(&shed, &workers, now);
    assert!(!plan(&shed, &workers, &me("a"), &obs, now, D)
        .iter()
        .any(|x| matches!(x, LeaseAction::Shed(_))));
    assert_eq!(
        takes(&plan(&shed, &workers, &me("b"), &obs, now, D)),
        vec!["s3"]
    );
}

#[test]
fn no_shedding_within_one_of_balance() {
    // 2 / 1 over 3 leases: balanced as far as whole leases go.
    let leases = [
        lease("s0", Some("a"), 1, Checkpoint::TrimHorizon),
        lease("s1", Some("a"), 1, Checkpoint::TrimHorizon),
        lease("s2", Some("b"), 1, Checkpoint::TrimHorizon),
    ];
    let workers = [worker("a", 1), worker("b", 1)];
    let mut obs = LeaseObservations::default();
    let now = Instant::now();
    obs.observe(&leases, &workers, now);
    for w in ["a", "b"] {
        let actions = plan(&leases, &workers, &me(w), &obs, now, D);
        assert!(
            actions.iter().all(|x| matches!(x, LeaseAction::Keep(_))),
            "{w}: {actions:?}"
        );
    }
}

/// Simulates rounds of several workers planning against a shared lease table with
/// conditional takes, and applying sheds as instant releases.
fn converge(shards: usize, workers: usize, rounds: usize) -> (Vec<usize>, usize) {
    converge_from(shards, workers, rounds, false)
}

/// `first_alone`: the first worker runs alone for one round (and takes everything) before
/// the others join.
fn converge_from(
    shards: usize,
    workers: usize,
    rounds: usize,
    first_alone: bool,
) -> (Vec<usize>, usize) {
    let now = Instant::now();
    let ids: Vec<WorkerId> = (0..workers).map(|i| me(&format!("w{i:03}"))).collect();
    let registry: Vec<WorkerRecord> = ids
        .iter()
        .map(|id| WorkerRecord {
            id: id.clone(),
            counter: 1,
        })
        .collect();
    let mut table: Vec<Lease> = (0..shards)
        .map(|i| lease(&format!("s{i:05}"), None, 0, Checkpoint::TrimHorizon))
        .collect();
    let mut obs = LeaseObservations::default();
    for round in 0..rounds {
        let active = if first_alone && round == 0 {
            1
        } else {
            ids.len()
        };
        let registered = &registry[..active];
        for id in &ids[..active] {
            obs.observe(&table, registered, now);
            for action in plan(&table, registered, id, &obs, now, D) {
                match action {
                    LeaseAction::Take(observed) => {
                        if let Some(l) = table.iter_mut().find(|l| l.key == observed.key) {
                            if l.counter == observed.counter {
                                l.owner = Some(id.clone());
                                l.counter += 1;
                            }
                        }
                    }
                    LeaseAction::Shed(key) => {
                        if let Some(l) = table.iter_mut().find(|l| l.key == key) {
                            l.owner = None;
                            l.counter += 1;
                        }
                    }
                    LeaseAction::Keep(_) | LeaseAction::Release(_) => {}
                }
            }
        }
        let counts: Vec<usize> = ids
            .iter()
            .map(|id| {
                table
                    .iter()
                    .filter(|l| l.owner.as_ref() == Some(id))
                    .count()
            })
            .collect();
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        if active == ids.len() && counts.iter().sum::<usize>() == shards && max - min <= 1 {
            return (counts, round + 1);
        }
    }
    panic!("no balance within {rounds} rounds");
}

#[test]
fn three_workers_over_six_shards_settle_two_each() {
    let (counts, _) = converge(6, 3, 20);
    assert_eq!(counts, vec![2, 2, 2]);
}

proptest! {
    #[test]
    fn any_fleet_converges_to_within_one_lease_and_never_two_owners(
        shards in 1usize..60,
        workers in 1usize..8,
    ) {
        let (counts, _) = converge(shards, workers, 200);
        prop_assert_eq!(counts.iter().sum::<usize>(), shards, "every shard owned exactly once");
    }
}

#[test]
fn five_workers_joining_one_that_holds_a_thousand_shards_settle_in_a_few_rounds() {
    let (counts, rounds) = converge_from(1000, 5, 50, true);
    assert_eq!(counts, vec![200; 5]);
    assert!(rounds <= 5, "settled after {rounds} rounds");
}
