//! The `outbox-relay` command: parse arguments, load config, run. Nothing else.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use mimalloc::MiMalloc;
use outbox_relay::cli::{BackfillArgs, CheckpointCommand, Cli, Command, ConfigOrigin, Output};
use outbox_relay::config::{Config, ConfigErrors};

/// The relay's per-record work is allocation-heavy (JSON trees); mimalloc makes the pipeline
/// about a third faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Exit code for a config that does not validate (also used by `run`).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    outbox_relay::app::small_pages_only();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(Command::Completions { shell }) = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "outbox-relay",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let origin = match outbox_relay::cli::config_origin_of(&cli, &matches) {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let loaded = match &origin {
        ConfigOrigin::File(path) => Config::load(path),
        ConfigOrigin::Text { text, .. } => Config::load_toml_text(text),
    };
    let origin = origin.describe();
    if let Some(Command::Validate { output, aws }) = cli.command {
        return validate(&origin, loaded, output, aws);
    }
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("error: {origin}: {errors}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate { .. } | Command::Completions { .. } => {
            unreachable!("handled before the config is needed")
        }
        Command::Run => run(config),
        Command::Healthcheck => healthcheck(&config),
        Command::TestRoute {
            record,
            source,
            output,
        } => test_route(&config, &record, source.as_deref(), output),
        Command::Status { output } => status(&config, output),
        Command::Checkpoint(CheckpointCommand::Reset {
            shard,
            source,
            to,
            force,
        }) => checkpoint_reset(
            &config,
            outbox_relay::operator::ResetRequest {
                shard,
                source,
                to,
                force,
            },
        ),
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

/// `healthcheck`: the running relay's `/healthz`, for a container's health probe.
fn healthcheck(config: &Config) -> ExitCode {
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

/// `status`: the lease table's rows and recorded gaps, as a table or one JSON document.
fn status(config: &Config, output: Output) -> ExitCode {
    block_on(config, async {
        let rows = outbox_relay::operator::status(config)
            .await
            .map_err(|e| DisplayChain(&e).to_string())?;
        let gaps = outbox_relay::operator::gaps(config)
            .await
            .map_err(|e| DisplayChain(&e).to_string())?;
        if output == Output::Json {
            println!("{}", outbox_relay::operator::status_json(&rows, &gaps));
        } else {
            print!("{}", outbox_relay::operator::status_table(&rows));
            print!("{}", outbox_relay::operator::gaps_text(&gaps));
        }
        Ok(())
    })
}

/// `checkpoint reset`: moves the checkpoints asked for; one line per lease changed.
fn checkpoint_reset(config: &Config, request: outbox_relay::operator::ResetRequest) -> ExitCode {
    block_on(config, async {
        let lines = outbox_relay::operator::reset(config, &request)
            .await
            .map_err(|e| DisplayChain(&e).to_string())?;
        for line in lines {
            println!("{line}");
        }
        Ok(())
    })
}

/// `validate`: every problem of the config at once (and, with `aws`, what AWS says of its
/// sources), as text or one JSON document; exit 2 on any problem.
fn validate(
    origin: &str,
    loaded: Result<Config, ConfigErrors>,
    output: Output,
    aws: bool,
) -> ExitCode {
    let mut unchecked = Vec::new();
    let (routes, problems) = match loaded {
        Ok(config) if aws => {
            let check = match runtime(&config) {
                Ok(rt) => rt.block_on(async {
                    let clients = outbox_relay::aws::Clients::load(
                        &config.aws,
                        outbox_relay::aws::Retries::Sdk,
                    )
                    .await;
                    let streams = outbox_relay::stream::DynamoDbStreams::new(
                        clients.streams,
                        clients.dynamodb,
                    );
                    outbox_relay::preflight::check_sources(&config, &streams).await
                }),
                Err(code) => return code,
            };
            unchecked = check.unchecked;
            let mut problems = check.problems;
            problems.extend(check.missing);
            (config.routes.len(), problems)
        }
        Ok(config) => (config.routes.len(), Vec::new()),
        Err(errors) => (0, errors.0),
    };
    let valid = problems.is_empty() && unchecked.is_empty();
    if output == Output::Json {
        let json = serde_json::json!({
            "origin": origin,
            "valid": valid,
            "routes": routes,
            "problems": problems
                .iter()
                .map(|p| serde_json::json!({"key": p.key, "reason": p.reason}))
                .collect::<Vec<_>>(),
            "unchecked": unchecked
                .iter()
                .map(|(source, reason)| serde_json::json!({"source": source, "reason": reason}))
                .collect::<Vec<_>>(),
        });
        println!("{json}");
    } else if valid {
        println!(
            "{origin}: valid ({routes} route{}{})",
            if routes == 1 { "" } else { "s" },
            if aws { "; the sources fit it" } else { "" }
        );
    } else {
        if !problems.is_empty() {
            eprintln!("error: {origin}: {}", ConfigErrors(problems.clone()));
        }
        for (source, reason) in &unchecked {
            eprintln!("error: {origin}: cannot check source {source}: {reason}");
        }
    }
    match (problems.is_empty(), unchecked.is_empty()) {
        (true, true) => ExitCode::SUCCESS,
        (false, _) => ExitCode::from(EXIT_BAD_CONFIG),
        (true, false) => ExitCode::FAILURE,
    }
}

/// Runs an operator command on a fresh runtime; errors are printed, exit 1.
fn block_on(config: &Config, f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match runtime(config) {
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
    output: Output,
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
            if output == Output::Json {
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
    block_on(config, async {
        let report = outbox_relay::redrive::run(config, options, &outbox_relay::render::redrive)
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
    let runtime = match runtime(config) {
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
            outbox_relay::app::shutdown_signal().await;
            eprintln!("backfill: stopping after the pages in flight (continue with --resume)");
            on_signal.cancel();
        });
        outbox_relay::backfill::run(config, &options, stop, outbox_relay::render::backfill()).await
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
    let runtime = match runtime(&config) {
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
        Err(outbox_relay::app::StartupError::SourcesUnfit(problems)) => {
            tracing::error!(%problems, "The sources do not fit the config; nothing was read.");
            eprintln!("error: the sources do not fit the config: {problems}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            let e = DisplayChain(&e);
            tracing::error!(error = %e, "Start-up failed.");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of `config`'s `[runtime]` section (`app::runtime`); a failure is printed.
fn runtime(config: &Config) -> Result<tokio::runtime::Runtime, ExitCode> {
    outbox_relay::app::runtime(&config.runtime).map_err(|e| {
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
