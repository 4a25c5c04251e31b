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
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub sequence_number: SequenceNumber,
    /// `ApproximateCreationDateTime`.
    pub created_at: Option<SystemTime>,
    pub json: Value,
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
