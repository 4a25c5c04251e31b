//! [`ShardSource`] on the AWS SDK: DescribeTable, DescribeStream, GetShardIterator, GetRecords.
//!
//! The translation from SDK types to ours (records into the Pipes JSON shape, error codes into
//! [`SourceError`]) is done by pure functions at the bottom, tested with SDK builders.

use std::borrow::Cow;

use super::shard::{SequenceNumber, Shard, ShardId};
use super::source::{IteratorPosition, RecordsPage, ShardSource, SourceError, StreamRecord};
use super::wire::{TakeRecords, WireIdentity, WireRecord, WireStreamRecord};
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{Record, ShardFilter, ShardFilterType, ShardIteratorType};

/// DynamoDB Streams (and DescribeTable, to find a table's latest stream) through the SDK.
#[derive(Debug, Clone)]
pub struct DynamoDbStreams {
    streams: aws_sdk_dynamodbstreams::Client,
    tables: aws_sdk_dynamodb::Client,
}

impl DynamoDbStreams {
    #[must_use]
    pub fn new(streams: aws_sdk_dynamodbstreams::Client, tables: aws_sdk_dynamodb::Client) -> Self {
        Self { streams, tables }
    }
}

impl DynamoDbStreams {
    /// The stream's `StreamViewType` as the API names it (`NEW_IMAGE`, …), from one
    /// DescribeStream; `None` when the answer has none.
    ///
    /// # Errors
    /// [`SourceError`] as for the other calls.
    pub async fn view_type(&self, stream_arn: &str) -> Result<Option<String>, SourceError> {
        let out = self
            .streams
            .describe_stream()
            .stream_arn(stream_arn)
            .limit(1)
            .send()
            .await
            .map_err(|e| call_error("DescribeStream", &e))?;
        Ok(out
            .stream_description()
            .and_then(|d| d.stream_view_type())
            .map(|v| v.as_str().to_owned()))
    }
}

impl DynamoDbStreams {
    /// Every page of DescribeStream for `stream_arn` (with `filter`, when given).
    async fn describe_shards(
        &self,
        stream_arn: &str,
        filter: Option<ShardFilter>,
    ) -> Result<Vec<Shard>, SourceError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .streams
                .describe_stream()
                .stream_arn(stream_arn)
                .set_shard_filter(filter.clone())
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| call_error("DescribeStream", &e))?;
            let Some(description) = out.stream_description() else {
                return Err(SourceError::NotFound {
                    message: format!("stream {stream_arn}"),
                });
            };
            shards.extend(description.shards().iter().filter_map(|s| {
                Some(Shard {
                    id: ShardId(s.shard_id()?.to_owned()),
                    parent: s.parent_shard_id().map(|p| ShardId(p.to_owned())),
                    ending_sequence_number: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .map(SequenceNumber::new),
                })
            }));
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_owned()),
                None => return Ok(shards),
            }
        }
    }
}

impl ShardSource for DynamoDbStreams {
    async fn latest_stream_arn(&self, table: &str) -> Result<String, SourceError> {
        let out = self
            .tables
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| call_error("DescribeTable", &e))?;
        let description = out.table().ok_or_else(|| SourceError::NotFound {
            message: format!("table {table}"),
        })?;
        let enabled = description
            .stream_specification()
            .is_some_and(aws_sdk_dynamodb::types::StreamSpecification::stream_enabled);
        match description.latest_stream_arn() {
            Some(arn) if enabled => Ok(arn.to_owned()),
            _ => Err(SourceError::StreamDisabled {
                table: table.to_owned(),
            }),
        }
    }

    async fn list_shards(&self, stream_arn: &str) -> Result<Vec<Shard>, SourceError> {
        self.describe_shards(stream_arn, None).await
    }

    async fn child_shards(
        &self,
        stream_arn: &str,
        parent: &ShardId,
    ) -> Result<Vec<Shard>, SourceError> {
        let filter = ShardFilter::builder()
            .r#type(ShardFilterType::ChildShards)
            .shard_id(&parent.0)
            .build();
        let shards = self.describe_shards(stream_arn, Some(filter)).await?;
        // Children only, even from an endpoint that ignores the filter (an emulator).
        Ok(shards
            .into_iter()
            .filter(|s| s.parent.as_ref() == Some(parent))
            .collect())
    }

    async fn shard_iterator(
        &self,
        stream_arn: &str,
        shard: &ShardId,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(&shard.0);
        let request = match position {
            IteratorPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            IteratorPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorPosition::AfterSequenceNumber(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq.as_str()),
        };
        let out = request
            .send()
            .await
            .map_err(|e| call_error("GetShardIterator", &e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| SourceError::NotFound {
                message: format!("no iterator returned for shard {shard}"),
            })
    }

    async fn get_records(&self, iterator: &str, limit: usize) -> Result<RecordsPage, SourceError> {
        Ok(self.read_page(iterator, limit).await?.0)
    }
}

/// Who parsed a GetRecords answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedBy {
    /// `stream::wire`, straight from the body: every answer DynamoDB Streams sends.
    Relay,
    /// The SDK, for a body the wire parse refused (its records then converted).
    Sdk,
}

impl DynamoDbStreams {
    /// One GetRecords call (what [`ShardSource::get_records`] does), saying who parsed it.
    ///
    /// # Errors
    /// [`SourceError`] as for the other calls.
    pub async fn read_page(
        &self,
        iterator: &str,
        limit: usize,
    ) -> Result<(RecordsPage, ParsedBy), SourceError> {
        let limit = i32::try_from(limit).unwrap_or(1000);
        // The body is parsed once, by `wire`, straight into our records; the SDK only reads
        // what that parse refused.
        let take = TakeRecords::default();
        let out = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .customize()
            .interceptor(take.clone())
            .send()
            .await
            .map_err(|e| call_error("GetRecords", &e))?;
        Ok(match take.take() {
            Some(page) => (page, ParsedBy::Relay),
            None => (
                RecordsPage {
                    records: out.records().iter().filter_map(to_stream_record).collect(),
                    next_iterator: out.next_shard_iterator().map(str::to_owned),
                },
                ParsedBy::Sdk,
            ),
        })
    }
}

/// Maps an SDK error to a [`SourceError`] by its error code.
fn call_error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = crate::aws::error_code(err);
    match code {
        "ExpiredIteratorException" => SourceError::IteratorExpired,
        "TrimmedDataAccessException" => SourceError::TrimmedData,
        "LimitExceededException"
        | "ThrottlingException"
        | "ProvisionedThroughputExceededException" => SourceError::Throttled {
            code: code.to_owned(),
        },
        "ResourceNotFoundException" => SourceError::NotFound {
            message: err.message().unwrap_or(operation).to_owned(),
        },
        _ => SourceError::CallFailed {
            operation,
            code: code.to_owned(),
            message: crate::aws::describe_error(err),
        },
    }
}

/// A stream record from the SDK's types in the JSON shape Pipes and Lambda use, laid out as
/// a record parsed from the wire is ([`WireRecord::into_stream_record`]); records without a
/// sequence number (never sent by DynamoDB) are skipped. GetRecords uses it only for an answer
/// the wire parse refused.
pub fn to_stream_record<'a>(record: &'a Record) -> Option<StreamRecord> {
    let ddb = record.dynamodb()?;
    let borrowed = |s: Option<&'a str>| s.map(Cow::Borrowed);
    let image = |item| super::typed::streams_item(item).to_string();
    let (keys, new_image, old_image) = (
        ddb.keys().map(image),
        ddb.new_image().map(image),
        ddb.old_image().map(image),
    );
    let wire = WireRecord {
        event_id: borrowed(record.event_id()),
        event_name: borrowed(record.event_name().map(|n| n.as_str())),
        event_version: borrowed(record.event_version()),
        event_source: borrowed(record.event_source()),
        aws_region: borrowed(record.aws_region()),
        dynamodb: Some(WireStreamRecord {
            approximate_creation_date_time: ddb.approximate_creation_date_time().copied(),
            keys: keys.as_deref(),
            new_image: new_image.as_deref(),
            old_image: old_image.as_deref(),
            sequence_number: borrowed(ddb.sequence_number()),
            size_bytes: ddb.size_bytes(),
            stream_view_type: borrowed(ddb.stream_view_type().map(|v| v.as_str())),
        }),
        user_identity: record.user_identity().map(|identity| WireIdentity {
            r#type: borrowed(identity.r#type()),
            principal_id: borrowed(identity.principal_id()),
        }),
    };
    wire.into_stream_record()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::{
        AttributeValue, OperationType, StreamRecord as SdkStreamRecord, StreamViewType,
    };
    use aws_smithy_types::{Blob, DateTime};
    use serde_json::json;
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    #[test]
    fn sdk_record_becomes_the_pipes_json_shape() {
        let image = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("evt-1".into())),
            ("n".to_owned(), AttributeValue::N("12.5".into())),
            (
                "bin".to_owned(),
                AttributeValue::B(Blob::new(b"hi".to_vec())),
            ),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "l".to_owned(),
                    AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)]),
                )])),
            ),
            ("ss".to_owned(), AttributeValue::Ss(vec!["a".into()])),
        ]);
        let record = Record::builder()
            .event_id("e1")
            .event_name(OperationType::Insert)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(
                SdkStreamRecord::builder()
                    .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
                    .keys("pk", AttributeValue::S("evt-1".into()))
                    .set_new_image(Some(image))
                    .sequence_number("000100")
                    .size_bytes(42)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build();
        let converted = to_stream_record(&record).expect("has a sequence number");
        assert_eq!(converted.sequence_number, SequenceNumber::new("100"));
        assert_eq!(
            converted.created_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            converted.json(),
            json!({
                "eventID": "e1", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_700_000_000,
                    "Keys": {"pk": {"S": "evt-1"}},
                    "NewImage": {
                        "bin": {"B": "aGk="},
                        "m": {"M": {"l": {"L": [{"BOOL": true}, {"NULL": true}]}}},
                        "n": {"N": "12.5"},
                        "pk": {"S": "evt-1"},
                        "ss": {"SS": ["a"]}
                    },
                    "SequenceNumber": "000100", "SizeBytes": 42,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                }
            })
        );
    }
}
