//! DynamoDB Streams: shards and their lineage, records, and the [`ShardSource`] seam.

mod dynamodb;
mod shard;
mod source;
pub mod typed;
pub mod wire;

pub use dynamodb::{to_stream_record, DynamoDbStreams, ParsedBy};
pub use shard::{lineage_order, SequenceNumber, Shard, ShardId};
pub use source::{
    IteratorPosition, RecordText, RecordsPage, ShardSource, SourceError, StreamRecord,
};
