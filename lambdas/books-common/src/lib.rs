//! What the books demo's Lambdas share: the book, the outbox row's layout, the AWS SDK config
//! and JSON logs.

use aws_config::{BehaviorVersion, SdkConfig};
use serde::{Deserialize, Serialize};
use tracing_subscriber::Layer as _;

/// A book, as the API receives it (the seed's `input.json`) and as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub name: String,
    pub authors: Vec<String>,
    pub year: i64,
}

/// The outbox row's attributes (EventsTable): what the relay's routes filter on and unmarshall.
pub mod outbox {
    /// Partition key: the event id, stable across redeliveries; consumers dedup on it.
    pub const EVENT_ID: &str = "pk";
    /// Sort key: the event type.
    pub const SORT_KEY: &str = "sk";
    pub const EVENT_TYPE: &str = "eventType";
    /// The event's data, a map (the seed wrote a JSON string; the relay's `expand_json` reads both).
    pub const EVENT_DATA: &str = "eventData";
    /// When the row was written (epoch milliseconds): the relay's
    /// `source.created_at_attribute`, by which `backfill --since/--until` select rows.
    pub const CREATED_AT: &str = "createdAt";
    /// TTL attribute (epoch seconds): outbox rows only need to live until relayed.
    pub const EXPIRES_AT: &str = "expiresAt";
    /// The W3C `traceparent` of the request that wrote the row (the relay's
    /// `source.trace_context_attribute`).
    pub const TRACEPARENT: &str = "traceparent";
    pub const BOOK_ADDED: &str = "BookAdded";
    pub const BOOK_REMOVED: &str = "BookRemoved";
}

/// The SDK config from the default chain (in Lambda: the function's role and region;
/// `AWS_ENDPOINT_URL` points it at an emulator), with rustls on `ring` as the relay uses.
pub async fn aws_config() -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

/// JSON logs on stdout (CloudWatch in Lambda), filtered by `RUST_LOG` (default `info`); with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set (OpenTelemetry's standard variable, e.g. the ADOT Lambda
/// layer's collector at `http://localhost:4318`), spans are also exported over OTLP/HTTP. Keep
/// the returned [`Telemetry`] and flush it after each invocation.
#[must_use]
pub fn init_logs() -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false);
    let (spans, telemetry) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => match trace::otlp_layer() {
            Ok((layer, telemetry)) => (Some(layer), telemetry),
            Err(e) => {
                eprintln!("warning: OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?}: {e}; spans are not exported");
                (None, Telemetry::default())
            }
        },
        _ => (None, Telemetry::default()),
    };
    // Only the demo's own spans, not the SDK's internal ones.
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target("book_api", tracing::Level::INFO)
        .with_target("book_consumer", tracing::Level::INFO);
    let _ = tracing_subscriber::registry()
        .with(spans.map(|layer| layer.with_filter(ours)))
        .with(logs.with_filter(filter))
        .try_init();
    telemetry
}

pub use trace::Telemetry;

/// A required environment variable, or an error naming it.
///
/// # Errors
/// The variable is unset or not UTF-8.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| format!("environment variable {name}: {e}"))
}

pub mod trace;

#[cfg(feature = "testing")]
pub mod testing;
