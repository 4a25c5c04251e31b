//! Trace context carried through the outbox: the W3C `traceparent` the API wrote into the
//! outbox row, and the same trace in the X-Ray form that PutEvents' `TraceHeader` takes.
//!
//! Parsing and conversion are the OpenTelemetry crates' (`opentelemetry_sdk`'s W3C
//! `TraceContextPropagator`, `opentelemetry-aws`'s X-Ray propagator), not ours: the X-Ray trace
//! id `1-{8 hex}-{24 hex}` is the W3C trace id's 32 hex digits split after the eighth, the
//! parent is the W3C parent id, `Sampled` the W3C sampled flag, as AWS documents for X-Ray's
//! W3C trace ids.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;

/// A valid trace context of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The W3C `traceparent`, as OpenTelemetry writes it back (`00-{trace}-{parent}-{flags}`).
    pub traceparent: String,
    /// The same trace as an X-Ray tracing header (`Root=1-…;Parent=…;Sampled=…`).
    pub xray_header: String,
    /// The W3C `tracestate` the row carries beside it (`source.trace_state_attribute`), if any.
    pub tracestate: Option<String>,
    span: SpanContext,
}

/// Why a record's trace context is ignored (never a reason to dead-letter it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The attribute holds something other than a string.
    #[error("attribute {attribute:?} is not a string")]
    NotAString { attribute: String },
    /// Not a valid W3C `traceparent` (or an all-zero trace or parent id).
    #[error("attribute {attribute:?} is not a valid W3C traceparent: {value:?}")]
    Invalid { attribute: String, value: String },
    /// Not a valid W3C `tracestate` (the traceparent is kept, without it).
    #[error("attribute {attribute:?} is not a valid W3C tracestate: {value:?}")]
    InvalidState { attribute: String, value: String },
}

impl TraceContext {
    /// Parses a W3C `traceparent`.
    ///
    /// # Errors
    /// When it is not a valid one (the `attribute` names where it came from).
    pub fn from_traceparent(value: &str, attribute: &str) -> Result<Self, TraceError> {
        let invalid = || TraceError::Invalid {
            attribute: attribute.to_owned(),
            value: value.chars().take(100).collect(),
        };
        if !w3c_shape(value) {
            return Err(invalid());
        }
        let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
        let propagator = TraceContextPropagator::new();
        let context = propagator.extract(&carrier);
        let span = context.span().span_context().clone();
        if !span.is_valid() {
            return Err(invalid());
        }
        let xray_header = opentelemetry_aws::trace::xray_propagator::span_context_to_string(&span)
            .ok_or_else(invalid)?;
        Ok(Self {
            traceparent: traceparent_of(&span),
            xray_header,
            tracestate: None,
            span,
        })
    }

    /// Adds the `tracestate` the row carries in `attribute` (`NewImage`, then `OldImage`),
    /// checked by OpenTelemetry's W3C `TraceState` parser; none there leaves it unset.
    ///
    /// # Errors
    /// When the attribute is there but not a valid `tracestate`: the context stays without it
    /// (W3C Trace Context, "tracestate": a vendor may discard an invalid one).
    pub fn add_state_of(&mut self, record: &Value, attribute: &str) -> Result<(), TraceError> {
        let Some(typed) = row_attribute(record, attribute) else {
            return Ok(());
        };
        let invalid = |value: String| TraceError::InvalidState {
            attribute: attribute.to_owned(),
            value: value.chars().take(100).collect(),
        };
        let Some(text) = typed.get("S").and_then(Value::as_str) else {
            return Err(invalid(typed.to_string()));
        };
        match text.parse::<opentelemetry::trace::TraceState>() {
            Ok(state) if !text.trim().is_empty() => {
                self.tracestate = Some(state.header());
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => Err(invalid(text.to_owned())),
        }
    }

    /// The span the row's writer was in: what the relay's batch spans link to.
    #[must_use]
    pub fn span_context(&self) -> SpanContext {
        self.span.clone()
    }

    /// The trace context an outbox row carries in `attribute` (looked up in `NewImage`, then
    /// `OldImage`, as a string): `Ok(None)` when the row has none.
    ///
    /// # Errors
    /// When the attribute is there but not a valid `traceparent`.
    pub fn of_record(record: &Value, attribute: &str) -> Result<Option<Self>, TraceError> {
        let Some(typed) = row_attribute(record, attribute) else {
            return Ok(None);
        };
        let Some(text) = typed.get("S").and_then(Value::as_str) else {
            return Err(TraceError::NotAString {
                attribute: attribute.to_owned(),
            });
        };
        Self::from_traceparent(text, attribute).map(Some)
    }
}

/// The row's typed `attribute`, in `NewImage`, then `OldImage`.
fn row_attribute<'a>(record: &'a Value, attribute: &str) -> Option<&'a Value> {
    ["NewImage", "OldImage"].into_iter().find_map(|image| {
        record
            .get("dynamodb")
            .and_then(|d| d.get(image))
            .and_then(|i| i.get(attribute))
    })
}

/// The field sizes the W3C recommendation fixes, which the propagator does not check on its
/// own (it takes a 31-digit trace id): `{2 hex}-{32 hex}-{16 hex}-{2 hex}`, lowercase, and
/// for a future version anything after that only past another `-`.
fn w3c_shape(value: &str) -> bool {
    if !value.is_ascii() {
        return false;
    }
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (head, rest) = value.split_at(value.len().min(55));
    let parts: Vec<&str> = head.split('-').collect();
    let fields_ok =
        matches!(parts[..], [v, t, p, f] if hex(v, 2) && hex(t, 32) && hex(p, 16) && hex(f, 2));
    let version_00 = head.starts_with("00-");
    fields_ok && (rest.is_empty() || (!version_00 && rest.starts_with('-')))
}

/// `00-{trace id}-{span id}-{flags}`.
fn traceparent_of(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of the W3C Trace Context recommendation.
    const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_becomes_the_x_ray_header_of_the_same_trace() {
        let t = TraceContext::from_traceparent(W3C, "traceparent").expect("valid");
        assert_eq!(t.traceparent, W3C);
        assert_eq!(
            t.xray_header,
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
        );
        let unsampled = W3C.replace("-01", "-00");
        let t = TraceContext::from_traceparent(&unsampled, "traceparent").expect("valid");
        assert!(t.xray_header.ends_with(";Sampled=0"), "{}", t.xray_header);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "hello",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert!(
                TraceContext::from_traceparent(bad, "tp").is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_record_carries_it_in_its_new_or_old_image() {
        let record = |image: &str, value: Value| json!({"dynamodb": {image: {"pk": {"S": "evt-1"}, "traceparent": value}}});
        let found = TraceContext::of_record(&record("NewImage", json!({"S": W3C})), "traceparent");
        assert_eq!(
            found.expect("valid").map(|t| t.traceparent),
            Some(W3C.to_owned())
        );
        let removed =
            TraceContext::of_record(&record("OldImage", json!({"S": W3C})), "traceparent");
        assert!(matches!(removed, Ok(Some(_))));
        let none = TraceContext::of_record(&record("NewImage", json!({"S": W3C})), "other");
        assert_eq!(none, Ok(None));
        let number = TraceContext::of_record(&record("NewImage", json!({"N": "1"})), "traceparent");
        assert!(matches!(number, Err(TraceError::NotAString { .. })));
        let junk =
            TraceContext::of_record(&record("NewImage", json!({"S": "junk"})), "traceparent");
        assert!(matches!(junk, Err(TraceError::Invalid { .. })));
    }

    #[test]
    fn a_tracestate_beside_it_is_kept_when_valid_and_dropped_when_not() {
        let record = |state: Value| json!({"dynamodb": {"NewImage": {"traceparent": {"S": W3C}, "tracestate": state}}});
        let with = |state: Value| {
            let r = record(state);
            let mut t = TraceContext::of_record(&r, "traceparent")
                .expect("valid")
                .expect("present");
            let result = t.add_state_of(&r, "tracestate");
            (t.tracestate, result)
        };
        assert_eq!(
            with(json!({"S": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"})),
            (
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
                Ok(())
            )
        );
        let (state, result) = with(json!({"S": "not a state"}));
        assert_eq!(state, None);
        assert!(matches!(result, Err(TraceError::InvalidState { .. })));
        let (state, result) = with(json!({"N": "1"}));
        assert_eq!(state, None);
        assert!(result.is_err());
        assert_eq!(with(json!({"S": ""})), (None, Ok(())));
    }
}
