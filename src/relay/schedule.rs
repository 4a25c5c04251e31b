//! One shard's window: the records read but not yet passed by the checkpoint, and their
//! entries. It decides which entries go out in the next PutEvents call, applies each answer,
//! and says how far the checkpoint may go. Pure: time is passed in, and the shard worker
//! carries out the I/O.
//!
//! Invariants (property-tested below, and through the real worker in `relay/tests`):
//! - **Per-key order.** With [`Order::PerKey`], an entry is sent only when every earlier entry
//!   with the same ordering key is settled (accepted or dead-lettered): one entry per key in
//!   flight or waiting to be retried, so per key, entries are submitted in record order.
//!   With [`Order::Strict`] (one call in flight per shard), a call goes out only when every
//!   earlier entry is settled but for its own batch-mates: a batch's failed entries are
//!   retried before anything after them, as the relay always did.
//! - **Bounded.** At most `max_in_flight` calls are out at once.
//! - **One lane per call.** A call's entries all have the same [`Lane`] (the bus kind, and for
//!   a Custom Event Bus the bus itself), within that lane's entry and byte limits.
//! - **Watermark.** [`Schedule::advance`] passes a record only when it and every record
//!   before it are settled; a record that produced no entry is settled at once.
//! - **Draining.** After [`Schedule::stop`], no record after the last one already started
//!   starts, and every record up to it is finished, so stopping re-sends nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use tokio::time::Instant;

/// A stable handle of an entry of the window.
pub type EntryId = u64;

/// How entries of one shard are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// One call at a time; a call's failed entries are retried before anything later.
    Strict,
    /// Up to this many calls at once; order kept per ordering key.
    PerKey { max_in_flight: usize },
}

impl Order {
    /// `Strict` for one call in flight, `PerKey` above.
    #[must_use]
    pub fn for_in_flight(max_in_flight: usize) -> Self {
        if max_in_flight <= 1 {
            Self::Strict
        } else {
            Self::PerKey { max_in_flight }
        }
    }
}

/// Which entries may share a call: the same lane. The worker gives every classic-bus entry
/// one lane and every Custom Event Bus its own.
pub type Lane = u32;

pub use crate::pipeline::CallLimits;

/// A new entry of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry<E> {
    pub payload: E,
    /// Only entries of the same lane go out in one call.
    pub lane: Lane,
    /// Entries with the same key are submitted in record order. `None`: unordered.
    pub key: Option<String>,
    /// Its size as PutEvents counts it (for the request size limit).
    pub size: usize,
    /// A poison entry: it goes to the dead-letter sink, never to PutEvents.
    pub poison: bool,
}

/// A record as the window receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord<R, E> {
    pub payload: R,
    /// The record's size in bytes, for the read-ahead bound.
    pub bytes: usize,
    /// The page it came in (a strict batch never mixes pages).
    pub page: u64,
    /// Whether it is the last record of its page (the checkpoint is written when it passes).
    pub last_of_page: bool,
    pub entries: Vec<NewEntry<E>>,
}

/// What the worker made of one entry of an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: settled.
    Accepted,
    /// Send again, not before this instant, before any later entry of its key.
    RetryAt(Instant),
    /// Send again alone (its call was refused because of some entry).
    Split,
    /// Give up: the worker writes it to the dead-letter sink, then calls
    /// [`Schedule::dead_lettered`].
    DeadLetter,
}

/// What the checkpoint may now pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed<R> {
    /// The last record passed.
    pub record: R,
    /// Whether a page's last record was among those passed.
    pub page_end: bool,
    /// How many records were passed.
    pub count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to be sent; `not_before` after a retryable failure; `solo` after a split.
    Pending {
        not_before: Option<Instant>,
        solo: bool,
        retry: bool,
    },
    InFlight,
    DeadLettering,
    Settled,
}

#[derive(Debug)]
struct EntrySlot<E> {
    payload: E,
    lane: Lane,
    record: u64,
    /// Its ordering key's hash ([`Schedule::keys`]).
    key: Option<KeyHash>,
    size: usize,
    state: State,
    attempts: u32,
}

/// An ordering key as the window tells keys apart: its 64-bit hash under a per-process random
/// seed. Two keys with the same hash share one queue, so their entries go one after the other:
/// order is kept for both, only their concurrency is lost (at odds of 2⁻⁶⁴ a pair).
type KeyHash = u64;

/// The unsettled entries of one key, in record order. Most keys have one entry in the window
/// at a time, which needs no allocation: `rest` stays empty.
#[derive(Debug)]
struct KeyQueue {
    front: EntryId,
    rest: VecDeque<EntryId>,
}

impl KeyQueue {
    /// Takes `id` out; `false` when the queue is left empty.
    fn remove(&mut self, id: EntryId) -> bool {
        if self.front == id {
            match self.rest.pop_front() {
                Some(next) => self.front = next,
                None => return false,
            }
        } else if let Some(pos) = self.rest.iter().position(|&q| q == id) {
            self.rest.remove(pos);
        }
        true
    }

    /// Keeps the ids below `limit`; `false` when none is left.
    fn keep_below(&mut self, limit: EntryId) -> bool {
        self.rest.retain(|&id| id < limit);
        self.front < limit
    }
}

#[derive(Debug)]
struct RecordSlot<R> {
    payload: R,
    bytes: usize,
    page: u64,
    last_of_page: bool,
    unsettled: usize,
    /// The ids of its entries: `first_entry..first_entry + entries`.
    first_entry: EntryId,
    entries: usize,
}

/// One shard's window of records and entries (see the module documentation).
#[derive(Debug)]
pub struct Schedule<R, E> {
    order: Order,
    records: VecDeque<RecordSlot<R>>,
    /// The absolute index of `records[0]`.
    first_record: u64,
    entries: VecDeque<EntrySlot<E>>,
    /// The id of `entries[0]`.
    first_entry: EntryId,
    /// Unsettled entries per ordering key, in record order; the front is the only one that
    /// may be sent (per-key order).
    keys: HashMap<KeyHash, KeyQueue, foldhash::fast::RandomState>,
    /// Hashes ordering keys into [`KeyHash`]es.
    hasher: foldhash::fast::RandomState,
    in_flight: usize,
    dead_lettering: usize,
    /// Entries waiting for a retry time (`Pending` with `not_before`): while there are none,
    /// [`Schedule::next_retry`] answers without a scan (it is asked on every turn of a loop).
    retries_waiting: usize,
    bytes: usize,
    /// No entry before this one is waiting to be sent (`Pending`): a per-key call is looked
    /// for from here, not from the window's front past every entry already in flight. It
    /// moves on as calls start and back when an answer makes an entry wait again.
    pending_from: EntryId,
    /// The highest record with an entry sent (or dead-lettered).
    started: Option<u64>,
    /// After [`Schedule::stop`]: records at or after this index never start.
    drain_limit: Option<u64>,
}

impl<R, E> Schedule<R, E> {
    #[must_use]
    pub fn new(order: Order) -> Self {
        Self {
            order,
            records: VecDeque::new(),
            first_record: 0,
            entries: VecDeque::new(),
            first_entry: 0,
            keys: HashMap::default(),
            hasher: foldhash::fast::RandomState::default(),
            in_flight: 0,
            retries_waiting: 0,
            dead_lettering: 0,
            bytes: 0,
            pending_from: 0,
            started: None,
            drain_limit: None,
        }
    }

    /// Changes how many calls may be in flight (at least 1; calls already out stay out).
    /// No effect with [`Order::Strict`].
    pub fn set_max_in_flight(&mut self, n: usize) {
        if let Order::PerKey { max_in_flight } = &mut self.order {
            *max_in_flight = n.max(1);
        }
    }

    /// Adds a record at the end of the window. Returns its poison entries, which the worker
    /// writes to the dead-letter sink at once.
    pub fn push(&mut self, record: NewRecord<R, E>) -> Vec<EntryId> {
        let index = self.first_record + self.records.len() as u64;
        let first_entry = self.first_entry + self.entries.len() as u64;
        let mut poison = Vec::new();
        for (i, e) in record.entries.into_iter().enumerate() {
            let id = first_entry + i as u64;
            let mut key = None;
            let state = if e.poison {
                poison.push(id);
                self.dead_lettering += 1;
                self.started = self.started.max(Some(index));
                State::DeadLettering
            } else {
                key = e.key.as_deref().map(|k| self.hasher.hash_one(k));
                if let Some(hash) = key {
                    self.keys
                        .entry(hash)
                        .and_modify(|q| q.rest.push_back(id))
                        .or_insert(KeyQueue {
                            front: id,
                            rest: VecDeque::new(),
                        });
                }
                State::Pending {
                    not_before: None,
                    solo: false,
                    retry: false,
                }
            };
            self.entries.push_back(EntrySlot {
                payload: e.payload,
                lane: e.lane,
                record: index,
                key,
                size: e.size,
                state,
                attempts: 0,
            });
        }
        let entries = (self.first_entry + self.entries.len() as u64 - first_entry) as usize;
        self.bytes += record.bytes;
        self.records.push_back(RecordSlot {
            payload: record.payload,
            bytes: record.bytes,
            page: record.page,
            last_of_page: record.last_of_page,
            unsettled: entries,
            first_entry,
            entries,
        });
        poison
    }

    /// The next call to make, if one may go out now: at most `max_entries` entries and
    /// `max_bytes` (an entry larger than that travels alone). The entries are marked in
    /// flight until [`Schedule::answered`].
    #[cfg(test)]
    pub fn next_batch(
        &mut self,
        now: Instant,
        max_entries: usize,
        max_bytes: usize,
    ) -> Option<Vec<EntryId>> {
        let batch = self.peek_batch(now, max_entries, max_bytes)?;
        self.start(&batch);
        Some(batch)
    }

    /// The call [`Schedule::next_batch`] would make, without making it (the worker first
    /// gets a permit for it).
    #[cfg(test)]
    #[must_use]
    pub fn peek_batch(
        &self,
        now: Instant,
        max_entries: usize,
        max_bytes: usize,
    ) -> Option<Vec<EntryId>> {
        let limits = CallLimits {
            max_entries,
            max_bytes,
        };
        self.peek_lane_batch(now, |_| limits)
    }

    /// [`Schedule::peek_batch`] with each lane's own limits: the call's lane is that of its
    /// first entry, and only entries of that lane join it.
    #[must_use]
    pub fn peek_lane_batch(
        &self,
        now: Instant,
        limits: impl Fn(Lane) -> CallLimits,
    ) -> Option<Vec<EntryId>> {
        match self.order {
            Order::Strict => self.strict_batch(now, &limits),
            Order::PerKey { max_in_flight } => {
                if self.in_flight >= max_in_flight {
                    return None;
                }
                self.per_key_batch(now, &limits)
            }
        }
    }

    /// Marks `batch` (from [`Schedule::peek_batch`], unchanged since) in flight.
    pub fn start(&mut self, batch: &[EntryId]) {
        self.in_flight += 1;
        for &id in batch {
            let (record, was_waiting) = {
                let e = self.slot_mut(id);
                let was_waiting = matches!(
                    e.state,
                    State::Pending {
                        not_before: Some(_),
                        ..
                    }
                );
                e.state = State::InFlight;
                e.attempts += 1;
                (e.record, was_waiting)
            };
            if was_waiting {
                self.retries_waiting -= 1;
            }
            self.started = self.started.max(Some(record));
        }
        self.skip_unpending();
    }

    /// Moves [`Schedule::pending_from`] past the entries at it that are not waiting to be sent.
    fn skip_unpending(&mut self) {
        self.pending_from = self.pending_from.max(self.first_entry);
        while let Some(e) = self.slot_at(self.pending_from) {
            if matches!(e.state, State::Pending { .. }) {
                break;
            }
            self.pending_from += 1;
        }
    }

    /// Entry `id`, if it is in the window.
    /// Where entry `id` is in `entries`, if not before its front (its end is the caller's
    /// to check).
    fn index(&self, id: EntryId) -> Option<usize> {
        usize::try_from(id.checked_sub(self.first_entry)?).ok()
    }

    fn slot_at(&self, id: EntryId) -> Option<&EntrySlot<E>> {
        self.entries.get(self.index(id)?)
    }

    fn startable(&self, e: &EntrySlot<E>) -> bool {
        self.drain_limit.is_none_or(|limit| e.record < limit)
    }

    fn due(state: State, now: Instant) -> bool {
        matches!(state, State::Pending { not_before, .. } if not_before.is_none_or(|t| t <= now))
    }

    /// One call at a time, in entry order: the oldest retries first (together, unless split
    /// into solo entries), else the next entries of one page.
    fn strict_batch(
        &self,
        now: Instant,
        limits: &impl Fn(Lane) -> CallLimits,
    ) -> Option<Vec<EntryId>> {
        if self.in_flight > 0 || self.dead_lettering > 0 {
            return None;
        }
        let unsettled: Vec<(EntryId, &EntrySlot<E>)> = self
            .ids()
            .zip(&self.entries)
            .filter(|(_, e)| e.state != State::Settled)
            .collect();
        let &(first_id, first) = unsettled.first()?;
        if !self.startable(first) || !Self::due(first.state, now) {
            return None;
        }
        if let State::Pending { solo: true, .. } = first.state {
            return Some(vec![first_id]);
        }
        let retrying = |e: &EntrySlot<E>| matches!(e.state, State::Pending { retry: true, .. });
        let want_retry = unsettled.iter().any(|(_, e)| retrying(e));
        let page = self.record(first.record).map(|r| r.page);
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut lane: Option<(Lane, CallLimits)> = None;
        for (id, e) in unsettled {
            let same_kind = retrying(e) == want_retry;
            let solo = matches!(e.state, State::Pending { solo: true, .. });
            if !same_kind {
                if want_retry {
                    continue; // retries go out on their own, before fresh entries
                }
                break;
            }
            if solo
                || !self.startable(e)
                || !Self::due(e.state, now)
                || (!want_retry && self.record(e.record).map(|r| r.page) != page)
            {
                break;
            }
            let (call_lane, call) = *lane.get_or_insert_with(|| (e.lane, limits(e.lane)));
            if e.lane != call_lane {
                // Strict order: an entry of another lane waits for the next call, and so
                // does everything after it.
                break;
            }
            if !call.admits(batch.len(), bytes, e.size) {
                break;
            }
            bytes += e.size;
            batch.push(id);
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// The oldest due entries that head their key (one per key), up to the call's limits.
    fn per_key_batch(
        &self,
        now: Instant,
        limits: &impl Fn(Lane) -> CallLimits,
    ) -> Option<Vec<EntryId>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut lane: Option<(Lane, CallLimits)> = None;
        let from = self.pending_from.max(self.first_entry);
        let skipped = usize::try_from(from - self.first_entry)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        debug_assert!(
            !self
                .entries
                .range(..skipped)
                .any(|e| matches!(e.state, State::Pending { .. })),
            "no entry before `pending_from` waits to be sent"
        );
        for (id, e) in (from..).zip(self.entries.range(skipped..)) {
            if !self.startable(e) {
                break; // records only grow after this one: none of them may start
            }
            if !Self::due(e.state, now)
                || !self.heads_its_key(id, e)
                || lane.is_some_and(|(l, _)| l != e.lane)
            {
                continue;
            }
            let solo = matches!(e.state, State::Pending { solo: true, .. });
            if solo {
                if batch.is_empty() {
                    return Some(vec![id]);
                }
                continue;
            }
            let (_, call) = *lane.get_or_insert_with(|| (e.lane, limits(e.lane)));
            if !call.admits(batch.len(), bytes, e.size) {
                break;
            }
            bytes += e.size;
            batch.push(id);
            if batch.len() >= call.max_entries {
                break;
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    fn heads_its_key(&self, id: EntryId, e: &EntrySlot<E>) -> bool {
        e.key
            .is_none_or(|k| self.keys.get(&k).map(|q| q.front) == Some(id))
    }

    /// Applies the answer to a call made of `batch`: one outcome per entry, in order.
    /// Returns the entries to dead-letter.
    ///
    /// # Panics
    /// If `outcomes` and `batch` differ in length (a bug in the caller).
    pub fn answered(&mut self, batch: &[EntryId], outcomes: &[Outcome]) -> Vec<EntryId> {
        assert_eq!(batch.len(), outcomes.len(), "one outcome per entry");
        self.in_flight -= 1;
        let mut dead = Vec::new();
        for (&id, &outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Outcome::Accepted => self.settle(id),
                Outcome::RetryAt(at) => {
                    self.pending_from = self.pending_from.min(id);
                    self.slot_mut(id).state = State::Pending {
                        not_before: Some(at),
                        solo: false,
                        retry: true,
                    };
                    self.retries_waiting += 1;
                }
                Outcome::Split => {
                    self.pending_from = self.pending_from.min(id);
                    self.slot_mut(id).state = State::Pending {
                        not_before: None,
                        solo: true,
                        retry: true,
                    };
                }
                Outcome::DeadLetter => {
                    self.slot_mut(id).state = State::DeadLettering;
                    self.dead_lettering += 1;
                    dead.push(id);
                }
            }
        }
        dead
    }

    /// The dead letter of `id` is stored: the entry is settled.
    pub fn dead_lettered(&mut self, id: EntryId) {
        self.dead_lettering -= 1;
        self.settle(id);
    }

    fn settle(&mut self, id: EntryId) {
        let (record, key) = {
            let e = self.slot_mut(id);
            e.state = State::Settled;
            (e.record, e.key.take())
        };
        if let Some(key) = key {
            if let Some(queue) = self.keys.get_mut(&key) {
                if !queue.remove(id) {
                    self.keys.remove(&key);
                }
            }
        }
        if let Some(r) = record
            .checked_sub(self.first_record)
            .and_then(|i| self.records.get_mut(usize::try_from(i).ok()?))
        {
            r.unsettled -= 1;
        }
    }

    /// Drops the settled records at the front of the window and returns the last one, if
    /// any: the checkpoint may pass it.
    pub fn advance(&mut self) -> Option<Passed<R>> {
        let mut passed = None;
        let mut page_end = false;
        let mut count = 0;
        while self.records.front().is_some_and(|r| r.unsettled == 0) {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            self.first_record += 1;
            self.bytes -= r.bytes;
            page_end |= r.last_of_page;
            for _ in 0..r.entries {
                self.entries.pop_front();
                self.first_entry += 1;
            }
            passed = Some(r.payload);
            count += 1;
        }
        passed.map(|record| Passed {
            record,
            page_end,
            count,
        })
    }

    /// Stops starting records: those after the last one started are dropped (a later reader
    /// reads them again); the ones up to it are still finished.
    pub fn stop(&mut self) {
        let limit = self.started.map_or(self.first_record, |s| s + 1);
        self.drain_limit = Some(limit);
        self.pending_from = self.pending_from.min(self.first_entry);
        while self.first_record + (self.records.len() as u64) > limit {
            let Some(r) = self.records.pop_back() else {
                break;
            };
            self.bytes -= r.bytes;
            for _ in 0..r.entries {
                if let Some(e) = self.entries.pop_back() {
                    if matches!(
                        e.state,
                        State::Pending {
                            not_before: Some(_),
                            ..
                        }
                    ) {
                        self.retries_waiting -= 1;
                    }
                    if let Some(key) = e.key {
                        if let Some(q) = self.keys.get_mut(&key) {
                            if !q.keep_below(r.first_entry) {
                                self.keys.remove(&key);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether nothing is left to do: no call out, no dead letter being written, no record
    /// held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.in_flight == 0 && self.dead_lettering == 0 && self.records.is_empty()
    }

    /// Records held (read, not yet passed by the checkpoint).
    #[must_use]
    pub fn held_records(&self) -> usize {
        self.records.len()
    }

    /// Bytes of the records held.
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Calls out now.
    #[cfg(test)]
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The oldest record held, if any.
    #[must_use]
    pub fn oldest_record(&self) -> Option<&R> {
        self.records.front().map(|r| &r.payload)
    }

    /// When a waiting retry next lets a call go out: in strict order, the first unsettled
    /// entry's; per key, the earliest among entries that head their key (only they may go).
    #[must_use]
    pub fn next_retry(&self) -> Option<Instant> {
        debug_assert_eq!(
            self.retries_waiting,
            self.entries
                .iter()
                .filter(|e| matches!(
                    e.state,
                    State::Pending {
                        not_before: Some(_),
                        ..
                    }
                ))
                .count(),
            "the count of entries waiting for a retry"
        );
        if self.retries_waiting == 0 {
            return None;
        }
        let not_before = |e: &EntrySlot<E>| match e.state {
            State::Pending {
                not_before: Some(t),
                ..
            } => Some(t),
            _ => None,
        };
        match self.order {
            Order::Strict => self
                .entries
                .iter()
                .find(|e| e.state != State::Settled)
                .and_then(not_before),
            Order::PerKey { .. } => self
                .ids()
                .zip(&self.entries)
                .filter(|(id, e)| self.heads_its_key(*id, e))
                .filter_map(|(_, e)| not_before(e))
                .min(),
        }
    }

    /// The payload of entry `id`.
    ///
    /// # Panics
    /// If `id` left the window (a bug in the caller: entries leave only once settled).
    #[must_use]
    pub fn entry(&self, id: EntryId) -> &E {
        &self.slot(id).payload
    }

    /// The payload of entry `id`, to change it.
    ///
    /// # Panics
    /// As [`Schedule::entry`].
    pub fn entry_mut(&mut self, id: EntryId) -> &mut E {
        &mut self.slot_mut(id).payload
    }

    /// The attempts entry `id` has had.
    #[must_use]
    pub fn attempts(&self, id: EntryId) -> u32 {
        self.slot(id).attempts
    }

    /// The record entry `id` belongs to.
    ///
    /// # Panics
    /// As [`Schedule::entry`].
    #[must_use]
    pub fn record_of(&self, id: EntryId) -> &R {
        let index = self.slot(id).record;
        &self
            .record(index)
            .expect("an entry's record stays in the window until the entry is settled")
            .payload
    }

    fn ids(&self) -> impl Iterator<Item = EntryId> {
        self.first_entry..self.first_entry + self.entries.len() as u64
    }

    fn record(&self, index: u64) -> Option<&RecordSlot<R>> {
        let i = usize::try_from(index.checked_sub(self.first_record)?).ok()?;
        self.records.get(i)
    }

    fn slot(&self, id: EntryId) -> &EntrySlot<E> {
        self.slot_at(id).expect("entry id in the window")
    }

    fn slot_mut(&mut self, id: EntryId) -> &mut EntrySlot<E> {
        let i = self.index(id).expect("entry id in the window");
        &mut self.entries[i]
    }
}

#[cfg(test)]
mod tests;
