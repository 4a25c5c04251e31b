//! `outbox-relay run`: wire config, clients, telemetry and the supervisor; handle signals.
//!
//! Shutdown has two phases: the first SIGTERM/SIGINT stops reading, settles in-flight batches,
//! checkpoints and releases leases; a second signal, or `shutdown.grace` running out, exits
//! at once (the uncheckpointed tail is re-sent by the next owner: at least once).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aws::{Clients, RequestCounter, Retries};
use crate::config::{Config, RuntimeConfig, StreamSelector};
use crate::lease::{DynamoDbLeaseStore, WorkerId};
use crate::publish::{configured_dead_letter_sink, EventBridgePublisher};
use crate::relay::{Supervisor, SupervisorSettings};
use crate::stream::DynamoDbStreams;
use crate::telemetry::{serve, Health, Metrics};

/// No transparent huge pages for this process; the binary calls it first thing, and the
/// relay-loop measurement (`relay_throughput`) does too, so it measures what the binary costs.
/// mimalloc advises huge pages for its arenas, and the relay's heap churns (each page of
/// records is parsed, held until checkpointed, then freed): with huge pages the kernel zeroed
/// a fresh 2 MiB page for memory mimalloc had handed back, 20 % of the process's CPU on the
/// hot-shard bench, and peak RSS was 25-35 MiB higher (BENCHMARKS.md). Best effort: where the
/// call is refused (a seccomp profile), pages stay as the kernel's setting has them, which
/// only costs the figures above.
pub fn small_pages_only() {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true).ok();
}

/// The multi-threaded tokio runtime every command runs on, with `[runtime] worker_threads`
/// threads if set (tokio's default otherwise: one per CPU the process may use).
///
/// # Errors
/// The operating system refused the runtime's threads or its I/O driver.
pub fn runtime(config: &RuntimeConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        builder.worker_threads(threads.get());
    }
    builder.enable_all().build()
}

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Shut down cleanly within the grace period.
    Clean,
    /// Forced: grace period over, second signal, or a fatal error.
    Forced,
}

/// A start-up failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The metrics and health address cannot be bound.
    #[error("cannot listen on {address} (http.listen)")]
    ListenFailed {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// AWS says a source cannot serve the config: no such table, no stream, or a view type
    /// without an image a route reads. Nothing was read.
    #[error("the sources do not fit the config: {0}")]
    SourcesUnfit(crate::config::ConfigErrors),
    /// A source's routes cannot be merged into one matcher (validation makes this unreachable
    /// for a loaded config).
    #[error("cannot build the routes of source {source_name:?}")]
    RoutesRejected {
        source_name: String,
        #[source]
        source: crate::pipeline::PatternError,
    },
}

/// Runs the relay until a shutdown signal.
///
/// # Errors
/// [`StartupError`]: the HTTP address cannot be bound, or the routes cannot be compiled.
pub async fn run(config: Config) -> Result<RunOutcome, StartupError> {
    let metrics = Metrics::new();
    // The supervisor ticks every renew interval; three missed ticks (or 30 s) is a stall.
    let stall_after = (config.leases.renew_interval * 3).max(Duration::from_secs(30));
    let health = Health::new(stall_after);
    health.tick();

    let (http, http_token) = start_http(&config, &metrics, &health).await?;

    let clients = Clients::counted(
        &crate::aws::sdk_config(&config.aws, Retries::Relay).await,
        &config.aws.endpoints,
        Some(&RequestCounter(metrics.aws_requests.clone())),
    );
    let stream_source = DynamoDbStreams::new(clients.streams.clone(), clients.dynamodb.clone());
    let check = crate::preflight::check_sources(&config, &stream_source).await;
    for (source, reason) in &check.unchecked {
        warn!(source = %source, reason = %reason, "Cannot check the source at start-up; starting anyway and retrying it.");
    }
    for missing in &check.missing {
        warn!(key = %missing.key, reason = %missing.reason, "A source table does not exist; relaying the others and waiting for it.");
    }
    if !check.problems.is_empty() {
        http_token.cancel();
        return Err(StartupError::SourcesUnfit(crate::config::ConfigErrors(
            check.problems,
        )));
    }
    let streams = match routed_streams(&config, &metrics) {
        Ok(streams) => streams,
        Err(e) => {
            http_token.cancel();
            return Err(e);
        }
    };
    let owner = WorkerId(worker_id());
    let settings = SupervisorSettings::from_config(&config);
    let supervisor = Supervisor {
        source: Arc::new(stream_source),
        publisher: Arc::new(EventBridgePublisher::new(
            clients.eventbridge,
            clients.eventbridgev2,
        )),
        dead_letters: Arc::new(configured_dead_letter_sink(&config, clients.sqs)),
        leases: Arc::new(DynamoDbLeaseStore::new(
            clients.dynamodb,
            config.leases.table_name.clone(),
            config.leases.create_table,
        )),
        streams,
        metrics,
        pending: crate::telemetry::PendingRecords::default(),
        health,
        settings,
        owner,
    };

    let token = CancellationToken::new();
    if config.source.recover_gaps {
        tokio::spawn(crate::backfill::recover::recover_gaps(
            config.clone(),
            supervisor.owner.0.clone(),
            token.clone(),
        ));
    }
    let mut relay = tokio::spawn(supervisor.run(token.clone()));
    tokio::select! {
        () = shutdown_signal() => {}
        result = &mut relay => {
            error!(?result, "The relay stopped on its own.");
            http_token.cancel();
            return Ok(RunOutcome::Forced);
        }
    }
    info!(grace = ?config.shutdown.grace, "Shutdown requested.");
    token.cancel();
    let outcome = shut_down(relay, config.shutdown.grace).await;
    http_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
    Ok(outcome)
}

/// Binds `http.listen` and serves `/metrics`, `/healthz` and `/readyz` until the returned
/// token is cancelled.
async fn start_http(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
) -> Result<
    (
        tokio::task::JoinHandle<std::io::Result<()>>,
        CancellationToken,
    ),
    StartupError,
> {
    let failed = |source| StartupError::ListenFailed {
        address: config.http.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(failed)?;
    let http_addr = listener.local_addr().map_err(failed)?;
    let http_token = CancellationToken::new();
    let http = tokio::spawn(serve(
        listener,
        metrics.clone(),
        health.clone(),
        http_token.clone(),
    ));
    info!(address = %http_addr, "Serving /metrics, /healthz and /readyz.");
    Ok((http, http_token))
}

/// Each stream of the config with the routes that apply to it; each source's gap count
/// starts at 0, so an alert on its increase sees the first gap.
fn routed_streams(
    config: &Config,
    metrics: &Metrics,
) -> Result<Vec<(StreamSelector, Arc<crate::pipeline::Router>)>, StartupError> {
    let mut streams = Vec::new();
    for selector in config.source.streams() {
        let router =
            config
                .router_for(&selector)
                .map_err(|source| StartupError::RoutesRejected {
                    source_name: selector.name().to_owned(),
                    source,
                })?;
        let source = match &selector {
            StreamSelector::Table(t) => t.as_str(),
            StreamSelector::Arn(a) => crate::config::table_or_arn(a),
        };
        metrics.stream_gaps.with_label_values(&[source]);
        streams.push((selector, Arc::new(router)));
    }
    Ok(streams)
}

/// After the first signal: waits for the relay to settle and release, at most `grace`, or
/// until a second signal.
async fn shut_down(relay: tokio::task::JoinHandle<()>, grace: Duration) -> RunOutcome {
    tokio::select! {
        result = relay => match result {
            Ok(()) => RunOutcome::Clean,
            Err(e) => {
                error!(error = %e, "The relay panicked while shutting down.");
                RunOutcome::Forced
            }
        },
        () = tokio::time::sleep(grace) => {
            warn!("Shutdown grace period over; exiting without waiting for in-flight work.");
            RunOutcome::Forced
        }
        () = shutdown_signal() => {
            warn!("Second signal; exiting now.");
            RunOutcome::Forced
        }
    }
}

/// A unique id for this process in lease ownership: host name (when known) plus a random part.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "relay".to_owned());
    format!("{host}:{:016x}", rand::random::<u64>())
}

/// Resolves on SIGTERM or SIGINT (`run`'s two phases, `backfill`'s stop).
///
/// # Cancel safety
/// Cancel-safe: dropping it only stops listening.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::runtime;
    use crate::config::RuntimeConfig;

    #[test]
    fn the_runtime_runs_the_configured_worker_threads() {
        for threads in [1, 3] {
            let config = RuntimeConfig {
                worker_threads: NonZeroUsize::new(threads),
            };
            let rt = runtime(&config).expect("a runtime");
            assert_eq!(rt.metrics().num_workers(), threads);
        }
        // Unset: tokio's own default, one thread per CPU the process may use.
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let rt = runtime(&RuntimeConfig::default()).expect("a runtime");
            let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            assert_eq!(rt.metrics().num_workers(), cpus);
        }
    }
}
