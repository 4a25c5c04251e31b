//! `outbox-relay backfill`: publish what a source table holds now, through the live relay's
//! routes, publisher, retries and dead-letter sink. For rows the stream no longer has (it
//! keeps 24 hours: a relay stopped longer, a lost lease table, `LATEST` by mistake) and for a
//! new consumer's first load.
//!
//! A parallel Scan (`--segments`) reads the table; each row becomes the `INSERT` record the
//! stream would have carried ([`record`]), marked `"backfill": true`, and goes through
//! [`crate::config::Config::router_for`] of its source, like a live record. A page's entries
//! are settled ([`deliver`]) before the segment's Scan position is saved in the lease table,
//! so `--resume` after a crash or Ctrl-C re-sends at most the pages that were in flight.
//! At least once: a re-sent event keeps its stable event id (`source.event_id_attribute`,
//! the row's own id), and consumers deduplicate on it.

mod deliver;
pub mod progress;
pub mod record;
pub mod recover;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use governor::{Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use self::deliver::Delivery;
use self::progress::Counters;
use self::record::Window;
use crate::aws::{Clients, Retries};
use crate::config::{table_of_stream_arn, Config, StreamSelector};
use crate::lease::{
    BackfillPositions, BackfillRun, DynamoDbLeaseStore, LeaseError, LeaseStore, SegmentProgress,
};
use crate::pipeline::{ImageTexts, Router};
use crate::publish::{DeadLetterError, EventBridgePublisher};
use crate::relay::{Order, WorkerSettings};
use crate::stream::typed::table_item;
use crate::stream::{SequenceNumber, StreamRecord};
use crate::telemetry::Metrics;

/// DynamoDB's bound on a parallel Scan's `TotalSegments`.
pub const MAX_SEGMENTS: u32 = 1_000_000;

/// Rows per Scan page: the unit of settling and of a saved position.
const PAGE_ITEMS: u32 = 100;

/// What to backfill and how.
#[derive(Debug, Clone, Default)]
pub struct BackfillOptions {
    /// The source table (a table of the config's sources); default: the only one.
    pub table: Option<String>,
    pub segments: u32,
    /// RFC 3339 bounds on `source.created_at_attribute`: `since <= created < until`.
    pub since: Option<String>,
    pub until: Option<String>,
    pub max_items_per_second: Option<NonZeroU32>,
    /// Print the entries it would send; publish and write nothing.
    pub dry_run: bool,
    /// Continue the table's last run from its saved positions.
    pub resume: bool,
    /// Progress output interval.
    pub progress_interval: Duration,
    /// The name its positions are kept under in the lease table; default the table's name
    /// (a gap's recovery uses the gap's own, so it never mixes with a manual run).
    pub run_label: Option<String>,
}

/// What a backfill tells as it goes. The run never prints: its observer shows these (the
/// command line renders them, see `src/render.rs`; a relay recovering a gap logs them).
#[derive(Debug, Clone)]
pub enum BackfillEvent {
    /// `--dry-run`: an entry it would send, as PutEvents would receive it.
    WouldSend(serde_json::Value),
    /// `--dry-run`: the dead letter it would write for a route that cannot render a row.
    WouldDeadLetter(serde_json::Value),
    /// The run's counters, every `progress_interval` and once at the end.
    Progress(progress::Progress),
}

/// Who is told a backfill's [`BackfillEvent`]s (segments run on tasks of their own).
pub type Observer = Arc<dyn Fn(BackfillEvent) + Send + Sync>;

/// Why a backfill did not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The command line or config asks for something that cannot be done; nothing was
    /// published. `key` names the flag or config key.
    #[error("{key}: {reason}")]
    BadInput { key: String, reason: String },
    /// Reading the table failed.
    #[error("{operation} on table {table} failed: {detail}")]
    TableFailed {
        operation: &'static str,
        table: String,
        detail: String,
    },
    /// Reading or writing the scan positions failed.
    #[error("lease table")]
    Positions(#[from] LeaseError),
    /// The dead-letter sink failed: the page was not settled and its position not saved.
    #[error("dead-letter sink")]
    DeadLetters(#[from] DeadLetterError),
    /// A segment's task stopped without an answer (it panicked): its last page is not
    /// saved, so `--resume` sends it again.
    #[error("a segment task failed: {0}")]
    SegmentFailed(String),
}

impl BackfillError {
    fn bad(key: &str, reason: impl Into<String>) -> Self {
        Self::BadInput {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Whether nothing was attempted because the input was bad (exit code 2).
    #[must_use]
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::BadInput { .. })
    }
}

/// What a run did (a resumed run's totals include what earlier runs did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillReport {
    pub scanned: u64,
    pub published: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Stopped by a signal before every segment was done (resume with `--resume`).
    pub interrupted: bool,
}

/// The checked request: every flag and key that can be checked before a row is read.
#[derive(Debug, Clone)]
struct Plan {
    source: StreamSelector,
    table: String,
    window: Window,
    run: BackfillRun,
}

/// Checks `options` against `config` without calling AWS.
fn plan(config: &Config, options: &BackfillOptions) -> Result<Plan, BackfillError> {
    if !(1..=MAX_SEGMENTS).contains(&options.segments) {
        return Err(BackfillError::bad(
            "--segments",
            format!(
                "{} is out of range 1..={MAX_SEGMENTS} (DynamoDB's TotalSegments)",
                options.segments
            ),
        ));
    }
    let sources: Vec<(StreamSelector, String)> = config
        .source
        .streams()
        .into_iter()
        .filter_map(|s| {
            let table = match &s {
                StreamSelector::Table(t) => t.clone(),
                StreamSelector::Arn(a) => table_of_stream_arn(a)?.to_owned(),
            };
            Some((s, table))
        })
        .collect();
    let names = || {
        sources
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (source, table) = match &options.table {
        Some(wanted) => sources
            .iter()
            .find(|(_, t)| t == wanted)
            .cloned()
            .ok_or_else(|| {
                BackfillError::bad(
                    "--table",
                    format!(
                        "{wanted:?} is not a source of this config (its tables: {})",
                        names()
                    ),
                )
            })?,
        None if sources.len() == 1 => sources[0].clone(),
        None => {
            return Err(BackfillError::bad(
                "--table",
                format!(
                    "the config has several source tables; name one of: {}",
                    names()
                ),
            ))
        }
    };
    let parse = |flag: &str, value: &Option<String>| -> Result<Option<SystemTime>, BackfillError> {
        let Some(text) = value else { return Ok(None) };
        if config.source.created_at_attribute.is_none() {
            return Err(BackfillError::bad(
                flag,
                "selecting rows by time needs source.created_at_attribute (the row's creation-time attribute) in the config",
            ));
        }
        crate::time::parse_rfc3339(text)
            .map(Some)
            .map_err(|e| BackfillError::bad(flag, e))
    };
    let window = Window {
        since: parse("--since", &options.since)?,
        until: parse("--until", &options.until)?,
    };
    if let (Some(s), Some(u)) = (window.since, window.until) {
        if s >= u {
            return Err(BackfillError::bad("--until", "must be after --since"));
        }
    }
    Ok(Plan {
        source,
        table,
        window,
        run: BackfillRun {
            segments: options.segments,
            since: options.since.clone(),
            until: options.until.clone(),
        },
    })
}

/// What DescribeTable tells about the source table.
struct TableFacts {
    key_names: Vec<String>,
    stream_arn: String,
    item_count: Option<u64>,
}

async fn describe(clients: &Clients, plan: &Plan) -> Result<TableFacts, BackfillError> {
    let out = clients
        .dynamodb
        .describe_table()
        .table_name(&plan.table)
        .send()
        .await;
    let table = match out {
        Ok(out) => out.table.ok_or_else(|| BackfillError::TableFailed {
            operation: "DescribeTable",
            table: plan.table.clone(),
            detail: "no table description in the answer".to_owned(),
        })?,
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            return Err(BackfillError::bad(
                "--table",
                format!("table {:?} does not exist", plan.table),
            ))
        }
        Err(e) => {
            return Err(BackfillError::TableFailed {
                operation: "DescribeTable",
                table: plan.table.clone(),
                detail: crate::aws::describe_error(&e),
            })
        }
    };
    let stream_arn = match &plan.source {
        StreamSelector::Arn(a) => a.clone(),
        StreamSelector::Table(_) => table
            .latest_stream_arn()
            .or(table.table_arn())
            .unwrap_or_default()
            .to_owned(),
    };
    Ok(TableFacts {
        key_names: table
            .key_schema()
            .iter()
            .map(|k| k.attribute_name().to_owned())
            .collect(),
        stream_arn,
        item_count: table.item_count().and_then(|n| u64::try_from(n).ok()),
    })
}

/// Runs a backfill until every segment is done or `stop` is cancelled.
///
/// # Errors
/// [`BackfillError`]; a `BadInput` error comes before any row is published.
pub async fn run(
    config: &Config,
    options: &BackfillOptions,
    stop: CancellationToken,
    observe: Observer,
) -> Result<BackfillReport, BackfillError> {
    let plan = plan(config, options)?;
    let router = config
        .router_for(&plan.source)
        .map_err(|e| BackfillError::bad("routes", e.to_string()))?;
    let clients = Clients::load(&config.aws, Retries::Sdk).await;
    let facts = describe(&clients, &plan).await?;
    let positions = BackfillPositions::new(
        clients.dynamodb.clone(),
        config.leases.table_name.clone(),
        options.run_label.as_deref().unwrap_or(&plan.table),
    );
    if !options.dry_run {
        open_run(&clients, config, options, &plan, &positions).await?;
    }
    let counters = Arc::new(Counters::default());
    let mut starts = Vec::new();
    for segment in 0..plan.run.segments {
        let progress = if options.resume && !options.dry_run {
            positions.segment(segment).await?
        } else {
            SegmentProgress::default()
        };
        counters.add_done(&progress);
        starts.push(progress);
    }
    let reporter_stop = CancellationToken::new();
    let reporter = tokio::spawn(progress::report(
        counters.clone(),
        facts.item_count,
        plan.run.segments,
        options.progress_interval,
        reporter_stop.clone(),
        observe.clone(),
    ));
    let limiter = options
        .max_items_per_second
        .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate))));
    let shared = Arc::new(Shared {
        clients,
        router,
        facts,
        plan,
        positions,
        counters: counters.clone(),
        limiter,
        config: config.clone(),
        options: options.clone(),
        observe,
    });
    let mut segments = tokio::task::JoinSet::new();
    for (segment, start) in (0..).zip(starts) {
        if start.done {
            continue;
        }
        let shared = shared.clone();
        let stop = stop.clone();
        segments.spawn(async move { shared.segment(segment, start, stop).await });
    }
    let failure = first_failure(&mut segments, &stop).await;
    reporter_stop.cancel();
    let _ = reporter.await;
    if let Some(e) = failure {
        return Err(e);
    }
    let done = counters.snapshot();
    Ok(BackfillReport {
        scanned: done.scanned,
        published: done.published,
        dead_lettered: done.dead_lettered,
        skipped: done.skipped,
        interrupted: done.segments_done < u64::from(shared.plan.run.segments),
    })
}

/// Makes sure the lease table exists, then records a new run's plan, or (`--resume`) checks
/// that the recorded run is the one asked for.
async fn open_run(
    clients: &Clients,
    config: &Config,
    options: &BackfillOptions,
    plan: &Plan,
    positions: &BackfillPositions,
) -> Result<(), BackfillError> {
    DynamoDbLeaseStore::new(
        clients.dynamodb.clone(),
        config.leases.table_name.clone(),
        config.leases.create_table,
    )
    .ensure_table()
    .await?;
    if !options.resume {
        positions.start(&plan.run).await?;
        return Ok(());
    }
    match positions.run().await? {
        None => Err(BackfillError::bad(
            "--resume",
            format!(
                "no backfill of {:?} is recorded in the lease table",
                plan.table
            ),
        )),
        Some(recorded) if recorded != plan.run => Err(BackfillError::bad(
            "--resume",
            format!(
                "the recorded run used --segments {} --since {} --until {}; resume with the same",
                recorded.segments,
                recorded.since.as_deref().unwrap_or("(none)"),
                recorded.until.as_deref().unwrap_or("(none)")
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Waits for every segment task; on the first that fails, cancels `stop` so the others end
/// after their current page. Returns that first failure.
async fn first_failure(
    segments: &mut tokio::task::JoinSet<Result<(), BackfillError>>,
    stop: &CancellationToken,
) -> Option<BackfillError> {
    let mut failure = None;
    while let Some(joined) = segments.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.cancel();
                failure.get_or_insert(e);
            }
            Err(e) => {
                stop.cancel();
                failure.get_or_insert(BackfillError::SegmentFailed(e.to_string()));
            }
        }
    }
    failure
}

/// What every segment task shares.
struct Shared {
    clients: Clients,
    router: Router,
    facts: TableFacts,
    plan: Plan,
    positions: BackfillPositions,
    counters: Arc<Counters>,
    limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
    config: Config,
    options: BackfillOptions,
    observe: Observer,
}

impl Shared {
    /// Scans one segment page by page from `progress`, settling each page before saving the
    /// position after it, until the segment ends or `stop` is cancelled.
    async fn segment(
        &self,
        segment: u32,
        mut progress: SegmentProgress,
        stop: CancellationToken,
    ) -> Result<(), BackfillError> {
        let label = format!("backfill-segment-{segment}");
        let dead_letters =
            crate::publish::configured_dead_letter_sink(&self.config, self.clients.sqs.clone());
        let publisher = EventBridgePublisher::new(
            self.clients.eventbridge.clone(),
            self.clients.eventbridgev2.clone(),
        );
        let metrics = Metrics::new();
        let delivery = Delivery {
            publisher: &publisher,
            dead_letters: &dead_letters,
            router: &self.router,
            metrics: &metrics,
        };
        // The live relay's delivery core, one window per segment (its call limit carries
        // over from page to page).
        let settings = Arc::new(WorkerSettings::from_config(&self.config));
        let mut window = crate::relay::Window::new(
            Arc::clone(&settings),
            self.facts.stream_arn.clone(),
            label,
            Order::for_in_flight(settings.max_in_flight),
        );
        let page_items = self
            .options
            .max_items_per_second
            .map_or(PAGE_ITEMS, |r| r.get().min(PAGE_ITEMS));
        while !stop.is_cancelled() {
            if let Some(limiter) = &self.limiter {
                if let Some(n) = NonZeroU32::new(page_items) {
                    // n <= the quota's burst (the per-second rate), so this always passes.
                    let _ = limiter.until_n_ready(n).await;
                }
            }
            let page = self
                .clients
                .dynamodb
                .scan()
                .table_name(&self.plan.table)
                .segment(i32::try_from(segment).unwrap_or(i32::MAX))
                .total_segments(i32::try_from(self.plan.run.segments).unwrap_or(i32::MAX))
                .limit(i32::try_from(page_items).unwrap_or(100))
                .set_exclusive_start_key(progress.position.clone())
                .send()
                .await
                .map_err(|e| BackfillError::TableFailed {
                    operation: "Scan",
                    table: self.plan.table.clone(),
                    detail: crate::aws::describe_error(&e),
                })?;
            let (records, outside) = self.page_records(page.items());
            let scanned = page.items().len() as u64;
            let settled = if self.options.dry_run {
                self.preview(records)
            } else {
                deliver::settle(&mut window, records, &delivery).await?
            };
            let skipped = outside + settled.filtered;
            progress.scanned += scanned;
            progress.published += settled.published;
            progress.dead_lettered += settled.dead_lettered;
            progress.skipped += skipped;
            progress.position = page.last_evaluated_key.filter(|k| !k.is_empty());
            progress.done = progress.position.is_none();
            if !self.options.dry_run {
                self.positions.save(segment, &progress).await?;
            }
            let c = &self.counters;
            c.scanned.fetch_add(scanned, Ordering::Relaxed);
            c.published.fetch_add(settled.published, Ordering::Relaxed);
            c.dead_lettered
                .fetch_add(settled.dead_lettered, Ordering::Relaxed);
            c.skipped.fetch_add(skipped, Ordering::Relaxed);
            if progress.done {
                c.segments_done.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        Ok(())
    }

    /// A page's rows as the stream records the stream would have carried, and how many rows
    /// fall outside `--since`/`--until`.
    fn page_records(
        &self,
        items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>],
    ) -> (Vec<StreamRecord>, u64) {
        let source = &self.config.source;
        let region = self
            .clients
            .dynamodb
            .config()
            .region()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut records = Vec::with_capacity(items.len());
        let mut outside = 0;
        for item in items {
            let item = table_item(item);
            let created = source
                .created_at_attribute
                .as_deref()
                .and_then(|a| record::created_at(&item, a));
            if !self.plan.window.selects(created) {
                outside += 1;
                continue;
            }
            let json = record::stream_record(
                item,
                &self.facts.key_names,
                created,
                &self.facts.stream_arn,
                &region,
            );
            records.push(StreamRecord::new(
                // A backfilled record has no sequence number; its letter names its `eventID`.
                SequenceNumber::new(record::sequence_label(&json)),
                created,
                &json,
            ));
        }
        (records, outside)
    }

    /// `--dry-run`: prints the entries the records would make (and the dead letters of the
    /// routes that cannot render them), through the same routing as live.
    fn preview(&self, records: Vec<StreamRecord>) -> deliver::Settled {
        let policy = self.config.source.record_policy();
        let mut settled = deliver::Settled::default();
        for record in records {
            let routed = policy.route(
                &self.router,
                &mut record.json(),
                ImageTexts::default(),
                &self.facts.stream_arn,
                record.created_at,
            );
            if let Some(e) = &routed.trace_ignored {
                tracing::warn!(error = %e, "Trace context ignored for this row.");
            }
            if routed.results.is_empty() {
                settled.filtered += 1;
            }
            for result in routed.results {
                match result {
                    Ok(entry) => {
                        settled.published += 1;
                        (self.observe)(BackfillEvent::WouldSend(entry.request_json()));
                    }
                    Err(e) => {
                        settled.dead_lettered += 1;
                        (self.observe)(BackfillEvent::WouldDeadLetter(
                            serde_json::json!({"dead_letter": {"route": e.route(), "event_id": routed.event_id, "error_code": e.code(), "error_message": e.to_string()}}),
                        ));
                    }
                }
            }
        }
        settled
    }
}
