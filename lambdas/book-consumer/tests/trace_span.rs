//! The handler's span continues the trace of the outbox row it applies.
//!
//! A binary of its own: tracing caches each callsite's interest for the whole process, computed
//! by the first thread to reach it. A sibling test reaching the handler's span from a thread
//! with no subscriber would cache it as never wanted, and this test's scoped subscriber would
//! see no span (it failed about 1 run in 15 beside the other consumer tests).

use std::time::Duration;

use serde_json::Value;

mod support;

use support::{cloudevent_of, fixture, World};

#[tokio::test(flavor = "current_thread")]
async fn the_handler_span_continues_the_outbox_rows_trace() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // This thread's subscriber: a current-thread runtime polls the handler here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = World::new().await;
    let consumer = w.consumer(Duration::from_secs(30));
    let mut traced = fixture("eventbridge-book-added.json");
    traced.detail["traceparent"] =
        Value::from("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let untraced = fixture("eventbridge-book-removed.json");
    consumer.handle(&traced).await.expect("handled");
    consumer.handle(&untraced).await.expect("handled");
    // A CloudEvent's span continues the trace of its `traceparent` extension.
    let mut removed = fixture("eventbridge-book-removed.json");
    removed.detail["eventId"] = Value::from("another-row");
    let cloudevent = cloudevent_of(
        &removed,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    consumer.handle_json(cloudevent).await.expect("handled");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let handled: Vec<_> = spans.iter().filter(|s| s.name == "handle event").collect();
    assert_eq!(handled.len(), 3, "{spans:?}");
    assert_eq!(
        handled[2].span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(handled[2].parent_span_id.to_string(), "b7ad6b7169203331");
    let continued = &handled[0];
    assert_eq!(
        continued.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(continued.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(continued.parent_span_is_remote);
    assert_eq!(
        continued.span_kind,
        opentelemetry::trace::SpanKind::Consumer
    );
    // An event without a trace starts its own.
    assert_ne!(
        handled[1].span_context.trace_id(),
        continued.span_context.trace_id()
    );
    assert_eq!(
        handled[1].parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
}
