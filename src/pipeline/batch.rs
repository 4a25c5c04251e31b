//! Cutting entries into PutEvents requests under the service limits, keeping their order.

use std::ops::Range;

use super::router::Entry;

use super::bus::{BusKind, CLASSIC_MAX_ENTRIES, CLASSIC_MAX_REQUEST_BYTES};

/// Entries per classic PutEvents request (see [`super::bus`]).
pub const MAX_ENTRIES: usize = CLASSIC_MAX_ENTRIES;

/// Bytes per classic PutEvents request, summed over entries as [`entry_size`] computes them.
pub const MAX_REQUEST_BYTES: usize = CLASSIC_MAX_REQUEST_BYTES;

/// Size of an entry the way AWS documents it for the classic bus: 14 bytes for `Time` if
/// present, plus the UTF-8 bytes of `Source`, `DetailType`, `Detail` and every `Resources`
/// element (`EventBusName` does not count). For a Custom Event Bus entry, whose sizing AWS
/// does not spell out, its `EventGroupId` and `DeduplicationId` are counted too, so a batch
/// cut by this size never exceeds the request limit.
#[must_use]
pub fn entry_size(entry: &Entry) -> usize {
    let time = if entry.time.is_some() { 14 } else { 0 };
    let system = match entry.bus.kind() {
        BusKind::Classic => 0,
        BusKind::Custom => entry.ordering_key.len() + entry.event_id.len(),
    };
    time + system
        + entry.source.len()
        + entry.detail_type.len()
        + entry.detail.len()
        + entry.resources.iter().map(String::len).sum::<usize>()
}

/// Consecutive ranges of `entries` that each fit one request: at most `max_entries` entries and
/// [`MAX_REQUEST_BYTES`]. Order is kept; every entry is in exactly one range. An entry larger
/// than the byte limit on its own gets a range of its own (routing rejects those before).
#[derive(Debug)]
pub struct Batches<'a> {
    entries: &'a [Entry],
    max_entries: usize,
    start: usize,
}

impl<'a> Batches<'a> {
    /// # Panics
    /// If `max_entries` is 0 or above [`MAX_ENTRIES`] (config validation rules both out).
    #[must_use]
    pub fn new(entries: &'a [Entry], max_entries: usize) -> Self {
        assert!(
            (1..=MAX_ENTRIES).contains(&max_entries),
            "max_entries is validated to 1..=10"
        );
        Self {
            entries,
            max_entries,
            start: 0,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.start >= self.entries.len() {
            return None;
        }
        let start = self.start;
        let mut end = start;
        let mut bytes = 0;
        while end < self.entries.len() && end - start < self.max_entries {
            let size = entry_size(&self.entries[end]);
            if end > start && bytes + size > MAX_REQUEST_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        self.start = end;
        Some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(detail_len: usize, with_time: bool) -> Entry {
        Entry {
            route: 0,
            bus: crate::pipeline::Bus::Classic("bus".into()),
            source: "src".into(),
            detail_type: "T".into(),
            detail: "x".repeat(detail_len),
            resources: vec!["arn:r".into()],
            time: with_time.then(std::time::SystemTime::now),
            ordering_key: String::new(),
            event_id: String::new(),
            trace: None,
        }
    }

    #[test]
    fn entry_size_counts_time_source_detail_type_detail_and_resources() {
        assert_eq!(entry_size(&entry(10, true)), 14 + 3 + 1 + 10 + 5);
        assert_eq!(entry_size(&entry(10, false)), 3 + 1 + 10 + 5);
    }

    #[test]
    fn splits_on_the_byte_limit_before_the_entry_limit() {
        // Two entries of 400 KiB fit the 1 MiB call, three do not.
        let entries: Vec<_> = (0..4).map(|_| entry(400 * 1024, false)).collect();
        let ranges: Vec<_> = Batches::new(&entries, 10).collect();
        assert_eq!(ranges, vec![0..2, 2..4]);
    }

    #[test]
    fn an_oversized_entry_travels_alone() {
        let entries = vec![
            entry(10, false),
            entry(MAX_REQUEST_BYTES + 1, false),
            entry(10, false),
        ];
        let ranges: Vec<_> = Batches::new(&entries, 10).collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..3]);
    }

    proptest! {
        #[test]
        fn batches_respect_limits_and_keep_order(
            sizes in proptest::collection::vec(0usize..120_000, 0..60),
            max in 1usize..=10,
        ) {
            let entries: Vec<_> = sizes.iter().map(|&s| entry(s, true)).collect();
            let mut next = 0;
            for range in Batches::new(&entries, max) {
                prop_assert_eq!(range.start, next, "ranges are consecutive");
                prop_assert!(!range.is_empty());
                prop_assert!(range.len() <= max);
                let bytes: usize = entries[range.clone()].iter().map(entry_size).sum();
                prop_assert!(bytes <= MAX_REQUEST_BYTES || range.len() == 1);
                next = range.end;
            }
            prop_assert_eq!(next, entries.len(), "every entry is batched");
        }
    }
}
