//! The `outbox-relay` command: parse arguments, load config, run. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use outbox_relay::config::Config;

/// The relay's per-record work is allocation-heavy (JSON trees); mimalloc makes the pipeline
/// about a third faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Relays DynamoDB Streams outbox rows to Amazon EventBridge.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML or YAML), for the default `run` command.
    #[arg(long, short, env = "OUTBOX_RELAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The config itself, as TOML text; used instead of the file when set and not empty (on
    /// ECS, inject it from an SSM parameter as a container secret).
    #[arg(
        long,
        env = "OUTBOX_RELAY_CONFIG_TOML",
        global = true,
        hide_env_values = true
    )]
    config_toml: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Probe the running relay's /healthz (at [http] listen) for container health checks:
    /// exit 0 if healthy, 1 otherwise. Needs no shell or curl in the image.
    Healthcheck,
    /// Check a config file without calling AWS; exit 2 naming every problem.
    Validate,
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
        /// `text` or `json` (`{"source", "routes": [{"name", "applies", "matched", "entries",
        /// "error"}]}`).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Per shard of the configured sources: owner, checkpoint, lag and state, from the lease
    /// table (and one GetRecords per shard for the lag).
    Status {
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
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
}

/// `backfill`'s flags.
#[derive(Debug, clap::Args)]
struct BackfillArgs {
    /// The source table to read (a table of the config's sources). Default: the only one.
    #[arg(long)]
    table: Option<String>,
    /// Segments of the parallel Scan, read at once (1..=1000000).
    #[arg(long, default_value_t = 4)]
    segments: u32,
    /// Only rows created at or after this RFC 3339 time (by source.created_at_attribute).
    #[arg(long)]
    since: Option<String>,
    /// Only rows created before this RFC 3339 time (by source.created_at_attribute).
    #[arg(long)]
    until: Option<String>,
    /// Read at most this many rows per second, over all segments (spares the table's
    /// capacity for the application). Default: no limit.
    #[arg(long)]
    max_items_per_second: Option<std::num::NonZeroU32>,
    /// Print the entries it would send (JSON lines on stdout); publish and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Continue the table's last backfill from the positions saved in the lease table.
    #[arg(long)]
    resume: bool,
    /// How often progress is reported (a bar on a terminal, else a JSON line on stderr).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    progress_interval: Duration,
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Move one shard (--shard) or a whole source (--source) to TRIM_HORIZON, LATEST or the
    /// first record at or after an RFC 3339 time; refuses owned shards unless --force.
    Reset {
        #[arg(long)]
        shard: Option<String>,
        /// A table name or stream ARN of the config.
        #[arg(long)]
        source: Option<String>,
        /// TRIM_HORIZON, LATEST or a time such as 2026-01-31T12:00:00Z.
        #[arg(long)]
        to: outbox_relay::operator::ResetTarget,
        /// Reset even while a relay owns the shard (it stops at its next lease write).
        #[arg(long)]
        force: bool,
    },
}

/// Exit code for a config that does not validate (also used by `run`).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (origin, loaded) = match (cli.config_toml.filter(|t| !t.trim().is_empty()), cli.config) {
        (Some(text), _) => (
            "OUTBOX_RELAY_CONFIG_TOML".to_owned(),
            Config::load_toml_text(&text),
        ),
        (None, Some(path)) => (path.display().to_string(), Config::load(&path)),
        (None, None) => {
            eprintln!(
                "error: --config FILE is required (or set OUTBOX_RELAY_CONFIG, or the config \
                 text in OUTBOX_RELAY_CONFIG_TOML)"
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("error: {origin}: {errors}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => {
            println!(
                "{origin}: valid ({} route{})",
                config.routes.len(),
                if config.routes.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
        Command::Healthcheck => {
            let addr = outbox_relay::healthcheck::probe_address(config.http.listen);
            match outbox_relay::healthcheck::probe(addr, "/healthz", Duration::from_secs(3)) {
                Ok(200) => ExitCode::SUCCESS,
                Ok(code) => {
                    eprintln!("unhealthy: {addr}/healthz answered {code}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::TestRoute {
            record,
            source,
            output,
        } => test_route(&config, &record, source.as_deref(), &output),
        Command::Status { output } => block_on(async {
            let rows = outbox_relay::operator::status(&config)
                .await
                .map_err(|e| DisplayChain(&e).to_string())?;
            let gaps = outbox_relay::operator::gaps(&config)
                .await
                .map_err(|e| DisplayChain(&e).to_string())?;
            if output == "json" {
                println!("{}", outbox_relay::operator::status_json(&rows, &gaps));
            } else {
                print!("{}", outbox_relay::operator::status_table(&rows));
                print!("{}", outbox_relay::operator::gaps_text(&gaps));
            }
            Ok(())
        }),
        Command::Checkpoint(CheckpointCommand::Reset {
            shard,
            source,
            to,
            force,
        }) => {
            if shard.is_none() && source.is_none() {
                eprintln!("error: give --shard SHARD_ID or --source NAME");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let request = outbox_relay::operator::ResetRequest {
                shard,
                source,
                to,
                force,
            };
            block_on(async {
                let lines = outbox_relay::operator::reset(&config, &request)
                    .await
                    .map_err(|e| DisplayChain(&e).to_string())?;
                for line in lines {
                    println!("{line}");
                }
                Ok(())
            })
        }
        Command::Backfill(args) => backfill(&config, args),
        Command::Redrive {
            dry_run,
            max_messages,
        } => redrive(
            &config,
            outbox_relay::redrive::RedriveOptions {
                dry_run,
                max_messages,
            },
        ),
    }
}

/// Runs an operator command on a fresh runtime; errors are printed, exit 1.
fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn test_route(
    config: &Config,
    record: &std::path::Path,
    source: Option<&str>,
    output: &str,
) -> ExitCode {
    let text = if record.as_os_str() == "-" {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read_to_string(record)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", record.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match outbox_relay::test_route::test_route(config, &text, source) {
        Ok(report) => {
            if output == "json" {
                println!("{}", outbox_relay::test_route::to_json(&report));
            } else {
                print!("{}", outbox_relay::test_route::to_text(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", record.display());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn redrive(config: &Config, options: outbox_relay::redrive::RedriveOptions) -> ExitCode {
    block_on(async {
        let report = outbox_relay::redrive::run(config, options)
            .await
            .map_err(|e| DisplayChain(&e).to_string())?;
        let verb = if options.dry_run {
            "would redrive"
        } else {
            "redriven"
        };
        eprintln!(
            "redrive: {verb} {}, left in the queue {}",
            report.redriven,
            report.left.len()
        );
        if report.left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} message(s) left in the queue",
                report.left.len()
            ))
        }
    })
}

fn backfill(config: &Config, args: BackfillArgs) -> ExitCode {
    if let Err(e) = outbox_relay::telemetry::init_logs(&config.log.level, config.log.format, None) {
        eprintln!("error: log.level: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = outbox_relay::backfill::BackfillOptions {
        table: args.table,
        segments: args.segments,
        since: args.since,
        until: args.until,
        max_items_per_second: args.max_items_per_second,
        dry_run: args.dry_run,
        resume: args.resume,
        progress_interval: args.progress_interval,
        run_label: None,
    };
    let outcome = runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("backfill: stopping after the pages in flight (continue with --resume)");
            on_signal.cancel();
        });
        outbox_relay::backfill::run(config, &options, stop).await
    });
    match outcome {
        Ok(report) => {
            let verb = if options.dry_run {
                "would publish"
            } else {
                "published"
            };
            eprintln!(
                "backfill: {} scanned, {verb} {}, dead-lettered {}, skipped {} (outside the window or matched by no route)",
                report.scanned, report.published, report.dead_lettered, report.skipped
            );
            if report.interrupted {
                eprintln!("backfill: interrupted; continue with the same flags and --resume");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {}", DisplayChain(&e));
            if e.is_bad_input() {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn run(config: Config) -> ExitCode {
    let spans = match outbox_relay::telemetry::init_logs(
        &config.log.level,
        config.log.format,
        config.telemetry.otlp_endpoint.as_deref(),
    ) {
        Ok(spans) => spans,
        Err(e) => {
            eprintln!("error: log.level / telemetry.otlp_endpoint: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(outbox_relay::app::run(config));
    if let Some(spans) = spans {
        spans.shutdown();
    }
    match outcome {
        Ok(outbox_relay::app::RunOutcome::Clean) => ExitCode::SUCCESS,
        Ok(outbox_relay::app::RunOutcome::Forced) => ExitCode::FAILURE,
        Err(e) => {
            let e = DisplayChain(&e);
            tracing::error!(error = %e, "Start-up failed.");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded tokio runtime every command runs on.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// An error with its chain of sources, `: `-separated, for the one place that prints it.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
