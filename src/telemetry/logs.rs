//! Log set-up: `tracing` to stderr, JSON (containers) or pretty (terminals); with
//! `[telemetry] otlp_endpoint`, the spans also go to OpenTelemetry (see `spans.rs`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::spans::{self, SpanExport};
use crate::config::LogFormat;

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`. With
/// `otlp_endpoint`, spans are exported too: keep the returned [`SpanExport`] and shut it down
/// at exit.
///
/// # Errors
/// When `level` is not a valid filter directive, the exporter cannot be built, or a
/// subscriber is already installed.
pub fn init(
    level: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<Option<SpanExport>, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(directive),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt: Boxed = match format {
        LogFormat::Json => Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
        ),
        LogFormat::Pretty => Box::new(fmt),
    };
    let mut layers: Vec<Boxed> = vec![fmt.with_filter(filter).boxed()];
    let export = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, export) = spans::layer::<Registry>(endpoint)?;
            // The relay's own spans only: not the SDK's per-attempt internals.
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("outbox_relay", tracing::Level::INFO);
            layers.push(layer.with_filter(ours).boxed());
            Some(export)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(export)
}
