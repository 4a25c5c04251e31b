//! Which record may be checkpointed after some of a page's entries are settled. Pure.

/// `entry_records[i]` is the index (in the page) of the record that produced entry `i`; entries
/// are in record order, so it never decreases. After the first `settled` entries are settled
/// (accepted, or given up on and reported), every record before the first unsettled entry's
/// record is fully handled, including records that produced no entry at all.
///
/// Returns the index of the last fully handled record, or `None` if there is none.
#[must_use]
pub fn settled_through(entry_records: &[usize], settled: usize, records: usize) -> Option<usize> {
    debug_assert!(entry_records.windows(2).all(|w| w[0] <= w[1]));
    match entry_records.get(settled) {
        Some(&first_unsettled) => first_unsettled.checked_sub(1),
        None => records.checked_sub(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_without_entries_are_covered_once_the_entries_before_them_settle() {
        // Records 0..5; record 1 and 3 matched no route; record 2 produced two entries.
        let entry_records = [0, 2, 2, 4];
        assert_eq!(settled_through(&entry_records, 0, 5), None);
        assert_eq!(settled_through(&entry_records, 1, 5), Some(1));
        assert_eq!(
            settled_through(&entry_records, 2, 5),
            Some(1),
            "record 2 half done"
        );
        assert_eq!(settled_through(&entry_records, 3, 5), Some(3));
        assert_eq!(settled_through(&entry_records, 4, 5), Some(4));
        assert_eq!(settled_through(&[], 0, 3), Some(2), "all filtered out");
        assert_eq!(settled_through(&[], 0, 0), None);
    }

    proptest! {
        #[test]
        fn the_checkpoint_never_passes_an_unsettled_entry(
            per_record in proptest::collection::vec(0usize..4, 1..30),
            settled_frac in 0.0f64..=1.0,
        ) {
            let entry_records: Vec<usize> = per_record.iter().enumerate()
                .flat_map(|(r, &n)| std::iter::repeat_n(r, n)).collect();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let settled = ((entry_records.len() as f64) * settled_frac) as usize;
            let through = settled_through(&entry_records, settled, per_record.len());
            if let Some(last) = through {
                // No unsettled entry belongs to a record at or before the checkpoint.
                prop_assert!(entry_records[settled..].iter().all(|&r| r > last));
            }
            // And the checkpoint is as far as it may go.
            let next = through.map_or(0, |t| t + 1);
            if next < per_record.len() {
                prop_assert!(entry_records[settled..].contains(&next));
            }
        }
    }
}
