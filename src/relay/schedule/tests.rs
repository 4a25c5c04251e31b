use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// A record `r` with one entry per key in `keys` (payload: (record, position)).
fn record(r: u64, page: u64, last: bool, keys: &[&str]) -> NewRecord<u64, (u64, usize)> {
    NewRecord {
        payload: r,
        bytes: 100,
        page,
        last_of_page: last,
        entries: keys
            .iter()
            .enumerate()
            .map(|(i, k)| NewEntry {
                payload: (r, i),
                lane: 0,
                key: Some((*k).to_owned()),
                size: 10,
                poison: false,
            })
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn per_key_batches_take_one_entry_per_key_and_wait_for_the_keys_head() {
    let now = Instant::now();
    let mut s = Schedule::new(Order::PerKey { max_in_flight: 4 });
    s.push(record(0, 0, false, &["a"]));
    s.push(record(1, 0, false, &["a"]));
    s.push(record(2, 0, false, &["b"]));
    s.push(record(3, 0, true, &["c"]));
    let first = s.next_batch(now, 10, 1000).expect("a batch");
    // a's second entry waits for its first.
    assert_eq!(
        first.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(0, 0), (2, 0), (3, 0)]
    );
    assert!(
        s.next_batch(now, 10, 1000).is_none(),
        "a's next entry waits"
    );
    // a is throttled, b and c accepted: the watermark stays before record 0.
    let later = now + Duration::from_millis(50);
    let dead = s.answered(
        &first,
        &[
            Outcome::RetryAt(later),
            Outcome::Accepted,
            Outcome::Accepted,
        ],
    );
    assert!(dead.is_empty());
    assert_eq!(s.advance(), None);
    assert!(
        s.next_batch(now, 10, 1000).is_none(),
        "the retry is not due, a's next must wait"
    );
    assert_eq!(s.next_retry(), Some(later));
    let retry = s.next_batch(later, 10, 1000).expect("the retry");
    assert_eq!(
        retry.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(0, 0)]
    );
    s.answered(&retry, &[Outcome::Accepted]);
    assert_eq!(
        s.advance(),
        Some(Passed {
            record: 0,
            page_end: false,
            count: 1,
        })
    );
    let next = s.next_batch(later, 10, 1000).expect("a's second entry");
    assert_eq!(
        next.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(1, 0)]
    );
    s.answered(&next, &[Outcome::Accepted]);
    assert_eq!(
        s.advance(),
        Some(Passed {
            record: 3,
            page_end: true,
            count: 3,
        })
    );
    assert!(s.is_empty());
}

#[tokio::test(start_paused = true)]
async fn strict_order_retries_a_batch_before_the_next_and_never_mixes_pages() {
    let now = Instant::now();
    let mut s = Schedule::new(Order::Strict);
    for r in 0..3 {
        s.push(record(r, 0, r == 2, &["x", "x"]));
    }
    s.push(record(3, 1, true, &["y"]));
    let b1 = s.next_batch(now, 4, 1000).expect("batch");
    assert_eq!(
        b1.len(),
        4,
        "same key, one batch: strict batches are consecutive"
    );
    assert!(s.next_batch(now, 4, 1000).is_none(), "one call at a time");
    let at = now + Duration::from_millis(10);
    s.answered(
        &b1,
        &[
            Outcome::Accepted,
            Outcome::RetryAt(at),
            Outcome::Accepted,
            Outcome::RetryAt(at),
        ],
    );
    assert!(
        s.next_batch(now, 4, 1000).is_none(),
        "retries first, when due"
    );
    let retry = s.next_batch(at, 4, 1000).expect("retry");
    assert_eq!(
        retry.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(0, 1), (1, 1)]
    );
    s.answered(&retry, &[Outcome::Accepted, Outcome::Accepted]);
    let b2 = s.next_batch(at, 4, 1000).expect("rest of page 0");
    assert_eq!(
        b2.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(2, 0), (2, 1)]
    );
    s.answered(&b2, &[Outcome::Accepted, Outcome::Accepted]);
    assert_eq!(
        s.advance(),
        Some(Passed {
            record: 2,
            page_end: true,
            count: 3,
        })
    );
    let b3 = s.next_batch(at, 4, 1000).expect("page 1");
    assert_eq!(
        b3.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(3, 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_split_call_sends_each_entry_alone_and_dead_letters_hold_their_key() {
    let now = Instant::now();
    let mut s = Schedule::new(Order::PerKey { max_in_flight: 2 });
    s.push(record(0, 0, false, &["a", "b"]));
    s.push(record(1, 0, true, &["a"]));
    let b = s.next_batch(now, 10, 1000).expect("batch");
    assert_eq!(b.len(), 2);
    s.answered(&b, &[Outcome::Split, Outcome::Split]);
    let solo = s.next_batch(now, 10, 1000).expect("solo");
    assert_eq!(solo.len(), 1);
    let solo2 = s.next_batch(now, 10, 1000).expect("second solo");
    assert_eq!(solo2.len(), 1);
    let dead = s.answered(&solo, &[Outcome::DeadLetter]);
    assert_eq!(dead, solo);
    assert!(
        s.next_batch(now, 10, 1000).is_none(),
        "a's next waits for the dead letter"
    );
    s.dead_lettered(dead[0]);
    s.answered(&solo2, &[Outcome::Accepted]);
    let last = s.next_batch(now, 10, 1000).expect("a's second");
    s.answered(&last, &[Outcome::Accepted]);
    assert_eq!(s.advance().map(|p| p.record), Some(1));
}

#[tokio::test(start_paused = true)]
async fn stopping_finishes_every_record_up_to_the_last_started_and_drops_the_rest() {
    let now = Instant::now();
    let mut s = Schedule::new(Order::PerKey { max_in_flight: 1 });
    s.push(record(0, 0, false, &["a"]));
    s.push(record(1, 0, false, &["a"]));
    s.push(record(2, 0, false, &["b"]));
    s.push(record(3, 0, true, &["c"]));
    let b = s.next_batch(now, 2, 1000).expect("batch");
    // Records 0 and 2 started; record 1 (before 2) must still be finished; 3 is dropped.
    assert_eq!(
        b.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(0, 0), (2, 0)]
    );
    s.stop();
    assert_eq!(s.held_records(), 3);
    s.answered(&b, &[Outcome::Accepted, Outcome::Accepted]);
    let rest = s.next_batch(now, 2, 1000).expect("record 1");
    assert_eq!(
        rest.iter().map(|&id| *s.entry(id)).collect::<Vec<_>>(),
        [(1, 0)]
    );
    s.answered(&rest, &[Outcome::Accepted]);
    assert_eq!(s.advance().map(|p| p.record), Some(2));
    assert!(s.is_empty());
}

#[tokio::test(start_paused = true)]
async fn poison_entries_are_dead_lettered_at_once_and_records_without_entries_pass() {
    let now = Instant::now();
    let mut s: Schedule<u64, &str> = Schedule::new(Order::PerKey { max_in_flight: 2 });
    let poison = s.push(NewRecord {
        payload: 0,
        bytes: 1,
        page: 0,
        last_of_page: false,
        entries: vec![NewEntry {
            payload: "bad",
            lane: 0,
            key: None,
            size: 0,
            poison: true,
        }],
    });
    s.push(NewRecord {
        payload: 1,
        bytes: 1,
        page: 0,
        last_of_page: true,
        entries: vec![],
    });
    assert_eq!(poison.len(), 1);
    assert!(s.next_batch(now, 10, 1000).is_none());
    assert_eq!(s.advance(), None, "the poison entry is not settled yet");
    s.dead_lettered(poison[0]);
    assert_eq!(
        s.advance(),
        Some(Passed {
            record: 1,
            page_end: true,
            count: 2,
        })
    );
}

/// A scripted run: keys per record, then for each answer a random outcome and a random
/// choice of which call out answers first.
#[derive(Debug, Clone)]
struct Script {
    keys: Vec<Vec<u8>>,
    answers: Vec<(u8, u8)>,
    max_in_flight: usize,
    max_entries: usize,
    stop_after: Option<usize>,
}

fn script() -> impl Strategy<Value = Script> {
    (
        proptest::collection::vec(proptest::collection::vec(0u8..6, 0..3), 1..40),
        proptest::collection::vec((any::<u8>(), any::<u8>()), 400),
        1usize..6,
        1usize..5,
        proptest::option::of(0usize..60),
    )
        .prop_map(
            |(keys, answers, max_in_flight, max_entries, stop_after)| Script {
                keys,
                answers,
                max_in_flight,
                max_entries,
                stop_after,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// Random keys, random outcomes, calls answered in any order: per key, entries are
    /// submitted and settled in record order; calls out never exceed the bound; the
    /// watermark never passes an unsettled entry; everything ends settled (or, after a stop,
    /// nothing after the last started record was sent).
    #[test]
    fn the_schedule_keeps_its_invariants(script in script()) {
        let order = Order::for_in_flight(script.max_in_flight);
        let mut s: Schedule<u64, (u64, usize, u8)> = Schedule::new(order);
        for (r, keys) in script.keys.iter().enumerate() {
            let r = r as u64;
            s.push(NewRecord {
                payload: r,
                bytes: 1,
                page: r / 7,
                last_of_page: r % 7 == 6,
                entries: keys.iter().enumerate().map(|(i, &k)| NewEntry {
                    payload: (r, i, k),
                    // Keys of different lanes (bus kinds, Custom Event Buses) mix in a record.
                    lane: u32::from(k % 3),
                    key: Some(format!("k{k}")),
                    size: 1,
                    poison: false,
                }).collect(),
            });
        }
        let mut now = Instant::now();
        let mut out: Vec<Vec<EntryId>> = Vec::new();
        let mut settled: HashMap<(u64, usize), bool> = HashMap::new();
        // Per key: the (record, position) of entries as they were first sent, and settled.
        let mut sent_order: HashMap<u8, Vec<(u64, usize)>> = HashMap::new();
        let mut settled_order: HashMap<u8, Vec<(u64, usize)>> = HashMap::new();
        let mut watermark: Option<u64> = None;
        let mut dead_letters: Vec<EntryId> = Vec::new();
        let mut answers = script.answers.iter().copied().cycle();
        let mut calls = 0usize;
        let mut stopped = false;
        for _ in 0..5000 {
            if let Some(p) = s.advance() {
                // Every entry of every record up to the watermark is settled.
                for (r, keys) in script.keys.iter().enumerate().take(p.record as usize + 1) {
                    for i in 0..keys.len() {
                        prop_assert!(settled.contains_key(&(r as u64, i)), "watermark {} passed unsettled entry {:?}", p.record, (r, i));
                    }
                }
                prop_assert!(watermark.is_none_or(|w| p.record > w));
                watermark = Some(p.record);
            }
            if let Some(limit) = script.stop_after {
                if calls >= limit && !stopped {
                    s.stop();
                    stopped = true;
                }
            }
            // Lane 0 takes the script's entries per call, the others a different count.
            let limits = |lane: Lane| CallLimits {
                max_entries: if lane == 0 { script.max_entries } else { 2 + lane as usize },
                max_bytes: 1000,
            };
            while let Some(batch) = s.peek_lane_batch(now, limits) {
                s.start(&batch);
                calls += 1;
                let lanes: HashSet<u8> = batch.iter().map(|&id| s.entry(id).2 % 3).collect();
                prop_assert_eq!(lanes.len(), 1, "one call mixes lanes {:?}", lanes);
                let lane = lanes.into_iter().next().map_or(0, u32::from);
                prop_assert!(batch.len() <= limits(lane).max_entries);
                for &id in &batch {
                    let (r, i, k) = *s.entry(id);
                    if s.attempts(id) == 1 {
                        // Everything before it with the same key is settled (per-key mode).
                        if order != Order::Strict {
                            let before = sent_order.get(&k).map_or(0, Vec::len);
                            let done = settled_order.get(&k).map_or(0, Vec::len);
                            prop_assert_eq!(before, done, "entry {:?} of key {} sent while an earlier one is unsettled", (r, i), k);
                        }
                        sent_order.entry(k).or_default().push((r, i));
                    }
                }
                out.push(batch);
                let bound = match order { Order::Strict => 1, Order::PerKey { max_in_flight } => max_in_flight };
                prop_assert!(s.in_flight() <= bound);
            }
            if let Some(id) = dead_letters.pop() {
                let (r, i, k) = *s.entry(id);
                s.dead_lettered(id);
                settled.insert((r, i), true);
                settled_order.entry(k).or_default().push((r, i));
            } else if !out.is_empty() {
                let (pick, roll) = answers.next().unwrap_or((0, 0));
                let batch = out.remove(usize::from(pick) % out.len());
                let outcomes: Vec<Outcome> = batch.iter().enumerate().map(|(j, _)| {
                    match roll.wrapping_add(j as u8 * 37) % 10 {
                        0 | 1 => Outcome::RetryAt(now + Duration::from_millis(u64::from(roll % 5))),
                        2 if batch.len() > 1 => Outcome::Split,
                        3 => Outcome::DeadLetter,
                        _ => Outcome::Accepted,
                    }
                }).collect();
                for (&id, o) in batch.iter().zip(&outcomes) {
                    if *o == Outcome::Accepted {
                        let (r, i, k) = *s.entry(id);
                        settled.insert((r, i), true);
                        settled_order.entry(k).or_default().push((r, i));
                    }
                }
                dead_letters.extend(s.answered(&batch, &outcomes));
            } else if let Some(t) = s.next_retry().filter(|&t| t > now) {
                now = t;
            } else if s.is_empty() || stopped {
                break;
            } else {
                prop_assert!(false, "stuck at {:?} (next retry {:?}, peek {:?}): nothing out, nothing due, yet not empty: {:#?}", now, s.next_retry(), s.peek_batch(now, script.max_entries, 1000), s);
            }
        }
        // Per key, entries settle in the order they were sent, which is record order.
        if order != Order::Strict {
            for (k, sent) in &sent_order {
                let mut sorted = sent.clone();
                sorted.sort_unstable();
                prop_assert_eq!(sent, &sorted, "key {} sent out of record order", k);
                let done = settled_order.get(k).cloned().unwrap_or_default();
                prop_assert_eq!(&done[..], &sent[..done.len()], "key {} settled out of order", k);
            }
        }
        if stopped {
            prop_assert!(out.is_empty() && dead_letters.is_empty());
            // Nothing sent after the last started record... and everything up to it settled.
            prop_assert!(s.is_empty(), "a stopped schedule drains");
        } else {
            prop_assert!(s.is_empty(), "everything settles");
            let total: usize = script.keys.iter().map(Vec::len).sum();
            prop_assert_eq!(settled.len(), total);
        }
    }
}
