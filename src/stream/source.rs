//! The [`ShardSource`] seam: what the relay needs from DynamoDB Streams, in domain types.

use std::future::Future;
use std::time::SystemTime;

use serde_json::Value;

use super::shard::{SequenceNumber, Shard, ShardId};

/// Where a new shard iterator points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorPosition {
    TrimHorizon,
    Latest,
    AfterSequenceNumber(SequenceNumber),
}

/// One stream record: its position, its creation time and its JSON in the shape EventBridge
/// Pipes and Lambda use (`eventID`, `eventName`, `dynamodb.NewImage`, ...).
///
/// The record is held as that JSON's text and parsed when it is routed (or dead-lettered):
/// a parsed `serde_json::Value` tree holds about 17 times its text (a `BTreeMap` node for
/// every `{"S": …}`), and the relay holds thousands of records read ahead, or waiting for
/// their checkpoint (BENCHMARKS.md, issue #28).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub sequence_number: SequenceNumber,
    /// `ApproximateCreationDateTime`.
    pub created_at: Option<SystemTime>,
    /// The record's JSON.
    pub text: RecordText,
    /// Its size for the read-ahead bound: the stream's `SizeBytes` when it says, else the
    /// text's length.
    bytes: usize,
}

impl StreamRecord {
    /// A record made from its JSON (a backfilled row's, a test's).
    #[must_use]
    pub fn new(
        sequence_number: SequenceNumber,
        created_at: Option<SystemTime>,
        json: &Value,
    ) -> Self {
        let size_bytes = json
            .get("dynamodb")
            .and_then(|d| d.get("SizeBytes"))
            .and_then(Value::as_u64);
        let text = RecordText::of(json);
        Self::from_text(sequence_number, created_at, text, size_bytes)
    }

    /// A record whose JSON text is already written (see [`RecordText`]).
    pub(super) fn from_text(
        sequence_number: SequenceNumber,
        created_at: Option<SystemTime>,
        text: RecordText,
        size_bytes: Option<u64>,
    ) -> Self {
        let bytes = size_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(text.0.len());
        Self {
            sequence_number,
            created_at,
            text,
            bytes,
        }
    }

    /// The record's JSON, parsed.
    #[must_use]
    pub fn json(&self) -> Value {
        self.text.json()
    }

    /// Its size for the read-ahead bound: `SizeBytes`, else its JSON text's length.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A stream record's JSON text in the Pipes shape. Only this module and the wire parse make
/// one, from JSON they wrote or checked, so it always parses.
#[derive(Debug, Clone)]
pub struct RecordText(Box<str>);

impl RecordText {
    /// The text of `json`.
    #[must_use]
    pub fn of(json: &Value) -> Self {
        Self(json.to_string().into_boxed_str())
    }

    /// Text the wire parse wrote from JSON it parsed.
    pub(super) fn written(text: String) -> Self {
        Self(text.into_boxed_str())
    }

    /// The JSON, parsed.
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.0).expect("a record's text is JSON this crate wrote")
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Two texts are the same record when they hold the same JSON (key order and spacing aside).
impl PartialEq for RecordText {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.json() == other.json()
    }
}

/// The answer to one GetRecords call.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsPage {
    pub records: Vec<StreamRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
}

/// Why a stream call failed. [`SourceError::code`] is a bounded label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The iterator is older than 15 minutes; get a new one from the checkpoint.
    #[error("shard iterator expired")]
    IteratorExpired,
    /// The position is older than the 24 h retention; data is gone.
    #[error("requested records were trimmed from the stream (older than 24 h)")]
    TrimmedData,
    /// Too many requests (`LimitExceededException`/throttling).
    #[error("throttled by DynamoDB Streams ({code})")]
    Throttled { code: String },
    /// The table, stream or shard does not exist.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// The table has no stream enabled.
    #[error("table {table} has no stream enabled")]
    StreamDisabled { table: String },
    /// Anything else (network, 5xx, unexpected answers): retried with backoff.
    #[error("{operation} failed ({code}): {message}")]
    CallFailed {
        operation: &'static str,
        code: String,
        message: String,
    },
}

impl SourceError {
    /// A bounded label for metrics.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::IteratorExpired => "ExpiredIteratorException",
            Self::TrimmedData => "TrimmedDataAccessException",
            Self::Throttled { code } | Self::CallFailed { code, .. } => code,
            Self::NotFound { .. } => "ResourceNotFoundException",
            Self::StreamDisabled { .. } => "StreamDisabled",
        }
    }
}

/// DynamoDB Streams as the relay uses it.
pub trait ShardSource: Send + Sync + 'static {
    /// The ARN of the latest stream of `table`.
    fn latest_stream_arn(
        &self,
        table: &str,
    ) -> impl Future<Output = Result<String, SourceError>> + Send;

    /// Every shard of the stream (all DescribeStream pages).
    fn list_shards(
        &self,
        stream_arn: &str,
    ) -> impl Future<Output = Result<Vec<Shard>, SourceError>> + Send;

    /// The children of `parent` (a closed shard): DescribeStream with
    /// `ShardFilter {Type: CHILD_SHARDS, ShardId: parent}`, one page, not the whole stream.
    fn child_shards(
        &self,
        stream_arn: &str,
        parent: &ShardId,
    ) -> impl Future<Output = Result<Vec<Shard>, SourceError>> + Send;

    /// A new iterator for `shard` at `position`.
    fn shard_iterator(
        &self,
        stream_arn: &str,
        shard: &ShardId,
        position: &IteratorPosition,
    ) -> impl Future<Output = Result<String, SourceError>> + Send;

    /// Up to `limit` records from `iterator`.
    fn get_records(
        &self,
        iterator: &str,
        limit: usize,
    ) -> impl Future<Output = Result<RecordsPage, SourceError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_is_held_as_its_text_and_reads_back_the_same_json() {
        let json = json!({"eventID": "e1", "eventName": "INSERT", "dynamodb": {
            "NewImage": {"n": {"N": "12345678901234567890.000000000000000001"}},
            "SequenceNumber": "100"}});
        let record = StreamRecord::new(SequenceNumber::new("100"), None, &json);
        assert_eq!(record.json(), json, "numbers keep every digit");
        assert_eq!(record.text.as_str(), json.to_string());
        // No `SizeBytes`: the read-ahead counts the text's length.
        assert_eq!(record.bytes(), json.to_string().len());
    }

    #[test]
    fn the_read_ahead_counts_the_streams_own_size_when_it_says() {
        let json = json!({"dynamodb": {"SizeBytes": 42, "SequenceNumber": "1"}});
        let record = StreamRecord::new(SequenceNumber::new("1"), None, &json);
        assert_eq!(record.bytes(), 42);
    }

    #[test]
    fn texts_are_the_same_record_when_their_json_is() {
        let spaced = RecordText::written("{ \"b\": 1,\n \"a\": [true] }".to_owned());
        assert_eq!(spaced, RecordText::of(&json!({"a": [true], "b": 1})));
        assert_ne!(spaced, RecordText::of(&json!({"a": [true], "b": 2})));
    }
}
