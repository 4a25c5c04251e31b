//! What arrived in a test's queue, and the checks the delivery tests make of it: order per
//! aggregate, events published again, distinct events.

use std::collections::HashMap;

use serde_json::Value;

/// An event as it arrived in the queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// When moto enqueued it (= when PutEvents delivered it), ms since the epoch.
    pub sent_ms: u64,
    /// The SQS message id: the same for a message SQS delivers again (its visibility timeout
    /// ran out before the test deleted it), new for an event the relay published again.
    pub message_id: String,
}

impl Received {
    pub fn event_id(&self) -> &str {
        self.body["detail"]["eventId"].as_str().unwrap_or_default()
    }
    pub fn seq(&self) -> u64 {
        self.body["detail"]["eventData"]["seq"]
            .as_u64()
            .unwrap_or(u64::MAX)
    }
    pub fn written_ms(&self) -> u64 {
        self.body["detail"]["eventData"]["writtenAtMs"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// How many aggregates the rows are spread over.
pub const AGGREGATES: usize = 5;

/// Checks that, per aggregate, the first delivery of each row follows the order the rows were
/// written in (`eventData.seq`). Returns the number of aggregates seen.
pub fn first_deliveries_in_order_per_aggregate(received: &[Received]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in received {
        if !seen.insert(r.event_id().to_owned()) {
            continue;
        }
        let aggregate = r.body["detail"]["eventData"]["aggregate"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let seq = r.seq();
        if let Some(&before) = last.get(&aggregate) {
            assert!(
                before < seq,
                "aggregate {aggregate}: row {seq} first delivered after row {before}"
            );
        }
        last.insert(aggregate, seq);
    }
    last.len()
}

/// Events the relay published more than once: deliveries of an event id under more than one
/// SQS message id (a message SQS itself redelivered keeps its id and is not counted).
pub fn republished(received: &[Received]) -> usize {
    let mut messages = std::collections::HashSet::new();
    let mut events = std::collections::HashSet::new();
    for r in received {
        if messages.insert(r.message_id.as_str()) {
            events.insert(r.event_id());
        }
    }
    messages.len() - events.len()
}

/// Distinct event ids received, and how many deliveries were duplicates.
pub fn distinct(received: &[Received]) -> (std::collections::HashSet<String>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut dups = 0;
    for r in received {
        if !seen.insert(r.event_id().to_owned()) {
            dups += 1;
        }
    }
    (seen, dups)
}
