//! Routes: one read of a record, fanned out to every route whose filters match it.
//!
//! All routes' patterns go into one `quamina` automaton, so matching costs about the same for
//! one route or fifty. Each matching route then renders its detail (template or unmarshalled
//! image) into an [`Entry`], checked against the PutEvents limits before it is ever sent.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::pattern::fields::ReadFields;

use super::batch::entry_size;
use super::bus::{check_deduplication_id, check_group_id, Bus, BusKind};
use super::cloudevent::{trace_metadata, CloudEvent, EventFormat, RAW_CONTENT_TYPE};
use super::image::{ImageError, ImageSelector, ImageTexts, PlainImages};
use super::pattern::{Matcher, PatternError};
use super::route::{Detail, OrderingKey, Route};
use super::trace::TraceContext;

/// What a route needs to know about the record it renders, besides the record itself.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The stream record in the Pipes JSON shape.
    pub record: &'a Value,
    /// The route's name (`<aws.pipes.pipe-name>`).
    pub route_name: &'a str,
    /// The stream ARN (`<aws.pipes.source-arn>`).
    pub source_arn: &'a str,
    /// The stable event id (`<outbox.event-id>`).
    pub event_id: &'a str,
    /// The record's trace context, when its outbox row carries a valid one
    /// (`<outbox.traceparent>`).
    pub trace: Option<&'a TraceContext>,
    /// `ApproximateCreationDateTime`, which also becomes the event's `Time`.
    pub created_at: Option<SystemTime>,
    /// The record's plain images, shared by the routes that expand the same attributes.
    pub images: &'a PlainImages<'a>,
}

impl RecordContext<'_> {
    /// The record's `image` as plain JSON (see [`PlainImages::get`]).
    ///
    /// # Errors
    /// [`ImageError`] when the image is malformed or an attribute to expand is not JSON.
    pub fn plain_image(&self, image: ImageSelector) -> Result<Option<&Value>, ImageError> {
        self.images.get(image)
    }
}

/// One PutEvents entry, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index of the route (in config order) that produced it.
    pub route: usize,
    /// The bus, and so which PutEvents API and limits apply.
    pub bus: Bus,
    /// The route's, shared (as the bus is).
    pub source: Arc<str>,
    pub detail_type: Arc<str>,
    /// JSON text of the detail object: for a `cloudevents` route, the whole CloudEvent (a
    /// classic bus's `Detail`, a Custom Event Bus's `PutRawEvents` `Data`).
    pub detail: String,
    /// How the entry is shaped, and so (on a Custom Event Bus) which API sends it.
    pub format: EventFormat,
    /// `PutRawEvents` `Metadata` (a `cloudevents` entry on a Custom Event Bus): the trace
    /// context, then the route's own keys. Empty otherwise.
    pub metadata: Vec<(String, String)>,
    pub resources: Vec<String>,
    /// The record's creation time; EventBridge uses its own clock when absent.
    pub time: Option<SystemTime>,
    /// Entries with the same key (of one shard) are submitted in record order. On a Custom
    /// Event Bus it is also the entry's `EventGroupId`.
    pub ordering_key: String,
    /// The stable event id (the outbox row's, else the stream record's `eventID`). On a Custom
    /// Event Bus it is the entry's `DeduplicationId`, so a re-sent entry is not stored twice.
    pub event_id: String,
    /// The record's trace: on a classic bus its X-Ray form is the entry's `TraceHeader` (a
    /// Custom Event Bus `PutEvents` entry has no such field nor `Metadata`; there only the
    /// detail carries the `traceparent`; a `PutRawEvents` entry carries it in `Metadata`).
    pub trace: Option<Box<TraceContext>>,
}

impl Entry {
    /// Whether the entry goes out through `PutRawEvents` (a CloudEvent on a Custom Event Bus)
    /// rather than `PutEvents`.
    #[must_use]
    pub fn is_raw(&self) -> bool {
        self.format == EventFormat::CloudEvents && self.bus.kind() == BusKind::Custom
    }

    /// The entry as its PutEvents request shows it (`EventBusName` for a classic bus;
    /// `EventBusArn` and `SystemMetadata` for a Custom Event Bus; `Data`, `Metadata` and
    /// `SystemMetadata.ContentType` for a `PutRawEvents` one), for people to read:
    /// `test-route` and `redrive` print it.
    #[must_use]
    pub fn request_json(&self) -> serde_json::Value {
        if self.is_raw() {
            let metadata: serde_json::Map<String, serde_json::Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            return serde_json::json!({
                "EventBusArn": self.bus.id(),
                "Data": self.detail,
                "Metadata": metadata,
                "SystemMetadata": {
                    "ContentType": RAW_CONTENT_TYPE,
                    "EventGroupId": self.ordering_key,
                    "DeduplicationId": self.event_id,
                },
            });
        }
        let mut out = serde_json::Map::new();
        match &self.bus {
            Bus::Classic(name) => {
                out.insert("EventBusName".into(), (**name).into());
            }
            Bus::Custom(arn) => {
                out.insert("EventBusArn".into(), (**arn).into());
            }
        }
        out.insert("Source".into(), (*self.source).into());
        out.insert("DetailType".into(), (*self.detail_type).into());
        out.insert("Detail".into(), self.detail.clone().into());
        out.insert("Resources".into(), self.resources.clone().into());
        let time = self
            .time
            .map(|t| humantime::format_rfc3339_millis(t).to_string());
        out.insert("Time".into(), time.into());
        if let (BusKind::Classic, Some(trace)) = (self.bus.kind(), &self.trace) {
            out.insert("TraceHeader".into(), trace.xray_header.clone().into());
        }
        if self.bus.kind() == BusKind::Custom {
            out.insert(
                "SystemMetadata".into(),
                serde_json::json!({
                    "EventGroupId": self.ordering_key,
                    "DeduplicationId": self.event_id,
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

/// Why a record could not become an entry for a route: a poison record for that route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The rendered template is not a JSON object, which PutEvents requires of a detail.
    #[error("route {route}: rendered detail is not a JSON object: {reason}")]
    DetailNotJsonObject { route: String, reason: String },
    /// The record has no such image (e.g. `NewImage` of a REMOVE).
    #[error("route {route}: record has no {image}")]
    ImageMissing { route: String, image: &'static str },
    /// The image is not valid DynamoDB JSON, or an `expand_json` attribute is not JSON.
    #[error("route {route}: {source}")]
    ImageInvalid {
        route: String,
        #[source]
        source: ImageError,
    },
    /// The route's ordering key cannot be rendered for this record.
    #[error("route {route}: ordering key: {reason}")]
    OrderingKeyFailed { route: String, reason: String },
    /// A Custom Event Bus entry's `EventGroupId` or `DeduplicationId` breaks its limits.
    #[error("route {route}: {field} {value:?} {reason}")]
    SystemIdInvalid {
        route: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A CloudEvents attribute or `Metadata` value cannot be made for this record (`field`:
    /// `id`, `subject`, `metadata.<key>`).
    #[error("route {route}: CloudEvent {field}: {reason}")]
    CloudEventFailed {
        route: String,
        field: String,
        reason: String,
    },
    /// The entry exceeds its bus's PutEvents request limit on its own.
    #[error("route {route}: entry is {size} bytes, above the {limit} byte PutEvents limit")]
    EntryTooLarge {
        route: String,
        size: usize,
        limit: usize,
    },
}

impl RouteError {
    /// A bounded name for the kind of failure (dead letters' `error_code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::DetailNotJsonObject { .. } => "DetailNotJsonObject",
            Self::ImageMissing { .. } => "ImageMissing",
            Self::ImageInvalid {
                source: ImageError::Unmarshall { .. },
                ..
            } => "UnmarshallFailed",
            Self::ImageInvalid {
                source: ImageError::NotJson { .. },
                ..
            } => "ExpandJsonFailed",
            Self::OrderingKeyFailed { .. } => "OrderingKeyFailed",
            Self::EntryTooLarge { .. } => "EntryTooLarge",
            Self::SystemIdInvalid { .. } => "SystemIdInvalid",
            Self::CloudEventFailed { .. } => "CloudEventFailed",
        }
    }

    /// The name of the route the record failed for.
    #[must_use]
    pub fn route(&self) -> &str {
        match self {
            Self::DetailNotJsonObject { route, .. }
            | Self::ImageMissing { route, .. }
            | Self::ImageInvalid { route, .. }
            | Self::OrderingKeyFailed { route, .. }
            | Self::EntryTooLarge { route, .. }
            | Self::SystemIdInvalid { route, .. }
            | Self::CloudEventFailed { route, .. } => route,
        }
    }
}

/// The routes of a relay, with their patterns merged into one matcher.
pub struct Router {
    routes: Vec<Route>,
    matcher: Matcher,
    /// Routes without filters: they match every record.
    match_all: Vec<usize>,
    /// Per route, which PutEvents calls its entries may share (see [`Router::call_lane`]).
    lanes: Vec<u32>,
    /// Every part of a record the routes read (see [`Router::reads`]).
    reads: ReadFields,
    /// Whether a filter or template reads the record's `eventSourceARN`.
    reads_source_arn: bool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Builds the matcher from the routes' (already validated) filters.
    ///
    /// # Errors
    /// [`PatternError::Rejected`] if the matcher refuses a pattern (config validation makes
    /// this unreachable for loaded configs).
    pub fn new(routes: Vec<Route>) -> Result<Self, PatternError> {
        let mut matcher = Matcher::new();
        let mut match_all = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            if route.filters().is_empty() {
                match_all.push(i);
            }
            for filter in route.filters() {
                matcher.add(i, filter)?;
            }
        }
        let mut custom_calls: Vec<(&Bus, bool)> = Vec::new();
        let lanes = routes
            .iter()
            .map(|route| match &route.target().bus {
                Bus::Classic(_) => 0,
                bus @ Bus::Custom(_) => {
                    let call = (bus, route.publishes_raw());
                    let n = custom_calls
                        .iter()
                        .position(|c| *c == call)
                        .unwrap_or_else(|| {
                            custom_calls.push(call);
                            custom_calls.len() - 1
                        });
                    u32::try_from(n + 1).unwrap_or(u32::MAX)
                }
            })
            .collect();
        let mut reads = matcher.reads();
        for route in &routes {
            route_reads(route, &mut reads);
        }
        Ok(Self {
            routes,
            matcher,
            match_all,
            lanes,
            reads_source_arn: reads.reads_key("eventSourceARN"),
            reads,
        })
    }

    /// Every part of a record routing it reads: what the filters name, what the templates'
    /// paths read, the images an `unmarshall` detail or the item-key ordering key is made of.
    /// [`Router::route`] on a record parsed with only these parts
    /// ([`ReadFields::parse`]) gives what it gives on the whole record; the record policy's
    /// own reads are added by [`super::RecordPolicy::reads`].
    #[must_use]
    pub fn reads(&self) -> &ReadFields {
        &self.reads
    }

    /// Whether routing reads a record's `eventSourceARN` (a filter names it, a template's path
    /// reads it, or `<aws.pipes.event>` reads the whole record).
    #[must_use]
    pub fn reads_source_arn(&self) -> bool {
        self.reads_source_arn
    }

    /// The routes, in config order.
    #[must_use]
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Which PutEvents calls the entries of route `route` may share: lane 0 for every classic
    /// bus (a classic entry names its own bus), one lane per Custom Event Bus (its ARN is a
    /// field of the request) and API (`PutEvents` or `PutRawEvents`).
    #[must_use]
    pub fn call_lane(&self, route: usize) -> u32 {
        self.lanes.get(route).copied().unwrap_or(0)
    }

    /// What the matcher reads of `record` (for [`Router::matching`]): its JSON text with only
    /// the fields some pattern names.
    #[must_use]
    pub fn matcher_input(&self, record: &Value) -> Vec<u8> {
        self.matcher.input(record)
    }

    /// Indexes of the routes whose filters match `record` (`record_json` is
    /// [`Router::matcher_input`] of it, or the record serialized whole), in config order,
    /// each once.
    #[must_use]
    pub fn matching(&self, record: &Value, record_json: &[u8]) -> Vec<usize> {
        let mut hits = Vec::with_capacity(self.routes.len());
        self.matcher.matching(record, record_json, &mut hits);
        hits.extend_from_slice(&self.match_all);
        hits.sort_unstable();
        hits.dedup();
        hits
    }

    /// Renders `record` for every matching route, in route order.
    #[must_use]
    pub fn route(
        &self,
        record: &Value,
        source_arn: &str,
        event_id: &str,
        created_at: Option<SystemTime>,
    ) -> Vec<Result<Entry, RouteError>> {
        let images = ImageTexts::default();
        self.route_traced(record, images, source_arn, event_id, created_at, None)
    }

    /// [`Router::route`] for a record whose outbox row carries a trace context, and whose
    /// images read only as plain JSON may be kept as text (`images`, see
    /// [`ReadFields::parse`]).
    #[must_use]
    pub fn route_traced(
        &self,
        record: &Value,
        images: ImageTexts<'_>,
        source_arn: &str,
        event_id: &str,
        created_at: Option<SystemTime>,
        trace: Option<&TraceContext>,
    ) -> Vec<Result<Entry, RouteError>> {
        let bytes = self.matcher_input(record);
        // Routes that expand no attribute (most) share one set of plain images.
        let shared = PlainImages::new(record, images, &[]);
        self.matching(record, &bytes)
            .into_iter()
            .map(|i| {
                let route = &self.routes[i];
                let own;
                let images = if route.expand_json().is_empty() {
                    &shared
                } else {
                    own = PlainImages::new(record, images, route.expand_json());
                    &own
                };
                let ctx = RecordContext {
                    record,
                    route_name: route.name(),
                    source_arn,
                    event_id,
                    trace,
                    created_at,
                    images,
                };
                render(i, route, &ctx)
            })
            .collect()
    }
}

/// Adds to `reads` what rendering `route` reads of a record (its filters aside).
fn route_reads(route: &Route, reads: &mut ReadFields) {
    match route.detail() {
        Detail::Template(t) => t.add_reads(reads),
        Detail::Unmarshall { image, .. } => reads.add_plain_image(*image),
    }
    match route.ordering_key() {
        OrderingKey::Template(t) => t.add_reads(reads),
        // The item's key is read from the plain `Keys` ([`ordering_key`]).
        OrderingKey::ItemKey => reads.add_plain_image(ImageSelector::Keys),
    }
    for template in route
        .subject()
        .into_iter()
        .chain(route.metadata().iter().map(|(_, t)| t))
    {
        template.add_reads(reads);
    }
}

fn render(index: usize, route: &Route, ctx: &RecordContext<'_>) -> Result<Entry, RouteError> {
    let detail = match route.detail() {
        Detail::Template(t) => {
            let text = t.render(ctx).map_err(|source| RouteError::ImageInvalid {
                route: route.name().to_owned(),
                source,
            })?;
            // A shape proven at start-up renders an object for every record (the property
            // test `every_accepted_template_renders_an_object`); only a lone
            // `<aws.pipes.event>` is the record's to decide, and is checked.
            if t.renders_object() {
                debug_assert!(
                    serde_json::from_str::<serde_json::Map<String, Value>>(&text).is_ok(),
                    "a proven template rendered {text}"
                );
                text
            } else {
                json_object_detail(route, text)?
            }
        }
        Detail::Unmarshall {
            image,
            event_id_field,
            trace_context_field,
        } => unmarshall_detail(route, *image, event_id_field, trace_context_field, ctx)?,
    };
    let ordering_key = ordering_key(route, ctx)?;
    let target = route.target();
    if target.bus.kind() == BusKind::Custom {
        let system_id =
            |field: &'static str, value: &str, check: fn(&str) -> Result<(), String>| {
                check(value).map_err(|reason| RouteError::SystemIdInvalid {
                    route: route.name().to_owned(),
                    field,
                    value: value.chars().take(200).collect(),
                    reason,
                })
            };
        system_id(
            "EventGroupId (the ordering key)",
            &ordering_key,
            check_group_id,
        )?;
        system_id(
            "DeduplicationId (the event id)",
            ctx.event_id,
            check_deduplication_id,
        )?;
    }
    let (detail, metadata) = match route.format() {
        EventFormat::EventBridge => (detail, Vec::new()),
        EventFormat::CloudEvents => cloudevent(route, ctx, &detail, &ordering_key)?,
    };
    let entry = Entry {
        route: index,
        bus: target.bus.clone(),
        source: target.source.clone(),
        detail_type: target.detail_type.clone(),
        detail,
        format: route.format(),
        metadata,
        resources: target.resources.clone(),
        time: ctx.created_at,
        ordering_key,
        event_id: ctx.event_id.to_owned(),
        trace: ctx.trace.map(|t| Box::new(t.clone())),
    };
    let size = entry_size(&entry);
    let limit = entry.bus.kind().max_request_bytes();
    if size > limit {
        return Err(RouteError::EntryTooLarge {
            route: route.name().to_owned(),
            size,
            limit,
        });
    }
    Ok(entry)
}

/// `text` when it is a JSON object, else why it cannot be a detail. Validated without building
/// a tree: a JSON text starting with `{` is an object.
fn json_object_detail(route: &Route, text: String) -> Result<String, RouteError> {
    let reason = match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        Ok(_) if text.trim_start().starts_with('{') => return Ok(text),
        Ok(_) => "it is JSON, but not an object".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(RouteError::DetailNotJsonObject {
        route: route.name().to_owned(),
        reason,
    })
}

/// A `cloudevents` route's event around `data`, and its `Metadata` when it goes out through
/// `PutRawEvents` (see [`super::cloudevent`]).
fn cloudevent(
    route: &Route,
    ctx: &RecordContext<'_>,
    data: &str,
    ordering_key: &str,
) -> Result<(String, Vec<(String, String)>), RouteError> {
    let failed = |field: &str, reason: String| RouteError::CloudEventFailed {
        route: route.name().to_owned(),
        field: field.to_owned(),
        reason,
    };
    if ctx.event_id.is_empty() {
        return Err(failed(
            "id",
            "the record has no event id (a CloudEvent's `id` must not be empty)".to_owned(),
        ));
    }
    let subject = route
        .subject()
        .map(|t| t.render_text(ctx))
        .transpose()
        .map_err(|e| failed("subject", e.to_string()))?;
    let target = route.target();
    let event = CloudEvent {
        id: ctx.event_id,
        source: &target.source,
        event_type: &target.detail_type,
        time: ctx.created_at,
        subject: subject.as_deref(),
        partition_key: ordering_key,
        trace: ctx.trace,
        data,
    }
    .to_json();
    if !route.publishes_raw() {
        return Ok((event, Vec::new()));
    }
    let mut metadata = trace_metadata(ctx.trace);
    for (key, template) in route.metadata() {
        let value = template
            .render_text(ctx)
            .map_err(|e| failed(&format!("metadata.{key}"), e.to_string()))?;
        metadata.push((key.clone(), value));
    }
    Ok((event, metadata))
}

fn unmarshall_detail(
    route: &Route,
    image: ImageSelector,
    event_id_field: &str,
    trace_context_field: &str,
    ctx: &RecordContext<'_>,
) -> Result<String, RouteError> {
    let missing = || RouteError::ImageMissing {
        route: route.name().to_owned(),
        image: image.field(),
    };
    // Most routes expand no attribute: the detail is written straight from the image's text
    // when it was kept as text, else from the typed image.
    if let Some(text) = ctx.images.text_only(image) {
        // Every field to add: those whose names the item holds are left out as it is read.
        let extra = added_fields(event_id_field, trace_context_field, ctx, |_| false);
        let detail = super::unmarshall::item_text_of_text(text, extra);
        if let Some(detail) = detail {
            return Ok(detail);
        }
        // Not the usual typed form: the plain image's way below gives the answer or error.
    }
    if let Some(typed) = ctx.images.typed_only(image) {
        let typed = typed.ok_or_else(missing)?;
        let extra = added_fields(event_id_field, trace_context_field, ctx, |k| {
            typed.contains_key(k)
        });
        return super::unmarshall::item_text(typed, &extra).map_err(|source| {
            RouteError::ImageInvalid {
                route: route.name().to_owned(),
                source: ImageError::Unmarshall {
                    image: image.field(),
                    source,
                },
            }
        });
    }
    let plain = ctx
        .plain_image(image)
        .map_err(|source| RouteError::ImageInvalid {
            route: route.name().to_owned(),
            source,
        })?
        .ok_or_else(missing)?;
    let Value::Object(map) = plain else {
        return Ok(plain.to_string());
    };
    let extra = added_fields(event_id_field, trace_context_field, ctx, |k| {
        map.contains_key(k)
    });
    if extra.is_empty() {
        return Ok(plain.to_string());
    }
    let with = WithFields { map, extra };
    Ok(serde_json::to_string(&with).expect("a JSON map always serializes"))
}

/// The string fields an unmarshalled detail gets besides its item's attributes: the event id
/// and the traceparent under their configured names, each only when the name is set and the
/// item (`has`) does not hold it already, and once.
fn added_fields<'c>(
    event_id_field: &'c str,
    trace_context_field: &'c str,
    ctx: &RecordContext<'c>,
    has: impl Fn(&str) -> bool,
) -> Vec<(&'c str, &'c str)> {
    let fields = [
        (event_id_field, Some(ctx.event_id)),
        (
            trace_context_field,
            ctx.trace.map(|t| t.traceparent.as_str()),
        ),
    ];
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        let free = !key.is_empty() && !has(key);
        if let Some(value) = value.filter(|_| free) {
            if extra.iter().all(|(k, _)| *k != key) {
                extra.push((key, value));
            }
        }
    }
    extra
}

/// A shared plain image serialized with a few more string fields, in key order (the map's is
/// sorted), without copying the image.
struct WithFields<'a> {
    map: &'a serde_json::Map<String, Value>,
    extra: Vec<(&'a str, &'a str)>,
}

impl serde::Serialize for WithFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum Field<'v> {
            Plain(&'v Value),
            Added(&'v str),
        }
        let mut all: Vec<(&str, Field<'_>)> = self
            .map
            .iter()
            .map(|(k, v)| (k.as_str(), Field::Plain(v)))
            .collect();
        all.extend(self.extra.iter().map(|&(k, v)| (k, Field::Added(v))));
        all.sort_by(|a, b| a.0.cmp(b.0));
        serializer.collect_map(all)
    }
}

/// The entry's ordering key for this record (see [`OrderingKey`]).
fn ordering_key(route: &Route, ctx: &RecordContext<'_>) -> Result<String, RouteError> {
    let failed = |reason: String| RouteError::OrderingKeyFailed {
        route: route.name().to_owned(),
        reason,
    };
    match route.ordering_key() {
        OrderingKey::Template(t) => t.render_text(ctx).map_err(|e| failed(e.to_string())),
        // DynamoDB Streams records always carry their item's key; a record without one (hand
        // made, e.g. for test-route) is ordered with every other such record: the empty key.
        OrderingKey::ItemKey => {
            // Usual keys are strings: read without making the plain `Keys`.
            if let Some(values) = ctx.images.key_strings() {
                return Ok(values.join(KEY_SEPARATOR));
            }
            Ok(ctx
                .plain_image(ImageSelector::Keys)
                .map_err(|e| failed(e.to_string()))?
                .and_then(Value::as_object)
                .map(item_key)
                .unwrap_or_default())
        }
    }
}

/// Between an item key's attribute values ([`item_key`]).
const KEY_SEPARATOR: &str = "#";

/// An item's key as text: its key attributes' values in attribute-name order, joined by `#`
/// (strings as they are, other values as JSON): `o-1`, or `book#2024` with a sort key.
#[must_use]
pub fn item_key(keys: &serde_json::Map<String, Value>) -> String {
    let values: Vec<Cow<'_, str>> = keys
        .values()
        .map(|value| match value {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        })
        .collect();
    values.join(KEY_SEPARATOR)
}

/// The stable event id of a record: the `attribute` of the outbox row (looked up in `Keys`,
/// then `NewImage`, then `OldImage`; `S` or `N`), else the stream record's `eventID`.
#[must_use]
pub fn stable_event_id(record: &Value, attribute: Option<&str>) -> String {
    if let Some(attr) = attribute {
        for image in ["Keys", "NewImage", "OldImage"] {
            let typed = record
                .get("dynamodb")
                .and_then(|d| d.get(image))
                .and_then(|i| i.get(attr));
            if let Some(id) = typed
                .and_then(|t| t.get("S").or_else(|| t.get("N")))
                .and_then(Value::as_str)
            {
                return id.to_owned();
            }
        }
    }
    record
        .get("eventID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests;
