//! A small local emulator of EventBridge's Custom Event Bus API (`eventsv2`), because no
//! emulator speaks it (moto and LocalStack do not). The relay reaches it with the real
//! `aws-sdk-eventbridgev2` client through `[aws.endpoints] eventbridgev2`.
//!
//! Protocol: Smithy RPC v2 CBOR, as the SDK's generated `protocol_serde` speaks it:
//! `POST /service/AWSEventsV2/operation/<Operation>` with a `smithy-protocol: rpc-v2-cbor`
//! header and a CBOR map body; answers carry the same header and a CBOR body, errors an HTTP
//! status and `{"__type": "<namespace>#<Code>", "message": ...}`.
//!
//! `PutEvents` and `PutRawEvents` are served. What they do, and where each behaviour comes
//! from:
//! - AWS docs, eventsv2 API reference, `PutEvents`: 1-100 entries, `EventBusArn` required
//!   (an unknown bus is `ResourceNotFoundException`, HTTP 404); `Entries` of the answer in
//!   request order; `FailedEntryCount`.
//! - `PutEventsRequestEntry`: `Source` 1-256 characters and not `aws.`-prefixed, `DetailType`
//!   1-128; `PutEventsSystemMetadata`: `EventGroupId` 1-128, `DeduplicationId` 1-128 and not all
//!   whitespace. A request breaking these is refused whole with `InvalidInputException`
//!   (HTTP 400), as the service's constraint checks refuse a request.
//! - The `eventbridgev2` service model (botocore, 2025-05-15): a request over 1 MiB of entries
//!   fails whole with `InvalidInputException` and publishes nothing.
//! - User guide, "Ordering and deduplicating events on a Custom Event Bus": a `DeduplicationId`
//!   seen within 300 s is answered `SuccessCode: DEDUPLICATED` and not stored again; events of
//!   one `EventGroupId` get increasing sequence numbers in publish order.
//! - eventsv2 API reference, `PutRawEvents`, `PutRawEventsRequestEntry`,
//!   `PutRawEventsSystemMetadata`: `Data` (a blob) and `SystemMetadata` required;
//!   `SystemMetadata.ContentType` required, 1-256 characters matching `application/.*`, one of
//!   `application/json`, `application/avro`, `application/protobuf`,
//!   `application/octet-stream`; `Metadata` at most 100 entries, keys 1-128 characters matching
//!   `[^/]+`, values at least 1 character; the same `EventGroupId` and `DeduplicationId` rules,
//!   1-100 entries, and answers of the same shape as `PutEvents`'.
//! - User guide, "Publishing events to a Custom Event Bus": both operations produce one kind of
//!   event, ordered and deduplicated alike (so they share one dedup memory and one sequence per
//!   group here); a `PutEvents` event is stored as JSON with the content type
//!   `application/eventbridge+json`; Avro and Protobuf need a schema registry
//!   (`SchemaRegistryConfiguration`), which this emulator does not serve (it refuses them).
//!
//! Choices of this emulator, not documented by AWS: dedup is keyed by (group, dedup id) and
//! timed on the emulator's monotonic clock; a `Detail` that is not a JSON object fails its
//! entry with `ErrorCode: InvalidInputException`, and so does an `application/json` `Data`
//! that is not JSON; a raw entry's size is its `Data` plus its `Metadata` keys and values plus
//! its two ids. Faults are injected by the test: throttling
//! of one group's next entries (per-entry `ThrottlingException`, as a group over its rate),
//! whole-call errors, and held answers (the events are stored, the answer never comes, as when
//! a connection dies after the service accepted a call).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ciborium::Value;

/// How long a `DeduplicationId` is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
const MAX_ENTRIES: usize = 100;
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The content type a `PutEvents` event is stored with.
pub const EVENTBRIDGE_CONTENT_TYPE: &str = "application/eventbridge+json";
const RAW_CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "application/avro",
    "application/protobuf",
    "application/octet-stream",
];

/// An event the emulator stored (a subscriber would get it).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub bus_arn: String,
    pub group: Option<String>,
    pub dedup: Option<String>,
    /// A `PutEvents` event's `Source` (empty for a `PutRawEvents` one).
    pub source: String,
    /// A `PutEvents` event's `DetailType` (empty for a `PutRawEvents` one).
    pub detail_type: String,
    /// A `PutEvents` event's `Detail`, or a JSON `PutRawEvents` event's `Data`, parsed.
    pub detail: serde_json::Value,
    /// A `PutRawEvents` event's `Data`, as sent (empty for a `PutEvents` one).
    pub data: Vec<u8>,
    /// [`EVENTBRIDGE_CONTENT_TYPE`], or the `PutRawEvents` entry's `ContentType`.
    pub content_type: String,
    /// A `PutRawEvents` event's `Metadata`.
    pub metadata: BTreeMap<String, String>,
    /// Per group, in publish order.
    pub sequence: u64,
}

#[derive(Default)]
struct Inner {
    buses: Vec<String>,
    stored: Vec<Stored>,
    seen: HashMap<(Option<String>, String), Instant>,
    sequences: HashMap<Option<String>, u64>,
    deduplicated: usize,
    calls: usize,
    largest_call: usize,
    largest_call_bytes: usize,
    refused_calls: usize,
    /// Per group: how many of its next entries fail, and with which code.
    failing_groups: HashMap<String, (usize, &'static str)>,
    failing_calls: VecDeque<&'static str>,
    holding: bool,
    held: usize,
    /// Every answer leaves this long after the call was served (a slow network).
    answer_delay: Duration,
}

pub struct CustomBusEmulator {
    pub endpoint: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CustomBusEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CustomBusEmulator {
    /// Serves on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route(
                "/service/AWSEventsV2/operation/{operation}",
                axum::routing::post(serve),
            )
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind eventsv2 emulator");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            inner,
            task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a bus; returns its ARN (region us-east-1, account 123456789012).
    pub fn create_bus(&self, name: &str) -> String {
        let id: String = (0..25)
            .map(|_| {
                let n = rand::random::<u8>() % 36;
                char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
            })
            .collect();
        let arn = format!("arn:aws:events:us-east-1:123456789012:event-busv2/{name}/{id}");
        self.register_bus(&arn);
        arn
    }

    /// Makes `arn` exist (a bus created after a route was configured for it).
    pub fn register_bus(&self, arn: &str) {
        self.lock().buses.push(arn.to_owned());
    }

    /// The events stored on `bus_arn`, in publish order.
    pub fn events(&self, bus_arn: &str) -> Vec<Stored> {
        self.lock()
            .stored
            .iter()
            .filter(|e| e.bus_arn == bus_arn)
            .cloned()
            .collect()
    }

    /// Entries answered `DEDUPLICATED` so far.
    pub fn deduplicated(&self) -> usize {
        self.lock().deduplicated
    }

    /// PutEvents calls served, and the most entries one of them carried.
    pub fn calls(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.calls, inner.largest_call)
    }

    /// The most bytes of entries one accepted call carried, and how many calls were refused
    /// whole (4xx, injected errors aside).
    pub fn call_bytes_and_refusals(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.largest_call_bytes, inner.refused_calls)
    }

    /// The next `entries` entries of `group` fail with a per-entry `ThrottlingException`.
    pub fn throttle_group(&self, group: &str, entries: usize) {
        self.fail_group(group, entries, "ThrottlingException");
    }

    /// The next `entries` entries of `group` fail with the per-entry error `code`.
    pub fn fail_group(&self, group: &str, entries: usize, code: &'static str) {
        self.lock()
            .failing_groups
            .insert(group.to_owned(), (entries, code));
    }

    /// Answers leave `delay` after their call was served (its events already stored).
    pub fn delay_answers(&self, delay: Duration) {
        self.lock().answer_delay = delay;
    }

    /// While on, calls are served (their events stored) but never answered.
    pub fn hold_answers(&self, on: bool) {
        self.lock().holding = on;
    }

    /// Calls served but left unanswered by [`CustomBusEmulator::hold_answers`].
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// The next call fails whole with `code` (e.g. `ThrottlingException`).
    pub fn fail_next_call(&self, code: &'static str) {
        self.lock().failing_calls.push_back(code);
    }
}

async fn serve(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            "missing smithy-protocol: rpc-v2-cbor",
        );
    }
    let read_entry: fn(&Value) -> Result<Entry, String> = match operation.as_str() {
        "PutEvents" => entry,
        "PutRawEvents" => raw_entry,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &operation,
            )
        }
    };
    let request: Value = match ciborium::from_reader(&body[..]) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidInputException",
                &format!("not CBOR: {e}"),
            )
        }
    };
    let response = {
        let mut inner = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let response = put_events(&mut inner, &request, read_entry);
        if response.status().is_client_error() {
            inner.refused_calls += 1;
        }
        if inner.holding {
            inner.held += 1;
            None
        } else {
            Some((response, inner.answer_delay))
        }
    };
    match response {
        Some((r, delay)) => {
            tokio::time::sleep(delay).await;
            r
        }
        None => std::future::pending().await,
    }
}

/// One entry of a request, read from CBOR.
struct Entry {
    source: String,
    detail_type: String,
    /// `Detail`, or a raw entry's `Data` when its content type is JSON.
    detail: String,
    /// `None` for a `PutEvents` entry.
    raw: Option<RawParts>,
    group: Option<String>,
    dedup: Option<String>,
    size: usize,
}

/// What only a `PutRawEvents` entry has.
struct RawParts {
    data: Vec<u8>,
    content_type: String,
    metadata: BTreeMap<String, String>,
}

/// Serves `PutEvents` or `PutRawEvents` (their requests differ only in their entries, each
/// read by `read_entry`).
fn put_events(
    inner: &mut Inner,
    request: &Value,
    read_entry: fn(&Value) -> Result<Entry, String>,
) -> Response {
    inner.calls += 1;
    if let Some(code) = inner.failing_calls.pop_front() {
        let status = match code {
            "ThrottlingException" => StatusCode::TOO_MANY_REQUESTS,
            "AccessDeniedException" => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return error(status, code, "injected by the test");
    }
    let Some(arn) = field(request, "EventBusArn").and_then(Value::as_text) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            "EventBusArn is required",
        );
    };
    let arn = arn.to_owned();
    let Some(raw_entries) = field(request, "Entries").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            "Entries is required",
        );
    };
    if field(request, "DeduplicationConfiguration").is_some() {
        // Allowed by the API; the relay must never ask for content-based dedup (billed).
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            "this emulator refuses DeduplicationConfiguration: the relay never sets it",
        );
    }
    if !(1..=MAX_ENTRIES).contains(&raw_entries.len()) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            &format!("Entries has {} members; 1-100 allowed", raw_entries.len()),
        );
    }
    if !inner.buses.contains(&arn) {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("no event bus {arn}"),
        );
    }
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.iter().enumerate() {
        match read_entry(raw) {
            Ok(e) => entries.push(e),
            Err(why) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidInputException",
                    &format!("Entries[{i}]: {why}"),
                )
            }
        }
    }
    let bytes: usize = entries.iter().map(|e| e.size).sum();
    if bytes > MAX_REQUEST_BYTES {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInputException",
            &format!("request has {bytes} bytes of entries, above 1 MiB"),
        );
    }
    inner.largest_call = inner.largest_call.max(entries.len());
    inner.largest_call_bytes = inner.largest_call_bytes.max(bytes);
    let now = Instant::now();
    inner
        .seen
        .retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
    let mut results = Vec::with_capacity(entries.len());
    let mut failed = 0;
    for e in entries {
        if let Some((left, code)) = e
            .group
            .as_ref()
            .and_then(|g| inner.failing_groups.get_mut(g))
            .filter(|(n, _)| *n > 0)
        {
            *left -= 1;
            failed += 1;
            results.push(map(vec![
                ("ErrorCode", text(code)),
                (
                    "ErrorMessage",
                    text("injected by the test for this event group"),
                ),
            ]));
            continue;
        }
        let json_expected = e
            .raw
            .as_ref()
            .is_none_or(|r| r.content_type == "application/json");
        let detail = match serde_json::from_str::<serde_json::Value>(&e.detail) {
            Ok(d) if d.is_object() || (e.raw.is_some() && json_expected) => d,
            _ if !json_expected => serde_json::Value::Null,
            _ => {
                failed += 1;
                let what = if e.raw.is_some() {
                    "Data is not JSON, its ContentType application/json says it is"
                } else {
                    "Detail is not a JSON object"
                };
                results.push(map(vec![
                    ("ErrorCode", text("InvalidInputException")),
                    ("ErrorMessage", text(what)),
                ]));
                continue;
            }
        };
        if let Some(dedup) = &e.dedup {
            let key = (e.group.clone(), dedup.clone());
            if inner.seen.contains_key(&key) {
                inner.deduplicated += 1;
                results.push(map(vec![
                    ("EventId", text(&format!("dup-{}", inner.deduplicated))),
                    ("SuccessCode", text("DEDUPLICATED")),
                ]));
                continue;
            }
            inner.seen.insert(key, now);
        }
        let sequence = {
            let s = inner.sequences.entry(e.group.clone()).or_insert(0);
            *s += 1;
            *s
        };
        let (data, content_type, metadata) = match e.raw {
            Some(r) => (r.data, r.content_type, r.metadata),
            None => (
                Vec::new(),
                EVENTBRIDGE_CONTENT_TYPE.to_owned(),
                BTreeMap::new(),
            ),
        };
        inner.stored.push(Stored {
            bus_arn: arn.clone(),
            group: e.group,
            dedup: e.dedup,
            source: e.source,
            detail_type: e.detail_type,
            detail,
            data,
            content_type,
            metadata,
            sequence,
        });
        results.push(map(vec![
            ("EventId", text(&format!("evt-{}", inner.stored.len()))),
            ("SequenceNumber", text(&sequence.to_string())),
            ("SuccessCode", text("PUBLISHED")),
        ]));
    }
    let body = map(vec![
        ("FailedEntryCount", Value::Integer(failed.into())),
        ("Entries", Value::Array(results)),
    ]);
    cbor_response(StatusCode::OK, &body)
}

fn entry(raw: &Value) -> Result<Entry, String> {
    let string = |name: &str| field(raw, name).and_then(Value::as_text).map(str::to_owned);
    let source = string("Source").ok_or("Source is required")?;
    let detail_type = string("DetailType").ok_or("DetailType is required")?;
    let detail = string("Detail").unwrap_or_default();
    let chars = |s: &str| s.chars().count();
    if !(1..=256).contains(&chars(&source)) || source.starts_with("aws.") {
        return Err(format!(
            "Source {source:?} is not 1-256 characters without the aws. prefix"
        ));
    }
    if !(1..=128).contains(&chars(&detail_type)) {
        return Err("DetailType is not 1-128 characters".to_owned());
    }
    let resources: Vec<String> = field(raw, "Resources")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_text)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let time = field(raw, "Time").is_some();
    let (group, dedup) = system_ids(field(raw, "SystemMetadata"))?;
    let size = if time { 14 } else { 0 }
        + source.len()
        + detail_type.len()
        + detail.len()
        + resources.iter().map(String::len).sum::<usize>()
        + group.as_ref().map_or(0, String::len)
        + dedup.as_ref().map_or(0, String::len);
    Ok(Entry {
        source,
        detail_type,
        detail,
        raw: None,
        group,
        dedup,
        size,
    })
}

/// A `PutRawEvents` entry (see the module documentation for its rules).
fn raw_entry(raw: &Value) -> Result<Entry, String> {
    let data = field(raw, "Data")
        .and_then(Value::as_bytes)
        .ok_or("Data is required (a blob)")?
        .clone();
    let system = field(raw, "SystemMetadata").ok_or("SystemMetadata is required")?;
    let content_type = field(system, "ContentType")
        .and_then(Value::as_text)
        .ok_or("SystemMetadata.ContentType is required")?
        .to_owned();
    if !(1..=256).contains(&content_type.chars().count())
        || !content_type.starts_with("application/")
    {
        return Err(format!(
            "ContentType {content_type:?} is not 1-256 characters matching application/.*"
        ));
    }
    if !RAW_CONTENT_TYPES.contains(&content_type.as_str()) {
        return Err(format!(
            "ContentType {content_type:?} is not one of {RAW_CONTENT_TYPES:?}"
        ));
    }
    if content_type == "application/avro" || content_type == "application/protobuf" {
        return Err(format!(
            "ContentType {content_type:?} needs a SchemaRegistryConfiguration, which this \
             emulator does not serve"
        ));
    }
    let mut metadata = BTreeMap::new();
    if let Some(pairs) = field(raw, "Metadata") {
        let pairs = pairs.as_map().ok_or("Metadata is not a map")?;
        if pairs.len() > 100 {
            return Err(format!("Metadata has {} entries; at most 100", pairs.len()));
        }
        for (k, v) in pairs {
            let (Some(k), Some(v)) = (k.as_text(), v.as_text()) else {
                return Err("Metadata maps strings to strings".to_owned());
            };
            if !(1..=128).contains(&k.chars().count()) || k.contains('/') {
                return Err(format!(
                    "Metadata key {k:?} is not 1-128 characters without /"
                ));
            }
            if v.is_empty() {
                return Err(format!("Metadata value of {k:?} is empty"));
            }
            metadata.insert(k.to_owned(), v.to_owned());
        }
    }
    let (group, dedup) = system_ids(Some(system))?;
    let size = data.len()
        + metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + group.as_ref().map_or(0, String::len)
        + dedup.as_ref().map_or(0, String::len);
    Ok(Entry {
        source: String::new(),
        detail_type: String::new(),
        detail: String::from_utf8_lossy(&data).into_owned(),
        raw: Some(RawParts {
            data,
            content_type,
            metadata,
        }),
        group,
        dedup,
        size,
    })
}

/// `SystemMetadata.EventGroupId` and `.DeduplicationId`, checked.
fn system_ids(system: Option<&Value>) -> Result<(Option<String>, Option<String>), String> {
    let id = |name: &str| {
        system
            .and_then(|m| field(m, name))
            .and_then(Value::as_text)
            .map(str::to_owned)
    };
    let (group, dedup) = (id("EventGroupId"), id("DeduplicationId"));
    let chars = |s: &str| s.chars().count();
    if let Some(g) = &group {
        if !(1..=128).contains(&chars(g)) {
            return Err("EventGroupId is not 1-128 characters".to_owned());
        }
    }
    if let Some(d) = &dedup {
        if !(1..=128).contains(&chars(d)) || d.chars().all(char::is_whitespace) {
            return Err(
                "DeduplicationId is not 1-128 characters with one that is not whitespace"
                    .to_owned(),
            );
        }
    }
    Ok((group, dedup))
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = map(vec![
        (
            "__type",
            text(&format!("com.amazonaws.eventbridgev2#{code}")),
        ),
        ("message", text(message)),
    ]);
    cbor_response(status, &body)
}

fn cbor_response(status: StatusCode, body: &Value) -> Response {
    let mut bytes = Vec::new();
    if ciborium::into_writer(body, &mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        status,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        bytes,
    )
        .into_response()
}
