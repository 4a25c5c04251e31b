//! One delivered event in the consumer's terms, whichever format the relay published:
//! - an **EventBridge event** (`detail-type`, `detail`): the outbox row is the detail, its
//!   stable id `detail.eventId`, its trace `detail.traceparent`;
//! - a **CloudEvent** (a `format = "cloudevents"` route): as a Custom Event Bus subscriber with
//!   the `RAW` transformer delivers it (the event itself), or inside an EventBridge event's
//!   detail (a classic bus). The row is its `data`, its stable id the CloudEvent `id`, its
//!   trace the `traceparent` extension (the Distributed Tracing extension), else the data's.
//!
//! CloudEvents are read by the CloudEvents SDK for Rust (`cloudevents-sdk`), not by hand.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use books_common::outbox;
use cloudevents::{AttributesReader, Data};
use serde_json::Value;

/// What the consumer needs of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// `BookAdded`, `BookRemoved`, ...: the `detail-type`, or the CloudEvent `type`.
    pub event_type: String,
    /// The outbox row (or the CDC variant's book): the detail, or the CloudEvent `data`.
    pub data: Value,
    /// The stable event id: `detail.eventId`, or the CloudEvent `id`.
    pub event_id: Option<String>,
    /// The W3C `traceparent` of the request that wrote the row, as the event carries it.
    pub traceparent: Option<String>,
    /// EventBridge's own id of this delivery, new on every PutEvents (the last-resort dedup key).
    pub delivery_id: Option<String>,
}

/// A delivery that is not an event this consumer can read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl Delivered {
    /// An EventBridge event; a CloudEvent in its detail is read as one.
    #[must_use]
    pub fn from_eventbridge(event: &EventBridgeEvent<Value>) -> Self {
        if is_cloudevent(&event.detail) {
            if let Ok(mut inner) = Self::from_cloudevent(&event.detail) {
                inner.delivery_id.clone_from(&event.id);
                return inner;
            }
        }
        Self {
            event_type: event.detail_type.clone(),
            data: event.detail.clone(),
            event_id: string(&event.detail, "eventId"),
            traceparent: string(&event.detail, outbox::TRACEPARENT),
            delivery_id: event.id.clone(),
        }
    }

    /// A structured-mode CloudEvent in the JSON format.
    ///
    /// # Errors
    /// When the CloudEvents SDK does not read it as one.
    pub fn from_cloudevent(json: &Value) -> Result<Self, Unreadable> {
        let event: cloudevents::Event = serde_json::from_value(json.clone())
            .map_err(|e| Unreadable(format!("not a CloudEvent: {e}")))?;
        let data = match event.data() {
            Some(Data::Json(v)) => v.clone(),
            Some(Data::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(Data::Binary(_)) | None => Value::Null,
        };
        let traceparent = event
            .extension(outbox::TRACEPARENT)
            .map(ToString::to_string)
            .or_else(|| string(&data, outbox::TRACEPARENT));
        Ok(Self {
            event_type: event.ty().to_owned(),
            event_id: Some(event.id().to_owned()),
            traceparent,
            data,
            delivery_id: None,
        })
    }

    /// Whatever a queue or a Lambda hands over: a CloudEvent (it has `specversion`), else an
    /// EventBridge event.
    ///
    /// # Errors
    /// When it is neither.
    pub fn from_json(json: Value) -> Result<Self, Unreadable> {
        if is_cloudevent(&json) {
            return Self::from_cloudevent(&json);
        }
        serde_json::from_value::<EventBridgeEvent<Value>>(json)
            .map(|e| Self::from_eventbridge(&e))
            .map_err(|e| {
                Unreadable(format!(
                    "neither a CloudEvent nor an EventBridge event: {e}"
                ))
            })
    }
}

fn is_cloudevent(v: &Value) -> bool {
    v.get("specversion").is_some()
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}
