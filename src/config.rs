//! The relay's configuration: what to read, where to publish, and how hard to try.
//!
//! A config is loaded from one TOML (or YAML) file with the `config` crate, every key
//! overridable by an environment variable `OUTBOX_RELAY__SECTION__KEY`. Loading reports *every*
//! problem at once, each naming the key path and the reason ([`ConfigError`]); it makes no AWS
//! call. Defaults come from the `default_*` functions below, which README's configuration
//! reference mirrors.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use crate::pipeline::ImageSelector;
use crate::pipeline::{Filter, Template};

/// Environment variables with this prefix override file keys (`OUTBOX_RELAY__SOURCE__TABLE_NAME`).
pub const ENV_PREFIX: &str = "OUTBOX_RELAY";
/// Separates the prefix, sections and keys in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// The top-level sections a config file may contain; anything else is an error.
const SECTIONS: &[&str] = &[
    "aws",
    "source",
    "leases",
    "routes",
    "publisher",
    "dead_letter",
    "http",
    "log",
    "shutdown",
];

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub aws: AwsConfig,
    pub source: SourceConfig,
    pub leases: LeasesConfig,
    pub routes: Vec<RouteConfig>,
    pub publisher: PublisherConfig,
    pub dead_letter: DeadLetterConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
}

/// `[aws]`: where the AWS APIs are.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region. Default: the SDK's provider chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint for every AWS API, for emulators such as moto (`http://127.0.0.1:5000`).
    /// Default: the real AWS endpoints.
    pub endpoint_url: Option<String>,
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

/// One stream the relay reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamSelector {
    /// The latest stream of this table.
    Table(String),
    /// This stream.
    Arn(String),
}

impl StreamSelector {
    /// The name a route's `sources` uses for it: the table name or the stream ARN.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Table(t) => t,
            Self::Arn(a) => a,
        }
    }
}

impl SourceConfig {
    /// Every stream to read, in config order (tables first), without duplicates.
    #[must_use]
    pub fn streams(&self) -> Vec<StreamSelector> {
        let tables = self
            .table_name
            .iter()
            .chain(&self.table_names)
            .cloned()
            .map(StreamSelector::Table);
        let arns = self
            .stream_arn
            .iter()
            .chain(&self.stream_arns)
            .cloned()
            .map(StreamSelector::Arn);
        let mut out: Vec<StreamSelector> = Vec::new();
        for s in tables.chain(arns) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// `[source]`: the DynamoDB stream(s) to relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Table whose *latest* stream is read. At least one table or stream must be given, by
    /// any of `table_name`, `table_names`, `stream_arn` and `stream_arns`.
    pub table_name: Option<String>,
    /// More tables, each read like `table_name`. Default: none.
    #[serde(default)]
    pub table_names: Vec<String>,
    /// A stream ARN to read.
    pub stream_arn: Option<String>,
    /// More stream ARNs. Default: none.
    #[serde(default)]
    pub stream_arns: Vec<String>,
    /// Where a shard without a checkpoint starts. Default `TRIM_HORIZON` (nothing is missed).
    #[serde(default = "default_starting_position")]
    pub starting_position: StartingPosition,
    /// Pause between polls of a shard that returned no records. Default `1s`.
    // NOTE: Pipes polls 4 times a second per shard; DynamoDB Streams allows 5 reads/s per shard
    // shared by at most two readers, so 250ms is the floor we accept.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Pause between polls while records flow (a full page re-polls at once). Default `0s`.
    #[serde(default = "default_busy_poll_interval", with = "humantime_serde")]
    pub busy_poll_interval: Duration,
    /// `Limit` of each GetRecords call, 1..=1000. Default `1000` (the API maximum).
    #[serde(default = "default_max_records_per_poll")]
    pub max_records_per_poll: NonZeroUsize,
    /// How often the stream is described to find new shards. Default `30s`.
    #[serde(default = "default_discovery_interval", with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// Attribute of the outbox row (in `Keys`, then `NewImage`, then `OldImage`) that holds the
    /// stable event id; records without it use the stream record's `eventID`. Default: unset.
    pub event_id_attribute: Option<String>,
}

/// `[leases]`: the DynamoDB table holding leases and checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesConfig {
    /// Lease table name. Default `outbox-relay-leases`.
    #[serde(default = "default_lease_table")]
    pub table_name: String,
    /// Create the table (on-demand billing) at start-up if it does not exist. Default `true`.
    #[serde(default = "default_true")]
    pub create_table: bool,
    /// A lease whose counter has not moved for this long is expired and may be taken. Default `10s`.
    #[serde(default = "default_lease_duration", with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often owned leases are renewed; must be below `lease_duration / 3`. Default `3s`.
    #[serde(default = "default_renew_interval", with = "humantime_serde")]
    pub renew_interval: Duration,
}

/// One `[[routes]]` entry, as it appears in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    #[serde(default)]
    filters: Vec<String>,
    event_bus_name: String,
    source: String,
    detail_type: String,
    #[serde(default)]
    resources: Vec<String>,
    template: Option<String>,
    unmarshall: Option<ImageSelector>,
    #[serde(default = "default_event_id_field")]
    event_id_field: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    expand_json: Vec<String>,
}

/// A route: which records (filters) become which EventBridge event (target + detail).
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name, used in logs, metrics and `<aws.pipes.pipe-name>`.
    pub name: String,
    /// Compiled event patterns; a record matches if any does. Empty = every record.
    pub filters: Vec<Filter>,
    /// Target bus (name or ARN).
    pub event_bus_name: String,
    /// The event's `Source`.
    pub source: String,
    /// The event's `DetailType`.
    pub detail_type: String,
    /// The event's `Resources`. Default: none.
    pub resources: Vec<String>,
    /// How the detail is made.
    pub detail: DetailConfig,
    /// Table names or stream ARNs this route applies to. Default (empty): every source.
    pub sources: Vec<String>,
    /// Top-level attributes of the item that hold a JSON document in a string (the seed's
    /// `eventData`): parsed in the plain images, so `unmarshall` details and `$.NewImage`
    /// template paths carry the document, not its text. Default: none.
    pub expand_json: Vec<String>,
}

/// How a route builds the event detail.
#[derive(Debug, Clone)]
pub enum DetailConfig {
    /// A Pipes input template rendered against the record.
    Template(Template),
    /// The chosen image, unmarshalled to plain JSON, with the stable event id added under
    /// `event_id_field` unless the image already has that attribute.
    Unmarshall {
        image: ImageSelector,
        event_id_field: String,
    },
}

/// `[publisher]`: PutEvents batching and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    /// Entries per PutEvents call, 1..=10 (the API maximum). Default `10`.
    #[serde(default = "default_max_batch_entries")]
    pub max_batch_entries: NonZeroUsize,
    /// First retry delay for failed entries and failed calls. Default `100ms`.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap of the exponential retry delay. Default `20s`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// PutEvents attempts per entry before a *retryable* failure (throttling, faults, network)
    /// dead-letters it. Default: unset = retry until delivered (as Pipes' default of -1).
    pub max_attempts: Option<std::num::NonZeroU32>,
    /// Age (since the record's creation) after which a retryable failure dead-letters the
    /// entry instead of retrying. Default: unset = no limit.
    #[serde(default, with = "humantime_serde")]
    pub max_record_age: Option<Duration>,
    /// PutEvents batches in flight at once across all shards (each shard has at most one).
    /// Default `64`.
    #[serde(default = "default_max_concurrent_batches")]
    pub max_concurrent_batches: NonZeroUsize,
}

/// `[dead_letter]`: where records go that cannot be delivered (a template that renders
/// invalid JSON, an entry over 256 KiB, an event EventBridge rejects for good). At most one of
/// `queue_url`, `queue_name` and `file`; with none, each dead letter is logged at ERROR with its
/// payload.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// SQS queue URL receiving one message per dead letter. Default: unset.
    pub queue_url: Option<String>,
    /// SQS queue name, resolved to its URL at start-up (GetQueueUrl). Default: unset.
    pub queue_name: Option<String>,
    /// JSON-lines file for local development (one process only). Default: unset.
    pub file: Option<std::path::PathBuf>,
}

/// `[http]`: the metrics and health endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`. Default `0.0.0.0:9464`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
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
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directive (`info`, `outbox_relay=debug`). Default `info`; `RUST_LOG` wins.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `json` or `pretty`. Default `json`.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, time allowed to settle in-flight batches, checkpoint and release leases
    /// before the process exits anyway. Default `20s`.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

fn default_starting_position() -> StartingPosition {
    StartingPosition::TrimHorizon
}
const fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_busy_poll_interval() -> Duration {
    Duration::ZERO
}
fn default_max_records_per_poll() -> NonZeroUsize {
    NonZeroUsize::new(1000).expect("1000 is not zero")
}
const fn default_discovery_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_lease_table() -> String {
    "outbox-relay-leases".to_owned()
}
const fn default_true() -> bool {
    true
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
fn default_max_batch_entries() -> NonZeroUsize {
    NonZeroUsize::new(crate::pipeline::batch::MAX_ENTRIES).expect("MAX_ENTRIES is not zero")
}
const fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_concurrent_batches() -> NonZeroUsize {
    NonZeroUsize::new(64).expect("64 is not zero")
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(20)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9464))
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

impl Default for LeasesConfig {
    fn default() -> Self {
        Self {
            table_name: default_lease_table(),
            create_table: true,
            lease_duration: default_lease_duration(),
            renew_interval: default_renew_interval(),
        }
    }
}
impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_batch_entries: default_max_batch_entries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_attempts: None,
            max_record_age: None,
            max_concurrent_batches: default_max_concurrent_batches(),
        }
    }
}
impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}
impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: default_grace(),
        }
    }
}

/// One problem with a config: the key path (`routes[1].filters[0]`) and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str(")")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads `path` (format from its extension: `.toml`, `.yaml`/`.yml`) with environment
    /// overrides from the process environment, and validates it.
    ///
    /// # Errors
    /// Every problem found, each with its key path; a file that cannot be read or parsed is one
    /// problem keyed `file`.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::load_with_env(path, None)
    }

    /// Like [`Config::load`], with the environment given explicitly (`None` = the process's).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with_env(
        path: &Path,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigErrors> {
        if !path.is_file() {
            return Err(ConfigErrors(vec![ConfigError::new(
                "file",
                format!("{} is not a readable file", path.display()),
            )]));
        }
        Self::load_source(config::File::from(path), &path.display().to_string(), env)
    }

    /// Loads the config from TOML text (`OUTBOX_RELAY_CONFIG_TOML`) with environment overrides
    /// from the process environment, and validates it.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_toml_text(text: &str) -> Result<Self, ConfigErrors> {
        Self::load_source(
            config::File::from_str(text, config::FileFormat::Toml),
            "the config text",
            None,
        )
    }

    fn load_source<S>(
        source: S,
        what: &str,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigErrors>
    where
        S: config::Source + Send + Sync + 'static,
    {
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .source(env);
        let raw = config::Config::builder()
            .add_source(source)
            .add_source(environment)
            .build()
            .map_err(|e| {
                ConfigErrors(vec![ConfigError::new(
                    "file",
                    format!("cannot load {what}: {e}"),
                )])
            })?;
        Self::from_raw(&raw)
    }

    /// Parses a config from TOML text (tests, `test-route`), without environment overrides.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigErrors(vec![ConfigError::new("file", e.to_string())]))?;
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &config::Config) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        if let Ok(table) = raw
            .clone()
            .try_deserialize::<std::collections::BTreeMap<String, config::Value>>()
        {
            for key in table.keys() {
                if !SECTIONS.contains(&key.as_str()) {
                    errors.push(ConfigError::new(
                        key.clone(),
                        format!("unknown section, expected one of {}", SECTIONS.join(", ")),
                    ));
                }
            }
        }
        let aws = section::<AwsConfig>(raw, "aws", &mut errors, false);
        let source = section::<SourceConfig>(raw, "source", &mut errors, true);
        let leases = section::<LeasesConfig>(raw, "leases", &mut errors, false);
        let publisher = section::<PublisherConfig>(raw, "publisher", &mut errors, false);
        let dead_letter = section::<DeadLetterConfig>(raw, "dead_letter", &mut errors, false);
        let http = section::<HttpConfig>(raw, "http", &mut errors, false);
        let log = section::<LogConfig>(raw, "log", &mut errors, false);
        let shutdown = section::<ShutdownConfig>(raw, "shutdown", &mut errors, false);
        let routes = routes(raw, &mut errors);

        if let Some(source) = &source {
            validate_source(source, &mut errors);
            let streams = source.streams();
            for (i, route) in routes.iter().enumerate() {
                for (j, name) in route.sources.iter().enumerate() {
                    if !streams.iter().any(|s| s.name() == name) {
                        errors.push(ConfigError::new(
                            format!("routes[{i}].sources[{j}]"),
                            format!("{name:?} is not a table or stream ARN of [source]"),
                        ));
                    }
                }
            }
        }
        if let Some(leases) = &leases {
            validate_leases(leases, &mut errors);
        }
        if let Some(publisher) = &publisher {
            validate_publisher(publisher, &mut errors);
        }
        if let Some(dead_letter) = &dead_letter {
            validate_dead_letter(dead_letter, &mut errors);
        }
        match (
            aws,
            source,
            leases,
            publisher,
            dead_letter,
            http,
            log,
            shutdown,
        ) {
            (
                Some(aws),
                Some(source),
                Some(leases),
                Some(publisher),
                Some(dead_letter),
                Some(http),
                Some(log),
                Some(shutdown),
            ) if errors.is_empty() => Ok(Self {
                aws,
                source,
                leases,
                routes,
                publisher,
                dead_letter,
                http,
                log,
                shutdown,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// Deserializes one section; a missing optional section takes its defaults.
fn section<T: DeserializeOwned + Default>(
    raw: &config::Config,
    key: &str,
    errors: &mut Vec<ConfigError>,
    required: bool,
) -> Option<T>
where
{
    match raw.get::<config::Value>(key) {
        Ok(v) => match deserialize_at::<T>(key, v) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        Err(config::ConfigError::NotFound(_)) if !required => Some(T::default()),
        Err(config::ConfigError::NotFound(_)) => {
            errors.push(ConfigError::new(key, "missing section"));
            None
        }
        Err(e) => {
            errors.push(from_config_error(key, &e));
            None
        }
    }
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
            max_records_per_poll: default_max_records_per_poll(),
            discovery_interval: default_discovery_interval(),
            event_id_attribute: None,
        }
    }
}

/// A `config` crate error that is not about one value (the file's structure).
fn from_config_error(prefix: &str, e: &config::ConfigError) -> ConfigError {
    ConfigError::new(prefix, e.to_string())
}

/// Deserializes `value` (found at `prefix`), naming the exact key of the first problem.
fn deserialize_at<T: DeserializeOwned>(
    prefix: &str,
    value: config::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The path includes an unknown field's name, so it always points at the culprit.
        let key = if path == "." || path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path}")
        };
        ConfigError::new(key, reason)
    })
}

fn routes(raw: &config::Config, errors: &mut Vec<ConfigError>) -> Vec<RouteConfig> {
    let values = match raw.get::<Vec<config::Value>>("routes") {
        Ok(v) => v,
        Err(config::ConfigError::NotFound(_)) => {
            errors.push(ConfigError::new(
                "routes",
                "missing: at least one [[routes]] entry is required",
            ));
            return Vec::new();
        }
        Err(e) => {
            errors.push(from_config_error("routes", &e));
            return Vec::new();
        }
    };
    if values.is_empty() {
        errors.push(ConfigError::new(
            "routes",
            "empty: at least one [[routes]] entry is required",
        ));
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let raw_route: RawRoute = match deserialize_at(&key, value) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(route) = build_route(&key, raw_route, &mut names, errors) {
            out.push(route);
        }
    }
    out
}

fn build_route(
    key: &str,
    r: RawRoute,
    names: &mut HashSet<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<RouteConfig> {
    let before = errors.len();
    if r.name.trim().is_empty() {
        errors.push(ConfigError::new(format!("{key}.name"), "must not be empty"));
    } else if !names.insert(r.name.clone()) {
        errors.push(ConfigError::new(
            format!("{key}.name"),
            format!("duplicate route name {:?}", r.name),
        ));
    }
    for (field, value) in [
        ("event_bus_name", &r.event_bus_name),
        ("source", &r.source),
        ("detail_type", &r.detail_type),
    ] {
        if value.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.{field}"),
                "must not be empty",
            ));
        }
    }
    if r.source.starts_with("aws.") {
        errors.push(ConfigError::new(
            format!("{key}.source"),
            "sources starting with \"aws.\" are reserved by AWS and rejected by PutEvents",
        ));
    }
    let mut filters = Vec::new();
    for (j, text) in r.filters.iter().enumerate() {
        match Filter::compile(text) {
            Ok(f) => filters.push(f),
            Err(e) => errors.push(ConfigError::new(
                format!("{key}.filters[{j}]"),
                e.to_string(),
            )),
        }
    }
    let detail = match (r.template, r.unmarshall) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                key,
                "set either `template` or `unmarshall`, not both",
            ));
            None
        }
        (None, None) => {
            errors.push(ConfigError::new(
                key,
                "missing detail: set `template` or `unmarshall`",
            ));
            None
        }
        (Some(text), None) => match Template::parse(&text) {
            Ok(t) if t.renders_string() => {
                errors.push(ConfigError::new(
                    format!("{key}.template"),
                    "this template renders a string (free text or a JSON string), but an \
                     EventBridge event's detail must be a JSON object: wrap it, e.g. \
                     {\"message\": \"...\"}",
                ));
                None
            }
            Ok(t) => Some(DetailConfig::Template(t)),
            Err(e) => {
                errors.push(ConfigError::new(format!("{key}.template"), e.to_string()));
                None
            }
        },
        (None, Some(image)) => Some(DetailConfig::Unmarshall {
            image,
            event_id_field: r.event_id_field,
        }),
    };
    if errors.len() != before {
        return None;
    }
    Some(RouteConfig {
        name: r.name,
        filters,
        event_bus_name: r.event_bus_name,
        source: r.source,
        detail_type: r.detail_type,
        resources: r.resources,
        detail: detail?,
        sources: r.sources,
        expand_json: r.expand_json,
    })
}

fn validate_source(s: &SourceConfig, errors: &mut Vec<ConfigError>) {
    if s.streams().is_empty() {
        errors.push(ConfigError::new(
            "source.table_name",
            "missing: set `table_name` (or `table_names`, `stream_arn`, `stream_arns`)",
        ));
    }
    let tables = s
        .table_name
        .iter()
        .map(|t| ("source.table_name".to_owned(), t));
    let more = s
        .table_names
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("source.table_names[{i}]"), t));
    for (key, t) in tables.chain(more) {
        if t.trim().is_empty() {
            errors.push(ConfigError::new(key, "must not be empty"));
        }
    }
    let arns = s
        .stream_arn
        .iter()
        .map(|a| ("source.stream_arn".to_owned(), a));
    let more = s
        .stream_arns
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("source.stream_arns[{i}]"), a));
    for (key, arn) in arns.chain(more) {
        if !arn.starts_with("arn:") || !arn.contains(":table/") || !arn.contains("/stream/") {
            errors.push(ConfigError::new(
                key,
                "not a DynamoDB stream ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL)",
            ));
        }
    }
    if s.max_records_per_poll.get() > 1000 {
        errors.push(ConfigError::new(
            "source.max_records_per_poll",
            "must be at most 1000 (the GetRecords limit)",
        ));
    }
    if s.discovery_interval.is_zero() {
        errors.push(ConfigError::new(
            "source.discovery_interval",
            "must be above 0",
        ));
    }
}

fn validate_leases(l: &LeasesConfig, errors: &mut Vec<ConfigError>) {
    if l.table_name.trim().is_empty() {
        errors.push(ConfigError::new("leases.table_name", "must not be empty"));
    }
    if l.renew_interval.is_zero() || l.renew_interval * 3 > l.lease_duration {
        errors.push(ConfigError::new(
            "leases.renew_interval",
            format!(
                "must be above 0 and at most a third of leases.lease_duration ({})",
                humantime::format_duration(l.lease_duration)
            ),
        ));
    }
}

fn validate_publisher(p: &PublisherConfig, errors: &mut Vec<ConfigError>) {
    if p.max_batch_entries.get() > crate::pipeline::batch::MAX_ENTRIES {
        errors.push(ConfigError::new(
            "publisher.max_batch_entries",
            format!(
                "must be at most {} (the PutEvents limit)",
                crate::pipeline::batch::MAX_ENTRIES
            ),
        ));
    }
    if p.initial_backoff.is_zero() || p.initial_backoff > p.max_backoff {
        errors.push(ConfigError::new(
            "publisher.initial_backoff",
            "must be above 0 and at most publisher.max_backoff",
        ));
    }
}

fn validate_dead_letter(d: &DeadLetterConfig, errors: &mut Vec<ConfigError>) {
    let set = [
        d.queue_url.is_some(),
        d.queue_name.is_some(),
        d.file.is_some(),
    ];
    if set.iter().filter(|&&x| x).count() > 1 {
        errors.push(ConfigError::new(
            "dead_letter",
            "set at most one of `queue_url`, `queue_name` and `file`",
        ));
    }
    if let Some(url) = &d.queue_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            errors.push(ConfigError::new(
                "dead_letter.queue_url",
                "must be an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
            ));
        }
    }
}

#[cfg(test)]
mod tests;
