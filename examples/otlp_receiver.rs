//! A minimal OTLP/HTTP trace receiver for the demo (`scripts/demo`): listens on the address
//! given as its argument (`127.0.0.1:4318`), decodes every `POST /v1/traces` export with
//! `opentelemetry-proto`, and prints one JSON line per span: its service, name, trace id, parent
//! span id and the trace ids it links to. Not a collector: it keeps nothing.
//!
//! ```sh
//! cargo run --example otlp_receiver -- 127.0.0.1:4318
//! ```

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn traces(body: Bytes) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let links: Vec<String> = span.links.iter().map(|l| hex(&l.trace_id)).collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "service": service,
                        "span": span.name,
                        "trace_id": hex(&span.trace_id),
                        "parent_span_id": hex(&span.parent_span_id),
                        "links": links,
                    })
                );
            }
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!(
        "otlp_receiver: listening on http://{}",
        listener.local_addr()?
    );
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(traces));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
