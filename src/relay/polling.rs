//! How long a shard's reader pauses before its next GetRecords, from what the last one
//! returned (pure). The rules, listed once:
//! - a full page: no pause (the shard is behind: read back to back, as KCL's catch-up);
//! - a page with records, not full: `busy` (records flow and the shard is caught up);
//! - an empty page: `idle`, doubled for each further empty page in a row, up to
//!   `idle_ceiling` (`source.idle_poll_interval`; unset, the pause stays `idle`); any page
//!   with records starts the doubling over.
//!
//! An idle shard then costs about one billed GetRecords per `idle_ceiling`, and the first
//! record after an idle spell waits at most that long to be read.

use std::time::Duration;

/// The pauses a source's settings allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollIntervals {
    /// After an empty page (`source.poll_interval`).
    pub idle: Duration,
    /// After a page with records, not full (`source.busy_poll_interval`).
    pub busy: Duration,
    /// What empty pages in a row back off to (`source.idle_poll_interval`); `None`: no
    /// backoff.
    pub idle_ceiling: Option<Duration>,
    /// The page size asked for (`source.max_records_per_poll`): a page this long is full.
    pub full_page: usize,
}

/// A reader's polling state: how many empty pages in a row it has read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polling {
    empty_in_a_row: u32,
}

impl Polling {
    /// The pause after a page of `records` records (see the module documentation).
    #[must_use]
    pub fn after_page(&mut self, records: usize, intervals: &PollIntervals) -> Duration {
        if records > 0 {
            self.empty_in_a_row = 0;
            return if records >= intervals.full_page {
                Duration::ZERO
            } else {
                intervals.busy
            };
        }
        self.empty_in_a_row = self.empty_in_a_row.saturating_add(1);
        match intervals.idle_ceiling {
            None => intervals.idle,
            Some(ceiling) => {
                let doublings = (self.empty_in_a_row - 1).min(31);
                intervals
                    .idle
                    .saturating_mul(1 << doublings)
                    .min(ceiling.max(intervals.idle))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn intervals(ceiling: Option<u64>) -> PollIntervals {
        PollIntervals {
            idle: Duration::from_secs(1),
            busy: Duration::from_millis(250),
            idle_ceiling: ceiling.map(Duration::from_secs),
            full_page: 1000,
        }
    }

    #[test]
    fn empty_pages_in_a_row_double_the_pause_up_to_the_ceiling_and_records_start_it_over() {
        let i = intervals(Some(30));
        let mut p = Polling::default();
        let pauses: Vec<u64> = (0..7).map(|_| p.after_page(0, &i).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(p.after_page(3, &i), Duration::from_millis(250));
        assert_eq!(p.after_page(0, &i), Duration::from_secs(1));
        assert_eq!(p.after_page(1000, &i), Duration::ZERO);
        assert_eq!(p.after_page(0, &i), Duration::from_secs(1));
    }

    proptest! {
        /// Unset, the ceiling changes nothing: every empty page pauses `idle`, as before the
        /// setting existed; set, a pause is never above it, and a page with records pauses
        /// as if no empty page had come before.
        #[test]
        fn pauses_follow_the_rules(
            pages in proptest::collection::vec(prop_oneof![Just(0usize), 1usize..999, Just(1000usize)], 1..200),
            ceiling in proptest::option::of(1u64..120),
        ) {
            let set = intervals(ceiling);
            let unset = intervals(None);
            let (mut with, mut without) = (Polling::default(), Polling::default());
            for &records in &pages {
                let pause = with.after_page(records, &set);
                let plain = without.after_page(records, &unset);
                let expected_plain = match records {
                    0 => unset.idle,
                    1000 => Duration::ZERO,
                    _ => unset.busy,
                };
                prop_assert_eq!(plain, expected_plain);
                if records > 0 || ceiling.is_none() {
                    prop_assert_eq!(pause, plain);
                } else {
                    prop_assert!(pause >= set.idle);
                    prop_assert!(pause <= Duration::from_secs(ceiling.unwrap_or(0)).max(set.idle));
                }
            }
        }
    }
}
