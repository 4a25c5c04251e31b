//! Dead letters: a record (and route) the relay could not deliver, with everything needed to
//! understand and redrive it: the original stream record, the rendered entry if any, the error
//! and the attempts. [`DeadLetterSink`] is the seam; this file holds the message format and the
//! file and log sinks (the SQS sink is in `sqs.rs`).
//!
//! A dead letter is written *before* the checkpoint moves past its record; if the write fails,
//! the relay retries it and the checkpoint waits: a record is never dropped silently.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::pipeline::cloudevent::RAW_CONTENT_TYPE;
use crate::pipeline::{Bus, Entry, EventFormat, RouteError};

/// Largest message SQS accepts (1 MiB, attributes included: "Amazon SQS increases maximum
/// message payload size to 1 MiB", AWS What's New, part of the 2026-01-29 serverless 1 MB
/// payload change; 256 KiB before).
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html>
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Where in the pipeline the record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Rendering the event failed (template, unmarshall, size).
    Transform,
    /// EventBridge rejected the event for good.
    Publish,
}

impl Stage {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transform => "transform",
            Self::Publish => "publish",
        }
    }
}

/// The rendered PutEvents entry, as it was (or would have been) sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterEntry {
    /// A classic bus's name (empty for a Custom Event Bus entry).
    #[serde(default)]
    pub event_bus_name: String,
    /// A Custom Event Bus's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_arn: Option<String>,
    /// A Custom Event Bus entry's `SystemMetadata.EventGroupId` (its ordering key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_group_id: Option<String>,
    /// A Custom Event Bus entry's `SystemMetadata.DeduplicationId` (its stable event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    pub source: String,
    pub detail_type: String,
    /// The detail JSON text; `None` when removed to fit the message size limit.
    pub detail: Option<String>,
    pub resources: Vec<String>,
    pub time: Option<String>,
    /// The route's format: `eventbridge`, or `cloudevents` (then `Detail` holds the whole
    /// CloudEvent).
    #[serde(default)]
    pub format: EventFormat,
    /// A `PutRawEvents` entry's `SystemMetadata.ContentType` (a CloudEvent on a Custom Event
    /// Bus; its `Detail` here is the entry's `Data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A `PutRawEvents` entry's `Metadata`: the trace context and the route's own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl From<&Entry> for DeadLetterEntry {
    fn from(e: &Entry) -> Self {
        let custom = matches!(e.bus, Bus::Custom(_));
        Self {
            event_bus_name: match &e.bus {
                Bus::Classic(name) => name.to_string(),
                Bus::Custom(_) => String::new(),
            },
            event_bus_arn: custom.then(|| e.bus.id().to_owned()),
            event_group_id: custom.then(|| e.ordering_key.clone()),
            deduplication_id: custom.then(|| e.event_id.clone()),
            source: e.source.to_string(),
            detail_type: e.detail_type.to_string(),
            detail: Some(e.detail.clone()),
            resources: e.resources.clone(),
            time: e.time.map(rfc3339),
            format: e.format,
            content_type: e.is_raw().then(|| RAW_CONTENT_TYPE.to_owned()),
            metadata: e.is_raw().then(|| e.metadata.iter().cloned().collect()),
        }
    }
}

/// One undeliverable (record, route) pair.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Format version of this message.
    pub version: u32,
    pub route: String,
    pub stage: Stage,
    /// `MalformedDetail`, `InvalidArgument`, `ResourceNotFoundException`, or for the
    /// transform stage `DetailNotJsonObject`, `ImageMissing`, `UnmarshallFailed`, `ExpandJsonFailed`,
    /// `EntryTooLarge`, `SystemIdInvalid`, `CloudEventFailed`.
    pub error_code: String,
    pub error_message: String,
    pub stream_arn: String,
    pub shard_id: String,
    pub sequence_number: String,
    /// The stable event id consumers deduplicate on.
    pub event_id: String,
    pub attempts: u32,
    pub first_attempt_at: String,
    pub last_attempt_at: String,
    /// The stream record in the Pipes JSON shape; only its keys when `truncated`.
    pub record: Value,
    pub entry: Option<DeadLetterEntry>,
    /// Set when the record's images and the entry's detail were removed to fit SQS's limit.
    pub truncated: bool,
}

/// Where a dead-lettered record came from: what every letter says of it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub stream_arn: &'a str,
    /// The shard, or `backfill-segment-N` for a backfilled row.
    pub shard_id: &'a str,
    /// The record's sequence number, or a backfilled row's `eventID`.
    pub sequence_number: &'a str,
    pub event_id: &'a str,
    /// The stream record, in the Pipes JSON shape.
    pub record: &'a Value,
}

/// The attempts made to publish an entry before it was given up on.
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    pub count: u32,
    pub first: SystemTime,
    pub last: SystemTime,
}

impl DeadLetter {
    /// The letter of a record that route `error.route()` matched but cannot render for
    /// (stage `transform`: one attempt, no entry).
    #[must_use]
    pub fn transform(origin: Origin<'_>, error: &RouteError, at: SystemTime) -> Self {
        Self::of(
            origin,
            error.route(),
            Stage::Transform,
            (error.code(), &error.to_string()),
            None,
            Attempts {
                count: 1,
                first: at,
                last: at,
            },
        )
    }

    /// The letter of an entry of route `route` given up on (stage `publish`), with the last
    /// answer about it: its error `code` and `message`.
    #[must_use]
    pub fn publish(
        origin: Origin<'_>,
        route: &str,
        entry: &Entry,
        (code, message): (&str, &str),
        attempts: Attempts,
    ) -> Self {
        Self::of(
            origin,
            route,
            Stage::Publish,
            (code, message),
            Some(entry),
            attempts,
        )
    }

    fn of(
        origin: Origin<'_>,
        route: &str,
        stage: Stage,
        (code, message): (&str, &str),
        entry: Option<&Entry>,
        attempts: Attempts,
    ) -> Self {
        Self {
            version: 1,
            route: route.to_owned(),
            stage,
            error_code: code.to_owned(),
            error_message: message.to_owned(),
            stream_arn: origin.stream_arn.to_owned(),
            shard_id: origin.shard_id.to_owned(),
            sequence_number: origin.sequence_number.to_owned(),
            event_id: origin.event_id.to_owned(),
            attempts: attempts.count.max(1),
            first_attempt_at: rfc3339(attempts.first),
            last_attempt_at: rfc3339(attempts.last),
            record: origin.record.clone(),
            entry: entry.map(DeadLetterEntry::from),
            truncated: false,
        }
    }
}

impl DeadLetter {
    /// The message body: the dead letter as JSON, cut down to the record's keys and sequence
    /// number (and no detail) if the whole would exceed `max_bytes`.
    #[must_use]
    pub fn to_message(&self, max_bytes: usize) -> String {
        let full = serde_json::to_string(self).expect("a dead letter always serializes");
        if full.len() <= max_bytes {
            return full;
        }
        let mut cut = self.clone();
        cut.truncated = true;
        let ddb = &self.record["dynamodb"];
        cut.record = json!({
            "eventID": self.record.get("eventID"),
            "eventName": self.record.get("eventName"),
            "dynamodb": {
                "Keys": ddb.get("Keys"),
                "SequenceNumber": ddb.get("SequenceNumber"),
                "ApproximateCreationDateTime": ddb.get("ApproximateCreationDateTime"),
            },
        });
        if let Some(entry) = &mut cut.entry {
            entry.detail = None;
        }
        if cut.error_message.len() > 4096 {
            cut.error_message.truncate(
                (0..=4096)
                    .rev()
                    .find(|&i| cut.error_message.is_char_boundary(i))
                    .unwrap_or(0),
            );
        }
        serde_json::to_string(&cut).expect("a dead letter always serializes")
    }
}

/// Formats a time as RFC 3339 with milliseconds.
#[must_use]
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Writing a dead letter failed; the caller retries and does not checkpoint meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("writing a dead letter failed ({code}): {message}")]
pub struct DeadLetterError {
    pub code: String,
    pub message: String,
}

/// Where dead letters go.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letter` durably (or fails).
    fn send(&self, letter: &DeadLetter)
        -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// Appends dead letters as JSON lines to a local file (development; one relay process only).
#[derive(Debug)]
pub struct FileDeadLetterSink {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileDeadLetterSink {
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl DeadLetterSink for FileDeadLetterSink {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let err = |e: std::io::Error| DeadLetterError {
            code: format!("{:?}", e.kind()),
            message: format!("{}: {e}", self.path.display()),
        };
        let mut line = serde_json::to_string(letter).expect("a dead letter always serializes");
        line.push('\n');
        // One writer at a time, so lines from concurrent shards never interleave.
        let _guard = self.lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(err)?;
        file.write_all(line.as_bytes()).await.map_err(err)?;
        file.sync_data().await.map_err(err)
    }
}

/// No sink configured: the dead letter, payload included, is logged at ERROR (so it is not
/// lost, but only as durable as the logs are).
#[derive(Debug, Default)]
pub struct LogDeadLetterSink;

impl DeadLetterSink for LogDeadLetterSink {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        tracing::error!(
            dead_letter = %letter.to_message(usize::MAX),
            "Dead letter (no [dead_letter] sink configured; it exists only in this log line)."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(detail_len: usize) -> DeadLetter {
        DeadLetter {
            version: 1,
            route: "r".into(),
            stage: Stage::Transform,
            error_code: "EntryTooLarge".into(),
            error_message: "too big".into(),
            stream_arn: "arn:s".into(),
            shard_id: "shard-1".into(),
            sequence_number: "100".into(),
            event_id: "evt-1".into(),
            attempts: 1,
            first_attempt_at: "2026-01-01T00:00:00.000Z".into(),
            last_attempt_at: "2026-01-01T00:00:00.000Z".into(),
            record: json!({"eventID": "e1", "eventName": "INSERT", "dynamodb": {
                "Keys": {"pk": {"S": "evt-1"}}, "SequenceNumber": "100",
                "NewImage": {"blob": {"S": "x".repeat(detail_len)}}}}),
            entry: Some(DeadLetterEntry {
                event_bus_name: "bus".into(),
                event_bus_arn: None,
                event_group_id: None,
                deduplication_id: None,
                source: "S".into(),
                detail_type: "T".into(),
                detail: Some(format!("{{\"blob\": \"{}\"}}", "x".repeat(detail_len))),
                resources: vec![],
                time: None,
                format: EventFormat::EventBridge,
                content_type: None,
                metadata: None,
            }),
            truncated: false,
        }
    }

    #[test]
    fn a_small_dead_letter_keeps_everything() {
        let msg: Value =
            serde_json::from_str(&letter(10).to_message(MAX_MESSAGE_BYTES)).expect("json");
        assert_eq!(msg["truncated"], false);
        assert_eq!(msg["stage"], "transform");
        assert_eq!(
            msg["record"]["dynamodb"]["NewImage"]["blob"]["S"],
            "xxxxxxxxxx"
        );
        assert_eq!(msg["entry"]["EventBusName"], "bus");
    }

    #[test]
    fn a_raw_entry_keeps_its_format_content_type_and_metadata() {
        let entry = Entry {
            route: 0,
            bus: Bus::Custom("arn:bus".into()),
            source: "books".into(),
            detail_type: "BookAdded".into(),
            detail: r#"{"specversion":"1.0","data":{}}"#.into(),
            format: EventFormat::CloudEvents,
            metadata: vec![("traceparent".into(), "00-a-b-01".into())],
            resources: vec![],
            time: None,
            ordering_key: "book-1".into(),
            event_id: "evt-1".into(),
            trace: None,
        };
        let shown = serde_json::to_value(DeadLetterEntry::from(&entry)).expect("json");
        assert_eq!(shown["Format"], "cloudevents");
        assert_eq!(shown["ContentType"], "application/json");
        assert_eq!(shown["Metadata"]["traceparent"], "00-a-b-01");
        assert_eq!(shown["EventGroupId"], "book-1");
        let back: DeadLetterEntry = serde_json::from_value(shown).expect("reads back");
        assert_eq!(back.format, EventFormat::CloudEvents);
        // A letter written before formats existed reads as `eventbridge`.
        let mut old = serde_json::to_value(DeadLetterEntry::from(&Entry {
            format: EventFormat::EventBridge,
            metadata: vec![],
            ..entry
        }))
        .expect("json");
        assert!(old.get("ContentType").is_none() && old.get("Metadata").is_none());
        old.as_object_mut().expect("object").remove("Format");
        let back: DeadLetterEntry = serde_json::from_value(old).expect("reads back");
        assert_eq!(back.format, EventFormat::EventBridge);
    }

    #[test]
    fn an_oversized_dead_letter_keeps_the_reason_keys_and_sequence_number() {
        let text = letter(MAX_MESSAGE_BYTES).to_message(MAX_MESSAGE_BYTES);
        assert!(text.len() <= MAX_MESSAGE_BYTES);
        let msg: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(msg["truncated"], true);
        assert_eq!(msg["error_code"], "EntryTooLarge");
        assert_eq!(msg["record"]["dynamodb"]["Keys"]["pk"]["S"], "evt-1");
        assert_eq!(msg["record"]["dynamodb"]["SequenceNumber"], "100");
        assert!(msg["record"]["dynamodb"].get("NewImage").is_none());
        assert!(msg["entry"]["Detail"].is_null());
    }

    #[tokio::test]
    async fn the_file_sink_appends_one_json_line_per_dead_letter() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = FileDeadLetterSink::new(dir.path().join("dl.jsonl"));
        sink.send(&letter(1)).await.expect("write");
        sink.send(&letter(2)).await.expect("write");
        let text = std::fs::read_to_string(dir.path().join("dl.jsonl")).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1]["record"]["dynamodb"]["NewImage"]["blob"]["S"],
            "xx"
        );
    }
}
