//! The trace context the API writes into each outbox row (`outbox::TRACEPARENT`), so the relay
//! can hand the request's trace on to EventBridge and the consumer. Parsing and conversion are
//! the OpenTelemetry crates' (W3C `TraceContextPropagator`, `opentelemetry-aws`'s X-Ray
//! propagator). The consumer continues the trace: [`context`] is the parent of its span, and
//! [`otlp_layer`] exports spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// `00-{trace id}-{parent id}-{flags}` of a valid span context.
fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// A W3C `traceparent` header as OpenTelemetry reads it, if valid.
#[must_use]
pub fn from_traceparent(header: &str) -> Option<String> {
    context(header).map(|context| traceparent(context.span().span_context()))
}

/// The OpenTelemetry context of a valid W3C `traceparent`: the remote parent of the span that
/// continues its trace.
#[must_use]
pub fn context(header: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), header.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// The span exporter set up by [`crate::init_logs`], if any: flush it after each Lambda
/// invocation (a frozen execution environment sends nothing) and shut it down at exit.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans buffered so far (blocking: call it off the async workers, e.g. in
    /// `spawn_blocking`).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "OTLP span export: flush failed");
            }
        }
    }

    /// Sends what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "OTLP span export did not shut down cleanly");
            }
        }
    }
}

/// The `tracing` layer exporting spans over OTLP/HTTP to the collector that OpenTelemetry's
/// standard variables name (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...), from the
/// batch processor's own thread.
///
/// # Errors
/// When the exporter cannot be built (e.g. an unparsable endpoint).
pub fn otlp_layer<S>() -> Result<(impl tracing_subscriber::Layer<S>, Telemetry), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME"))
        .unwrap_or_else(|_| "books-demo".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    let tracer = provider.tracer("books-demo");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Telemetry {
            provider: Some(provider),
        },
    ))
}

/// An X-Ray tracing header (`Root=1-…;Parent=…;Sampled=…`, Lambda's `_X_AMZN_TRACE_ID`) as a
/// W3C `traceparent`, if valid.
#[must_use]
pub fn from_xray(header: &str) -> Option<String> {
    opentelemetry_aws::trace::xray_propagator::span_context_from_str(header)
        .filter(SpanContext::is_valid)
        .map(|span| traceparent(&span))
}

/// A new sampled trace, for a request that brings none.
#[must_use]
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let parent: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{parent:016x}-01")
}

/// The request's trace: its `traceparent` header if valid, else the X-Ray trace of the Lambda
/// invocation (`xray`), else a new one.
#[must_use]
pub fn for_request(traceparent_header: Option<&str>, xray: Option<&str>) -> String {
    traceparent_header
        .and_then(from_traceparent)
        .or_else(|| xray.and_then(from_xray))
        .unwrap_or_else(new_traceparent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_header_wins_then_x_ray_then_a_new_trace() {
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(for_request(Some(w3c), Some(xray)), w3c);
        assert_eq!(
            for_request(Some("junk"), Some(xray)),
            "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
        );
        let fresh = for_request(None, Some("junk"));
        assert_eq!(from_traceparent(&fresh).as_deref(), Some(fresh.as_str()));
        assert_ne!(fresh, for_request(None, None), "new traces differ");
    }
}
