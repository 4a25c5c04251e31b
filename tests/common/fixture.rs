//! One test's AWS world on the emulator: tables, a bus whose catch-all rule feeds a queue,
//! outbox rows written as the books API writes them, and reading back what arrived.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, StreamSpecification, StreamViewType, TransactWriteItem,
};
use serde_json::Value;

use super::received::{Received, AGGREGATES};
use super::{endpoint, sdk_config, unique};

/// The outbox rows' creation time (milliseconds since the epoch), for
/// `source.created_at_attribute`.
pub const CREATED_AT: &str = "createdAt";

/// One test's world: an outbox table with a stream, a books table, a bus whose catch-all
/// rule feeds a queue, and a lease table name.
pub struct Fixture {
    pub ddb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub endpoint: String,
    pub events_table: String,
    pub books_table: String,
    pub lease_table: String,
    pub bus: String,
    pub queue_url: String,
    pub dir: tempfile::TempDir,
    /// Event ids written, in write order.
    pub written: Vec<String>,
    /// How many aggregates rows are spread over (`eventData.aggregate`); [`AGGREGATES`] unless
    /// a test changes it.
    pub aggregates: usize,
    /// Whether outbox rows carry a trace context (`traceparent`, `tracestate`: see
    /// [`row_traceparent`]); off unless a test turns it on.
    pub traced_rows: bool,
}

/// The W3C `traceparent` written into outbox row `seq` when [`Fixture::traced_rows`] is on:
/// its own trace id, so each event's trace can be told apart.
pub fn row_traceparent(seq: usize) -> String {
    format!(
        "00-{:032x}-{:016x}-01",
        0xabc0_0000_u128 + seq as u128,
        seq + 1
    )
}

/// The W3C `tracestate` written beside it.
pub const ROW_TRACESTATE: &str = "outbox=relay";

impl Fixture {
    pub async fn new() -> Self {
        Self::at(endpoint()).await
    }

    pub async fn at(endpoint: &str) -> Self {
        let config = sdk_config(endpoint);
        let f = Self {
            ddb: aws_sdk_dynamodb::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            endpoint: endpoint.to_owned(),
            events_table: unique("events"),
            books_table: unique("books"),
            lease_table: unique("leases"),
            bus: unique("bus"),
            queue_url: String::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            written: Vec::new(),
            aggregates: AGGREGATES,
            traced_rows: false,
        };
        f.create_tables().await;
        f.with_bus_and_queue().await
    }

    /// Creates one more outbox table (with a stream); returns its name.
    pub async fn another_events_table(&self) -> String {
        let name = unique("events");
        self.create_events_table(&name).await;
        name
    }

    pub async fn create_events_table(&self, name: &str) {
        self.create_events_table_viewing(name, StreamViewType::NewAndOldImages)
            .await;
    }

    /// Creates an outbox table whose stream has the view type `view`.
    pub async fn create_events_table_viewing(&self, name: &str, view: StreamViewType) {
        let key = |n: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(kind)
                .build()
                .expect("complete")
        };
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete")
        };
        self.ddb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(view)
                    .build()
                    .expect("complete"),
            )
            .send()
            .await
            .expect("create events table");
    }

    async fn create_tables(&self) {
        self.create_events_table(&self.events_table).await;
        self.ddb
            .create_table()
            .table_name(&self.books_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("name")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("complete"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("name")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("complete"),
            )
            .send()
            .await
            .expect("create books table");
    }

    async fn with_bus_and_queue(mut self) -> Self {
        self.events
            .create_event_bus()
            .name(&self.bus)
            .send()
            .await
            .expect("create bus");
        let queue = self
            .sqs
            .create_queue()
            .queue_name(unique("queue"))
            .send()
            .await
            .expect("create queue");
        self.queue_url = queue.queue_url().expect("queue url").to_owned();
        self.route_to_queue(
            &self.bus,
            "all",
            r#"{"source": [{"prefix": ""}]}"#,
            &self.queue_url,
        )
        .await;
        self
    }

    /// A rule `rule` on `bus` that sends the events matching `pattern` to `queue_url`.
    pub async fn route_to_queue(&self, bus: &str, rule: &str, pattern: &str, queue_url: &str) {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue arn")
            .clone();
        self.events
            .put_rule()
            .name(rule)
            .event_bus_name(bus)
            .event_pattern(pattern)
            .send()
            .await
            .expect("put rule");
        self.events
            .put_targets()
            .rule(rule)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .expect("complete"),
            )
            .send()
            .await
            .expect("put targets");
    }

    /// Writes `n` books, each with its `BookAdded` outbox row in one TransactWriteItems;
    /// returns their event ids in write order. `eventData.seq` numbers rows across calls.
    pub async fn write_books(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.write_event("BookAdded", 0).await);
        }
        ids
    }

    /// Writes one book and an outbox row of `event_type` (with `padding` bytes of filler in
    /// its data) in one TransactWriteItems; returns the event id.
    pub async fn write_event(&mut self, event_type: &str, padding: usize) -> String {
        let table = self.events_table.clone();
        self.write_event_in(&table, event_type, padding).await
    }

    /// Like [`Fixture::write_event`], into another outbox table of this fixture.
    pub async fn write_event_in(
        &mut self,
        table: &str,
        event_type: &str,
        padding: usize,
    ) -> String {
        let seq = self.written.len();
        let id = format!("evt-{seq:05}-{:08x}", rand::random::<u32>());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let book = HashMap::from([
            ("name".to_owned(), AttributeValue::S(format!("Book {seq}"))),
            (
                "authors".to_owned(),
                AttributeValue::L(vec![AttributeValue::S("A. Author".into())]),
            ),
            ("year".to_owned(), AttributeValue::N("2019".into())),
        ]);
        let mut data = book.clone();
        data.insert("seq".into(), AttributeValue::N(seq.to_string()));
        data.insert("writtenAtMs".into(), AttributeValue::N(now_ms.to_string()));
        // Rows belong to one of AGGREGATES aggregates, in turn (see `per_aggregate_config`).
        data.insert(
            "aggregate".into(),
            AttributeValue::S(format!("agg-{}", seq % self.aggregates)),
        );
        if padding > 0 {
            data.insert("padding".into(), AttributeValue::S("x".repeat(padding)));
        }
        let mut row = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(id.clone())),
            ("sk".to_owned(), AttributeValue::S(event_type.into())),
            ("eventType".to_owned(), AttributeValue::S(event_type.into())),
            ("eventData".to_owned(), AttributeValue::M(data)),
            (CREATED_AT.to_owned(), AttributeValue::N(now_ms.to_string())),
        ]);
        if self.traced_rows {
            row.insert(
                "traceparent".into(),
                AttributeValue::S(row_traceparent(seq)),
            );
            row.insert(
                "tracestate".into(),
                AttributeValue::S(ROW_TRACESTATE.into()),
            );
        }
        let put = |table: &str, item: HashMap<String, AttributeValue>| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(item))
                        .build()
                        .expect("complete"),
                )
                .build()
        };
        self.ddb
            .transact_write_items()
            .transact_items(put(&self.books_table, book))
            .transact_items(put(table, row))
            .send()
            .await
            .expect("transact write");
        self.written.push(id.clone());
        id
    }

    /// Writes `n` outbox rows into `table` with PutItem (no book, no transaction: moto's
    /// TransactWriteItems copies the whole table per call, too slow for thousands of rows);
    /// returns their event ids. Rows are numbered with the others (`eventData.seq`).
    pub async fn put_rows(&mut self, table: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = self.written.len();
            let id = format!("evt-{seq:05}-{:08x}", rand::random::<u32>());
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            let data = HashMap::from([
                ("name".to_owned(), AttributeValue::S(format!("Book {seq}"))),
                (
                    "authors".to_owned(),
                    AttributeValue::L(vec![AttributeValue::S("A. Author".into())]),
                ),
                ("year".to_owned(), AttributeValue::N("2019".into())),
                ("seq".to_owned(), AttributeValue::N(seq.to_string())),
                (
                    "writtenAtMs".to_owned(),
                    AttributeValue::N(now_ms.to_string()),
                ),
                (
                    "aggregate".to_owned(),
                    AttributeValue::S(format!("agg-{}", seq % self.aggregates)),
                ),
            ]);
            self.ddb
                .put_item()
                .table_name(table)
                .item("pk", AttributeValue::S(id.clone()))
                .item("sk", AttributeValue::S("BookAdded".into()))
                .item("eventType", AttributeValue::S("BookAdded".into()))
                .item("eventData", AttributeValue::M(data))
                .item(CREATED_AT, AttributeValue::N(now_ms.to_string()))
                .send()
                .await
                .expect("put outbox row");
            self.written.push(id.clone());
            ids.push(id);
        }
        ids
    }

    /// A new SQS queue; returns its URL.
    pub async fn queue(&self, prefix: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(unique(prefix))
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_owned()
    }

    /// Every message currently in `queue_url` (received and deleted), as JSON.
    pub async fn drain(&self, queue_url: &str, want: usize, deadline: Duration) -> Vec<Value> {
        let end = Instant::now() + deadline;
        let mut got = Vec::new();
        while got.len() < want {
            assert!(
                Instant::now() < end,
                "only {} of {want} messages in {queue_url}",
                got.len()
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            for m in out.messages() {
                got.push(serde_json::from_str(m.body().expect("body")).expect("json body"));
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().expect("handle"))
                    .send()
                    .await
                    .expect("delete");
            }
        }
        got
    }

    /// Receives events from the queue until `until(&received)` holds or `deadline` passes.
    pub async fn receive_until(
        &self,
        received: &mut Vec<Received>,
        deadline: Duration,
        until: impl Fn(&[Received]) -> bool,
    ) {
        let end = Instant::now() + deadline;
        while !until(received) {
            assert!(
                Instant::now() < end,
                "timed out after {deadline:?} with {} events received",
                received.len()
            );
            received.extend(self.receive_batch(1).await);
        }
    }

    /// One ReceiveMessage call (deleting what it got).
    pub async fn receive_batch(&self, wait_secs: i32) -> Vec<Received> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
            )
            .send()
            .await
            .expect("receive");
        let mut got = Vec::new();
        let mut delete = self.sqs.delete_message_batch().queue_url(&self.queue_url);
        for (i, m) in out.messages().iter().enumerate() {
            let body: Value = serde_json::from_str(m.body().expect("body")).expect("json body");
            let sent_ms = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            got.push(Received {
                body,
                sent_ms,
                message_id: m.message_id().unwrap_or_default().to_owned(),
            });
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().expect("handle"))
                    .build()
                    .expect("complete entry"),
            );
        }
        // One call for the whole batch: the emulator's SQS is slow per request, and a queue
        // that grows makes its every send slower.
        if !got.is_empty() {
            delete.send().await.expect("delete");
        }
        got
    }

    /// The shard leases of this fixture's lease table (none before a relay created it),
    /// without the workers' registry items.
    pub async fn leases(&self) -> Vec<HashMap<String, AttributeValue>> {
        self.lease_table_items()
            .await
            .into_iter()
            .filter(|item| item.contains_key("streamArn"))
            .collect()
    }

    /// Every item of the lease table: shard leases and `worker#` registry items.
    pub async fn lease_table_items(&self) -> Vec<HashMap<String, AttributeValue>> {
        match self
            .ddb
            .scan()
            .table_name(&self.lease_table)
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => out.items().to_vec(),
            Err(e)
                if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                    == Some("ResourceNotFoundException") =>
            {
                Vec::new()
            }
            Err(e) => panic!("scan leases: {e:?}"),
        }
    }
}
