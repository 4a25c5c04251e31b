//! How many PutEvents calls one shard may have in flight right now: between 1 and
//! `publisher.max_in_flight_per_shard`, adapted to how the calls fare. Pure: the shard worker
//! reports each call's round trip and whether it had to be retried.
//!
//! More calls at once only help while the service answers them as fast as one; when calls
//! queue (a saturated endpoint, a throttled account, a busy CPU), more of them only add
//! latency, slow the lease table's calls behind them, and, past a timeout, re-send events
//! that were in fact accepted. So the limit follows the answers, as TCP's congestion window
//! does (slow start, then additive increase, multiplicative decrease):
//! - a shard starts with one call in flight (a new owner usually takes over during an
//!   incident, and ten calls at once at an endpoint that is already saturated would queue the
//!   lease table's calls behind them); its first answer, unqueued by its own calls, is the
//!   round trip the later ones are compared with;
//! - a call answered in at most twice the fastest round trip seen (plus [`JITTER`]) and
//!   without a retry raises the limit by 1 until the first decrease (the window doubles every
//!   round trip: 1, 2, 4, 8 ... up to `max` in a few round trips), and by `1 / limit` after
//!   it (about one call per window of calls);
//! - a call that was slower than that, or had to be retried, halves it (not below 1), at most
//!   once per window: only a call started after the last decrease decreases it again, so the
//!   answers of one crowded window count once.
//!
//! Invariants (property-tested below): the limit stays within `1..=max`; it never drops on
//! answers that are fast and clean; once answers are fast and clean again it climbs back to
//! `max`.

use std::time::Duration;

/// Round trips up to this much above twice the fastest one are not a sign of queueing
/// (scheduling noise at sub-millisecond round trips).
pub const JITTER: Duration = Duration::from_millis(10);

/// A call as the limit sees it: its number among the shard's calls (from [`CallLimit::start`]).
pub type Ticket = u64;

#[derive(Debug, Clone)]
pub struct CallLimit {
    max: usize,
    limit: f64,
    fastest: Option<Duration>,
    started: Ticket,
    /// Calls started before this one do not decrease the limit again.
    decrease_from: Ticket,
    /// No decrease yet: grow by one call per clean answer.
    slow_start: bool,
}

impl CallLimit {
    /// Starts at one call; `max` is at least 1.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            limit: 1.0,
            fastest: None,
            started: 0,
            decrease_from: 0,
            slow_start: true,
        }
    }

    /// The calls that may be in flight now.
    #[must_use]
    pub fn get(&self) -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = self.limit.floor() as usize;
        whole.clamp(1, self.max)
    }

    /// A call goes out: its ticket, for [`CallLimit::answered`].
    pub fn start(&mut self) -> Ticket {
        self.started += 1;
        self.started
    }

    /// The call `ticket` was answered after `round_trip`; `retried`: some of its entries (or
    /// the whole call) failed in a way that is retried (throttling, faults, timeouts).
    pub fn answered(&mut self, ticket: Ticket, round_trip: Duration, retried: bool) {
        if !retried {
            self.fastest = Some(self.fastest.map_or(round_trip, |f| f.min(round_trip)));
        }
        let fastest = self.fastest.unwrap_or(round_trip);
        let queued = round_trip > fastest.saturating_mul(2) + JITTER;
        #[allow(clippy::cast_precision_loss)]
        let max = self.max as f64;
        if retried || queued {
            if ticket > self.decrease_from {
                self.limit = (self.limit / 2.0).max(1.0);
                self.decrease_from = self.started;
                self.slow_start = false;
            }
        } else if self.slow_start {
            self.limit = (self.limit + 1.0).min(max);
        } else {
            self.limit = (self.limit + 1.0 / self.limit).min(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FAST: Duration = Duration::from_millis(30);

    /// Clean, fast answers to every call of a window: the window the next one may use.
    fn clean_window(l: &mut CallLimit, rt: Duration) -> usize {
        let tickets: Vec<Ticket> = (0..l.get()).map(|_| l.start()).collect();
        for t in tickets {
            l.answered(t, rt, false);
        }
        l.get()
    }

    #[test]
    fn starts_at_one_and_doubles_each_clean_round_trip_up_to_max() {
        let mut l = CallLimit::new(10);
        assert_eq!(l.get(), 1);
        let windows: Vec<usize> = (0..5).map(|_| clean_window(&mut l, FAST)).collect();
        assert_eq!(windows, [2, 4, 8, 10, 10]);
    }

    #[test]
    fn after_the_first_decrease_growth_is_one_call_per_window() {
        let mut l = CallLimit::new(64);
        for _ in 0..4 {
            clean_window(&mut l, FAST);
        }
        assert_eq!(l.get(), 16);
        let t = l.start();
        l.answered(t, FAST, true);
        assert_eq!(l.get(), 8);
        let windows: Vec<usize> = (0..3).map(|_| clean_window(&mut l, FAST)).collect();
        assert_eq!(windows, [8, 9, 10], "about one call more per window");
    }

    #[test]
    fn one_means_one() {
        assert_eq!(CallLimit::new(0).get(), 1);
        let mut one = CallLimit::new(1);
        let t = one.start();
        one.answered(t, FAST, false);
        assert_eq!(one.get(), 1);
    }

    #[test]
    fn a_crowded_window_halves_the_limit_once() {
        let mut l = CallLimit::new(10);
        while l.get() < 10 {
            clean_window(&mut l, FAST);
        }
        // Ten calls out at once, all answered slowly: one halving, not ten.
        let tickets: Vec<Ticket> = (0..10).map(|_| l.start()).collect();
        for t in tickets {
            l.answered(t, FAST * 10, false);
        }
        assert_eq!(l.get(), 5);
        // The next window is slow too: halved again.
        let t = l.start();
        l.answered(t, FAST * 10, false);
        assert_eq!(l.get(), 2);
    }

    #[test]
    fn a_retried_call_halves_the_limit() {
        let mut l = CallLimit::new(8);
        clean_window(&mut l, FAST);
        clean_window(&mut l, FAST);
        clean_window(&mut l, FAST);
        assert_eq!(l.get(), 8);
        let t = l.start();
        l.answered(t, FAST, true);
        assert_eq!(l.get(), 4);
    }

    #[test]
    fn round_trips_within_twice_the_fastest_keep_the_limit() {
        let mut l = CallLimit::new(8);
        for rt in [FAST, FAST * 2, FAST + FAST / 2, FAST * 2 + JITTER] {
            let t = l.start();
            l.answered(t, rt, false);
        }
        assert_eq!(l.get(), 5, "four clean answers in slow start: 1 + 4");
    }

    proptest! {
        /// Whatever the answers, the limit stays within 1..=max; fast, clean answers never
        /// lower it; and after a run of them it is back at max.
        #[test]
        fn the_limit_stays_in_bounds_and_recovers(
            max in 1usize..64,
            answers in proptest::collection::vec((1u64..2_000, any::<bool>(), 0usize..12), 1..200),
        ) {
            let mut l = CallLimit::new(max);
            let mut out: Vec<Ticket> = Vec::new();
            for (ms, retried, start) in answers {
                for _ in 0..start {
                    out.push(l.start());
                }
                let Some(t) = out.pop() else { continue };
                l.answered(t, Duration::from_millis(ms), retried);
                prop_assert!((1..=max).contains(&l.get()));
            }
            let fastest = l.fastest.unwrap_or(FAST);
            let mut before = l.get();
            for _ in 0..(max * max + 1) {
                let t = l.start();
                l.answered(t, fastest, false);
                prop_assert!(l.get() >= before, "a fast, clean answer lowered the limit");
                before = l.get();
            }
            prop_assert_eq!(l.get(), max);
        }
    }
}
