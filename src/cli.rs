//! The command line: every command, flag and environment variable of `outbox-relay`, and the
//! rule that picks the config's origin. `main` parses with these types, runs the command and
//! renders its result; the reference page `docs/reference/cli.md` is checked against them.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser, Subcommand, ValueEnum};

/// Environment variable naming the config file (the `--config` flag's).
pub const CONFIG_ENV: &str = "OUTBOX_RELAY_CONFIG";
/// Environment variable holding the config itself as TOML text (the `--config-toml` flag's).
pub const CONFIG_TOML_ENV: &str = "OUTBOX_RELAY_CONFIG_TOML";

/// Relays DynamoDB Streams outbox rows to Amazon EventBridge.
#[derive(Debug, Parser)]
#[command(name = "outbox-relay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file (TOML or YAML); also from OUTBOX_RELAY_CONFIG. The flag wins over both
    /// environment variables.
    #[arg(long, short, env = CONFIG_ENV, global = true)]
    pub config: Option<PathBuf>,
    /// The config itself, as TOML text; also from OUTBOX_RELAY_CONFIG_TOML, which is used
    /// instead of OUTBOX_RELAY_CONFIG when set and not empty (on ECS, inject it from an SSM
    /// parameter as a container secret). An explicit `--config` flag wins over the variable.
    #[arg(long, env = CONFIG_TOML_ENV, global = true, hide_env_values = true)]
    pub config_toml: Option<String>,
}

/// How a command prints its report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on standard output, for scripts and CI.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (the default).
    Run,
    /// Probe the running relay's /healthz (at [http] listen) for container health checks:
    /// exit 0 if healthy, 1 otherwise. Needs no shell or curl in the image.
    Healthcheck,
    /// Check a config: every problem at once, each naming its key; exit 2 if there is any.
    /// Calls no AWS API unless --aws is given.
    Validate {
        /// `text`, or `json`: `{"origin", "valid", "routes", "problems": [{"key", "reason"}]}`.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
        /// Also check each source against AWS, as `run` does at start-up: the table exists,
        /// its stream is on, and its view type holds every image a route reads.
        #[arg(long)]
        aws: bool,
    },
    /// Show what every route does with one stream record (Pipes/Lambda JSON shape), offline:
    /// whether it matched and the exact PutEvents entries it would send.
    TestRoute {
        /// The record, a JSON file (`-` for standard input).
        #[arg(long)]
        record: PathBuf,
        /// The source the record comes from (a table name or stream ARN of the config).
        /// Default: the record's `eventSourceARN`, else the config's only source.
        #[arg(long)]
        source: Option<String>,
        /// `text`, or `json`: `{"source", "routes": [{"name", "applies", "matched", "entries",
        /// "error"}]}`.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Per shard of the configured sources: owner, checkpoint, lag and state, from the lease
    /// table (and one GetRecords per shard for the lag).
    Status {
        /// `text` or `json`.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Checkpoint maintenance.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Publish what a source table holds now (rows the stream trimmed, or a new consumer's
    /// first load) through the same routes, publisher and dead-letter sink; resumable.
    Backfill(BackfillArgs),
    /// Re-publish the dead-letter queue (dead_letter.queue_url) with the current routes,
    /// deleting each message once EventBridge accepted it.
    Redrive {
        /// Print the entries that would be sent; publish and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop after this many messages.
        #[arg(long)]
        max_messages: Option<usize>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell); needs no config.
    /// For bash: `outbox-relay completions bash > /etc/bash_completion.d/outbox-relay`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `backfill`'s flags.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The source table to read (a table of the config's sources). Default: the only one.
    #[arg(long)]
    pub table: Option<String>,
    /// Segments of the parallel Scan, read at once (1..=1000000).
    #[arg(long, default_value_t = 4)]
    pub segments: u32,
    /// Only rows created at or after this time (by source.created_at_attribute): RFC 3339
    /// with its offset, such as 2026-01-30T00:00:00Z or 2026-01-30T02:00:00+02:00.
    #[arg(long)]
    pub since: Option<String>,
    /// Only rows created before this time (by source.created_at_attribute), as for --since.
    #[arg(long)]
    pub until: Option<String>,
    /// Read at most this many rows per second, over all segments (spares the table's
    /// capacity for the application). Default: no limit.
    #[arg(long)]
    pub max_items_per_second: Option<std::num::NonZeroU32>,
    /// Print the entries it would send (JSON lines on stdout); publish and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue the table's last backfill from the positions saved in the lease table.
    #[arg(long)]
    pub resume: bool,
    /// How often progress is reported (a bar on a terminal, else a JSON line on stderr).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Move one shard (--shard) or a whole source (--source) to TRIM_HORIZON, LATEST or the
    /// first record at or after an RFC 3339 time; refuses owned shards unless --force.
    #[command(group = clap::ArgGroup::new("which").args(["shard", "source"]).required(true).multiple(true))]
    Reset {
        /// The shard id (as `status` lists it).
        #[arg(long)]
        shard: Option<String>,
        /// A table name or stream ARN of the config.
        #[arg(long)]
        source: Option<String>,
        /// TRIM_HORIZON, LATEST or a time with its offset, such as 2026-01-31T12:00:00Z.
        #[arg(long)]
        to: crate::operator::ResetTarget,
        /// Reset even while a relay owns the shard (it stops at its next lease write).
        #[arg(long)]
        force: bool,
    },
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// A file (TOML or YAML).
    File(PathBuf),
    /// TOML text, from `--config-toml` or [`CONFIG_TOML_ENV`].
    Text { text: String, from_env: bool },
}

impl ConfigOrigin {
    /// How messages name it.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Text { from_env: true, .. } => CONFIG_TOML_ENV.to_owned(),
            Self::Text {
                from_env: false, ..
            } => "--config-toml".to_owned(),
        }
    }
}

/// A value and whether it came from the environment rather than a flag.
pub type Given<T> = Option<(T, bool)>;

/// Picks the config's origin: a flag beats an environment variable (as in kubectl, the aws CLI
/// and clap's own `env`); between two environment variables the text wins (the image sets
/// [`CONFIG_ENV`] to its default path, and ECS injects the text); between two flags the user
/// must choose. Empty text counts as unset.
///
/// # Errors
/// Both flags given, or neither source set: a sentence that says what to give.
pub fn config_origin(
    path: Given<PathBuf>,
    text: Given<String>,
) -> Result<ConfigOrigin, &'static str> {
    let text = text.filter(|(t, _)| !t.trim().is_empty());
    match (path, text) {
        (Some((_, false)), Some((_, false))) => {
            Err("give either --config FILE or --config-toml TEXT, not both")
        }
        (Some((path, false)), _) | (Some((path, true)), None) => Ok(ConfigOrigin::File(path)),
        (_, Some((text, from_env))) => Ok(ConfigOrigin::Text { text, from_env }),
        (None, None) => Err(
            "--config FILE is required (or set OUTBOX_RELAY_CONFIG, or the config text in \
             OUTBOX_RELAY_CONFIG_TOML)",
        ),
    }
}

/// [`config_origin`] for parsed arguments, with each value's source read from `matches`.
///
/// # Errors
/// As [`config_origin`].
pub fn config_origin_of(cli: &Cli, matches: &ArgMatches) -> Result<ConfigOrigin, &'static str> {
    let from_env = |id: &str| matches.value_source(id) == Some(ValueSource::EnvVariable);
    config_origin(
        cli.config.clone().map(|p| (p, from_env("config"))),
        cli.config_toml
            .clone()
            .map(|t| (t, from_env("config_toml"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn file(p: &str) -> ConfigOrigin {
        ConfigOrigin::File(PathBuf::from(p))
    }

    #[test]
    fn a_flag_beats_an_environment_variable() {
        let path = |p: &str, env| Some((PathBuf::from(p), env));
        let text = |t: &str, env| Some((t.to_owned(), env));
        // -c bad.toml with OUTBOX_RELAY_CONFIG_TOML set: the flag wins.
        assert_eq!(
            config_origin(path("bad.toml", false), text("[source]", true)),
            Ok(file("bad.toml"))
        );
        // --config-toml with OUTBOX_RELAY_CONFIG set: the flag wins.
        assert_eq!(
            config_origin(path("/etc/x.toml", true), text("[source]", false)),
            Ok(ConfigOrigin::Text {
                text: "[source]".into(),
                from_env: false
            })
        );
        // Both from the environment: the text wins, as the image's default path is set.
        assert_eq!(
            config_origin(path("/etc/x.toml", true), text("[source]", true)),
            Ok(ConfigOrigin::Text {
                text: "[source]".into(),
                from_env: true
            })
        );
        // Empty text is unset.
        assert_eq!(
            config_origin(path("/etc/x.toml", true), text("  ", true)),
            Ok(file("/etc/x.toml"))
        );
        assert!(config_origin(path("a", false), text("b", false)).is_err());
        assert!(config_origin(None, text(" ", true)).is_err());
    }

    #[test]
    fn the_value_sources_come_from_the_parsed_arguments() {
        let matches = Cli::command()
            .try_get_matches_from(["outbox-relay", "validate", "-c", "bad.toml", "-o", "json"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("typed");
        assert_eq!(config_origin_of(&cli, &matches), Ok(file("bad.toml")));
        assert!(matches!(
            cli.command,
            Some(Command::Validate {
                output: Output::Json,
                aws: false
            })
        ));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
