//! A backfill's progress in the lease table, so `backfill --resume` continues after a crash
//! or Ctrl-C without re-publishing what was settled. One item per run, `backfill#<table>`
//! (its segment count and time window: a resume must use the same), and one per segment,
//! `backfill#<table>#<segment>`: the segment's Scan position (`ExclusiveStartKey` of its next
//! page, written once every row of the page before it is settled), whether it is done, and
//! its counts. The relay's lease rounds skip these items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::dynamodb::call_error;
use super::store::LeaseError;

/// Lease table keys of backfill items start with this.
pub(super) const PREFIX: &str = "backfill#";

const KEY: &str = "leaseKey";

/// What a run selects: a resume must select the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRun {
    pub segments: u32,
    /// `--since`, `--until` as given (RFC 3339), if given.
    pub since: Option<String>,
    pub until: Option<String>,
}

/// One segment's progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentProgress {
    /// Where its next Scan page starts; `None` = at the segment's start (or, when `done`,
    /// nowhere).
    pub position: Option<HashMap<String, AttributeValue>>,
    pub done: bool,
    /// Rows read, published (events accepted), dead-lettered, and skipped (outside the
    /// window or matched by no route), up to `position`.
    pub scanned: u64,
    pub published: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
}

/// The backfill items of one source table in the lease table.
#[derive(Debug, Clone)]
pub struct BackfillPositions {
    client: Client,
    lease_table: String,
    source_table: String,
}

impl BackfillPositions {
    #[must_use]
    pub fn new(client: Client, lease_table: impl Into<String>, source_table: &str) -> Self {
        Self {
            client,
            lease_table: lease_table.into(),
            source_table: source_table.to_owned(),
        }
    }

    fn run_key(&self) -> String {
        format!("{PREFIX}{}", self.source_table)
    }

    fn segment_key(&self, segment: u32) -> String {
        format!("{PREFIX}{}#{segment}", self.source_table)
    }

    /// The run recorded for this table, if any.
    ///
    /// # Errors
    /// The lease table cannot be read.
    pub async fn run(&self) -> Result<Option<BackfillRun>, LeaseError> {
        let item = self.get(self.run_key()).await?;
        Ok(item.map(|item| BackfillRun {
            segments: number(&item, "segments")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            since: string(&item, "since"),
            until: string(&item, "until"),
        }))
    }

    /// Records a new run: its selection, and every segment at its start.
    ///
    /// # Errors
    /// The lease table cannot be written.
    pub async fn start(&self, run: &BackfillRun) -> Result<(), LeaseError> {
        let mut item = HashMap::from([
            (KEY.to_owned(), AttributeValue::S(self.run_key())),
            (
                "segments".to_owned(),
                AttributeValue::N(run.segments.to_string()),
            ),
            (
                "updatedAt".to_owned(),
                AttributeValue::S(crate::publish::rfc3339(std::time::SystemTime::now())),
            ),
        ]);
        for (name, value) in [("since", &run.since), ("until", &run.until)] {
            if let Some(v) = value {
                item.insert(name.to_owned(), AttributeValue::S(v.clone()));
            }
        }
        self.put(item).await?;
        for segment in 0..run.segments {
            self.save(segment, &SegmentProgress::default()).await?;
        }
        Ok(())
    }

    /// A segment's progress (at its start if none is recorded).
    ///
    /// # Errors
    /// The lease table cannot be read.
    pub async fn segment(&self, segment: u32) -> Result<SegmentProgress, LeaseError> {
        let Some(item) = self.get(self.segment_key(segment)).await? else {
            return Ok(SegmentProgress::default());
        };
        Ok(SegmentProgress {
            position: item.get("position").and_then(|p| p.as_m().ok()).cloned(),
            done: item
                .get("done")
                .and_then(|d| d.as_bool().ok())
                .copied()
                .unwrap_or(false),
            scanned: number(&item, "scanned").unwrap_or(0),
            published: number(&item, "published").unwrap_or(0),
            dead_lettered: number(&item, "deadLettered").unwrap_or(0),
            skipped: number(&item, "skipped").unwrap_or(0),
        })
    }

    /// Records a segment's progress.
    ///
    /// # Errors
    /// The lease table cannot be written.
    pub async fn save(&self, segment: u32, progress: &SegmentProgress) -> Result<(), LeaseError> {
        let mut item = HashMap::from([
            (KEY.to_owned(), AttributeValue::S(self.segment_key(segment))),
            ("done".to_owned(), AttributeValue::Bool(progress.done)),
            (
                "updatedAt".to_owned(),
                AttributeValue::S(crate::publish::rfc3339(std::time::SystemTime::now())),
            ),
        ]);
        for (name, n) in [
            ("scanned", progress.scanned),
            ("published", progress.published),
            ("deadLettered", progress.dead_lettered),
            ("skipped", progress.skipped),
        ] {
            item.insert(name.to_owned(), AttributeValue::N(n.to_string()));
        }
        if let Some(position) = &progress.position {
            item.insert("position".to_owned(), AttributeValue::M(position.clone()));
        }
        self.put(item).await
    }

    async fn put(&self, item: HashMap<String, AttributeValue>) -> Result<(), LeaseError> {
        self.client
            .put_item()
            .table_name(&self.lease_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| call_error("PutItem", &e))?;
        Ok(())
    }

    async fn get(
        &self,
        key: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LeaseError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.lease_table)
            .key(KEY, AttributeValue::S(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| call_error("GetItem", &e))?
            .item)
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}
