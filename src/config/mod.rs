//! The relay's configuration: what to read, where to publish, and how hard to try.
//!
//! A config is loaded from one TOML (or YAML) file with the `config` crate, every key
//! overridable by an environment variable `OUTBOX_RELAY__SECTION__KEY`. Loading reports *every*
//! problem at once, each naming the key path and the reason ([`ConfigError`]); it makes no AWS
//! call. Defaults come from the `default_*` functions below, which docs/reference/config.md
//! mirrors (tests/docs.rs checks every key and default).

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

mod file;
mod sources;
mod validate;

pub use file::{
    AwsConfig, DeadLetterConfig, EndpointsConfig, HttpConfig, LeasesConfig, LogConfig, LogFormat,
    PublisherConfig, RuntimeConfig, ShutdownConfig, SourceConfig, StartingPosition,
    TelemetryConfig,
};
pub use sources::{table_of_stream_arn, table_or_arn, RouteBinding, StreamSelector};
pub use validate::check_log_filter;

use file::RawRoute;

/// Environment variables with this prefix override file keys (`OUTBOX_RELAY__SOURCE__TABLE_NAME`).
pub const ENV_PREFIX: &str = "OUTBOX_RELAY";
/// Separates the prefix, sections and keys in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Separates the items of a list key's environment value
/// (`OUTBOX_RELAY__SOURCE__TABLE_NAMES=Orders,Payments`).
pub const LIST_SEPARATOR: &str = ",";
/// The keys outside `[[routes]]` whose value is a list: their environment values are split at
/// [`LIST_SEPARATOR`]. Routes are an array of tables, which no variable name can address.
pub const LIST_KEYS: &[&str] = &["source.table_names", "source.stream_arns"];

/// The top-level sections a config file may contain; anything else is an error.
pub const SECTIONS: &[&str] = &[
    "aws",
    "source",
    "leases",
    "routes",
    "publisher",
    "dead_letter",
    "http",
    "log",
    "shutdown",
    "telemetry",
    "runtime",
];

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub aws: AwsConfig,
    pub source: SourceConfig,
    pub leases: LeasesConfig,
    /// The routes, in config order, each with the sources it applies to.
    pub routes: Vec<RouteBinding>,
    pub publisher: PublisherConfig,
    pub dead_letter: DeadLetterConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    pub runtime: RuntimeConfig,
}

/// One problem with a config: the key path (`routes[1].filters[0]`) and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
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
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(LIST_SEPARATOR)
            .source(env);
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
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
        let telemetry = section::<TelemetryConfig>(raw, "telemetry", &mut errors, false);
        if let Some(telemetry) = &telemetry {
            validate::telemetry(telemetry, &mut errors);
        }
        let runtime = section::<RuntimeConfig>(raw, "runtime", &mut errors, false);
        let routes = validate::routes(raw_routes(raw, &mut errors), &mut errors);

        if let Some(source) = &source {
            validate::source(source, &mut errors);
            validate::route_sources(&routes, &source.streams(), &mut errors);
        }
        if let Some(leases) = &leases {
            validate::leases(leases, &mut errors);
        }
        if let Some(publisher) = &publisher {
            validate::publisher(publisher, &routes, &mut errors);
        }
        if let Some(dead_letter) = &dead_letter {
            validate::dead_letter(dead_letter, &mut errors);
        }
        if let Some(log) = &log {
            validate::log(log, &mut errors);
        }
        if let Some(aws) = &aws {
            validate::aws(aws, &mut errors);
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
            telemetry,
            runtime,
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
                Some(telemetry),
                Some(runtime),
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
                telemetry,
                runtime,
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
        Ok(v) => {
            let (value, problems) = deserialize_at::<T>(key, v);
            errors.extend(problems);
            value
        }
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

/// A `config` crate error that is not about one value (the file's structure).
fn from_config_error(prefix: &str, e: &config::ConfigError) -> ConfigError {
    ConfigError::new(prefix, e.to_string())
}

/// How many problems one section or route reports at most (each costs one more attempt).
const MAX_PROBLEMS_PER_TABLE: usize = 32;

/// Deserializes `value` (found at `prefix`), naming the exact key of *every* problem: after
/// each one, the offending key is taken out and the rest tried again, so a misspelt key does
/// not hide a bad value beside it. Returns what is left once it deserializes (so the checks
/// after deserializing still run on it), and the problems.
fn deserialize_at<T: DeserializeOwned>(
    prefix: &str,
    mut value: config::Value,
) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_PROBLEMS_PER_TABLE {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return (Some(v), errors),
            Err(e) => e,
        };
        let path = e.path().clone();
        let reason = e.into_inner().to_string();
        // A required key taken out after its own problem is missing now: said already.
        if removed.iter().any(|k| {
            reason.starts_with("missing")
                && (reason.contains(&format!("`{k}`")) || reason.contains(&format!("\"{k}\"")))
        }) {
            return (None, errors);
        }
        let path_text = path.to_string();
        // The path includes an unknown field's name, so it always points at the culprit.
        let key = if path_text == "." || path_text.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path_text}")
        };
        errors.push(ConfigError::new(key, reason));
        match remove_at(&mut value, &path) {
            Some(name) => removed.push(name),
            None => return (None, errors),
        }
    }
    (None, errors)
}

/// Takes the key at `path` out of `value`; returns its name, or `None` when the path does not
/// end in a table's key (the whole value, a list item).
fn remove_at(value: &mut config::Value, path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let (last, parents) = segments.split_last()?;
    let mut at = value;
    for segment in parents {
        at = match (segment, &mut at.kind) {
            (Segment::Map { key }, config::ValueKind::Table(table)) => table.get_mut(key)?,
            (Segment::Seq { index }, config::ValueKind::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    match (last, &mut at.kind) {
        (Segment::Map { key }, config::ValueKind::Table(table)) => {
            table.remove(key).map(|_| key.clone())
        }
        _ => None,
    }
}

/// The file's `[[routes]]`, each with its key (`routes[0]`); at least one is required.
fn raw_routes(raw: &config::Config, errors: &mut Vec<ConfigError>) -> Vec<(String, RawRoute)> {
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
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let (route, problems) = deserialize_at::<RawRoute>(&key, value);
        errors.extend(problems);
        if let Some(route) = route {
            out.push((key, route));
        }
    }
    out
}

#[cfg(test)]
mod tests;
