//! A source's record to its entries: the one way the live relay, backfill, `test-route` and
//! `redrive` take a stream record (in the Pipes JSON shape) to what PutEvents receives.
//!
//! The rules, listed once:
//! - the record's `eventSourceARN` is its stream's ARN (a backfilled or pasted record gets it),
//!   written into the record when routing reads it ([`Router::reads_source_arn`]): a record
//!   parsed for routing holds only what routing reads, and the record's tree is dropped once
//!   routed;
//! - its event id is [`stable_event_id`] under the source's `event_id_attribute`;
//! - its trace context is read from the source's `trace_context_attribute` (and its
//!   `tracestate` from `trace_state_attribute`); a malformed one is **ignored and reported** ([`Routed::trace_ignored`]), never a reason to hold the record
//!   back — each caller says so in its own way (the relay counts and logs it, `test-route`
//!   shows it);
//! - every matching route renders it, in route order ([`Router::route_traced`]).

use std::time::SystemTime;

use serde_json::Value;

use super::image::ImageTexts;
use super::pattern::fields::ReadFields;
use super::router::{stable_event_id, Entry, RouteError, Router};
use super::trace::{TraceContext, TraceError};

/// What a source says about reading its outbox rows (`source.event_id_attribute`,
/// `source.trace_context_attribute`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPolicy {
    /// The row attribute holding the stable event id (`None`: the stream record's `eventID`).
    pub event_id_attribute: Option<String>,
    /// The row attribute holding a W3C `traceparent` (`None`: not read).
    pub trace_context_attribute: Option<String>,
    /// The row attribute holding the W3C `tracestate` that goes with it (`None`: not read).
    pub trace_state_attribute: Option<String>,
}

/// A record taken through a source's routes.
#[derive(Debug)]
pub struct Routed {
    /// The record's stable event id.
    pub event_id: String,
    /// The valid trace context the row carries, if any.
    pub trace: Option<TraceContext>,
    /// The row's trace context was malformed and is left out (the record goes on without it).
    pub trace_ignored: Option<TraceError>,
    /// One result per matching route, in route order: its entry, or why it cannot render.
    pub results: Vec<Result<Entry, RouteError>>,
}

impl RecordPolicy {
    /// The record's trace context under this policy: `(valid one, why a present one is
    /// ignored)`.
    #[must_use]
    pub fn trace_of(&self, record: &Value) -> (Option<TraceContext>, Option<TraceError>) {
        let Some(attribute) = self.trace_context_attribute.as_deref() else {
            return (None, None);
        };
        match TraceContext::of_record(record, attribute) {
            Ok(Some(mut trace)) => {
                let state = self
                    .trace_state_attribute
                    .as_deref()
                    .and_then(|a| trace.add_state_of(record, a).err());
                (Some(trace), state)
            }
            Ok(None) => (None, None),
            Err(e) => (None, Some(e)),
        }
    }

    /// Every part of a record [`RecordPolicy::route`] reads through `router`: the router's
    /// [`Router::reads`], the `eventID`, and the row attributes this policy names (in every
    /// image that may hold them).
    #[must_use]
    pub fn reads(&self, router: &Router) -> ReadFields {
        let mut reads = router.reads().clone();
        reads.add_path(&["eventID"]);
        if let Some(attribute) = &self.event_id_attribute {
            for image in ["Keys", "NewImage", "OldImage"] {
                reads.add_path(&["dynamodb", image, attribute]);
            }
        }
        let trace = [&self.trace_context_attribute, &self.trace_state_attribute];
        for attribute in trace.into_iter().flatten() {
            for image in ["NewImage", "OldImage"] {
                reads.add_path(&["dynamodb", image, attribute]);
            }
        }
        reads
    }

    /// Takes `record`, read from the stream `stream_arn`, through `router` (see the module
    /// documentation for the rules). `images`: the record's images kept as text
    /// ([`ReadFields::parse`]); none for a record parsed whole.
    #[must_use]
    pub fn route(
        &self,
        router: &Router,
        record: &mut Value,
        images: ImageTexts<'_>,
        stream_arn: &str,
        created_at: Option<SystemTime>,
    ) -> Routed {
        if router.reads_source_arn() {
            set_source_arn(record, stream_arn);
        }
        let event_id = stable_event_id(record, self.event_id_attribute.as_deref());
        let (trace, trace_ignored) = self.trace_of(record);
        let results = router.route_traced(
            record,
            images,
            stream_arn,
            &event_id,
            created_at,
            trace.as_ref(),
        );
        Routed {
            event_id,
            trace,
            trace_ignored,
            results,
        }
    }
}

/// The first rule: `record`'s `eventSourceARN` is `stream_arn`, the stream it was read from
/// (also for a dead letter's copy of the record).
pub fn set_source_arn(record: &mut Value, stream_arn: &str) {
    if let Some(object) = record.as_object_mut() {
        object.insert(
            "eventSourceARN".to_owned(),
            Value::String(stream_arn.to_owned()),
        );
    }
}
