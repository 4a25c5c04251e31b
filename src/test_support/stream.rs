//! One scriptable fake of DynamoDB Streams behind [`ShardSource`], for what the emulator
//! cannot do (moto's one shard per table never closes, splits or trims, and its iterators
//! never expire): many streams of a table (a replaced stream), many shards with lineage,
//! closed or open, a trim horizon, scripted read errors, an iterator that expires once, a
//! parent that DescribeStream stops listing; and what the reader did (positions asked for,
//! records handed out, the order shards were first read, when each page was handed out).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stream::{
    IteratorPosition, RecordsPage, SequenceNumber, Shard, ShardId, ShardSource, SourceError,
    StreamRecord,
};

/// One shard of a fake stream.
#[derive(Debug, Clone)]
pub(crate) struct FakeShard {
    pub shard: Shard,
    pub records: Vec<StreamRecord>,
    /// The first record still in the stream: those before it were trimmed.
    pub trim_horizon: usize,
}

impl FakeShard {
    /// A shard of `records`, closed (it ends after them) or open (more may come).
    pub(crate) fn new(
        id: &str,
        parent: Option<&str>,
        closed: bool,
        records: Vec<StreamRecord>,
    ) -> Self {
        Self {
            shard: Shard {
                id: ShardId(id.into()),
                parent: parent.map(|p| ShardId(p.into())),
                ending_sequence_number: closed.then(|| SequenceNumber::new("9".repeat(21))),
            },
            records,
            trim_horizon: 0,
        }
    }

    fn closed(&self) -> bool {
        self.shard.ending_sequence_number.is_some()
    }

    /// Where an iterator at `position` starts. A sequence number not in the shard starts at
    /// its beginning (DynamoDB Streams refuses one from another shard; no test relies on it).
    fn start(&self, position: &IteratorPosition) -> usize {
        match position {
            IteratorPosition::TrimHorizon => self.trim_horizon,
            IteratorPosition::Latest => self.records.len(),
            IteratorPosition::AfterSequenceNumber(seq) => self
                .records
                .iter()
                .position(|r| &r.sequence_number == seq)
                .map_or(0, |i| i + 1),
        }
    }
}

/// A table's streams (the last one is the latest), served `page` records per GetRecords.
#[derive(Debug)]
pub(crate) struct FakeStream {
    streams: Vec<(String, Vec<FakeShard>)>,
    /// Which stream `latest_stream_arn` answers (an index into `streams`).
    pub latest: AtomicUsize,
    pub page: usize,
    /// Shards DescribeStream no longer lists (trimmed from the stream's 24 hours).
    pub unlisted: Mutex<HashSet<String>>,
    /// Errors the next GetRecords calls return, in order.
    pub read_errors: Mutex<Vec<SourceError>>,
    /// The first GetRecords past a shard's start fails once with an expired iterator.
    pub expire_once: AtomicBool,
    /// Every position an iterator was asked for.
    pub positions: Mutex<Vec<IteratorPosition>>,
    /// Records handed out by GetRecords so far.
    pub handed_out: AtomicUsize,
    /// Shard ids in the order their first GetRecords happened.
    pub first_reads: Mutex<Vec<String>>,
    /// (shard, sequence number of a page's last record) → when the page was handed out.
    pub read_at: Mutex<HashMap<(String, String), Instant>>,
    /// Calls made: GetRecords, shard listings (each a full DescribeStream pagination), and
    /// child queries (DescribeStream with a `CHILD_SHARDS` filter).
    pub get_records_calls: AtomicUsize,
    pub listings: AtomicUsize,
    pub child_queries: AtomicUsize,
    /// Per shard: only its first `n` records are in the stream until `at` (records written
    /// later, while the relay runs), as `(n, at)`.
    /// On tokio's clock, so paused-time tests can wait for it.
    pub written_at: Mutex<HashMap<String, (usize, tokio::time::Instant)>>,
    /// Per shard: records written at a steady rate, record `i` in the stream from
    /// `start + i * gap`, as `(start, gap)`. On tokio's clock.
    pub steady: Mutex<HashMap<String, (tokio::time::Instant, Duration)>>,
}

impl FakeStream {
    /// One stream `arn` of `shards`.
    pub(crate) fn new(arn: &str, shards: Vec<FakeShard>, page: usize) -> Self {
        Self::replaced(vec![(arn.to_owned(), shards)], page)
    }

    /// A table whose stream was replaced: `streams` oldest first; the latest is the first
    /// until [`FakeStream::switch_to`].
    pub(crate) fn replaced(streams: Vec<(String, Vec<FakeShard>)>, page: usize) -> Self {
        Self {
            streams,
            latest: AtomicUsize::new(0),
            page,
            unlisted: Mutex::new(HashSet::new()),
            read_errors: Mutex::new(Vec::new()),
            expire_once: AtomicBool::new(false),
            positions: Mutex::new(Vec::new()),
            handed_out: AtomicUsize::new(0),
            first_reads: Mutex::new(Vec::new()),
            read_at: Mutex::new(HashMap::new()),
            get_records_calls: AtomicUsize::new(0),
            listings: AtomicUsize::new(0),
            child_queries: AtomicUsize::new(0),
            written_at: Mutex::new(HashMap::new()),
            steady: Mutex::new(HashMap::new()),
        }
    }

    /// `latest_stream_arn` answers stream `index` from now on.
    pub(crate) fn switch_to(&self, index: usize) {
        self.latest.store(index, Ordering::SeqCst);
    }

    /// DescribeStream stops listing `shard`.
    pub(crate) fn unlist(&self, shard: &str) {
        self.unlisted.lock().expect("lock").insert(shard.to_owned());
    }

    /// The shards of stream `arn` DescribeStream lists, those `wanted`.
    fn listed(&self, arn: &str, wanted: impl Fn(&Shard) -> bool) -> Vec<Shard> {
        let unlisted = self.unlisted.lock().expect("lock");
        self.streams
            .iter()
            .filter(|(a, _)| a == arn)
            .flat_map(|(_, shards)| shards)
            .filter(|s| !unlisted.contains(&s.shard.id.0) && wanted(&s.shard))
            .map(|s| s.shard.clone())
            .collect()
    }

    /// DescribeStream lists `shard` (again): a shard that appears after start-up.
    pub(crate) fn relist(&self, shard: &str) {
        self.unlisted.lock().expect("lock").remove(shard);
    }

    /// The shards of stream `arn`.
    pub(crate) fn shards_mut(&mut self, arn: &str) -> &mut Vec<FakeShard> {
        &mut self
            .streams
            .iter_mut()
            .find(|(a, _)| a == arn)
            .expect("a stream of this fake")
            .1
    }

    fn shard(&self, arn: &str, shard: &str) -> Option<&FakeShard> {
        self.streams
            .iter()
            .find(|(a, _)| a == arn)?
            .1
            .iter()
            .find(|s| s.shard.id.0 == shard)
    }
}

/// Iterators are `arn|shard|index`.
fn iterator(arn: &str, shard: &str, index: usize) -> String {
    format!("{arn}|{shard}|{index}")
}

impl ShardSource for FakeStream {
    async fn latest_stream_arn(&self, _: &str) -> Result<String, SourceError> {
        let latest = self.latest.load(Ordering::SeqCst);
        Ok(self.streams[latest.min(self.streams.len() - 1)].0.clone())
    }

    async fn list_shards(&self, arn: &str) -> Result<Vec<Shard>, SourceError> {
        self.listings.fetch_add(1, Ordering::Relaxed);
        Ok(self.listed(arn, |_| true))
    }

    async fn child_shards(&self, arn: &str, parent: &ShardId) -> Result<Vec<Shard>, SourceError> {
        self.child_queries.fetch_add(1, Ordering::Relaxed);
        Ok(self.listed(arn, |s| s.parent.as_ref() == Some(parent)))
    }

    async fn shard_iterator(
        &self,
        arn: &str,
        shard: &ShardId,
        position: &IteratorPosition,
    ) -> Result<String, SourceError> {
        self.positions.lock().expect("lock").push(position.clone());
        let fake = self
            .shard(arn, &shard.0)
            .ok_or_else(|| SourceError::NotFound {
                message: format!("shard {shard} of {arn}"),
            })?;
        Ok(iterator(arn, &shard.0, fake.start(position)))
    }

    async fn get_records(&self, it: &str, _: usize) -> Result<RecordsPage, SourceError> {
        self.get_records_calls.fetch_add(1, Ordering::Relaxed);
        let queued = {
            let mut errors = self.read_errors.lock().expect("lock");
            (!errors.is_empty()).then(|| errors.remove(0))
        };
        if let Some(e) = queued {
            return Err(e);
        }
        let mut parts = it.rsplitn(3, '|');
        let (Some(start), Some(shard), Some(arn)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SourceError::IteratorExpired);
        };
        let start: usize = start.parse().map_err(|_| SourceError::IteratorExpired)?;
        if start > 0 && self.expire_once.swap(false, Ordering::SeqCst) {
            return Err(SourceError::IteratorExpired);
        }
        {
            let mut first = self.first_reads.lock().expect("lock");
            if !first.iter().any(|s| s == shard) {
                first.push(shard.to_owned());
            }
        }
        let fake = self
            .shard(arn, shard)
            .ok_or_else(|| SourceError::NotFound {
                message: format!("shard {shard} of {arn}"),
            })?;
        let now = tokio::time::Instant::now();
        let visible = match self.written_at.lock().expect("lock").get(shard) {
            Some(&(n, at)) if now < at => n,
            _ => fake.records.len(),
        };
        let visible = match self.steady.lock().expect("lock").get(shard) {
            Some(&(start, _)) if now < start => 0,
            Some(&(start, gap)) => visible.min(
                usize::try_from((now - start).as_nanos() / gap.as_nanos().max(1))
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            ),
            None => visible,
        };
        let end = (start + self.page).min(visible).max(start);
        let records = fake.records[start..end].to_vec();
        self.handed_out.fetch_add(records.len(), Ordering::SeqCst);
        if let Some(last) = records.last() {
            self.read_at.lock().expect("lock").insert(
                (shard.to_owned(), last.sequence_number.as_str().to_owned()),
                Instant::now(),
            );
        }
        let ended = fake.closed() && end == fake.records.len();
        Ok(RecordsPage {
            records,
            next_iterator: (!ended).then(|| iterator(arn, shard, end)),
        })
    }
}
