//! Gaps in the lease table: one item per gap a worker found (records trimmed from its shard
//! before they were relayed), keyed `gap#<stream ARN>#<shard>#<detected, epoch ms>`, read by
//! `outbox-relay status`. The relay's lease rounds skip these items.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::dynamodb::{call_error, epoch_millis, scan_all};
use super::model::StreamGap;
use super::store::LeaseError;
use crate::stream::ShardId;

/// Lease table keys of gap items start with this.
pub(super) const PREFIX: &str = "gap#";

const KEY: &str = "leaseKey";

/// The gap's item key.
fn key(gap: &StreamGap) -> String {
    let detected = epoch_millis(gap.detected_at).unwrap_or(0);
    format!("{PREFIX}{}#{}#{detected}", gap.stream_arn, gap.shard_id.0)
}

pub(super) async fn record(
    client: &Client,
    table: &str,
    gap: &StreamGap,
) -> Result<(), LeaseError> {
    let detected = epoch_millis(gap.detected_at).unwrap_or(0);
    let mut item = HashMap::from([
        (KEY.to_owned(), AttributeValue::S(key(gap))),
        (
            "gapStream".to_owned(),
            AttributeValue::S(gap.stream_arn.clone()),
        ),
        (
            "gapShard".to_owned(),
            AttributeValue::S(gap.shard_id.0.clone()),
        ),
        (
            "detectedAt".to_owned(),
            AttributeValue::N(detected.to_string()),
        ),
    ]);
    for (name, t) in [("since", gap.since), ("until", gap.until)] {
        if let Some(ms) = t.and_then(epoch_millis) {
            item.insert(name.to_owned(), AttributeValue::N(ms.to_string()));
        }
    }
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| call_error("PutItem(gap)", &e))?;
    Ok(())
}

/// Every gap recorded in the lease table `table`, oldest first.
///
/// # Errors
/// The lease table cannot be read.
pub async fn read_gaps(client: &Client, table: &str) -> Result<Vec<StreamGap>, LeaseError> {
    let mut gaps = Vec::new();
    for item in &scan_all(client, table).await? {
        let is_gap = item
            .get(KEY)
            .and_then(|v| v.as_s().ok())
            .is_some_and(|k| k.starts_with(PREFIX));
        if !is_gap {
            continue;
        }
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let t = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        };
        gaps.push(StreamGap {
            stream_arn: s("gapStream").unwrap_or_default(),
            shard_id: ShardId(s("gapShard").unwrap_or_default()),
            since: t("since"),
            until: t("until"),
            detected_at: t("detectedAt").unwrap_or(SystemTime::UNIX_EPOCH),
            recovered_at: t("recoveredAt"),
        });
    }
    gaps.sort_by_key(|g| g.detected_at);
    Ok(gaps)
}

/// Claims an unrecovered gap for `owner`'s recovery: if nobody recovered it and nobody claimed
/// it within `claim_for` (a claimer that died lets it go after that). `true` if claimed.
///
/// # Errors
/// The lease table cannot be written.
pub async fn claim_gap(
    client: &Client,
    table: &str,
    gap: &StreamGap,
    owner: &str,
    claim_for: Duration,
) -> Result<bool, LeaseError> {
    let now = epoch_millis(SystemTime::now()).unwrap_or(0);
    let stale = now.saturating_sub(u64::try_from(claim_for.as_millis()).unwrap_or(u64::MAX));
    let result = client
        .update_item()
        .table_name(table)
        .key(KEY, AttributeValue::S(key(gap)))
        .update_expression("SET claimedBy = :me, claimedAt = :now")
        .condition_expression(
            "attribute_exists(leaseKey) AND attribute_not_exists(recoveredAt) \
             AND (attribute_not_exists(claimedAt) OR claimedAt < :stale)",
        )
        .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":stale", AttributeValue::N(stale.to_string()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(call_error("UpdateItem(gap claim)", &e)),
    }
}

/// Marks a gap recovered (its backfill finished), with the events published.
///
/// # Errors
/// The lease table cannot be written.
pub async fn mark_gap_recovered(
    client: &Client,
    table: &str,
    gap: &StreamGap,
    published: u64,
) -> Result<(), LeaseError> {
    let now = epoch_millis(SystemTime::now()).unwrap_or(0);
    client
        .update_item()
        .table_name(table)
        .key(KEY, AttributeValue::S(key(gap)))
        .update_expression(
            "SET recoveredAt = :now, recoveredEvents = :n REMOVE claimedBy, claimedAt",
        )
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":n", AttributeValue::N(published.to_string()))
        .send()
        .await
        .map_err(|e| call_error("UpdateItem(gap recovered)", &e))?;
    Ok(())
}

/// A stable label for the gap (its backfill's positions are kept under it).
#[must_use]
pub fn gap_label(gap: &StreamGap) -> String {
    key(gap)
}
