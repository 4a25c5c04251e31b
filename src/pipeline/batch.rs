//! Cutting entries into PutEvents requests under the service limits, keeping their order.

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

/// How many entries and bytes one PutEvents call may carry: the one rule every batch is cut
/// by (the live window's calls, backfill's, the benchmarks').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl CallLimits {
    /// A call to a bus of `kind`: its own maximum of entries (or `max_batch_entries`, the
    /// config's `publisher.max_batch_entries`, held within 1 and that maximum) and bytes.
    #[must_use]
    pub fn of(kind: BusKind, max_batch_entries: Option<usize>) -> Self {
        Self {
            max_entries: max_batch_entries
                .map_or(kind.max_entries(), |m| m.clamp(1, kind.max_entries())),
            max_bytes: kind.max_request_bytes(),
        }
    }

    /// Whether a call holding `entries` entries of `bytes` in all may take one more of
    /// `size`. The first entry is always taken (routing refuses entries over the limit, so
    /// one that is carries itself to its own failure).
    #[must_use]
    pub fn admits(&self, entries: usize, bytes: usize, size: usize) -> bool {
        entries == 0 || (entries < self.max_entries && bytes + size <= self.max_bytes)
    }
}

/// What the cutter needs of an item to place it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Which calls it may share: items of one lane only (see [`super::Router::call_lane`]).
    pub lane: u32,
    pub limits: CallLimits,
    /// Its size as [`entry_size`] counts it.
    pub size: usize,
    /// It must travel alone (a call refused because of one of its entries is split).
    pub alone: bool,
}

/// Cuts items into calls: indices, per lane, in order, each call within its lane's limits;
/// an item that must travel alone gets a call of its own. Every item is in exactly one call.
#[must_use]
pub fn cut<T>(items: &[T], place: impl Fn(&T) -> Placement) -> Vec<Vec<usize>> {
    let mut open: Vec<(u32, Vec<usize>, usize)> = Vec::new();
    let mut done = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = place(item);
        if p.alone {
            done.push(vec![i]);
            continue;
        }
        if let Some(at) = open.iter().position(|(l, _, _)| *l == p.lane) {
            let (_, ids, bytes) = &open[at];
            if !p.limits.admits(ids.len(), *bytes, p.size) {
                let (_, full, _) = open.remove(at);
                done.push(full);
            }
        }
        match open.iter_mut().find(|(l, _, _)| *l == p.lane) {
            Some((_, ids, bytes)) => {
                ids.push(i);
                *bytes += p.size;
            }
            None => open.push((p.lane, vec![i], p.size)),
        }
    }
    done.extend(open.into_iter().map(|(_, ids, _)| ids));
    done
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

    fn classic(e: &Entry) -> Placement {
        Placement {
            lane: 0,
            limits: CallLimits::of(BusKind::Classic, Some(10)),
            size: entry_size(e),
            alone: false,
        }
    }

    #[test]
    fn splits_on_the_byte_limit_before_the_entry_limit() {
        // Two entries of 400 KiB fit the 1 MiB call, three do not.
        let entries: Vec<_> = (0..4).map(|_| entry(400 * 1024, false)).collect();
        assert_eq!(cut(&entries, classic), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn an_oversized_entry_travels_alone() {
        let entries = vec![
            entry(10, false),
            entry(MAX_REQUEST_BYTES + 1, false),
            entry(10, false),
        ];
        assert_eq!(cut(&entries, classic), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn the_configured_entry_cap_is_held_within_each_kind() {
        assert_eq!(CallLimits::of(BusKind::Classic, Some(0)).max_entries, 1);
        assert_eq!(CallLimits::of(BusKind::Classic, Some(50)).max_entries, 10);
        assert_eq!(CallLimits::of(BusKind::Custom, Some(50)).max_entries, 50);
        assert_eq!(CallLimits::of(BusKind::Custom, None).max_entries, 100);
    }

    proptest! {
        #[test]
        fn calls_respect_limits_keep_order_and_lanes(
            items in proptest::collection::vec((0usize..120_000, 0u32..3, proptest::bool::weighted(0.1)), 0..60),
            max in 1usize..=10,
        ) {
            let place = |&(size, lane, alone): &(usize, u32, bool)| Placement {
                lane,
                limits: CallLimits { max_entries: max, max_bytes: MAX_REQUEST_BYTES },
                size,
                alone,
            };
            let calls = cut(&items, place);
            let mut seen = vec![false; items.len()];
            for call in &calls {
                prop_assert!(!call.is_empty());
                prop_assert!(call.len() <= max);
                prop_assert!(call.windows(2).all(|w| w[0] < w[1]), "order kept");
                prop_assert!(call.iter().all(|&i| items[i].1 == items[call[0]].1), "one lane");
                prop_assert!(call.len() == 1 || call.iter().all(|&i| !items[i].2), "alone is alone");
                let bytes: usize = call.iter().map(|&i| items[i].0).sum();
                prop_assert!(bytes <= MAX_REQUEST_BYTES || call.len() == 1);
                for &i in call {
                    prop_assert!(!seen[i], "once");
                    seen[i] = true;
                }
            }
            prop_assert!(seen.iter().all(|&s| s), "every item is in a call");
        }
    }
}
