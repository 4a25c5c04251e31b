//! The books demo's HTTP API, one handler for API Gateway (through `lambda_http`) and for the
//! local server:
//!
//! - `POST /book` `{"name", "authors", "year"}` → one `TransactWriteItems`: the book into
//!   BooksTable (only if absent, else 409) and its `BookAdded` outbox row into EventsTable →
//!   201 `{"eventId", "name"}`.
//! - `DELETE /book` `{"name"}` → the book deleted (only if present, else 404) and its
//!   `BookRemoved` outbox row, in one transaction → 204.
//!
//! Each outbox row carries the request's W3C `traceparent` (`outbox::TRACEPARENT`): the
//! request's own `traceparent` header if valid, else the Lambda invocation's X-Ray trace, else
//! a new trace, so the relay can hand the trace on to EventBridge and the consumer.
//!
//! A bad body is a 400 whose JSON names the field; anything unexpected is a 500 that says only
//! "internal error" (the cause is logged with the request's id).

mod validate;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use books_common::{outbox, Book};
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

pub use validate::{BadRequest, Removal};

/// The request's trace as a W3C `traceparent` (see the module documentation).
fn request_trace(request: &Request) -> String {
    use lambda_http::RequestExt;
    let header = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let xray = request
        .lambda_context_ref()
        .and_then(|c| c.xray_trace_id.clone())
        .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
    books_common::trace::for_request(header, xray.as_deref())
}

/// How long an outbox row lives (its TTL): long enough for any relay outage.
pub const OUTBOX_ROW_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The API: a DynamoDB client and the two tables.
#[derive(Debug, Clone)]
pub struct Api {
    ddb: aws_sdk_dynamodb::Client,
    books_table: String,
    events_table: String,
}

/// Why a write did not happen.
enum WriteError {
    /// The book's condition failed: it exists (POST) or does not (DELETE).
    Condition,
    Other(String),
}

impl Api {
    #[must_use]
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        books_table: impl Into<String>,
        events_table: impl Into<String>,
    ) -> Self {
        Self {
            ddb,
            books_table: books_table.into(),
            events_table: events_table.into(),
        }
    }

    /// Handles one request. Never fails: every outcome is a response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/');
        if !path.ends_with("/book") {
            return json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"}));
        }
        let body = request.body().as_ref();
        let trace = request_trace(&request);
        match *request.method() {
            Method::POST => match validate::book(body) {
                Ok(book) => self.add(&book, &trace).await,
                Err(bad) => bad.response(),
            },
            Method::DELETE => match validate::removal(body) {
                Ok(removal) => self.remove(&removal.name, &trace).await,
                Err(bad) => bad.response(),
            },
            _ => {
                let mut response = json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method not allowed"}),
                );
                response.headers_mut().insert(
                    header::ALLOW,
                    header::HeaderValue::from_static("POST, DELETE"),
                );
                response
            }
        }
    }

    async fn add(&self, book: &Book, trace: &str) -> Response<Body> {
        let event_id = uuid::Uuid::new_v4().to_string();
        let authors = book
            .authors
            .iter()
            .map(|a| AttributeValue::S(a.clone()))
            .collect();
        let data = HashMap::from([
            ("name".to_owned(), AttributeValue::S(book.name.clone())),
            ("authors".to_owned(), AttributeValue::L(authors)),
            ("year".to_owned(), AttributeValue::N(book.year.to_string())),
        ]);
        let put_book = Put::builder()
            .table_name(&self.books_table)
            .set_item(Some(data.clone()))
            .condition_expression("attribute_not_exists(#name)")
            .expression_attribute_names("#name", "name")
            .build()
            .map(|put| TransactWriteItem::builder().put(put).build());
        match self
            .write(put_book, &event_id, outbox::BOOK_ADDED, data, trace)
            .await
        {
            Ok(()) => {
                tracing::info!(event_id, name = book.name, "book added");
                json_response(
                    StatusCode::CREATED,
                    &json!({"eventId": event_id, "name": book.name}),
                )
            }
            Err(WriteError::Condition) => json_response(
                StatusCode::CONFLICT,
                &json!({"error": "a book with this name exists", "field": "name"}),
            ),
            Err(WriteError::Other(cause)) => internal_error(&cause),
        }
    }

    async fn remove(&self, name: &str, trace: &str) -> Response<Body> {
        let event_id = uuid::Uuid::new_v4().to_string();
        let delete_book = Delete::builder()
            .table_name(&self.books_table)
            .key("name", AttributeValue::S(name.to_owned()))
            .condition_expression("attribute_exists(#name)")
            .expression_attribute_names("#name", "name")
            .build()
            .map(|delete| TransactWriteItem::builder().delete(delete).build());
        let data = HashMap::from([("name".to_owned(), AttributeValue::S(name.to_owned()))]);
        match self
            .write(delete_book, &event_id, outbox::BOOK_REMOVED, data, trace)
            .await
        {
            Ok(()) => {
                tracing::info!(event_id, name, "book removed");
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            Err(WriteError::Condition) => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "no book with this name", "field": "name"}),
            ),
            Err(WriteError::Other(cause)) => internal_error(&cause),
        }
    }

    /// The book change and its outbox row, in one transaction: both happen or neither.
    async fn write<E: std::fmt::Display>(
        &self,
        book_change: Result<TransactWriteItem, E>,
        event_id: &str,
        event_type: &str,
        data: HashMap<String, AttributeValue>,
        traceparent: &str,
    ) -> Result<(), WriteError> {
        let book_change = book_change.map_err(|e| WriteError::Other(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let expires_at = now + OUTBOX_ROW_TTL;
        let row = Put::builder()
            .table_name(&self.events_table)
            .item(outbox::EVENT_ID, AttributeValue::S(event_id.to_owned()))
            .item(outbox::SORT_KEY, AttributeValue::S(event_type.to_owned()))
            .item(outbox::EVENT_TYPE, AttributeValue::S(event_type.to_owned()))
            .item(outbox::EVENT_DATA, AttributeValue::M(data))
            .item(
                outbox::TRACEPARENT,
                AttributeValue::S(traceparent.to_owned()),
            )
            .item(
                outbox::EXPIRES_AT,
                AttributeValue::N(expires_at.as_secs().to_string()),
            )
            .item(
                outbox::CREATED_AT,
                AttributeValue::N(now.as_millis().to_string()),
            )
            .build()
            .map_err(|e| WriteError::Other(e.to_string()))?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(book_change)
            .transact_items(TransactWriteItem::builder().put(row).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                // The first item (the book) failed its condition; the outbox row's put has none.
                Some(TransactWriteItemsError::TransactionCanceledException(e))
                    if e.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Err(WriteError::Condition)
                }
                Some(e) => Err(WriteError::Other(format!(
                    "TransactWriteItems: {}: {}",
                    e.code().unwrap_or("Unknown"),
                    e.message().unwrap_or_default()
                ))),
                None => Err(WriteError::Other(format!("TransactWriteItems: {err:?}"))),
            },
        }
    }
}

/// A JSON response.
#[must_use]
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A 500 that does not leak the cause; the cause goes to the log.
fn internal_error(cause: &str) -> Response<Body> {
    tracing::error!(cause, "request failed");
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"error": "internal error"}),
    )
}
