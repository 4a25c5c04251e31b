//! `book-api`: under the Lambda runtime (API Gateway events) when `AWS_LAMBDA_RUNTIME_API` is
//! set, else a local HTTP server on `BOOK_API_LISTEN` (default `127.0.0.1:3000`). Both call
//! the same [`book_api::Api::handle`].
//!
//! Environment: `BOOKS_TABLE`, `EVENTS_TABLE` (required); AWS settings from the default chain
//! (`AWS_ENDPOINT_URL` for an emulator).

use std::process::ExitCode;

use book_api::Api;
use books_common::{aws_config, env, init_logs};
use lambda_http::http::Request;

/// Requests larger than this are refused (API Gateway's own limit is 10 MB; a book is tiny).
const MAX_BODY_BYTES: usize = 64 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = init_logs();
    let api = match (env("BOOKS_TABLE"), env("EVENTS_TABLE")) {
        (Ok(books), Ok(events)) => Api::new(
            aws_sdk_dynamodb::Client::new(&aws_config().await),
            books,
            events,
        ),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        lambda_http::run(lambda_http::service_fn(move |request| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
        }))
        .await
        .map_err(|e| e.to_string())
    } else {
        serve_locally(api).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The local server: every request goes, as a `lambda_http` request, to the same handler.
async fn serve_locally(api: Api) -> Result<(), String> {
    let listen = std::env::var("BOOK_API_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %local, "book-api listening (local server)");
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let api = api.clone();
        async move {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
                let too_large = book_api::json_response(
                    lambda_http::http::StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({"error": format!("the body exceeds {MAX_BODY_BYTES} bytes")}),
                );
                let (parts, body) = too_large.into_parts();
                return axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()));
            };
            let request = Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec()));
            let (parts, body) = api.handle(request).await.into_parts();
            axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminate => {}
            }
            tracing::info!("book-api stopped");
        })
        .await
        .map_err(|e| e.to_string())
}
