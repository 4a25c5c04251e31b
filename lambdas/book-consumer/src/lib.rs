//! The books demo's consumer. `BookAdded` records the book in PresentationTable and logs
//! "<name> (<year>) by <authors> was added!"; `BookRemoved` removes it. Each event is applied
//! at most once per stable event id: the side effect runs inside
//! [`dynamodb_idempotency::Idempotency::run`], keyed by `detail.eventId` (the outbox row's id,
//! which the relay puts there and keeps across redeliveries), not by EventBridge's `id` (new
//! on every PutEvents).
//!
//! The trace continues: an event whose detail carries the `traceparent` the API wrote into
//! the outbox row (and the relay passed on) is handled in a span (`handle event`) whose
//! parent is that `traceparent`, and logged with that trace's id (`trace_id`, see
//! [`trace_id`]), the same id the API's request and the relay's TraceHeader carry. The span is
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`books_common::init_logs`).
//!
//! Both seed variants are understood: the outbox variant's detail (the outbox row, with the
//! book under `eventData` and `year`) and the CDC variant's (`{name, authors, publishedYear}`).
//! And both event formats the relay publishes: EventBridge events and CloudEvents (see
//! [`Delivered`]); a CloudEvent's `id` is the stable event id, its `traceparent` extension the
//! trace.

mod delivered;

pub use delivered::{Delivered, Unreadable};

use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use books_common::{outbox, Book};
use dynamodb_idempotency::{Idempotency, Outcome, Settings};
use serde_json::Value;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace id (32 hex digits) of the request that wrote the event's outbox row: from the
/// W3C `traceparent` the event carries (see [`Delivered`]), if valid.
#[must_use]
pub fn trace_id(event: &EventBridgeEvent<Value>) -> Option<String> {
    delivered_trace_id(&Delivered::from_eventbridge(event))
}

fn delivered_trace_id(event: &Delivered) -> Option<String> {
    let valid = books_common::trace::from_traceparent(event.traceparent.as_deref()?)?;
    valid.split('-').nth(1).map(str::to_owned)
}

/// Why an event was not handled.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A twin delivery is running, or the idempotency table failed: retry later.
    #[error(transparent)]
    Idempotency(#[from] dynamodb_idempotency::Error),
    /// The event cannot be applied, now or ever (a poison event): its detail is malformed.
    #[error("bad event: {0}")]
    BadEvent(String),
    /// PresentationTable could not be written: retry later.
    #[error("PresentationTable {operation}: {code}: {message}")]
    Store {
        operation: &'static str,
        code: String,
        message: String,
    },
}

impl ConsumerError {
    fn store<E: ProvideErrorMetadata>(operation: &'static str, err: &E) -> Self {
        Self::Store {
            operation,
            code: err.code().unwrap_or("Unknown").to_owned(),
            message: err.message().unwrap_or_default().to_owned(),
        }
    }
}

/// What the consumer did with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Applied now; the message logged.
    Applied(String),
    /// A duplicate delivery of an event applied before: nothing done.
    Duplicate,
    /// Not an event this consumer handles.
    Ignored,
}

/// The consumer: PresentationTable and the idempotency store.
#[derive(Debug, Clone)]
pub struct Consumer {
    ddb: aws_sdk_dynamodb::Client,
    presentation_table: String,
    idempotency: Idempotency,
}

/// The idempotency key of an event: its stable event id (`detail.eventId` or the CloudEvent
/// `id`, the same outbox row id), else (a producer that sets none) EventBridge's id, which
/// only dedups redeliveries of one PutEvents entry.
fn idempotency_key(event: &Delivered) -> String {
    match &event.event_id {
        Some(id) => format!("book-consumer#{id}"),
        None => {
            tracing::warn!(id = ?event.delivery_id, "event has no detail.eventId; deduplicating on the EventBridge id");
            format!(
                "book-consumer#eventbridge#{}",
                event.delivery_id.as_deref().unwrap_or_default()
            )
        }
    }
}

/// The book of a `BookAdded` detail, in either variant's shape.
fn added_book(detail: &Value) -> Result<Book, ConsumerError> {
    let data = detail.get(outbox::EVENT_DATA).unwrap_or(detail);
    let name = data.get("name").and_then(Value::as_str);
    let authors: Option<Vec<String>> = data.get("authors").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    });
    let year = data
        .get("year")
        .or_else(|| data.get("publishedYear"))
        .and_then(|y| {
            y.as_i64()
                .or_else(|| y.as_str().and_then(|s| s.parse().ok()))
        });
    match (name, authors, year) {
        (Some(name), Some(authors), Some(year)) => Ok(Book {
            name: name.to_owned(),
            authors,
            year,
        }),
        _ => Err(ConsumerError::BadEvent(format!(
            "BookAdded detail lacks name, authors or year: {detail}"
        ))),
    }
}

fn removed_name(detail: &Value) -> Result<String, ConsumerError> {
    detail
        .get(outbox::EVENT_DATA)
        .unwrap_or(detail)
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ConsumerError::BadEvent(format!("BookRemoved detail lacks name: {detail}")))
}

impl Consumer {
    #[must_use]
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        presentation_table: impl Into<String>,
        idempotency_table: impl Into<String>,
        settings: Settings,
    ) -> Self {
        Self {
            idempotency: Idempotency::new(ddb.clone(), idempotency_table, settings),
            ddb,
            presentation_table: presentation_table.into(),
        }
    }

    /// The idempotency store (tests use it to simulate a crashed handler).
    #[must_use]
    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    /// Handles one EventBridge event (its detail may be a CloudEvent), at most once per event
    /// id.
    ///
    /// # Errors
    /// [`ConsumerError`]: retry later, except [`ConsumerError::BadEvent`].
    pub async fn handle(&self, event: &EventBridgeEvent<Value>) -> Result<Handled, ConsumerError> {
        self.handle_delivered(&Delivered::from_eventbridge(event))
            .await
    }

    /// Handles what a queue or a Lambda hands over: a CloudEvent (a Custom Event Bus
    /// subscriber's `RAW` delivery) or an EventBridge event.
    ///
    /// # Errors
    /// [`ConsumerError::BadEvent`] for something that is neither; else as [`Consumer::handle`].
    pub async fn handle_json(&self, json: Value) -> Result<Handled, ConsumerError> {
        let event = Delivered::from_json(json).map_err(|e| ConsumerError::BadEvent(e.0))?;
        self.handle_delivered(&event).await
    }

    /// Handles one delivered event, at most once per event id.
    ///
    /// # Errors
    /// As [`Consumer::handle`].
    pub async fn handle_delivered(&self, event: &Delivered) -> Result<Handled, ConsumerError> {
        let span = tracing::info_span!(
            "handle event",
            otel.kind = "consumer",
            detail_type = event.event_type.as_str(),
        );
        // The event's trace continues: the span's parent is the span that wrote the outbox row.
        if let Some(parent) = event
            .traceparent
            .as_deref()
            .and_then(books_common::trace::context)
        {
            // Fails only when no span is exported (no OpenTelemetry layer): nothing to continue.
            if let Err(e) = span.set_parent(parent) {
                tracing::debug!(error = %e, "the event's trace is not continued");
            }
        }
        self.handle_in_span(event).instrument(span).await
    }

    async fn handle_in_span(&self, event: &Delivered) -> Result<Handled, ConsumerError> {
        let detail_type = event.event_type.as_str();
        let trace = delivered_trace_id(event);
        let trace_id = trace.as_deref().unwrap_or("none");
        let key = idempotency_key(event);
        let outcome = match detail_type {
            outbox::BOOK_ADDED => {
                let book = added_book(&event.data)?;
                self.idempotency
                    .run(&key, || self.add(book), |message| Some(message.clone()))
                    .await?
            }
            outbox::BOOK_REMOVED => {
                let name = removed_name(&event.data)?;
                self.idempotency
                    .run(&key, || self.remove(name), |message| Some(message.clone()))
                    .await?
            }
            _ => return Ok(Handled::Ignored),
        };
        Ok(match outcome {
            Outcome::Ran(message) => {
                tracing::info!(key, trace_id, "{message}");
                Handled::Applied(message)
            }
            Outcome::Duplicate(_) => {
                tracing::info!(key, trace_id, detail_type, "duplicate delivery skipped");
                Handled::Duplicate
            }
        })
    }

    /// Records the book. `timesApplied` counts how often an add was applied to this item, which
    /// makes a duplicate side effect visible (it stays 1 per event).
    async fn add(&self, book: Book) -> Result<String, ConsumerError> {
        let authors = book
            .authors
            .iter()
            .map(|a| AttributeValue::S(a.clone()))
            .collect();
        self.ddb
            .update_item()
            .table_name(&self.presentation_table)
            .key("name", AttributeValue::S(book.name.clone()))
            .update_expression("SET authors = :authors, #year = :year ADD timesApplied :one")
            .expression_attribute_names("#year", "year")
            .expression_attribute_values(":authors", AttributeValue::L(authors))
            .expression_attribute_values(":year", AttributeValue::N(book.year.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| ConsumerError::store("UpdateItem", &e.into_service_error()))?;
        Ok(format!(
            "{} ({}) by {} was added!",
            book.name,
            book.year,
            book.authors.join(", ")
        ))
    }

    async fn remove(&self, name: String) -> Result<String, ConsumerError> {
        self.ddb
            .delete_item()
            .table_name(&self.presentation_table)
            .key("name", AttributeValue::S(name.clone()))
            .send()
            .await
            .map_err(|e| ConsumerError::store("DeleteItem", &e.into_service_error()))?;
        Ok(format!("{name} was removed!"))
    }
}

/// The Lambda entry point: one event per invocation, an EventBridge event or a CloudEvent
/// (see [`Delivered::from_json`]). An error fails the invocation, so EventBridge (or the
/// queue) delivers the event again later.
///
/// # Errors
/// As [`Consumer::handle_json`].
pub async fn lambda_handler(
    consumer: &Consumer,
    event: lambda_runtime::LambdaEvent<Value>,
) -> Result<(), lambda_runtime::Error> {
    consumer
        .handle_json(event.payload)
        .await
        .map(|_| ())
        .map_err(lambda_runtime::Error::from)
}

/// The settings for the consumer: records dedup for a day (EventBridge retries for up to 24
/// hours), and a handler holds a key for at most `handler_timeout`.
#[must_use]
pub fn settings(handler_timeout: Duration) -> Settings {
    Settings {
        expires_after: Duration::from_secs(24 * 3600),
        in_progress_timeout: handler_timeout,
    }
}
