//! What one PutEvents request may carry: an entry's size as AWS counts it, and each bus
//! kind's limits on a call.

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
/// cut by this size never exceeds the request limit. A `PutRawEvents` entry (a CloudEvent on
/// a Custom Event Bus), whose sizing AWS does not spell out either, counts its `Data` and
/// every `Metadata` key and value, besides those two ids.
#[must_use]
pub fn entry_size(entry: &Entry) -> usize {
    if entry.is_raw() {
        return entry.detail.len()
            + entry.ordering_key.len()
            + entry.event_id.len()
            + entry
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
    }
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

/// How many entries and bytes one PutEvents call may carry: the one rule every call is cut
/// by (the delivery window's, `relay::Window`, which the live relay and backfill share).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail_len: usize, with_time: bool) -> Entry {
        Entry {
            route: 0,
            bus: crate::pipeline::Bus::Classic("bus".into()),
            source: "src".into(),
            detail_type: "T".into(),
            detail: "x".repeat(detail_len),
            format: crate::pipeline::EventFormat::EventBridge,
            metadata: Vec::new(),
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
    fn a_call_admits_entries_up_to_its_count_and_bytes_and_always_its_first() {
        let limits = CallLimits {
            max_entries: 2,
            max_bytes: 100,
        };
        assert!(
            limits.admits(0, 0, 1_000),
            "the first entry, whatever its size"
        );
        assert!(limits.admits(1, 50, 50));
        assert!(!limits.admits(1, 50, 51), "over the bytes");
        assert!(!limits.admits(2, 10, 10), "over the count");
    }

    #[test]
    fn the_configured_entry_cap_is_held_within_each_kind() {
        assert_eq!(CallLimits::of(BusKind::Classic, Some(0)).max_entries, 1);
        assert_eq!(CallLimits::of(BusKind::Classic, Some(50)).max_entries, 10);
        assert_eq!(CallLimits::of(BusKind::Custom, Some(50)).max_entries, 50);
        assert_eq!(CallLimits::of(BusKind::Custom, None).max_entries, 100);
    }
}
