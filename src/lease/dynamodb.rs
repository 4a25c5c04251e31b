//! [`LeaseStore`] on a DynamoDB table, with every write conditional (see [`super::store`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::coordinator::WorkerRecord;
use super::model::{Checkpoint, Lease, LeaseKey, StreamGap, WorkerId};
use super::store::{LeaseError, LeaseSnapshot, LeaseStore};
use crate::stream::ShardId;

const KEY: &str = "leaseKey";
const STREAM_ARN: &str = "streamArn";
const SHARD_ID: &str = "shardId";
const OWNER: &str = "leaseOwner";
const COUNTER: &str = "leaseCounter";
const EPOCH: &str = "leaseEpoch";
const CHECKPOINT: &str = "checkpoint";
const PARENT: &str = "parentShardId";
const SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
const UPDATED_AT: &str = "updatedAt";
/// Epoch milliseconds: when the checkpointed record was created.
const CHECKPOINT_CREATED_AT: &str = "checkpointCreatedAt";
/// Registry items of workers are keyed `worker#<id>` in the same table.
const WORKER_PREFIX: &str = "worker#";

/// Table creation is waited for this long before start-up gives up (and retries).
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The lease table.
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    client: Client,
    table: String,
    create_table: bool,
}

impl DynamoDbLeaseStore {
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>, create_table: bool) -> Self {
        Self {
            client,
            table: table.into(),
            create_table,
        }
    }

    async fn table_status(&self) -> Result<Option<TableStatus>, LeaseError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => Ok(out.table().and_then(|t| t.table_status()).cloned()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(call_error("DescribeTable", &e)),
        }
    }

    async fn update(
        &self,
        operation: &'static str,
        key: &LeaseKey,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<HashMap<String, AttributeValue>, LeaseError> {
        match request
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.0.clone()))
            .expression_attribute_values(":now", now())
            .return_values(ReturnValue::AllNew)
            .send()
            .await
        {
            Ok(out) => Ok(out.attributes.unwrap_or_default()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(LeaseError::LeaseLost { key: key.clone() })
            }
            Err(e) => Err(call_error(operation, &e)),
        }
    }
}

impl LeaseStore for DynamoDbLeaseStore {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        if self.table_status().await?.is_none() {
            if !self.create_table {
                return Err(LeaseError::TableMissing {
                    table: self.table.clone(),
                });
            }
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("name and type are set"),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("name and key type are set"),
                )
                .send()
                .await;
            match created {
                Ok(_) => tracing::info!(table = %self.table, "Lease table created."),
                // Another replica created it first.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(call_error("CreateTable", &e)),
            }
        }
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            if self.table_status().await? == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LeaseError::CallFailed {
                    operation: "DescribeTable",
                    code: "TableNotActive".into(),
                    message: format!("table {} did not become ACTIVE", self.table),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn snapshot(&self) -> Result<LeaseSnapshot, LeaseError> {
        let mut snapshot = LeaseSnapshot::default();
        for item in &scan_all(&self.client, &self.table).await? {
            let key = item.get(KEY).and_then(|v| v.as_s().ok());
            // A backfill's scan positions and recorded gaps share the table; they are not
            // leases.
            if key.is_some_and(|k| {
                k.starts_with(super::backfill::PREFIX) || k.starts_with(super::gaps::PREFIX)
            }) {
                continue;
            }
            match key.and_then(|k| k.strip_prefix(WORKER_PREFIX)) {
                Some(id) => snapshot.workers.push(WorkerRecord {
                    id: WorkerId(id.to_owned()),
                    counter: item
                        .get(COUNTER)
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                }),
                None => snapshot.leases.push(from_item(item)?),
            }
        }
        snapshot.leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(snapshot)
    }

    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), LeaseError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(format!("{WORKER_PREFIX}{worker}")))
            .update_expression("SET #updated = :now ADD #counter :one")
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":now", now())
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("UpdateItem(heartbeat)", &e))
    }

    async fn deregister(&self, worker: &WorkerId) -> Result<(), LeaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(format!("{WORKER_PREFIX}{worker}")))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("DeleteItem(deregister)", &e))
    }

    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(lease)))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(call_error("PutItem", &e)),
        }
    }

    async fn take(&self, observed: &Lease, owner: &WorkerId) -> Result<Lease, LeaseError> {
        let request = self
            .client
            .update_item()
            .update_expression(
                "SET #owner = :me, #updated = :now ADD #counter :one, #switches :one, #epoch :one",
            )
            .condition_expression("#counter = :observed")
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_names("#switches", SWITCHES)
            .expression_attribute_values(":me", AttributeValue::S(owner.0.clone()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":observed",
                AttributeValue::N(observed.counter.to_string()),
            );
        let item = self
            .update("UpdateItem(take)", &observed.key, request)
            .await?;
        from_item(&item)
    }

    async fn renew(&self, key: &LeaseKey, owner: &WorkerId) -> Result<(), LeaseError> {
        let request = self
            .client
            .update_item()
            .update_expression("SET #updated = :now ADD #counter :one")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":me", AttributeValue::S(owner.0.clone()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        self.update("UpdateItem(renew)", key, request)
            .await
            .map(drop)
    }

    async fn checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        epoch: u64,
        checkpoint: &Checkpoint,
        created_at: Option<SystemTime>,
    ) -> Result<(), LeaseError> {
        // A checkpoint without a creation time keeps the earlier one: an earlier time is still
        // a safe start for a gap (the window only widens).
        let set_created = if created_at.is_some() {
            ", #created = :created"
        } else {
            ""
        };
        let mut request = self
            .client
            .update_item()
            .update_expression(format!(
                "SET #checkpoint = :checkpoint, #switches = :zero, #updated = :now{set_created} ADD #counter :one"
            ))
            // Our take's epoch; a lease taken before epochs existed has none.
            .condition_expression(if epoch == 0 {
                "#owner = :me AND (attribute_not_exists(#epoch) OR #epoch = :epoch)"
            } else {
                "#owner = :me AND #epoch = :epoch"
            })
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_values(":epoch", AttributeValue::N(epoch.to_string()))
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_names("#checkpoint", CHECKPOINT)
            .expression_attribute_names("#switches", SWITCHES)
            .expression_attribute_values(":me", AttributeValue::S(owner.0.clone()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(
                ":checkpoint",
                AttributeValue::S(checkpoint.as_stored().to_owned()),
            );
        if let Some(ms) = created_at.and_then(epoch_millis) {
            request = request
                .expression_attribute_names("#created", CHECKPOINT_CREATED_AT)
                .expression_attribute_values(":created", AttributeValue::N(ms.to_string()));
        }
        self.update("UpdateItem(checkpoint)", key, request)
            .await
            .map(drop)
    }

    async fn record_gap(&self, gap: &StreamGap) -> Result<(), LeaseError> {
        super::gaps::record(&self.client, &self.table, gap).await
    }

    async fn reset(&self, observed: &Lease, checkpoint: &Checkpoint) -> Result<(), LeaseError> {
        let request = self
            .client
            .update_item()
            .update_expression(
                "SET #checkpoint = :checkpoint, #switches = :zero, #updated = :now REMOVE #owner ADD #counter :one",
            )
            .condition_expression("#counter = :observed")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_names("#checkpoint", CHECKPOINT)
            .expression_attribute_names("#switches", SWITCHES)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":observed", AttributeValue::N(observed.counter.to_string()))
            .expression_attribute_values(
                ":checkpoint",
                AttributeValue::S(checkpoint.as_stored().to_owned()),
            );
        self.update("UpdateItem(reset)", &observed.key, request)
            .await
            .map(drop)
    }

    async fn delete(&self, observed: &Lease) -> Result<bool, LeaseError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(observed.key.0.clone()))
            .condition_expression("#counter = :observed")
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(
                ":observed",
                AttributeValue::N(observed.counter.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(call_error("DeleteItem(lease)", &e)),
        }
    }

    async fn release(&self, key: &LeaseKey, owner: &WorkerId) -> Result<(), LeaseError> {
        let request = self
            .client
            .update_item()
            .update_expression("REMOVE #owner SET #updated = :now ADD #counter :one")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":me", AttributeValue::S(owner.0.clone()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        self.update("UpdateItem(release)", key, request)
            .await
            .map(drop)
    }
}

fn now() -> AttributeValue {
    AttributeValue::S(humantime::format_rfc3339_millis(SystemTime::now()).to_string())
}

pub(super) fn call_error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> LeaseError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    LeaseError::CallFailed {
        operation,
        code: crate::aws::error_code(err).to_owned(),
        message: crate::aws::describe_error(err),
    }
}

/// Every item of the lease table (a consistent Scan, page by page).
pub(super) async fn scan_all(
    client: &Client,
    table: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>, LeaseError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| call_error("Scan", &e))?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(items),
        }
    }
}

/// Milliseconds since the epoch, if representable.
pub(super) fn epoch_millis(t: SystemTime) -> Option<u64> {
    u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis()).ok()
}

fn to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (KEY.to_owned(), AttributeValue::S(lease.key.0.clone())),
        (
            STREAM_ARN.to_owned(),
            AttributeValue::S(lease.stream_arn.clone()),
        ),
        (
            SHARD_ID.to_owned(),
            AttributeValue::S(lease.shard_id.0.clone()),
        ),
        (
            COUNTER.to_owned(),
            AttributeValue::N(lease.counter.to_string()),
        ),
        (EPOCH.to_owned(), AttributeValue::N(lease.epoch.to_string())),
        (
            CHECKPOINT.to_owned(),
            AttributeValue::S(lease.checkpoint.as_stored().to_owned()),
        ),
        (
            SWITCHES.to_owned(),
            AttributeValue::N(lease.owner_switches_since_checkpoint.to_string()),
        ),
        (UPDATED_AT.to_owned(), now()),
    ]);
    if let Some(owner) = &lease.owner {
        item.insert(OWNER.to_owned(), AttributeValue::S(owner.0.clone()));
    }
    if let Some(parent) = &lease.parent_shard_id {
        item.insert(PARENT.to_owned(), AttributeValue::S(parent.0.clone()));
    }
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let key = item
        .get(KEY)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let malformed = |reason: &str| LeaseError::Malformed {
        key: key.clone(),
        reason: reason.to_owned(),
    };
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let n = |name: &str| -> Result<u64, LeaseError> {
        match item.get(name).and_then(|v| v.as_n().ok()) {
            Some(n) => n
                .parse()
                .map_err(|_| malformed(&format!("{name} is not a count"))),
            None => Ok(0),
        }
    };
    if key.is_empty() {
        return Err(malformed("missing leaseKey"));
    }
    let checkpoint_text = s(CHECKPOINT).ok_or_else(|| malformed("missing checkpoint"))?;
    Ok(Lease {
        key: LeaseKey(key.clone()),
        stream_arn: s(STREAM_ARN).ok_or_else(|| malformed("missing streamArn"))?,
        shard_id: ShardId(s(SHARD_ID).ok_or_else(|| malformed("missing shardId"))?),
        owner: s(OWNER).map(WorkerId),
        counter: n(COUNTER)?,
        epoch: n(EPOCH)?,
        checkpoint: Checkpoint::from_stored(&checkpoint_text)
            .ok_or_else(|| malformed("checkpoint is not a sequence number or sentinel"))?,
        parent_shard_id: s(PARENT).map(ShardId),
        owner_switches_since_checkpoint: n(SWITCHES)?,
        updated_at: s(UPDATED_AT),
        checkpoint_created_at: item
            .get(CHECKPOINT_CREATED_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::SequenceNumber;

    #[test]
    fn a_lease_round_trips_through_its_item() {
        let lease = Lease {
            key: LeaseKey::new("arn:s", &ShardId("shard-1".into())),
            stream_arn: "arn:s".into(),
            shard_id: ShardId("shard-1".into()),
            owner: Some(WorkerId("w1".into())),
            counter: 7,
            epoch: 0,
            checkpoint: Checkpoint::Sequence(SequenceNumber::new("42")),
            parent_shard_id: Some(ShardId("shard-0".into())),
            owner_switches_since_checkpoint: 2,
            updated_at: None,
            checkpoint_created_at: None,
        };
        let mut read = from_item(&to_item(&lease)).expect("well formed");
        assert!(read.updated_at.is_some(), "every write stamps updatedAt");
        read.updated_at = None;
        assert_eq!(read, lease);
    }

    #[test]
    fn a_malformed_item_names_its_key_and_problem() {
        let mut item = to_item(&Lease {
            key: LeaseKey("k".into()),
            stream_arn: "a".into(),
            shard_id: ShardId("s".into()),
            owner: None,
            counter: 0,
            epoch: 0,
            checkpoint: Checkpoint::Latest,
            parent_shard_id: None,
            owner_switches_since_checkpoint: 0,
            updated_at: None,
            checkpoint_created_at: None,
        });
        item.insert(CHECKPOINT.into(), AttributeValue::S("soon".into()));
        let err = from_item(&item).expect_err("bad checkpoint");
        assert!(err.to_string().contains("lease item k is malformed"));
    }
}
