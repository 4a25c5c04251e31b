//! Operator commands over the lease table: `status` (who reads what, how far behind) and
//! `checkpoint reset` (move one shard or a whole source to TRIM_HORIZON, LATEST or the first
//! record at or after a time).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::aws::{Clients, Retries};
use crate::config::{table_or_arn, Config, StreamSelector};
use crate::lease::{
    read_gaps, Checkpoint, DynamoDbLeaseStore, Lease, LeaseError, LeaseStore, StreamGap,
};
use crate::stream::{DynamoDbStreams, IteratorPosition, ShardId, ShardSource, SourceError};

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Reading or writing the lease table failed.
    #[error("lease table")]
    LeaseTableFailed(#[source] LeaseError),
    /// Reading a shard (to find a position by time) failed.
    #[error("reading shard {shard} of {stream_arn}")]
    ReadShardFailed {
        stream_arn: String,
        shard: ShardId,
        #[source]
        source: SourceError,
    },
    /// `--shard`/`--source` selected nothing.
    #[error("no lease matches --shard/--source (see `outbox-relay status`)")]
    NothingMatches,
    /// Selected shards are owned and `--force` was not given.
    #[error("refusing to reset shards a relay owns: {}; stop the relays or pass --force", .0.join(", "))]
    ShardsOwned(Vec<String>),
}

/// Where `checkpoint reset` moves a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    TrimHorizon,
    Latest,
    /// The first record created at or after this time.
    At(SystemTime),
}

impl std::str::FromStr for ResetTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            t => crate::time::parse_rfc3339(t)
                .map(Self::At)
                .map_err(|e| format!("expected TRIM_HORIZON, LATEST or an RFC 3339 time: {e}")),
        }
    }
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardStatus {
    /// The table name (from the stream ARN).
    pub source: String,
    pub stream_arn: String,
    pub shard_id: String,
    pub owner: Option<String>,
    pub checkpoint: String,
    /// `finished`, `free`, `owned`, `stale` (owner did not renew within lease_duration, by
    /// the lease's own timestamp) or `waiting for parent`.
    pub state: String,
    /// Age of the oldest record not yet relayed (0 when caught up), read from the stream.
    pub lag: Option<Duration>,
}

struct Tools {
    leases: DynamoDbLeaseStore,
    streams: DynamoDbStreams,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn tools(config: &Config) -> Tools {
    let clients = Clients::load(&config.aws, Retries::Sdk).await;
    Tools {
        leases: DynamoDbLeaseStore::new(
            clients.dynamodb.clone(),
            config.leases.table_name.clone(),
            false,
        ),
        streams: DynamoDbStreams::new(clients.streams, clients.dynamodb.clone()),
        dynamodb: clients.dynamodb,
    }
}

/// The stream ARNs of the configured sources (sources that cannot be resolved are skipped).
async fn configured_arns(config: &Config, streams: &DynamoDbStreams) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for selector in config.source.streams() {
        let arn = match &selector {
            StreamSelector::Arn(a) => Some(a.clone()),
            StreamSelector::Table(t) => streams.latest_stream_arn(t).await.ok(),
        };
        if let Some(arn) = arn {
            out.push((selector.name().to_owned(), arn));
        }
    }
    out
}

/// Reads every lease of the configured sources (any stream of their tables).
async fn leases_of_sources(config: &Config, tools: &Tools) -> Result<Vec<Lease>, OperatorError> {
    let snapshot = tools
        .leases
        .snapshot()
        .await
        .map_err(OperatorError::LeaseTableFailed)?;
    let names: Vec<String> = config
        .source
        .streams()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    Ok(snapshot
        .leases
        .into_iter()
        .filter(|l| {
            names
                .iter()
                .any(|n| *n == l.stream_arn || *n == table_or_arn(&l.stream_arn))
        })
        .collect())
}

/// `outbox-relay status`.
///
/// # Errors
/// When the lease table cannot be read.
pub async fn status(config: &Config) -> Result<Vec<ShardStatus>, OperatorError> {
    let tools = tools(config).await;
    let leases = leases_of_sources(config, &tools).await?;
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for l in &leases {
        let renewed_ago = l
            .updated_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| now.duration_since(t).ok());
        let parent_pending = l.waits_for_parent(|arn, shard| {
            leases
                .iter()
                .find(|o| o.stream_arn == arn && &o.shard_id == shard)
        });
        let state = match (&l.checkpoint, &l.owner) {
            (Checkpoint::ShardEnd, _) => "finished".to_owned(),
            (_, None) if parent_pending => "waiting for parent".to_owned(),
            (_, None) => "free".to_owned(),
            (_, Some(_)) if renewed_ago.is_some_and(|a| a > config.leases.lease_duration) => {
                format!(
                    "stale (not renewed for {})",
                    humantime::format_duration(Duration::from_secs(
                        renewed_ago.map_or(0, |a| a.as_secs())
                    ))
                )
            }
            (_, Some(_)) => "owned".to_owned(),
        };
        rows.push(ShardStatus {
            source: table_or_arn(&l.stream_arn).to_owned(),
            stream_arn: l.stream_arn.clone(),
            shard_id: l.shard_id.0.clone(),
            owner: l.owner.as_ref().map(|o| o.0.clone()),
            checkpoint: l.checkpoint.as_stored().to_owned(),
            state,
            lag: lag(&tools.streams, l, now).await,
        });
    }
    Ok(rows)
}

/// Age of the first record after the checkpoint (0 when there is none); `None` if unknown.
async fn lag(streams: &DynamoDbStreams, l: &Lease, now: SystemTime) -> Option<Duration> {
    let position = match &l.checkpoint {
        Checkpoint::ShardEnd | Checkpoint::Latest => return Some(Duration::ZERO),
        Checkpoint::TrimHorizon => IteratorPosition::TrimHorizon,
        Checkpoint::Sequence(s) => IteratorPosition::AfterSequenceNumber(s.clone()),
    };
    let iterator = streams
        .shard_iterator(&l.stream_arn, &l.shard_id, &position)
        .await
        .ok()?;
    let page = streams.get_records(&iterator, 1).await.ok()?;
    match page.records.first() {
        None => Some(Duration::ZERO),
        Some(r) => r
            .created_at
            .map(|t| now.duration_since(t).unwrap_or_default()),
    }
}

/// `status` as a table.
#[must_use]
pub fn status_table(rows: &[ShardStatus]) -> String {
    let mut out = format!(
        "{:<24} {:<44} {:<28} {:<26} {:>9}  {}\n",
        "SOURCE", "SHARD", "OWNER", "CHECKPOINT", "LAG", "STATE"
    );
    for r in rows {
        let lag = r
            .lag
            .map_or_else(|| "?".to_owned(), |l| format!("{:.1}s", l.as_secs_f64()));
        out.push_str(&format!(
            "{:<24} {:<44} {:<28} {:<26} {:>9}  {}\n",
            r.source,
            r.shard_id,
            r.owner.as_deref().unwrap_or("-"),
            r.checkpoint,
            lag,
            r.state
        ));
    }
    out
}

/// The gaps recorded in the lease table (records trimmed from a stream before they were
/// relayed), oldest first.
///
/// # Errors
/// The lease table cannot be read.
pub async fn gaps(config: &Config) -> Result<Vec<StreamGap>, OperatorError> {
    let tools = tools(config).await;
    read_gaps(&tools.dynamodb, &config.leases.table_name)
        .await
        .map_err(OperatorError::LeaseTableFailed)
}

/// The gaps as text: each with its window and the backfill that recovers it (nothing when
/// there is none).
#[must_use]
pub fn gaps_text(gaps: &[StreamGap]) -> String {
    if gaps.is_empty() {
        return String::new();
    }
    let time =
        |t: Option<SystemTime>| t.map_or_else(|| "unknown".to_owned(), crate::publish::rfc3339);
    let mut out = format!(
        "\nGAPS: records trimmed from the stream before they were relayed ({}); the rows are still in the table until their TTL\n",
        gaps.len()
    );
    for g in gaps {
        out.push_str(&format!(
            "{} shard {}: created {} .. {} (found {}){}\n  recover: {}\n",
            table_or_arn(&g.stream_arn),
            g.shard_id,
            time(g.since),
            time(g.until),
            crate::publish::rfc3339(g.detected_at),
            g.recovered_at.map_or_else(String::new, |t| format!(
                ", recovered {} (source.recover_gaps)",
                crate::publish::rfc3339(t)
            )),
            g.recovery(),
        ));
    }
    out
}

/// `status --output json`.
#[must_use]
pub fn status_json(rows: &[ShardStatus], gaps: &[StreamGap]) -> Value {
    let time = |t: Option<SystemTime>| t.map(crate::publish::rfc3339);
    json!({"gaps": gaps.iter().map(|g| json!({
        "stream_arn": g.stream_arn,
        "shard_id": g.shard_id.0,
        "since": time(g.since),
        "until": time(g.until),
        "detected_at": crate::publish::rfc3339(g.detected_at),
        "recovered_at": time(g.recovered_at),
        "recover": g.recovery().to_string(),
    })).collect::<Vec<_>>(),
    "shards": rows.iter().map(|r| json!({
        "source": r.source,
        "stream_arn": r.stream_arn,
        "shard_id": r.shard_id,
        "owner": r.owner,
        "checkpoint": r.checkpoint,
        "state": r.state,
        "lag_seconds": r.lag.map(|l| l.as_secs_f64()),
    })).collect::<Vec<_>>()})
}

/// What `checkpoint reset` selects.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    /// One shard id, or every shard of `source`.
    pub shard: Option<String>,
    /// A table name or stream ARN of the config.
    pub source: Option<String>,
    pub to: ResetTarget,
    /// Reset shards even while a relay owns them (it stops at its next lease write).
    pub force: bool,
}

/// `outbox-relay checkpoint reset`. Returns one line per shard moved.
///
/// # Errors
/// When nothing matches, a matching shard is owned (without `--force`), or AWS fails.
pub async fn reset(config: &Config, request: &ResetRequest) -> Result<Vec<String>, OperatorError> {
    let tools = tools(config).await;
    let arns = configured_arns(config, &tools.streams).await;
    let leases = leases_of_sources(config, &tools).await?;
    let selected: Vec<&Lease> = leases
        .iter()
        .filter(|l| request.shard.as_ref().is_none_or(|s| *s == l.shard_id.0))
        .filter(|l| {
            request.source.as_ref().is_none_or(|src| {
                *src == l.stream_arn
                    || *src == table_or_arn(&l.stream_arn)
                    || arns
                        .iter()
                        .any(|(name, arn)| name == src && *arn == l.stream_arn)
            })
        })
        .collect();
    if selected.is_empty() {
        return Err(OperatorError::NothingMatches);
    }
    if !request.force {
        let owned: Vec<String> = selected
            .iter()
            .filter_map(|l| {
                l.owner
                    .as_ref()
                    .map(|o| format!("{} (owned by {o})", l.shard_id))
            })
            .collect();
        if !owned.is_empty() {
            return Err(OperatorError::ShardsOwned(owned));
        }
    }
    let mut done = Vec::new();
    for l in selected {
        let checkpoint = match &request.to {
            ResetTarget::TrimHorizon => Checkpoint::TrimHorizon,
            ResetTarget::Latest => Checkpoint::Latest,
            ResetTarget::At(t) => position_at(&tools.streams, l, *t).await?,
        };
        tools
            .leases
            .reset(l, &checkpoint)
            .await
            .map_err(OperatorError::LeaseTableFailed)?;
        done.push(format!(
            "{} {}: {} -> {}",
            table_or_arn(&l.stream_arn),
            l.shard_id,
            l.checkpoint,
            checkpoint
        ));
    }
    Ok(done)
}

/// The checkpoint just before the first record created at or after `at`.
async fn position_at(
    streams: &DynamoDbStreams,
    l: &Lease,
    at: SystemTime,
) -> Result<Checkpoint, OperatorError> {
    let failed = |source| OperatorError::ReadShardFailed {
        stream_arn: l.stream_arn.clone(),
        shard: l.shard_id.clone(),
        source,
    };
    let mut iterator = streams
        .shard_iterator(&l.stream_arn, &l.shard_id, &IteratorPosition::TrimHorizon)
        .await
        .map_err(failed)?;
    let mut previous: Option<crate::stream::SequenceNumber> = None;
    loop {
        let page = streams.get_records(&iterator, 1000).await.map_err(failed)?;
        for r in &page.records {
            if r.created_at.is_some_and(|c| c >= at) {
                return Ok(previous.map_or(Checkpoint::TrimHorizon, Checkpoint::Sequence));
            }
            previous = Some(r.sequence_number.clone());
        }
        match page.next_iterator {
            // Closed shard read to its end: nothing at or after `at`.
            None => return Ok(Checkpoint::ShardEnd),
            // Open shard caught up: start after the last existing record.
            Some(_) if page.records.is_empty() => {
                return Ok(previous.map_or(Checkpoint::TrimHorizon, Checkpoint::Sequence))
            }
            Some(next) => iterator = next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse_from_the_command_line() {
        assert_eq!(
            "TRIM_HORIZON".parse::<ResetTarget>(),
            Ok(ResetTarget::TrimHorizon)
        );
        assert_eq!("LATEST".parse::<ResetTarget>(), Ok(ResetTarget::Latest));
        assert_eq!(
            "2026-01-31T12:00:00Z".parse::<ResetTarget>(),
            Ok(ResetTarget::At(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_769_860_800)
            ))
        );
        assert!("yesterday".parse::<ResetTarget>().is_err());
    }

    #[test]
    fn the_table_name_comes_from_the_stream_arn() {
        assert_eq!(
            table_or_arn("arn:aws:dynamodb:us-east-1:1:table/Events/stream/2026"),
            "Events"
        );
        assert_eq!(table_or_arn("not-an-arn"), "not-an-arn");
    }
}
