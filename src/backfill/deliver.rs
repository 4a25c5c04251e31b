//! Publishing one Scan page's entries: the live relay's rules (`relay::settle::decide`) with
//! the same publisher and dead-letter sink. Calls are cut per lane (a classic bus's entries
//! never share a call with a Custom Event Bus's) under each bus kind's limits and sent
//! together; a retryable failure is sent again after the configured backoff, a call refused
//! because of some entry is split, and what cannot be delivered is dead-lettered. The page is
//! settled when every entry is accepted or dead-lettered; only then does its Scan position
//! move on. Order across the page is not kept (a backfill replays rows in Scan order, which
//! is no order at all).

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use crate::pipeline::{cut, entry_size, CallLimits, Entry, Placement, RouteError, Router};
use crate::publish::{
    Attempts, DeadLetter, DeadLetterError, DeadLetterSink, EventPublisher, Origin,
};
use crate::relay::backoff::delay;
use crate::relay::settle::{decide, Failure, RetryPolicy, Sent, Verdict};

/// An entry waiting to be settled, with what its dead letter would need.
#[derive(Debug, Clone)]
pub struct Pending {
    pub entry: Entry,
    /// The backfilled stream record (its dead letter carries it).
    pub record: std::sync::Arc<serde_json::Value>,
    pub created_at: Option<SystemTime>,
    pub attempts: u32,
    pub first_attempt: Option<SystemTime>,
    /// Sent alone: its call was refused because of some entry of it.
    pub alone: bool,
}

/// How a page's entries are published.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a, P, D> {
    pub publisher: &'a P,
    pub dead_letters: &'a D,
    pub router: &'a Router,
    pub policy: RetryPolicy,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `publisher.max_batch_entries`, if set (each bus kind's maximum otherwise).
    pub max_batch_entries: Option<usize>,
    pub stream_arn: &'a str,
    /// Where the letters say the record came from (`backfill-segment-N`).
    pub shard_label: &'a str,
}

/// What became of a page's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    pub published: u64,
    pub dead_lettered: u64,
}

/// The calls for `pending`: indices cut per lane, in order, under the lane's entry and byte
/// limits ([`crate::pipeline::cut`], the live window's rule); an entry sent `alone` gets a
/// call of its own.
#[must_use]
pub fn calls(
    pending: &[Pending],
    router: &Router,
    max_batch_entries: Option<usize>,
) -> Vec<Vec<usize>> {
    cut(pending, |p| Placement {
        lane: router.call_lane(p.entry.route),
        limits: CallLimits::of(p.entry.bus.kind(), max_batch_entries),
        size: entry_size(&p.entry),
        alone: p.alone,
    })
}

/// Publishes `pending` until each entry is accepted or dead-lettered.
///
/// # Errors
/// The dead-letter sink failed: the page is not settled (its position does not move, so a
/// resume sends it again; nothing is lost).
pub async fn settle<P: EventPublisher, D: DeadLetterSink>(
    mut pending: Vec<Pending>,
    d: &Delivery<'_, P, D>,
) -> Result<Settled, DeadLetterError> {
    let mut settled = Settled::default();
    while !pending.is_empty() {
        let calls = calls(&pending, d.router, d.max_batch_entries);
        let now = SystemTime::now();
        for p in &mut pending {
            p.attempts += 1;
            p.first_attempt.get_or_insert(now);
        }
        let answers = join_all(calls.iter().map(|ids| {
            let entries: Vec<Entry> = ids.iter().map(|&i| pending[i].entry.clone()).collect();
            async move { d.publisher.put_events(&entries).await }
        }))
        .await;
        let mut keep = vec![false; pending.len()];
        let mut letters = Vec::new();
        let mut most_attempts = 0;
        for (ids, result) in calls.iter().zip(&answers) {
            let sent: Vec<Sent> = ids
                .iter()
                .map(|&i| Sent {
                    attempts: pending[i].attempts,
                    created_at: pending[i].created_at,
                })
                .collect();
            for (&i, verdict) in ids
                .iter()
                .zip(decide(result, &sent, d.policy, SystemTime::now()))
            {
                match verdict {
                    Verdict::Accepted => settled.published += 1,
                    Verdict::Retry(_) => {
                        keep[i] = true;
                        most_attempts = most_attempts.max(pending[i].attempts);
                    }
                    Verdict::Split(_) => {
                        keep[i] = true;
                        pending[i].alone = true;
                    }
                    Verdict::DeadLetter(failure) => letters.push(letter(&pending[i], failure, d)),
                }
            }
        }
        for letter in &letters {
            d.dead_letters.send(letter).await?;
            settled.dead_lettered += 1;
        }
        pending = pending
            .into_iter()
            .zip(keep)
            .filter_map(|(p, keep)| keep.then_some(p))
            .collect();
        if most_attempts > 0 {
            tokio::time::sleep(delay(d.initial_backoff, d.max_backoff, most_attempts)).await;
        }
    }
    Ok(settled)
}

/// The dead letter of an entry given up on.
fn letter<P, D>(p: &Pending, failure: Failure, d: &Delivery<'_, P, D>) -> DeadLetter {
    let now = SystemTime::now();
    let sequence = sequence_label(&p.record);
    DeadLetter::publish(
        origin(&p.record, &sequence, &p.entry.event_id, d),
        d.router
            .routes()
            .get(p.entry.route)
            .map_or("unknown", crate::pipeline::Route::name),
        &p.entry,
        (&failure.code, &failure.message),
        Attempts {
            count: p.attempts,
            first: p.first_attempt.unwrap_or(now),
            last: now,
        },
    )
}

/// The dead letter of a row that route `e` matched but cannot render for.
#[must_use]
pub fn transform_letter<P, D>(
    e: &RouteError,
    record: &serde_json::Value,
    event_id: &str,
    d: &Delivery<'_, P, D>,
) -> DeadLetter {
    let sequence = sequence_label(record);
    DeadLetter::transform(origin(record, &sequence, event_id, d), e, SystemTime::now())
}

/// Where a backfilled row's letter says it came from.
fn origin<'a, P, D>(
    record: &'a serde_json::Value,
    sequence: &'a str,
    event_id: &'a str,
    d: &Delivery<'a, P, D>,
) -> Origin<'a> {
    Origin {
        stream_arn: d.stream_arn,
        shard_id: d.shard_label,
        sequence_number: sequence,
        event_id,
        record,
    }
}

/// A backfilled record has no sequence number; its letter names its `eventID` there.
#[must_use]
pub fn sequence_label(record: &serde_json::Value) -> String {
    record
        .get("eventID")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::pipeline::route::{DetailSpec, Route, RouteSpec, Target};
    use crate::pipeline::{Bus, BusKind, ImageSelector};

    const CUSTOM: &str =
        "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";

    /// Route 0 to a classic bus, route 1 to a Custom Event Bus.
    fn router() -> Router {
        let spec = |name: &str, bus: Bus| RouteSpec {
            name: name.to_owned(),
            filters: Vec::new(),
            target: Target {
                bus,
                source: "S".into(),
                detail_type: "D".into(),
                resources: Vec::new(),
            },
            detail: DetailSpec::Unmarshall {
                image: ImageSelector::NewImage,
                event_id_field: "eventId".into(),
                trace_context_field: "traceparent".into(),
            },
            expand_json: Vec::new(),
            ordering_key: None,
        };
        let routes = vec![
            spec("classic", Bus::Classic("bus".into())),
            spec("custom", Bus::Custom(CUSTOM.into())),
        ];
        Router::new(
            routes
                .into_iter()
                .map(|s| Route::compile(s).expect("valid route"))
                .collect(),
        )
        .expect("valid patterns")
    }

    fn pending(route: usize, detail_len: usize, alone: bool) -> Pending {
        let bus = if route == 0 {
            Bus::Classic("bus".into())
        } else {
            Bus::Custom(CUSTOM.into())
        };
        Pending {
            entry: Entry {
                route,
                bus,
                source: "S".into(),
                detail_type: "D".into(),
                detail: "x".repeat(detail_len),
                resources: Vec::new(),
                time: None,
                ordering_key: "k".into(),
                event_id: "e".into(),
                trace: None,
            },
            record: std::sync::Arc::new(serde_json::json!({"eventID": "backfill-1"})),
            created_at: None,
            attempts: 0,
            first_attempt: None,
            alone,
        }
    }

    proptest! {
        /// Every entry is in exactly one call; a call holds one bus kind, within its entry
        /// and byte limits (and `max_batch_entries`), in page order; an entry sent alone is
        /// alone.
        #[test]
        fn calls_cover_the_page_once_per_lane_within_limits(
            spec in prop::collection::vec((0usize..2, 0usize..300_000, prop::bool::weighted(0.1)), 0..250),
            max in prop::option::of(1usize..120),
        ) {
            let router = router();
            let page: Vec<Pending> = spec.iter().map(|&(r, len, alone)| pending(r, len, alone)).collect();
            let calls = calls(&page, &router, max);
            let mut seen = vec![0; page.len()];
            for call in &calls {
                prop_assert!(!call.is_empty());
                let kind = page[call[0]].entry.bus.kind();
                let limit = max.map_or(kind.max_entries(), |m| m.min(kind.max_entries()));
                prop_assert!(call.len() <= limit);
                prop_assert!(call.windows(2).all(|w| w[0] < w[1]), "page order");
                let bytes: usize = call.iter().map(|&i| entry_size(&page[i].entry)).sum();
                prop_assert!(call.len() == 1 || bytes <= kind.max_request_bytes());
                for &i in call {
                    seen[i] += 1;
                    prop_assert_eq!(page[i].entry.bus.kind(), kind);
                    if page[i].alone {
                        prop_assert_eq!(call.len(), 1);
                    }
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }

    #[test]
    fn a_full_page_to_a_custom_bus_goes_in_one_call_and_to_a_classic_bus_in_ten() {
        let router = router();
        let custom: Vec<Pending> = (0..100).map(|_| pending(1, 10, false)).collect();
        assert_eq!(calls(&custom, &router, None).len(), 1);
        assert_eq!(BusKind::Custom.max_entries(), 100);
        let classic: Vec<Pending> = (0..100).map(|_| pending(0, 10, false)).collect();
        assert_eq!(calls(&classic, &router, None).len(), 10);
        assert_eq!(calls(&classic, &router, Some(5)).len(), 20);
    }
}
