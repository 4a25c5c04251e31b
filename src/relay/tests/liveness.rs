//! Per-worker liveness (#27), property-tested in the coordinator's style: a pure model of a
//! fleet in which only heartbeats, takes, sheds and checkpoints write, driven by the real rules
//! (`lease::plan` for what to take, `keeper::must_fence` for when a reader pauses), over random
//! fleets, random lease-table outages of a worker (it cannot write its heartbeat nor read the
//! table, yet lives on), random deaths, and random timing within each round. It checks:
//! - **never from a live owner**: a lease is taken from its owner only when the owner's last
//!   successful heartbeat is at least `lease_duration` old;
//! - **no two live readers**: when a lease changes hands, its previous owner, if alive, is not
//!   reading it (it has fenced it, or no longer believes it holds it), and it never reads it
//!   again without first learning it lost it;
//! - **a dead owner's leases are taken over**: once the table answers everyone again, every
//!   lease ends with a live owner that knows it, within `lease_duration` plus a few rounds.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use crate::lease::{
    plan, Checkpoint, Lease, LeaseAction, LeaseKey, LeaseObservations, WorkerId, WorkerRecord,
};
use crate::relay::keeper::must_fence;
use crate::stream::ShardId;

const LEASE: Duration = Duration::from_secs(10);
const RENEW: Duration = Duration::from_secs(3);

/// A worker as it sees itself.
struct Worker {
    id: WorkerId,
    alive: bool,
    /// When its last successful heartbeat was sent.
    heartbeat_at: Instant,
    /// The leases it believes it holds: when a write of each last succeeded, and whether fenced.
    held: BTreeMap<LeaseKey, (Instant, bool)>,
    observations: LeaseObservations,
}

impl Worker {
    fn reading(&self, key: &LeaseKey) -> bool {
        self.held.get(key).is_some_and(|&(_, fenced)| !fenced)
    }
}

/// The lease table and the registry.
struct Table {
    leases: Vec<Lease>,
    heartbeats: BTreeMap<WorkerId, u64>,
}

impl Table {
    fn lease(&mut self, key: &LeaseKey) -> &mut Lease {
        self.leases
            .iter_mut()
            .find(|l| &l.key == key)
            .expect("a lease of the table")
    }

    /// A write conditional on `owner` (a checkpoint, a confirmation): bumps the counter.
    fn owned_write(&mut self, key: &LeaseKey, owner: &WorkerId) -> bool {
        let lease = self.lease(key);
        let ok = lease.owner.as_ref() == Some(owner);
        if ok {
            lease.counter += 1;
        }
        ok
    }

    fn registry(&self) -> Vec<WorkerRecord> {
        self.heartbeats
            .iter()
            .map(|(id, &counter)| WorkerRecord {
                id: id.clone(),
                counter,
            })
            .collect()
    }
}

/// `workers` live workers that have not heartbeat yet, and `shards` free leases.
fn fleet(workers: usize, shards: usize, start: Instant) -> (Vec<Worker>, Table) {
    let fleet = (0..workers)
        .map(|i| Worker {
            id: WorkerId(format!("w{i}")),
            alive: true,
            heartbeat_at: start,
            held: BTreeMap::new(),
            observations: LeaseObservations::default(),
        })
        .collect();
    let table = Table {
        leases: (0..shards).map(lease).collect(),
        heartbeats: BTreeMap::new(),
    };
    (fleet, table)
}

fn lease(i: usize) -> Lease {
    let shard = format!("s{i:02}");
    Lease::new("arn", &ShardId(shard), None, Checkpoint::TrimHorizon)
}

/// The keeper's calls of a round at `now` (the table answering or not): the heartbeat,
/// checkpoints of the leases read (when `checkpoint`), a confirmation of each fenced lease;
/// every lease write conditional on our ownership.
fn keeper_calls(w: &mut Worker, table: &mut Table, now: Instant, table_ok: bool, checkpoint: bool) {
    if !table_ok {
        return;
    }
    *table.heartbeats.entry(w.id.clone()).or_insert(0) += 1;
    w.heartbeat_at = now;
    let keys: Vec<LeaseKey> = w.held.keys().cloned().collect();
    for key in keys {
        let (_, fenced) = w.held[&key];
        if fenced || checkpoint {
            if table.owned_write(&key, &w.id) {
                w.held.insert(key, (now, false));
            } else {
                w.held.remove(&key);
            }
        }
    }
}

/// The keeper's check once its calls are answered (or its deadline passed), at `now`.
fn watch(w: &mut Worker, now: Instant) {
    for (written_at, fenced) in w.held.values_mut() {
        if must_fence(now - *written_at, now - w.heartbeat_at, LEASE, RENEW) {
            *fenced = true;
        }
    }
}

/// The supervisor's round at `now`: the scan (leases shown as a peer's are dropped), the plan
/// and its takes and sheds.
fn supervise(w: &mut Worker, table: &mut Table, now: Instant, table_ok: bool) {
    if !table_ok {
        return;
    }
    let leases = table.leases.clone();
    for l in &leases {
        if l.owner.as_ref() != Some(&w.id) {
            w.held.remove(&l.key);
        }
    }
    let registry = table.registry();
    w.observations.observe(&leases, &registry, now);
    for action in plan(&leases, &registry, &w.id, &w.observations, now, LEASE) {
        match action {
            LeaseAction::Take(observed) => {
                let lease = table.lease(&observed.key);
                if lease.counter == observed.counter {
                    lease.owner = Some(w.id.clone());
                    lease.counter += 1;
                    w.held.insert(observed.key.clone(), (now, false));
                }
            }
            LeaseAction::Shed(key) => {
                if table.owned_write(&key, &w.id) {
                    table.lease(&key).owner = None;
                }
                w.held.remove(&key);
            }
            LeaseAction::Keep(key) => {
                w.held.entry(key).or_insert((now, false));
            }
            LeaseAction::Release(_) => {}
        }
    }
}

/// What happens in a worker's round, each at its own offset from the round's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Keeper,
    Watch,
    Supervise,
}

/// Runs the fleet with outages and deaths, then enough rounds with the table answering
/// everyone for a takeover after the last of them; checks the invariants after every step.
/// Each worker's keeper, check and supervisor run at their own offsets within a round
/// (`offsets`, ms: the keeper's start, its check's delay after it, the supervisor's start), so
/// a peer's scan can fall anywhere between a worker's heartbeat and its check.
fn run(
    workers: usize,
    shards: usize,
    outages: &[(usize, usize, usize)],
    deaths: &[(usize, usize)],
    checkpoints: &[bool],
    offsets: &[(u64, u64, u64)],
) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let (mut fleet, mut table) = fleet(workers, shards, start);
    // Outages (worker, first round, rounds) and deaths; then enough rounds for a takeover
    // after the last of them.
    let rounds = outages
        .iter()
        .map(|&(_, from, len)| from + len)
        .chain(deaths.iter().map(|&(_, when)| when + 1))
        .max()
        .unwrap_or(0);
    let table_answers = |i: usize, t: usize| {
        !outages
            .iter()
            .any(|&(w, from, len)| w == i && (from..from + len).contains(&t))
    };
    let settle = usize::try_from(LEASE.as_secs() / RENEW.as_secs()).unwrap_or(4) * 3 + 6;
    let offset = |i: usize| offsets.get(i).copied().unwrap_or((0, 0, 0));
    for t in 0..rounds + settle {
        let base = start + RENEW * u32::try_from(t).unwrap_or(u32::MAX);
        for &(who, when) in deaths {
            if when == t && who < workers {
                fleet[who].alive = false;
            }
        }
        let mut steps: Vec<(Instant, Phase, usize)> = (0..workers)
            .flat_map(|i| {
                let (keeper, check, supervisor) = offset(i);
                let keeper_at = base + Duration::from_millis(keeper);
                [
                    (keeper_at, Phase::Keeper, i),
                    (keeper_at + Duration::from_millis(check), Phase::Watch, i),
                    (
                        base + Duration::from_millis(supervisor),
                        Phase::Supervise,
                        i,
                    ),
                ]
            })
            .collect();
        steps.sort();
        for (now, phase, i) in steps {
            if !fleet[i].alive {
                continue;
            }
            let table_ok = table_answers(i, t);
            let checkpoint =
                checkpoints.get((t * workers + i) % checkpoints.len().max(1)) == Some(&true);
            let owners_before: Vec<Option<WorkerId>> =
                table.leases.iter().map(|l| l.owner.clone()).collect();
            match phase {
                Phase::Keeper => keeper_calls(&mut fleet[i], &mut table, now, table_ok, checkpoint),
                Phase::Watch => watch(&mut fleet[i], now),
                Phase::Supervise => supervise(&mut fleet[i], &mut table, now, table_ok),
            }
            // Every change of hands in this step: the previous owner's heartbeat is at least
            // lease_duration old, and it is dead or not reading the lease.
            for (l, before) in table.leases.iter().zip(&owners_before) {
                let Some(previous) = before else { continue };
                if l.owner.as_ref() == Some(previous) || l.owner.is_none() {
                    continue;
                }
                let p = fleet
                    .iter()
                    .find(|w| &w.id == previous)
                    .expect("a worker of the fleet");
                prop_assert!(
                    now - p.heartbeat_at >= LEASE,
                    "{} took {} from {} whose heartbeat is {:?} old",
                    fleet[i].id,
                    l.key,
                    previous,
                    now - p.heartbeat_at
                );
                prop_assert!(
                    !p.alive || !p.reading(&l.key),
                    "{} took {} while {} still reads it",
                    fleet[i].id,
                    l.key,
                    previous
                );
            }
            // No two live readers of one lease, ever, and a reader is the table's owner.
            for l in &table.leases {
                let readers: Vec<&WorkerId> = fleet
                    .iter()
                    .filter(|w| w.alive && w.reading(&l.key))
                    .map(|w| &w.id)
                    .collect();
                prop_assert!(readers.len() <= 1, "{} read by {readers:?}", l.key);
                if let Some(reader) = readers.first() {
                    prop_assert_eq!(l.owner.as_ref(), Some(*reader));
                }
            }
        }
    }
    // Taken over: every lease has a live owner that knows it, and the fleet is balanced.
    let alive: Vec<&Worker> = fleet.iter().filter(|w| w.alive).collect();
    for l in &table.leases {
        let owner = l.owner.as_ref();
        prop_assert!(
            alive
                .iter()
                .any(|w| Some(&w.id) == owner && w.reading(&l.key)),
            "{} owned by {owner:?}, not read by a live worker",
            l.key
        );
    }
    if !alive.is_empty() {
        let counts: Vec<usize> = alive.iter().map(|w| w.held.len()).collect();
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        prop_assert!(max - min <= 1, "balanced within one: {counts:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn heartbeats_alone_keep_leases_and_takeovers_never_overlap_a_live_reader(
        workers in 2usize..5,
        shards in 1usize..13,
        // Lease-table outages: (worker, first round, rounds), long enough to expire leases.
        outages in prop::collection::vec((0usize..4, 0usize..20, 1usize..9), 0..4),
        deaths in prop::collection::vec((0usize..4, 0usize..30), 0..2),
        checkpoints in prop::collection::vec(prop::bool::weighted(0.3), 1..20),
        offsets in prop::collection::vec((0u64..3000, 0u64..3000, 0u64..3000), 4),
    ) {
        // Keep one worker alive: the last one never dies.
        let deaths: Vec<(usize, usize)> =
            deaths.into_iter().filter(|&(w, _)| w + 1 < workers).collect();
        run(workers, shards, &outages, &deaths, &checkpoints, &offsets)?;
    }
}

/// The model with every write counted: an idle, healthy fleet writes one heartbeat per worker
/// per round, however many leases it holds.
#[test]
fn an_idle_fleet_writes_one_heartbeat_per_worker_per_round() {
    let start = Instant::now();
    let (mut fleet, mut table) = fleet(3, 1000, start);
    let round = |fleet: &mut Vec<Worker>, table: &mut Table, t: u32| {
        for w in fleet.iter_mut() {
            let now = start + RENEW * t;
            keeper_calls(w, table, now, true, false);
            watch(w, now);
            supervise(w, table, now, true);
        }
    };
    for t in 0..20u32 {
        round(&mut fleet, &mut table, t);
    }
    let counters: u64 = table.leases.iter().map(|l| l.counter).sum();
    let heartbeats: u64 = table.heartbeats.values().sum();
    for t in 20..40u32 {
        round(&mut fleet, &mut table, t);
    }
    assert_eq!(
        table.leases.iter().map(|l| l.counter).sum::<u64>(),
        counters,
        "no lease written once settled"
    );
    assert_eq!(table.heartbeats.values().sum::<u64>() - heartbeats, 60);
    let counts: Vec<usize> = fleet.iter().map(|w| w.held.len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000);
}
