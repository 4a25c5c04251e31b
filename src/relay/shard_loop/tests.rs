//! The shard loop driven by a scripted world, synchronously: pages, answers, stored letters
//! and checkpoint writes arrive in an order the script picks, failures included, with a
//! cancellation or a fence at any step. Whatever the order, the loop keeps its rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::json;
use tokio::time::Instant;

use super::{Command, Event, Now, ShardLoop};
use crate::config::Config;
use crate::lease::{Checkpoint, LeaseError, LeaseKey};
use crate::pipeline::{Entry, Router};
use crate::publish::{FailedEntry, PublishError, PutOutcome};
use crate::relay::deliver::Answer;
use crate::relay::limit::Ticket;
use crate::relay::schedule::EntryId;
use crate::relay::tests::worker_settings;
use crate::relay::worker::WorkerExit;
use crate::stream::{SequenceNumber, StreamRecord};

/// Two routes of INSERTs: one unmarshalls, one renders `count` (a row without it cannot
/// render: a poison entry). A REMOVE matches neither (filtered).
fn router() -> Router {
    let config = Config::from_toml(
        r#"
[source]
table_name = "T"
[[routes]]
name = "all"
event_bus_name = "bus"
source = "S"
detail_type = "T"
filters = ['{"eventName": ["INSERT"]}']
unmarshall = "NewImage"
[[routes]]
name = "count"
event_bus_name = "bus"
source = "S"
detail_type = "T"
filters = ['{"eventName": ["INSERT"]}']
template = '{"count": <$.dynamodb.NewImage.count.N>}'
"#,
    )
    .expect("a valid config");
    config
        .router_for(&config.source.streams()[0])
        .expect("routes")
}

/// Record kinds: 0 renders on both routes, 1 is poison on `count`, 2 is filtered.
fn record(seq: u64, kind: u8) -> StreamRecord {
    let mut image = json!({"pk": {"S": format!("k{}", seq % 3)}});
    if kind == 0 {
        image["count"] = json!({"N": seq.to_string()});
    }
    let name = if kind == 2 { "REMOVE" } else { "INSERT" };
    StreamRecord::new(
        SequenceNumber::new(seq.to_string()),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq)),
        &json!({
            "eventID": format!("e{seq}"),
            "eventName": name,
            "dynamodb": {
                "Keys": {"pk": {"S": format!("k{}", seq % 3)}},
                "NewImage": image,
                "SequenceNumber": seq.to_string(),
                "SizeBytes": 50,
            },
        }),
    )
}

/// Entries each record kind makes (both routes, one poisoned, none).
fn entries_of(kind: u8) -> usize {
    if kind == 2 {
        0
    } else {
        2
    }
}

#[derive(Debug, Clone)]
struct Script {
    /// Pages of record kinds.
    pages: Vec<Vec<u8>>,
    /// Whether the shard is closed (its end follows the last page).
    closed: bool,
    max_in_flight: usize,
    read_ahead_records: usize,
    /// The step at which the loop is cancelled, if any.
    cancel_at: Option<usize>,
    /// Steps during which the lease is fenced.
    fenced: Vec<bool>,
    /// The world's choices, one byte a step.
    tape: Vec<u8>,
}

fn script() -> impl Strategy<Value = Script> {
    (
        proptest::collection::vec(proptest::collection::vec(0u8..3, 0..5), 1..8),
        any::<bool>(),
        prop_oneof![Just(1usize), Just(4)],
        5usize..30,
        proptest::option::weighted(0.3, 0usize..60),
        proptest::collection::vec(proptest::bool::weighted(0.1), 300),
        proptest::collection::vec(any::<u8>(), 300),
    )
        .prop_map(
            |(pages, closed, max_in_flight, read_ahead_records, cancel_at, fenced, tape)| Script {
                pages,
                closed,
                max_in_flight,
                read_ahead_records,
                cancel_at,
                fenced,
                tape,
            },
        )
}

/// The world around one loop, and what it saw.
struct World<'s> {
    script: &'s Script,
    machine: ShardLoop,
    router: &'s Router,
    now: Now,
    next_page: usize,
    reading: bool,
    calls: Vec<(Vec<EntryId>, Vec<Arc<Entry>>, Ticket)>,
    letters: Vec<(EntryId, String)>,
    checkpointing: Option<Checkpoint>,
    /// Per record (sequence number): entries settled (accepted, or dead letter stored).
    settled: BTreeMap<u64, usize>,
    /// Per record: its kind, once read.
    kinds: BTreeMap<u64, u8>,
    /// Sequence number of each event id.
    record_of: HashMap<String, u64>,
    written: Vec<Checkpoint>,
    exit: Option<WorkerExit>,
    cancelled: bool,
    /// A checkpoint write was answered with another owner.
    lease_lost: bool,
}

impl World<'_> {
    fn seq(c: &Checkpoint) -> Option<u64> {
        match c {
            Checkpoint::Sequence(s) => s.as_str().parse().ok(),
            _ => None,
        }
    }

    /// Every record up to `upto` that was read has all its entries settled.
    fn settled_up_to(&self, upto: u64) -> bool {
        self.kinds
            .range(..=upto)
            .all(|(seq, kind)| self.settled.get(seq).copied().unwrap_or(0) == entries_of(*kind))
    }

    fn carry_out(&mut self, commands: Vec<Command<'_>>) -> Result<(), TestCaseError> {
        for command in commands {
            match command {
                Command::Read => {
                    prop_assert!(!self.reading, "one read at a time");
                    prop_assert!(!self.cancelled, "no read after cancellation");
                    let held = self.machine.window.held_records() + self.machine.progress.unwritten;
                    prop_assert!(
                        held + self.machine.settings.max_records_per_poll
                            <= self.machine.settings.read_ahead_records,
                        "a read leaves room for a page"
                    );
                    self.reading = true;
                }
                Command::WriteLetter(id, letter) => {
                    self.letters.push((id, letter.sequence_number.clone()));
                }
                Command::WriteCheckpoint { checkpoint, .. } => {
                    prop_assert!(self.checkpointing.is_none(), "one write at a time");
                    if let Some(seq) = Self::seq(&checkpoint) {
                        prop_assert!(
                            self.settled_up_to(seq),
                            "the checkpoint passes only settled records"
                        );
                    }
                    if checkpoint == Checkpoint::ShardEnd {
                        prop_assert!(
                            self.script.closed && self.next_page == self.script.pages.len()
                        );
                        prop_assert!(self.settled_up_to(u64::MAX), "SHARD_END after every record");
                    }
                    self.checkpointing = Some(checkpoint);
                }
                Command::Renewed { .. } | Command::Emit(_) => {}
                Command::Exit(exit) => {
                    self.exit = Some(exit);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One step: the loop acts, then the world answers one thing the tape picks.
    fn step(&mut self, step: usize) -> Result<(), TestCaseError> {
        let choice = self.script.tape[step % self.script.tape.len()];
        if self.script.cancel_at == Some(step) && !self.cancelled {
            self.cancelled = true;
            self.reading = false; // the driver drops the read
            let c = self.machine.on(Event::Cancelled, self.now, self.router);
            self.carry_out(c)?;
        }
        let fenced = self.script.fenced[step % self.script.fenced.len()];
        while let Some(batch) = self.machine.next_call(self.now.instant, fenced) {
            prop_assert!(!fenced);
            let (entries, ticket) = self.machine.start_call(&batch, self.now.wall);
            for e in &entries {
                self.record_of.entry(e.event_id.clone()).or_default();
            }
            self.calls.push((batch, entries, ticket));
        }
        let c = self.machine.poll(self.now.instant, fenced);
        self.carry_out(c)?;
        if self.exit.is_some() {
            return Ok(());
        }
        // What may happen next, picked by the tape.
        let mut options = Vec::new();
        if self.reading {
            options.push(0);
        }
        if !self.calls.is_empty() {
            options.push(1);
        }
        if !self.letters.is_empty() {
            options.push(2);
        }
        if self.checkpointing.is_some() {
            options.push(3);
        }
        let event = match options.get(usize::from(choice) % options.len().max(1)) {
            Some(0) => self.page(),
            Some(1) => self.answer(choice),
            Some(2) => {
                let (id, seq) = self
                    .letters
                    .remove(usize::from(choice) % self.letters.len());
                *self.settled.entry(seq.parse().unwrap_or(0)).or_default() += 1;
                Event::LetterStored(id)
            }
            Some(_) => {
                let checkpoint = self.checkpointing.take().expect("an option");
                let result = match choice % 16 {
                    0 => Err(LeaseError::CallFailed {
                        operation: "UpdateItem",
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "slow".into(),
                    }),
                    1 if step.is_multiple_of(7) => {
                        self.lease_lost = true;
                        Err(LeaseError::LeaseLost {
                            key: LeaseKey("k".into()),
                        })
                    }
                    _ => {
                        self.written.push(checkpoint);
                        Ok(())
                    }
                };
                Event::CheckpointWritten(result)
            }
            None => {
                // Nothing under way: time passes to the loop's next timer.
                let wake = self.machine.wake_at(self.now.instant);
                let by = wake.map_or(Duration::from_millis(200), |t| t - self.now.instant);
                self.now.instant += by;
                self.now.wall += by;
                return Ok(());
            }
        };
        self.now.instant += Duration::from_millis(5);
        self.now.wall += Duration::from_millis(5);
        let c = self.machine.on(event, self.now, self.router);
        self.carry_out(c)
    }

    fn page(&mut self) -> Event {
        self.reading = false;
        let Some(kinds) = self.script.pages.get(self.next_page) else {
            // An open shard with nothing new.
            return Event::PageRead {
                records: Vec::new(),
                ended: false,
            };
        };
        let first: usize = self.script.pages[..self.next_page]
            .iter()
            .map(Vec::len)
            .sum();
        let records: Vec<StreamRecord> = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let seq = (first + i) as u64 + 100;
                self.kinds.insert(seq, kind);
                self.record_of.insert(format!("e{seq}"), seq);
                record(seq, kind)
            })
            .collect();
        self.next_page += 1;
        Event::PageRead {
            records,
            ended: self.script.closed && self.next_page == self.script.pages.len(),
        }
    }

    fn answer(&mut self, choice: u8) -> Event {
        let (batch, entries, ticket) = self.calls.remove(usize::from(choice) % self.calls.len());
        let result = match choice % 8 {
            0 => Err(PublishError {
                code: "ThrottlingException".into(),
                message: "slow down".into(),
            }),
            1 => Ok(PutOutcome {
                failed: vec![FailedEntry {
                    index: 0,
                    code: "InternalFailure".into(),
                    message: "try again".into(),
                }],
                deduplicated: Vec::new(),
            }),
            _ => Ok(PutOutcome::default()),
        };
        let failed: Vec<usize> = match &result {
            Ok(o) => o.failed.iter().map(|f| f.index).collect(),
            Err(_) => (0..entries.len()).collect(),
        };
        for (i, e) in entries.iter().enumerate() {
            if !failed.contains(&i) {
                let seq = self.record_of[&e.event_id];
                *self.settled.entry(seq).or_default() += 1;
            }
        }
        Event::Answered(Answer {
            batch,
            result,
            ticket,
            round_trip: Duration::from_millis(20),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever order things happen in: one read and one checkpoint write at a time, reads
    /// only with room and never after cancellation, the checkpoint passes only settled
    /// records, `SHARD_END` only after the last record; a closed shard the world serves to
    /// the end exits `ShardEnded`, a cancelled loop exits `Cancelled` with what it started
    /// settled and written, a fenced checkpoint exits `LeaseLost`.
    #[test]
    fn the_shard_loop_keeps_its_rules(script in script()) {
        let router = router();
        let mut settings = worker_settings();
        settings.max_in_flight = script.max_in_flight;
        settings.max_records_per_poll = 5;
        settings.read_ahead_records = script.read_ahead_records;
        settings.checkpoint_interval = Duration::from_millis(500);
        let start = Instant::now();
        let mut world = World {
            script: &script,
            machine: ShardLoop::new(Arc::new(settings), "arn:s".into(), "shard-1".into(), start),
            router: &router,
            now: Now { instant: start, wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) },
            next_page: 0,
            reading: false,
            calls: Vec::new(),
            letters: Vec::new(),
            checkpointing: None,
            settled: BTreeMap::new(),
            kinds: BTreeMap::new(),
            record_of: HashMap::new(),
            written: Vec::new(),
            exit: None,
            cancelled: false,
            lease_lost: false,
        };
        for step in 0..5_000 {
            world.step(step)?;
            if world.exit.is_some() {
                break;
            }
        }
        match world.exit {
            Some(WorkerExit::ShardEnded) => {
                prop_assert!(script.closed);
                prop_assert!(world.settled_up_to(u64::MAX));
                prop_assert_eq!(world.written.last(), Some(&Checkpoint::ShardEnd));
            }
            Some(WorkerExit::Cancelled) => {
                prop_assert!(world.cancelled);
                prop_assert!(world.calls.is_empty() && world.letters.is_empty());
                // Every record started is settled, and the last write covers it.
                let last = world.written.iter().rev().find_map(World::seq);
                for (&seq, &n) in &world.settled {
                    prop_assert!(n == 0 || last >= Some(seq), "the last checkpoint covers every record started");
                }
                if let Some(last) = last {
                    prop_assert!(world.settled_up_to(last));
                }
            }
            Some(WorkerExit::LeaseLost) => prop_assert!(world.lease_lost, "exits LeaseLost only when fenced"),
            None => {
                // Only an open shard, never cancelled, may still be running.
                prop_assert!(!script.closed, "a closed shard reaches its end");
                prop_assert!(script.cancel_at.is_none_or(|c| c >= 5_000));
            }
        }
    }
}
