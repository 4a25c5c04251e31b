//! The relay's own spans over OTLP (`[telemetry] otlp_endpoint`), received by a small OTLP/HTTP
//! receiver in the test (protobuf decoded with `opentelemetry-proto`): a row written with a
//! known `traceparent` is published in a `PutEvents` span linked to that trace; GetRecords and
//! checkpoints have spans too. Without the setting no span is exported (the unit tests check
//! that no span is even made).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use common::{Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Collects every span POSTed to `/v1/traces`.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let spans = Arc::clone(&spans);
            move |body: Bytes| {
                let spans = Arc::clone(&spans);
                async move {
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                    let mut all = spans.lock().expect("lock");
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            all.extend(scope.spans);
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_batch_is_a_span_linked_to_its_records_trace() {
    let f = Fixture::new().await;
    let (url, spans) = receiver().await;
    let config = f.config_with(
        "trace_context_attribute = \"traceparent\"",
        &format!("\n[telemetry]\notlp_endpoint = \"{url}\"\n"),
    );
    let relay = Relay::start_with_env(&config, &f.endpoint, &[("OTEL_BSP_SCHEDULE_DELAY", "200")]);
    relay.wait_ready(DEADLINE).await;
    f.ddb
        .put_item()
        .table_name(&f.events_table)
        .item("pk", AttributeValue::S("evt-traced".into()))
        .item("sk", AttributeValue::S("BookAdded".into()))
        .item("eventType", AttributeValue::S("BookAdded".into()))
        .item(
            "traceparent",
            AttributeValue::S(format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
        )
        .send()
        .await
        .expect("put row");

    let end = Instant::now() + DEADLINE;
    let linked = loop {
        let found = spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.name == "PutEvents" && s.links.iter().any(|l| hex(&l.trace_id) == TRACE_ID))
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(
            Instant::now() < end,
            "no PutEvents span linked to {TRACE_ID}; got {:?}:\n{}",
            spans
                .lock()
                .expect("lock")
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>(),
            relay.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let link = linked
        .links
        .iter()
        .find(|l| hex(&l.trace_id) == TRACE_ID)
        .expect("the link");
    assert_eq!(
        hex(&link.span_id),
        "00f067aa0ba902b7",
        "linked to the API's span"
    );
    // The checkpoint follows the answer, so its span may come in a later export: wait for it.
    let expected = ["GetRecords", "checkpoint", "lease renewals", "lease round"];
    let names = loop {
        let names: std::collections::BTreeSet<String> = spans
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.name.clone())
            .collect();
        if expected.iter().all(|e| names.contains(*e)) || Instant::now() > end {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for expected in expected {
        assert!(names.contains(expected), "no {expected} span in {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("DynamoDB.") || n == "try_attempt"),
        "the SDK's own spans are not exported: {names:?}"
    );
    eprintln!("otlp: spans received: {names:?}");
}
