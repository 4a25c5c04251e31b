//! Opt-in export of the relay's own spans over OTLP (`[telemetry] otlp_endpoint`): one span per
//! PutEvents batch, linked to the trace of every record in it (the `traceparent` its outbox row
//! carried), and spans for GetRecords, checkpoints and lease rounds. `tracing` spans become
//! OpenTelemetry spans through `tracing-opentelemetry`; `opentelemetry-otlp` sends them as
//! HTTP/protobuf from the batch processor's own thread.
//!
//! Off by default, and then free: the span sites ask [`enabled`] (one relaxed atomic load) and
//! make no span at all.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::pipeline::Entry;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (the span sites make none otherwise).
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporter's pipeline, kept for a flush at shutdown.
#[derive(Debug)]
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl SpanExport {
    /// Sends what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP span export did not shut down cleanly.");
        }
    }
}

/// The OTLP traces URL for a collector at `endpoint`: `/v1/traces` appended unless given.
#[must_use]
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The `tracing` layer that turns spans into OpenTelemetry spans exported to `endpoint`, and
/// the pipeline to shut down at exit.
///
/// # Errors
/// When the exporter cannot be built.
pub fn layer<S>(endpoint: &str) -> Result<(impl tracing_subscriber::Layer<S>, SpanExport), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .with_headers(std::collections::HashMap::new())
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint {endpoint:?}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("outbox-relay")
                .build(),
        )
        .build();
    let tracer = provider.tracer("outbox-relay");
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        SpanExport { provider },
    ))
}

/// The span of one PutEvents call, linked to the trace of every entry that carries one.
#[must_use]
pub fn publish_batch<E: std::borrow::Borrow<Entry>>(entries: &[E]) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let bus = entries
        .first()
        .map(|e| e.borrow().bus.id())
        .unwrap_or_default();
    let span = tracing::info_span!("PutEvents", entries = entries.len(), bus);
    for entry in entries {
        if let Some(trace) = &entry.borrow().trace {
            span.add_link(trace.span_context());
        }
    }
    span
}

/// The span of another AWS call the relay makes (`GetRecords`, a checkpoint, a lease round).
#[must_use]
pub fn call(name: &'static str) -> tracing::Span {
    if enabled() {
        tracing::info_span!("aws", otel.name = name)
    } else {
        tracing::Span::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn off_by_default_no_span_is_made() {
        assert!(!enabled());
        assert!(publish_batch::<Entry>(&[]).is_none());
        assert!(call("GetRecords").is_none());
    }
}
