//! Test harness: the moto emulator (started once per test binary through `scripts/dev-stack`,
//! or taken from `OUTBOX_RELAY_TEST_ENDPOINT`), per-test resources with random names, and the
//! real `outbox-relay` binary run as a child process.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, StreamSpecification, StreamViewType, TransactWriteItem,
};
use serde_json::Value;

pub mod eventsv2;
pub mod proxy;
pub mod tools;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub use books_common::testing::{endpoint, sdk_config_at as sdk_config, unique};

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
}

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

    /// Writes a relay config for this fixture and returns its path. `extra` is appended
    /// TOML (e.g. a different `[source]` starting position is set through `source_extra`).
    pub fn config(&self, source_extra: &str) -> PathBuf {
        self.config_with(source_extra, "")
    }

    /// Like [`Fixture::config`], with `tail` (more routes, a `[dead_letter]` section) appended.
    pub fn config_with(&self, source_extra: &str, tail: &str) -> PathBuf {
        self.config_full(source_extra, "", "", tail)
    }

    /// A config with one PutEvents call in flight per shard: strict per-shard order.
    pub fn strict_config(&self, source_extra: &str, tail: &str) -> PathBuf {
        self.config_full(source_extra, STRICT, "", tail)
    }

    /// A config ordering entries per aggregate (`eventData.aggregate`, see
    /// [`Fixture::write_event`]), with the default calls in flight per shard.
    pub fn per_aggregate_config(&self, source_extra: &str) -> PathBuf {
        self.config_full(source_extra, "", PER_AGGREGATE, "")
    }

    /// A config whose `book-added` route targets the Custom Event Bus `bus_arn`, served at
    /// `eventsv2_endpoint` (the emulator of `common::eventsv2`), with `route_extra` in the route.
    pub fn custom_bus_config(
        &self,
        bus_arn: &str,
        eventsv2_endpoint: &str,
        route_extra: &str,
    ) -> PathBuf {
        let path = self.config_full("", "", route_extra, "");
        let text = std::fs::read_to_string(&path).expect("read config");
        let classic = format!("event_bus_name = \"{}\"", self.bus);
        assert!(text.contains(&classic));
        let text = with_eventsv2_endpoint(
            &text.replace(&classic, &format!("event_bus_arn = \"{bus_arn}\"")),
            eventsv2_endpoint,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The test config with extra keys in `[source]`, `[publisher]` and the `book-added` route,
    /// and `tail` appended.
    pub fn config_full(
        &self,
        source_extra: &str,
        publisher_extra: &str,
        route_extra: &str,
        tail: &str,
    ) -> PathBuf {
        let mut text = format!(
            r#"
[aws]
region = "us-east-1"

[source]
table_name = "{table}"
poll_interval = "100ms"
event_id_attribute = "pk"
discovery_interval = "2s"
{source_extra}

[leases]
table_name = "{leases}"
lease_duration = "3s"
renew_interval = "1s"

[publisher]
initial_backoff = "50ms"
max_backoff = "1s"
{publisher_extra}

[[routes]]
name = "book-added"
filters = ['{{"eventName": ["INSERT"], "dynamodb": {{"NewImage": {{"eventType": {{"S": ["BookAdded"]}}}}}}}}']
event_bus_name = "{bus}"
source = "OutboxDemo.Books"
detail_type = "BookAdded"
unmarshall = "NewImage"
{route_extra}

[http]
listen = "127.0.0.1:0"

[log]
level = "info"
format = "json"

[shutdown]
grace = "10s"
"#,
            table = self.events_table,
            leases = self.lease_table,
            bus = self.bus,
        );
        text.push_str(tail);
        let path = self.dir.path().join(format!("{}.toml", unique("relay")));
        std::fs::write(&path, text).expect("write config");
        path
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
        let row = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(id.clone())),
            ("sk".to_owned(), AttributeValue::S(event_type.into())),
            ("eventType".to_owned(), AttributeValue::S(event_type.into())),
            ("eventData".to_owned(), AttributeValue::M(data)),
            (CREATED_AT.to_owned(), AttributeValue::N(now_ms.to_string())),
        ]);
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

/// An event as it arrived in the queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// When moto enqueued it (= when PutEvents delivered it), ms since the epoch.
    pub sent_ms: u64,
    /// The SQS message id: the same for a message SQS delivers again (its visibility timeout
    /// ran out before the test deleted it), new for an event the relay published again.
    pub message_id: String,
}

impl Received {
    pub fn event_id(&self) -> &str {
        self.body["detail"]["eventId"].as_str().unwrap_or_default()
    }
    pub fn seq(&self) -> u64 {
        self.body["detail"]["eventData"]["seq"]
            .as_u64()
            .unwrap_or(u64::MAX)
    }
    pub fn written_ms(&self) -> u64 {
        self.body["detail"]["eventData"]["writtenAtMs"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// `[publisher]` keys for strict per-shard order.
pub const STRICT: &str = "max_in_flight_per_shard = 1";

/// The `book-added` route's ordering key: the row's aggregate.
pub const PER_AGGREGATE: &str = r#"ordering_key = "<$.NewImage.eventData.aggregate>""#;

/// A config text (with `region = "us-east-1"` in `[aws]`) whose Custom Event Bus API is served at
/// `endpoint` (the emulator of `common::eventsv2`).
pub fn with_eventsv2_endpoint(text: &str, endpoint: &str) -> String {
    let region = "region = \"us-east-1\"";
    assert!(text.contains(region), "the [aws] region line");
    text.replace(
        region,
        &format!("{region}\nendpoints = {{ eventbridgev2 = \"{endpoint}\" }}"),
    )
}

/// How many aggregates the rows are spread over.
pub const AGGREGATES: usize = 5;

/// Checks that, per aggregate, the first delivery of each row follows the order the rows were
/// written in (`eventData.seq`). Returns the number of aggregates seen.
pub fn first_deliveries_in_order_per_aggregate(received: &[Received]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in received {
        if !seen.insert(r.event_id().to_owned()) {
            continue;
        }
        let aggregate = r.body["detail"]["eventData"]["aggregate"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let seq = r.seq();
        if let Some(&before) = last.get(&aggregate) {
            assert!(
                before < seq,
                "aggregate {aggregate}: row {seq} first delivered after row {before}"
            );
        }
        last.insert(aggregate, seq);
    }
    last.len()
}

/// Events the relay published more than once: deliveries of an event id under more than one
/// SQS message id (a message SQS itself redelivered keeps its id and is not counted).
pub fn republished(received: &[Received]) -> usize {
    let mut messages = std::collections::HashSet::new();
    let mut events = std::collections::HashSet::new();
    for r in received {
        if messages.insert(r.message_id.as_str()) {
            events.insert(r.event_id());
        }
    }
    messages.len() - events.len()
}

/// Distinct event ids received, and how many deliveries were duplicates.
pub fn distinct(received: &[Received]) -> (std::collections::HashSet<String>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut dups = 0;
    for r in received {
        if !seen.insert(r.event_id().to_owned()) {
            dups += 1;
        }
    }
    (seen, dups)
}

/// The outbox rows' creation time (milliseconds since the epoch), for
/// `source.created_at_attribute`.
pub const CREATED_AT: &str = "createdAt";

/// The relay binary running as a child process.
pub struct Relay {
    child: Child,
    pub log: PathBuf,
    pub http: String,
}

impl Relay {
    /// Starts `outbox-relay run --config path` against `endpoint`, and waits until it logs its
    /// HTTP address.
    pub fn start(config: &Path, endpoint: &str) -> Self {
        Self::start_with_env(config, endpoint, &[])
    }

    pub fn start_with_env(config: &Path, endpoint: &str, env: &[(&str, &str)]) -> Self {
        let log = config.with_extension(format!("{:08x}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).expect("log file");
        // A measurement may run another build (the baseline of BENCHMARKS.md) instead.
        let binary = std::env::var("OUTBOX_RELAY_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_outbox-relay").to_owned());
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn relay");
        let mut relay = Self {
            child,
            log,
            http: String::new(),
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = relay.log_lines().iter().find_map(|l| {
                (l["message"] == "Serving /metrics, /healthz and /readyz.")
                    .then(|| l["address"].as_str().map(str::to_owned))
                    .flatten()
            }) {
                relay.http = format!("http://{addr}");
                return relay;
            }
            assert!(
                relay.child.try_wait().expect("try_wait").is_none(),
                "relay exited at start-up:\n{}",
                relay.log_text()
            );
            assert!(
                Instant::now() < end,
                "relay never logged its address:\n{}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log as JSON lines (non-JSON lines skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.http)).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// A metric's value (sum over its label sets), from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, name)
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < end,
                "relay not ready within {deadline:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `metric` reaches at least `value`.
    pub async fn wait_metric(&self, name: &str, value: f64, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.metric(name).await >= value {
                return;
            }
            assert!(
                Instant::now() < end,
                "{name} did not reach {value} within {deadline:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for the exit (at most `deadline`).
    pub fn terminate(mut self, deadline: Duration) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.log_text());
            }
            assert!(
                Instant::now() < end,
                "relay did not exit within {deadline:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to checkpoint or release.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        self.log_text()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `outbox-relay ARGS --config CONFIG` against `endpoint`, with the emulator's credentials.
pub fn relay_command(config: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("OUTBOX_RELAY__AWS__ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    command
}

/// Runs `outbox-relay ARGS --config CONFIG` against `endpoint`; returns exit code, stdout and
/// stderr.
pub fn relay_cmd(config: &Path, endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = relay_command(config, endpoint, args)
        .output()
        .expect("run outbox-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
