//! `book-consumer`: under the Lambda runtime (EventBridge events, or CloudEvents as a Custom
//! Event Bus subscriber delivers them) when `AWS_LAMBDA_RUNTIME_API` is set; else a local runner that long-polls the SQS queue `BOOK_CONSUMER_QUEUE_URL` (fed by
//! an EventBridge rule) and calls the same handler, deleting a message once it is handled.
//! A message whose handling fails stays in the queue and comes back after its visibility
//! timeout (give the queue a redrive policy for poison events).
//!
//! Environment: `PRESENTATION_TABLE`, `IDEMPOTENCY_TABLE` (required); `HANDLER_TIMEOUT_SECS`
//! (default 30: how long a delivery holds its event id before a retry may take it over);
//! AWS settings from the default chain (`AWS_ENDPOINT_URL` for an emulator);
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports the handler's spans (each continues the trace of the
//! request that wrote the outbox row) over OTLP/HTTP.

// The Lambda runtime's service future around the handler's (the idempotency store's and the
// SDK's futures nested) is deeper than the compiler's default layout query depth.
#![recursion_limit = "256"]

use std::process::ExitCode;
use std::time::Duration;

use book_consumer::{lambda_handler, settings, Consumer, Handled};
use books_common::{aws_config, env, init_logs};
use serde_json::Value;

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = init_logs();
    let timeout = std::env::var("HANDLER_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    let config = aws_config().await;
    let consumer = match (env("PRESENTATION_TABLE"), env("IDEMPOTENCY_TABLE")) {
        (Ok(presentation), Ok(idempotency)) => Consumer::new(
            aws_sdk_dynamodb::Client::new(&config),
            presentation,
            idempotency,
            settings(timeout),
        ),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let flushed = telemetry.clone();
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<Value>| {
                let consumer = consumer.clone();
                let telemetry = flushed.clone();
                async move {
                    let handled = lambda_handler(&consumer, event).await;
                    // Before the invocation ends: a frozen environment exports nothing.
                    let _ = tokio::task::spawn_blocking(move || telemetry.flush()).await;
                    handled
                }
            },
        ))
        .await
        .map_err(|e| e.to_string())
    } else {
        match env("BOOK_CONSUMER_QUEUE_URL") {
            Ok(queue_url) => {
                run_queue(&consumer, &aws_sdk_sqs::Client::new(&config), &queue_url).await
            }
            Err(e) => Err(format!("{e} (the local runner's queue)")),
        }
    };
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The local runner: long-polls the queue until SIGINT/SIGTERM.
async fn run_queue(
    consumer: &Consumer,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<(), String> {
    tracing::info!(queue_url, "book-consumer polling (local runner)");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        let receive = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(5)
            .send();
        let received = tokio::select! {
            r = receive => r,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = ?e, "ReceiveMessage failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let body = message.body().unwrap_or_default();
            let handled = match serde_json::from_str::<Value>(body) {
                Ok(event) => consumer.handle_json(event).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("not JSON: {e}")),
            };
            match handled {
                Ok(Handled::Ignored) => tracing::info!(body, "ignored an event of another type"),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = e, body, "event not handled; it will be redelivered");
                    continue;
                }
            }
            if let Some(handle) = message.receipt_handle() {
                if let Err(e) = sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                {
                    // Redelivered later, and then deduplicated.
                    tracing::warn!(error = ?e, "DeleteMessage failed");
                }
            }
        }
    }
    tracing::info!("book-consumer stopped");
    Ok(())
}
