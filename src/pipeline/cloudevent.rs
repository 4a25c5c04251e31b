//! The event formats a route can publish, and the CloudEvents one written out.
//!
//! A route's `format` is `eventbridge` (the default: the rendered detail is the event's
//! `Detail`) or `cloudevents`: the rendered detail becomes the `data` of a structured-mode
//! CloudEvents 1.0 event in the JSON format, and that whole event is what is published:
//! - on a classic bus, as the PutEvents entry's `Detail` (the entry keeps `Source`,
//!   `DetailType` and the X-Ray `TraceHeader`);
//! - on a Custom Event Bus, as the `Data` of a `PutRawEvents` entry, with
//!   `SystemMetadata.ContentType` [`RAW_CONTENT_TYPE`], the trace in `Metadata`
//!   ([`TRACEPARENT`], [`TRACESTATE`]) beside the route's own metadata keys, and the same
//!   `EventGroupId` (ordering key) and `DeduplicationId` (event id) as `PutEvents` entries.
//!
//! The event's attributes, and where each name, type and rule comes from:
//! - CloudEvents 1.0.2, "CloudEvents - Version 1.0.2" (`cloudevents/spec/cloudevents/spec.md`),
//!   "Required Attributes": `id` (String, non-empty; `source` + `id` unique per event: here the
//!   stable event id), `source` (URI-reference, non-empty: the route's `source`),
//!   `specversion` (`1.0`), `type` (String, non-empty: the route's `detail_type`);
//!   "Optional Attributes": `datacontenttype` (RFC 2046 media type: `application/json`),
//!   `subject` (String, non-empty if present: the route's `subject` template), `time`
//!   (Timestamp, RFC 3339: the record's creation time, `ApproximateCreationDateTime`).
//! - "JSON Event Format for CloudEvents - Version 1.0.2" (`formats/json-format.md`): one JSON
//!   object holding the attributes as members; section 3.1.1: with a `datacontenttype` of
//!   `application/json` the `data` member holds the JSON value itself, not a string of it.
//! - The Distributed Tracing extension (`extensions/distributed-tracing.md`): `traceparent`
//!   and `tracestate`, the W3C Trace Context headers' values, from the outbox row.
//! - The Partitioning extension (`extensions/partitioning.md`): `partitionkey` (String,
//!   non-empty), the key that orders the event's partition: here the ordering key (left out
//!   when a hand-made record has none).
//! - Attribute names (spec.md, "Attribute Naming Convention"): lowercase `a-z` and `0-9`;
//!   every name written here is one.
//!
//! The `PutRawEvents` side comes from the eventsv2 API reference: `PutRawEventsSystemMetadata`
//! (`ContentType` "Valid values: application/json, application/avro, application/protobuf,
//! application/octet-stream"; 1-256 characters) and `PutRawEventsRequestEntry` (`Metadata`: at
//! most 100 entries, keys 1-128 characters matching `[^/]+`, values at least 1 character).
//! The user guide ("Publishing events to a Custom Event Bus") says `PutEvents` has no
//! `Metadata`: an `eventbridge`-format entry on a Custom Event Bus cannot carry the trace
//! there, only in its detail (`<outbox.traceparent>`, `trace_context_field`).

use std::time::SystemTime;

use super::trace::TraceContext;

/// How a route's events are shaped (`[[routes]] format`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum EventFormat {
    /// The rendered detail is the event's `Detail` (PutEvents), as EventBridge Pipes sends it.
    #[default]
    EventBridge,
    /// A structured-mode CloudEvents 1.0 JSON event whose `data` is the rendered detail.
    CloudEvents,
}

impl EventFormat {
    /// The name the config file uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventBridge => "eventbridge",
            Self::CloudEvents => "cloudevents",
        }
    }
}

impl TryFrom<String> for EventFormat {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "eventbridge" => Ok(Self::EventBridge),
            "cloudevents" => Ok(Self::CloudEvents),
            other => Err(format!(
                "unknown format {other:?}: expected \"eventbridge\" or \"cloudevents\""
            )),
        }
    }
}

/// `specversion` of every event written here.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype`: the `data` member is the rendered detail, a JSON object.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// `SystemMetadata.ContentType` of a `PutRawEvents` entry holding a JSON CloudEvent: the JSON
/// content type the eventsv2 API reference lists (the event is JSON; the bus filters and
/// transforms it as JSON).
pub const RAW_CONTENT_TYPE: &str = "application/json";
/// The `Metadata` key (and CloudEvents extension) of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The `Metadata` key (and CloudEvents extension) of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";
/// `Metadata` entries per `PutRawEvents` entry.
pub const MAX_METADATA_ENTRIES: usize = 100;
/// Longest `Metadata` key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 128;

/// One CloudEvent, borrowed from the entry being rendered.
#[derive(Debug, Clone, Copy)]
pub struct CloudEvent<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub time: Option<SystemTime>,
    pub subject: Option<&'a str>,
    /// The ordering key; left out when empty (the extension asks for a non-empty one).
    pub partition_key: &'a str,
    pub trace: Option<&'a TraceContext>,
    /// JSON text of the data (a JSON object), written as it is.
    pub data: &'a str,
}

impl CloudEvent<'_> {
    /// The event in the JSON format (structured mode), members in a fixed order, `data` last.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(self.data.len() + 256);
        out.push(b'{');
        member(&mut out, "specversion", SPEC_VERSION);
        member(&mut out, "id", self.id);
        member(&mut out, "source", self.source);
        member(&mut out, "type", self.event_type);
        if let Some(time) = self.time {
            member(&mut out, "time", &rfc3339(time));
        }
        if let Some(subject) = self.subject {
            member(&mut out, "subject", subject);
        }
        member(&mut out, "datacontenttype", DATA_CONTENT_TYPE);
        if !self.partition_key.is_empty() {
            member(&mut out, "partitionkey", self.partition_key);
        }
        if let Some(trace) = self.trace {
            member(&mut out, TRACEPARENT, &trace.traceparent);
            if let Some(state) = trace.tracestate.as_deref() {
                member(&mut out, TRACESTATE, state);
            }
        }
        out.extend_from_slice(b"\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        out.push(b'}');
        // Every part written is UTF-8 (names, JSON-escaped `&str`s, the data text).
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// The trace as `PutRawEvents` `Metadata` pairs: `traceparent`, and `tracestate` when the row
/// has one (a metadata value may not be empty).
#[must_use]
pub fn trace_metadata(trace: Option<&TraceContext>) -> Vec<(String, String)> {
    let Some(trace) = trace else {
        return Vec::new();
    };
    let mut out = vec![(TRACEPARENT.to_owned(), trace.traceparent.clone())];
    if let Some(state) = trace.tracestate.as_deref().filter(|s| !s.is_empty()) {
        out.push((TRACESTATE.to_owned(), state.to_owned()));
    }
    out
}

/// `source` must be a non-empty URI-reference (RFC 3986 section 4.1), as CloudEvents asks:
/// `books`, `/books/api` and `urn:example:books` are; `my books` is not.
///
/// # Errors
/// Why it is not one.
pub fn check_source(source: &str) -> Result<(), String> {
    if source.is_empty() {
        return Err("must not be empty".to_owned());
    }
    fluent_uri::UriRef::parse(source).map(|_| ()).map_err(|e| {
        format!(
            "is not a URI-reference (RFC 3986), which a CloudEvent's `source` must be: {e} \
             (e.g. `books`, `/books/api`, `urn:example:books`)"
        )
    })
}

/// A route's own `Metadata` key: 1-128 characters without `/`, and not one the relay writes
/// itself ([`TRACEPARENT`], [`TRACESTATE`]).
///
/// # Errors
/// Why the key is refused.
pub fn check_metadata_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_METADATA_KEY_CHARS {
        return Err(format!(
            "is {chars} characters; a Metadata key takes 1-{MAX_METADATA_KEY_CHARS}"
        ));
    }
    if key.contains('/') {
        return Err("contains `/`, which a Metadata key may not".to_owned());
    }
    if key == TRACEPARENT || key == TRACESTATE {
        return Err(
            "is written by the relay itself (the row's trace context); choose another key"
                .to_owned(),
        );
    }
    Ok(())
}

fn member(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    super::json_write::push_str(out, value);
    out.push(b',');
}

/// RFC 3339 in UTC with milliseconds (`2026-12-05T10:00:00.123Z`), as CloudEvents' Timestamp
/// type asks.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests;
