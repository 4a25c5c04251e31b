//! What the consumer's test binaries share: DynamoDB tables on the emulator, the fixtures, and
//! the CloudEvent a relay route makes of a fixture. Each binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use book_consumer::{settings, Consumer};
use books_common::testing::{create_table, sdk_config};
use serde_json::Value;

pub struct World {
    pub ddb: aws_sdk_dynamodb::Client,
    pub presentation: String,
    pub idempotency: String,
}

impl World {
    pub async fn new() -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_config());
        let presentation = create_table(&ddb, "presentation", "name", None).await;
        let idempotency = create_table(&ddb, "idempotency", "id", None).await;
        Self {
            ddb,
            presentation,
            idempotency,
        }
    }

    pub fn consumer(&self, handler_timeout: Duration) -> Consumer {
        Consumer::new(
            self.ddb.clone(),
            &self.presentation,
            &self.idempotency,
            settings(handler_timeout),
        )
    }

    pub async fn item(
        &self,
        table: &str,
        key: &str,
        value: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.ddb
            .get_item()
            .table_name(table)
            .key(key, AttributeValue::S(value.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }

    /// How many times BookAdded was applied to this book (None: no item).
    pub async fn times_applied(&self, name: &str) -> Option<u64> {
        self.item(&self.presentation, "name", name).await.map(|i| {
            i["timesApplied"]
                .as_n()
                .expect("counter")
                .parse()
                .expect("number")
        })
    }

    pub async fn record(
        &self,
        event_id: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.item(
            &self.idempotency,
            "id",
            &format!("book-consumer#{event_id}"),
        )
        .await
    }
}

pub fn fixture(name: &str) -> EventBridgeEvent<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture"))
        .expect("an EventBridge event")
}

pub fn event_id(event: &EventBridgeEvent<Value>) -> String {
    event.detail["eventId"]
        .as_str()
        .expect("eventId")
        .to_owned()
}

/// The CloudEvent a `format = "cloudevents"` route makes of the fixture's outbox row (the
/// shape `outbox_relay::pipeline::cloudevent` writes), with a trace.
pub fn cloudevent_of(event: &EventBridgeEvent<Value>, traceparent: &str) -> Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": event.detail["eventId"],
        "source": "OutboxDemo.Books",
        "type": event.detail_type,
        "time": "2026-11-26T10:15:00.000Z",
        "datacontenttype": "application/json",
        "partitionkey": "Team Topologies",
        "traceparent": traceparent,
        "data": event.detail,
    })
}
