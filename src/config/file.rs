//! The config file's shape: one struct per section, each key documented for operators with
//! its default. Defaults live in one place: every section is `#[serde(default)]`, and its
//! `impl Default` takes each value from a named `default_*` function that
//! docs/reference/config.md mirrors (tests/docs.rs checks every key and default).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::pipeline::{EventFormat, ImageSelector};

/// `[aws]`: where the AWS APIs are.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region. Default: the SDK's provider chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint for every AWS API, for emulators such as moto (`http://127.0.0.1:5000`).
    /// Default: the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Per-service endpoints (VPC interface endpoints, FIPS, emulators); each wins over
    /// `endpoint_url` for its service. Default: none.
    pub endpoints: EndpointsConfig,
}

/// `[aws.endpoints]`: one endpoint per AWS API, each optional.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsConfig {
    /// DynamoDB (the lease table; resolving a table's stream).
    pub dynamodb: Option<String>,
    /// DynamoDB Streams (shards and records).
    pub dynamodbstreams: Option<String>,
    /// EventBridge (PutEvents to classic buses).
    pub eventbridge: Option<String>,
    /// EventBridge's Custom Event Bus API (`eventsv2`: PutEvents to `event-busv2` ARNs).
    pub eventbridgev2: Option<String>,
    /// SQS (the dead-letter queue).
    pub sqs: Option<String>,
}

impl EndpointsConfig {
    /// Every override with its key name.
    #[must_use]
    pub fn all(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("dynamodb", self.dynamodb.as_deref()),
            ("dynamodbstreams", self.dynamodbstreams.as_deref()),
            ("eventbridge", self.eventbridge.as_deref()),
            ("eventbridgev2", self.eventbridgev2.as_deref()),
            ("sqs", self.sqs.as_deref()),
        ]
    }
}

/// Where the stream of a shard starts when its lease has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum StartingPosition {
    /// The oldest record still in the stream (24 h retention).
    #[serde(rename = "TRIM_HORIZON")]
    TrimHorizon,
    /// Only records written after the relay first saw the shard.
    #[serde(rename = "LATEST")]
    Latest,
}

/// `[source]`: the DynamoDB stream(s) to relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Table whose *latest* stream is read. At least one table or stream must be given, by
    /// any of `table_name`, `table_names`, `stream_arn` and `stream_arns`.
    pub table_name: Option<String>,
    /// More tables, each read like `table_name`. Default: none.
    pub table_names: Vec<String>,
    /// A stream ARN to read.
    pub stream_arn: Option<String>,
    /// More stream ARNs. Default: none.
    pub stream_arns: Vec<String>,
    /// Where a shard without a checkpoint starts. Default `TRIM_HORIZON` (nothing is missed).
    pub starting_position: StartingPosition,
    /// Pause between polls of a shard that returned no records. Default `1s`.
    // NOTE: Pipes polls 4 times a second per shard; DynamoDB Streams allows 5 reads/s per shard
    // shared by at most two readers, so 250ms is the floor we accept.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Pause between polls while records flow but the last page was not full (a full page
    /// re-polls at once: the shard is behind). Default `250ms`.
    // NOTE: with pages read ahead, a reader that re-polled at once would call GetRecords once
    // per round trip (tens of times a second) on a busy but caught-up shard; 250 ms is the
    // 4 polls a second per shard that Lambda and Pipes use, within DynamoDB Streams' limits.
    #[serde(with = "humantime_serde")]
    pub busy_poll_interval: Duration,
    /// The ceiling an idle shard's poll backs off to: each empty GetRecords doubles the pause,
    /// from `poll_interval` up to this; a page with records snaps it back. Default: unset =
    /// `poll_interval` (no backoff).
    // NOTE: AWS bills DynamoDB Streams read requests of readers other than Lambda; an idle
    // shard polled every second costs 2.6 M requests a month. The price is lag: the first
    // record after an idle spell waits up to this long.
    #[serde(with = "humantime_serde")]
    pub idle_poll_interval: Option<Duration>,
    /// `Limit` of each GetRecords call, 1..=1000. Default `1000` (the API maximum).
    pub max_records_per_poll: NonZeroUsize,
    /// How often the stream is described to find new shards. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// Records a shard may hold, read but not yet checkpointed: the next GetRecords page is
    /// read ahead while fewer are held. At least `max_records_per_poll`. Default `2000` (the
    /// page being published and one page ahead).
    pub read_ahead_records: usize,
    /// Bytes (stream record sizes, `SizeBytes`) a shard may hold, likewise. At least 1 MiB
    /// (one GetRecords answer). Default `8388608` (8 MiB).
    // NOTE: the records bound alone lets 400 KB items pile up to 800 MB; this caps memory
    // through an outage at about read_ahead_bytes plus one page per shard.
    pub read_ahead_bytes: usize,
    /// Attribute of the outbox row (in `Keys`, then `NewImage`, then `OldImage`) that holds the
    /// stable event id; records without it use the stream record's `eventID`. Default: unset.
    pub event_id_attribute: Option<String>,
    /// Attribute of the outbox row (in `NewImage`, then `OldImage`) that holds the W3C
    /// `traceparent` of the request that wrote it: PutEvents' `TraceHeader` on a classic bus,
    /// `<outbox.traceparent>` in templates, `trace_context_field` of `unmarshall` routes. A
    /// malformed value is ignored (counted, logged). Default: unset.
    pub trace_context_attribute: Option<String>,
    /// Attribute of the outbox row (in `NewImage`, then `OldImage`) that holds the W3C
    /// `tracestate` going with its `traceparent`: the `tracestate` of CloudEvents routes (the
    /// extension, and `Metadata` on a Custom Event Bus). A malformed value is left out
    /// (counted, logged), the `traceparent` kept. Default: unset.
    pub trace_state_attribute: Option<String>,
    /// Attribute of the outbox row that holds its creation time: a number of seconds since
    /// the epoch (milliseconds when above 10^11) or an RFC 3339 string with any offset (one
    /// without a zone is taken as UTC). `backfill --since /
    /// --until` select rows by it, and a backfilled record's `ApproximateCreationDateTime`
    /// (the event's `Time`) is taken from it. Default: unset.
    pub created_at_attribute: Option<String>,
    /// Recover gaps by itself: when a shard's records were trimmed before they were relayed,
    /// run the backfill of the gap's window (as `outbox-relay status` shows it). Needs
    /// `created_at_attribute`. Default `false`.
    pub recover_gaps: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            table_name: None,
            table_names: Vec::new(),
            stream_arn: None,
            stream_arns: Vec::new(),
            starting_position: default_starting_position(),
            poll_interval: default_poll_interval(),
            busy_poll_interval: default_busy_poll_interval(),
            idle_poll_interval: None,
            max_records_per_poll: default_max_records_per_poll(),
            discovery_interval: default_discovery_interval(),
            read_ahead_records: default_read_ahead_records(),
            created_at_attribute: None,
            recover_gaps: false,
            read_ahead_bytes: default_read_ahead_bytes(),
            event_id_attribute: None,
            trace_context_attribute: None,
            trace_state_attribute: None,
        }
    }
}

/// `[leases]`: the DynamoDB table holding leases and checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeasesConfig {
    /// Lease table name. Default `outbox-relay-leases`.
    pub table_name: String,
    /// Create the table (on-demand billing) at start-up if it does not exist. Default `true`.
    pub create_table: bool,
    /// A lease whose counter has not moved for this long is expired and may be taken. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often owned leases are renewed; must be below `lease_duration / 3`. Default `3s`.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// A shard's checkpoint (the watermark: the last record such that it and every record
    /// before it are settled) is written when it passes the end of a page, and otherwise
    /// whenever it moved and this long has passed since the last write, so a crash re-sends
    /// at most about this much work. Below `lease_duration`. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Default for LeasesConfig {
    fn default() -> Self {
        Self {
            table_name: default_lease_table(),
            create_table: true,
            lease_duration: default_lease_duration(),
            renew_interval: default_renew_interval(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

/// One `[[routes]]` entry, as it appears in the file. `name`, one of `event_bus_name` and
/// `event_bus_arn`, `source` and `detail_type` are required; the other keys default as their
/// comments say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: String,
    /// Default: none (every record matches).
    #[serde(default)]
    pub filters: Vec<String>,
    /// A classic bus (name or ARN).
    pub event_bus_name: Option<String>,
    /// A Custom Event Bus (`event-busv2` ARN).
    pub event_bus_arn: Option<String>,
    pub source: String,
    pub detail_type: String,
    /// Default: none.
    #[serde(default)]
    pub resources: Vec<String>,
    pub template: Option<String>,
    pub unmarshall: Option<ImageSelector>,
    /// Default `eventId`.
    #[serde(default = "default_event_id_field")]
    pub event_id_field: String,
    /// With `unmarshall`: the field the record's `traceparent` is added under. Default: unset
    /// (not added).
    pub trace_context_field: Option<String>,
    /// Default: none (every source).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Default: none.
    #[serde(default)]
    pub expand_json: Vec<String>,
    /// Default: unset = the item's key (`dynamodb.Keys`).
    pub ordering_key: Option<String>,
    /// `eventbridge` (default) or `cloudevents`.
    #[serde(default)]
    pub format: EventFormat,
    /// With `cloudevents`: the CloudEvent's `subject`, a template. Default: unset (none).
    pub subject: Option<String>,
    /// With `cloudevents` on a Custom Event Bus: `PutRawEvents` `Metadata` keys and their
    /// templates. Default: none (the trace context only).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// `[publisher]`: PutEvents batching and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    /// Entries per PutEvents call: at most 10 while any route targets a classic bus, at most
    /// 100 when every route targets a Custom Event Bus. Default: unset = each bus kind's API
    /// maximum (10 classic, 100 Custom Event Bus).
    pub max_batch_entries: Option<NonZeroUsize>,
    /// First retry delay for failed entries and failed calls. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap of the exponential retry delay. Default `20s`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// PutEvents attempts per entry before a *retryable* failure (throttling, faults, network)
    /// dead-letters it. Default: unset = retry until delivered (as Pipes' default of -1).
    pub max_attempts: Option<NonZeroU32>,
    /// Age (since the record's creation) after which a retryable failure dead-letters the
    /// entry instead of retrying. Default: unset = no limit.
    #[serde(with = "humantime_serde")]
    pub max_record_age: Option<Duration>,
    /// PutEvents batches in flight at once across all shards. Default `64`.
    pub max_concurrent_batches: NonZeroUsize,
    /// PutEvents batches in flight at once for one shard, with order kept per ordering key.
    /// `1`: strict per-shard order (a batch waits until the one before it is settled, its
    /// retries included). Default `10`.
    // NOTE: one DynamoDB partition takes up to 1,000 writes/s; at a 100 ms PutEvents round
    // trip, 10 calls of 10 entries in flight publish 1,000 events/s from one shard. (Lambda's
    // ParallelizationFactor has the same maximum of 10.)
    pub max_in_flight_per_shard: NonZeroUsize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_batch_entries: None,
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_attempts: None,
            max_record_age: None,
            max_concurrent_batches: default_max_concurrent_batches(),
            max_in_flight_per_shard: default_max_in_flight_per_shard(),
        }
    }
}

/// `[dead_letter]`: where records go that cannot be delivered (a record whose image cannot
/// be unmarshalled, an entry over 1 MiB, an event EventBridge rejects for good). At most
/// one of `queue_url`, `queue_name` and `file`; with none, each dead letter is logged at
/// ERROR with its payload.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// SQS queue URL receiving one message per dead letter. Default: unset.
    pub queue_url: Option<String>,
    /// SQS queue name, resolved to its URL at start-up (GetQueueUrl). Default: unset.
    pub queue_name: Option<String>,
    /// JSON-lines file for local development (one process only). Default: unset.
    pub file: Option<PathBuf>,
}

/// `[http]`: the metrics and health endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`. Default `0.0.0.0:9464`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

/// `[telemetry]`: the relay's own spans.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector (`http://localhost:4318`; `/v1/traces` is added): the relay
    /// exports its spans there (one per PutEvents batch, linked to its records' traces;
    /// GetRecords and checkpoints). Default: unset = no spans made at all.
    pub otlp_endpoint: Option<String>,
}

/// `[runtime]`: the async runtime the relay runs on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads that run the relay's tasks. Default: unset = one per CPU the process may use
    /// (`std::thread::available_parallelism`: the machine's cores, or fewer under a cgroup
    /// CPU limit). A task with one vCPU or less runs best on `1`: no thread wakes another,
    /// and one allocator heap instead of one per thread.
    // NOTE: measured on one hot shard (BENCHMARKS.md, "Fifteenth cut"): 2–23 % less CPU per
    // event (12–13 % on average) and 3–16 MiB less peak RSS than two threads on two cores.
    pub worker_threads: Option<NonZeroUsize>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (containers).
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter: a level (`off`, `error`, `warn`, `info`, `debug`, `trace`) or
    /// comma-separated `target=level` directives (`info,outbox_relay=debug`). Default `info`;
    /// `RUST_LOG` wins.
    pub level: String,
    /// `json` or `pretty`. Default `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, time allowed to settle in-flight batches, checkpoint and release leases
    /// before the process exits anyway. Default `20s`.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: default_grace(),
        }
    }
}

const fn default_starting_position() -> StartingPosition {
    StartingPosition::TrimHorizon
}
const fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_busy_poll_interval() -> Duration {
    Duration::from_millis(250)
}
/// The GetRecords maximum (DynamoDB Streams API reference, `GetRecords` `Limit`).
const fn default_max_records_per_poll() -> NonZeroUsize {
    NonZeroUsize::new(1000).expect("1000 is not zero")
}
const fn default_discovery_interval() -> Duration {
    Duration::from_secs(30)
}
const fn default_read_ahead_records() -> usize {
    2000
}
const fn default_read_ahead_bytes() -> usize {
    8 * 1024 * 1024
}
const fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_max_in_flight_per_shard() -> NonZeroUsize {
    NonZeroUsize::new(10).expect("10 is not zero")
}
fn default_lease_table() -> String {
    "outbox-relay-leases".to_owned()
}
// NOTE: KCL's failover time is 10s; we keep it and renew at a third of it, as KCL does.
const fn default_lease_duration() -> Duration {
    Duration::from_secs(10)
}
const fn default_renew_interval() -> Duration {
    Duration::from_secs(3)
}
fn default_event_id_field() -> String {
    "eventId".to_owned()
}
const fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
const fn default_max_concurrent_batches() -> NonZeroUsize {
    NonZeroUsize::new(64).expect("64 is not zero")
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(20)
}
const fn default_listen() -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9464)
}
fn default_log_level() -> String {
    "info".to_owned()
}
const fn default_log_format() -> LogFormat {
    LogFormat::Json
}
const fn default_grace() -> Duration {
    Duration::from_secs(20)
}
