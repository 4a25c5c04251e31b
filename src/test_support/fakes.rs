//! Fakes behind the seams the emulator cannot drive into every condition (partial PutEvents
//! failures, slow answers, a failing dead-letter sink, a slow or failing lease table), shared
//! by the relay's and backfill's unit tests.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::lease::{Checkpoint, Lease, LeaseError, LeaseKey, LeaseStore, StreamGap, WorkerId};
use crate::pipeline::Entry;
use crate::publish::{
    DeadLetter, DeadLetterError, DeadLetterSink, EventPublisher, FailedEntry, PublishError,
    PutOutcome,
};

/// How the fake EventBridge treats entries (by the record number `n` in their detail).
#[derive(Clone, Copy)]
pub(crate) enum Behaviour {
    /// Accept everything.
    AcceptAll,
    /// Fail each entry whose `n` is a multiple of this on its first attempt (throttled).
    ThrottleFirstAttemptOfEvery(u64),
    /// Reject entry `n` for good with this entry-level code.
    RejectEntry(u64, &'static str),
    /// Fail the whole call with this code whenever it contains entry `n` (as PutEvents does
    /// for a bus that does not exist).
    RejectCallContaining(u64, &'static str),
    /// Throttle entry `n` on every attempt.
    AlwaysThrottle(u64),
    /// A pseudo-random schedule from a seed: each call answers after up to 2 s, fails as a
    /// whole (`InternalFailure`) with 1 chance in 5, and each entry of a call fails (throttled
    /// or internal) with 3 in 10.
    Random(u64),
    /// As `Random`, and entries whose `n` the seed picks (about 1 in 8) are rejected for
    /// good (`MalformedDetail`) whenever they are sent.
    RandomWithPoison(u64),
    /// Accept everything and only count entries (no parsing: for measurements).
    CountOnly,
    /// Accept everything; the first 4 calls answer in 10 ms, later ones in 1 s (calls queue
    /// at the service).
    Slowing,
}

/// A small deterministic hash (splitmix64) for the random schedule.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A fake EventBridge; optionally cancels a token at the given call number.
pub(crate) struct FakePublisher {
    pub(crate) accepted: Mutex<Vec<u64>>,
    /// Where acceptances are logged beside checkpoints and dead letters, when set.
    pub(crate) log: Option<EventLog>,
    /// Entries accepted under `CountOnly`.
    pub(crate) counted: AtomicUsize,
    pub(crate) attempts: Mutex<HashMap<u64, usize>>,
    pub(crate) calls: AtomicUsize,
    pub(crate) behaviour: Behaviour,
    pub(crate) cancel: Option<(usize, CancellationToken)>,
    pub(crate) in_flight: AtomicUsize,
    /// Under `Slowing`: the most calls in flight at once among calls after the 40th.
    pub(crate) late_peak: AtomicUsize,
}

impl FakePublisher {
    pub(crate) fn new(behaviour: Behaviour, cancel: Option<(usize, CancellationToken)>) -> Self {
        Self {
            accepted: Mutex::new(Vec::new()),
            log: None,
            counted: AtomicUsize::new(0),
            attempts: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
            behaviour,
            cancel,
            in_flight: AtomicUsize::new(0),
            late_peak: AtomicUsize::new(0),
        }
    }
}

impl EventPublisher for FakePublisher {
    async fn put_events<E: std::borrow::Borrow<Entry> + Sync>(
        &self,
        entries: &[E],
    ) -> Result<PutOutcome, PublishError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, token)) = &self.cancel {
            if call == *at {
                token.cancel();
            }
        }
        assert!(entries.len() <= 10, "PutEvents limit");
        if let Behaviour::CountOnly = self.behaviour {
            self.counted.fetch_add(entries.len(), Ordering::Relaxed);
            return Ok(PutOutcome::default());
        }
        let entries: Vec<&Entry> = entries.iter().map(Borrow::borrow).collect();
        let numbers: Vec<u64> = entries
            .iter()
            .map(|e| {
                let detail: serde_json::Value = serde_json::from_str(&e.detail).expect("json");
                detail["n"].as_u64().expect("n")
            })
            .collect();
        if let Behaviour::Slowing = self.behaviour {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            if call > 40 {
                self.late_peak.fetch_max(now, Ordering::SeqCst);
            }
            let delay = if call <= 4 { 10 } else { 1_000 };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.accepted.lock().expect("lock").extend(&numbers);
            return Ok(PutOutcome::default());
        }
        if let Behaviour::RejectCallContaining(bad, code) = self.behaviour {
            if numbers.contains(&bad) {
                return Err(PublishError {
                    code: code.into(),
                    message: "rejected".into(),
                });
            }
        }
        if let Behaviour::Random(seed) | Behaviour::RandomWithPoison(seed) = self.behaviour {
            // Slow answers: up to 2 s (paused time: free).
            let delay = mix(seed ^ (call as u64)) % 2000;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if mix(seed ^ ((call as u64) << 20)).is_multiple_of(5) {
                return Err(PublishError {
                    code: "InternalFailure".into(),
                    message: "call failed".into(),
                });
            }
        }
        let mut failed = Vec::new();
        for (index, &n) in numbers.iter().enumerate() {
            let mut attempts = self.attempts.lock().expect("lock");
            let seen = attempts.entry(n).or_insert(0);
            *seen += 1;
            let failure = match self.behaviour {
                Behaviour::ThrottleFirstAttemptOfEvery(k) if n.is_multiple_of(k) && *seen == 1 => {
                    Some("ThrottlingException")
                }
                Behaviour::RejectEntry(bad, code) if n == bad => Some(code),
                Behaviour::AlwaysThrottle(bad) if n == bad => Some("ThrottlingException"),
                Behaviour::RandomWithPoison(seed)
                    if mix(seed ^ n.wrapping_mul(31)).is_multiple_of(8) =>
                {
                    Some("MalformedDetail")
                }
                Behaviour::Random(seed) | Behaviour::RandomWithPoison(seed) => {
                    let roll = mix(seed ^ (n << 8) ^ (*seen as u64)) % 10;
                    match roll {
                        0 | 1 => Some("ThrottlingException"),
                        2 => Some("InternalFailure"),
                        _ => None,
                    }
                }
                _ => None,
            };
            match failure {
                Some(code) => failed.push(FailedEntry {
                    index,
                    code: code.into(),
                    message: "failed".into(),
                }),
                None => {
                    self.accepted.lock().expect("lock").push(n);
                    if let Some(log) = &self.log {
                        log.lock().expect("lock").push(format!("accepted:{n}"));
                    }
                }
            }
        }
        Ok(PutOutcome {
            failed,
            ..PutOutcome::default()
        })
    }
}

/// What happened, in order, across the fake lease store and dead-letter sink.
pub(crate) type EventLog = Arc<Mutex<Vec<String>>>;

/// A dead-letter sink that fails its first `fail_first` sends.
#[derive(Default)]
pub(crate) struct FakeDeadLetters {
    pub(crate) stored: Mutex<Vec<DeadLetter>>,
    pub(crate) fail_first: AtomicUsize,
    pub(crate) log: EventLog,
}

impl DeadLetterSink for FakeDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let failing = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            self.log
                .lock()
                .expect("lock")
                .push("dead-letter-failed".into());
            return Err(DeadLetterError {
                code: "QueueUnreachable".into(),
                message: "down".into(),
            });
        }
        self.log
            .lock()
            .expect("lock")
            .push(format!("dead-letter:{}", letter.sequence_number));
        self.stored.lock().expect("lock").push(letter.clone());
        Ok(())
    }
}

/// Leases in memory with DynamoDB's conditional semantics for the owner's writes.
#[derive(Default)]
pub(crate) struct FakeLeases {
    pub(crate) leases: Mutex<HashMap<LeaseKey, Lease>>,
    pub(crate) log: EventLog,
    /// The worker registry: heartbeat counters.
    pub(crate) workers: Mutex<HashMap<WorkerId, u64>>,
    /// Every write (create, take, renew, checkpoint, release, reset, heartbeat).
    pub(crate) writes: AtomicUsize,
    /// Every snapshot (on DynamoDB, a consistent Scan of the whole table).
    pub(crate) snapshots: AtomicUsize,
    /// How long each renewal takes (a slow or throttled table).
    pub(crate) renew_delay: Mutex<Duration>,
    /// Renewals and heartbeats fail (`ProvisionedThroughputExceededException`) while set.
    pub(crate) renew_failing: AtomicBool,
    /// Renewals in flight now, and the most seen at once.
    pub(crate) renewing: AtomicUsize,
    pub(crate) renewing_peak: AtomicUsize,
    /// Checkpoints fail (a lease table that cannot be written) while set.
    pub(crate) checkpoint_failing: AtomicBool,
    /// The next heartbeat succeeds even while `renew_failing` is set.
    pub(crate) heartbeat_ok_once: AtomicBool,
    /// Every checkpoint written, with when, per lease.
    pub(crate) checkpointed_at: Mutex<HashMap<LeaseKey, Vec<(Checkpoint, tokio::time::Instant)>>>,
    /// The creation time written with each lease's last checkpoint.
    pub(crate) checkpoint_created_at: Mutex<HashMap<LeaseKey, Option<SystemTime>>>,
    /// Every gap recorded.
    pub(crate) gaps: Mutex<Vec<StreamGap>>,
}

impl LeaseStore for FakeLeases {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        Ok(())
    }
    async fn snapshot(&self) -> Result<crate::lease::LeaseSnapshot, LeaseError> {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(crate::lease::LeaseSnapshot {
            leases: self
                .leases
                .lock()
                .expect("lock")
                .values()
                .cloned()
                .collect(),
            workers: self
                .workers
                .lock()
                .expect("lock")
                .iter()
                .map(|(id, counter)| crate::lease::WorkerRecord {
                    id: id.clone(),
                    counter: *counter,
                })
                .collect(),
        })
    }
    async fn reset(&self, _: &Lease, _: &Checkpoint) -> Result<(), LeaseError> {
        Ok(())
    }
    async fn delete(&self, observed: &Lease) -> Result<bool, LeaseError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut all = self.leases.lock().expect("lock");
        match all.get(&observed.key) {
            Some(l) if l.counter == observed.counter => {
                all.remove(&observed.key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), LeaseError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if self.renew_failing.load(Ordering::SeqCst)
            && !self.heartbeat_ok_once.swap(false, Ordering::SeqCst)
        {
            return Err(LeaseError::CallFailed {
                operation: "UpdateItem(heartbeat)",
                code: "ProvisionedThroughputExceededException".into(),
                message: "throttled".into(),
            });
        }
        *self
            .workers
            .lock()
            .expect("lock")
            .entry(worker.clone())
            .or_insert(0) += 1;
        Ok(())
    }
    async fn deregister(&self, worker: &WorkerId) -> Result<(), LeaseError> {
        self.workers.lock().expect("lock").remove(worker);
        Ok(())
    }
    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut all = self.leases.lock().expect("lock");
        if all.contains_key(&lease.key) {
            return Ok(false); // attribute_not_exists(leaseKey) failed
        }
        all.insert(lease.key.clone(), lease.clone());
        Ok(true)
    }
    async fn take(&self, observed: &Lease, owner: &WorkerId) -> Result<Lease, LeaseError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut all = self.leases.lock().expect("lock");
        let lease = all.get_mut(&observed.key).expect("exists");
        if lease.counter != observed.counter {
            return Err(LeaseError::LeaseLost {
                key: observed.key.clone(),
            });
        }
        lease.owner = Some(owner.clone());
        lease.counter += 1;
        lease.epoch += 1;
        Ok(lease.clone())
    }
    async fn renew(&self, key: &LeaseKey, owner: &WorkerId) -> Result<(), LeaseError> {
        let now = self.renewing.fetch_add(1, Ordering::SeqCst) + 1;
        self.renewing_peak.fetch_max(now, Ordering::SeqCst);
        let delay = *self.renew_delay.lock().expect("lock");
        tokio::time::sleep(delay).await;
        self.renewing.fetch_sub(1, Ordering::SeqCst);
        if self.renew_failing.load(Ordering::SeqCst) {
            return Err(LeaseError::CallFailed {
                operation: "UpdateItem(renew)",
                code: "ProvisionedThroughputExceededException".into(),
                message: "throttled".into(),
            });
        }
        self.owned(key, owner, |l| l.counter += 1)
    }
    async fn checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        epoch: u64,
        checkpoint: &Checkpoint,
        created_at: Option<SystemTime>,
    ) -> Result<(), LeaseError> {
        if self.checkpoint_failing.load(Ordering::SeqCst) {
            return Err(LeaseError::CallFailed {
                operation: "UpdateItem(checkpoint)",
                code: "InternalServerError".into(),
                message: "down".into(),
            });
        }
        // Conditional on owner and epoch, as the DynamoDB store's write is.
        let same_take = self
            .leases
            .lock()
            .expect("lock")
            .get(key)
            .is_some_and(|l| l.epoch == epoch);
        if !same_take {
            self.writes.fetch_add(1, Ordering::Relaxed);
            return Err(LeaseError::LeaseLost { key: key.clone() });
        }
        self.owned(key, owner, |l| l.checkpoint = checkpoint.clone())?;
        self.checkpointed_at
            .lock()
            .expect("lock")
            .entry(key.clone())
            .or_default()
            .push((checkpoint.clone(), tokio::time::Instant::now()));
        self.checkpoint_created_at
            .lock()
            .expect("lock")
            .insert(key.clone(), created_at);
        self.log
            .lock()
            .expect("lock")
            .push(format!("checkpoint:{checkpoint}"));
        Ok(())
    }
    async fn record_gap(&self, gap: &StreamGap) -> Result<(), LeaseError> {
        self.gaps.lock().expect("lock").push(gap.clone());
        Ok(())
    }
    async fn release(&self, key: &LeaseKey, owner: &WorkerId) -> Result<(), LeaseError> {
        self.owned(key, owner, |l| l.owner = None)
    }
}

impl FakeLeases {
    /// Adds `lease` to the table.
    pub(crate) fn insert(&self, lease: Lease) {
        self.leases
            .lock()
            .expect("lock")
            .insert(lease.key.clone(), lease);
    }

    pub(crate) fn owned(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        change: impl FnOnce(&mut Lease),
    ) -> Result<(), LeaseError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut all = self.leases.lock().expect("lock");
        match all.get_mut(key) {
            Some(l) if l.owner.as_ref() == Some(owner) => {
                change(l);
                l.counter += 1;
                Ok(())
            }
            _ => Err(LeaseError::LeaseLost { key: key.clone() }),
        }
    }

    pub(crate) fn checkpoint_of(&self, key: &LeaseKey) -> Checkpoint {
        self.leases.lock().expect("lock")[key].checkpoint.clone()
    }
}
