//! The route model: which records (filters) become which EventBridge event (target + detail).
//!
//! A [`Route`] can only be made by [`Route::compile`], which checks everything that can be
//! checked before a record arrives, and reports every problem at once, each with the field
//! it is about: filters are valid EventBridge patterns, the template renders a JSON object for
//! every record, and the target's `Source` and `DetailType` are within PutEvents' limits. So
//! a route that compiled never dead-letters a record for a reason known at start-up.
//!
//! Where a route applies (its sources) is wiring, not part of the model: the config decides.

use std::sync::Arc;

use super::bus::{check_custom_bus_arn, Bus, BusKind};
use super::cloudevent::{check_metadata_key, check_source, EventFormat, MAX_METADATA_ENTRIES};
use super::image::ImageSelector;
use super::pattern::Filter;
use super::template::Template;

/// Longest `DetailType`, in characters: 128, for both kinds of bus ("Length Constraints:
/// Minimum length of 1. Maximum length of 128." in `PutEventsRequestEntry` of the EventBridge
/// API reference, and of the Custom Event Bus (eventsv2) API reference).
pub const MAX_DETAIL_TYPE_CHARS: usize = 128;
/// Longest `Source`, in characters: 256, for both kinds of bus (eventsv2 API reference,
/// `PutEventsRequestEntry`; the classic bus's limit as the Pipes target parameters
/// `PipeTargetEventBridgeEventBusParameters` state it).
pub const MAX_SOURCE_CHARS: usize = 256;
/// `Source` values with this prefix are reserved for AWS services ("The `aws.` value prefix
/// is service-reserved and cannot be used as a value": eventsv2 `PutEventsRequestEntry`; the
/// classic PutEvents refuses them too).
pub const RESERVED_SOURCE_PREFIX: &str = "aws.";

/// A route as a user describes it: plain text, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    /// Event patterns as JSON text; a record matches if any does. Empty = every record.
    pub filters: Vec<String>,
    pub target: Target,
    pub detail: DetailSpec,
    /// Top-level attributes holding a JSON document in a string, parsed in the plain images.
    pub expand_json: Vec<String>,
    /// A template rendered as text (`<$.NewImage.aggregateId>`): entries with the same key are
    /// submitted in record order. `None`: the item's key (`dynamodb.Keys`).
    pub ordering_key: Option<String>,
    /// How the event is shaped: the detail as `Detail`, or a CloudEvent around it.
    pub format: EventFormat,
    /// A `cloudevents` route's `subject`, a template rendered as text. `None`: no subject.
    pub subject: Option<String>,
    /// A `cloudevents` route's own `PutRawEvents` `Metadata` on a Custom Event Bus: key and
    /// template rendered as text, in key order.
    pub metadata: Vec<(String, String)>,
}

/// How a route's detail is described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailSpec {
    /// A Pipes input template, as text.
    Template(String),
    /// The chosen image, unmarshalled to plain JSON, with the stable event id added under
    /// `event_id_field` and the record's W3C `traceparent` (when it has a valid one) under
    /// `trace_context_field` (each unless empty, or the image already has that attribute).
    Unmarshall {
        image: ImageSelector,
        event_id_field: String,
        trace_context_field: String,
    },
}

/// Where a route's events go and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The bus: `event_bus_name` (classic) or `event_bus_arn` (Custom Event Bus).
    pub bus: Bus,
    /// The event's `Source`, shared with each entry (as the bus is).
    pub source: Arc<str>,
    /// The event's `DetailType`, shared with each entry.
    pub detail_type: Arc<str>,
    /// The event's `Resources`.
    pub resources: Vec<String>,
}

/// A compiled route: every field checked, patterns compiled, template parsed.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    filters: Vec<Filter>,
    target: Target,
    detail: Detail,
    expand_json: Vec<String>,
    ordering_key: OrderingKey,
    format: EventFormat,
    subject: Option<Template>,
    metadata: Vec<(String, Template)>,
}

/// What orders a route's entries: entries with the same key are submitted in record order.
#[derive(Debug, Clone)]
pub enum OrderingKey {
    /// The item's key attributes (`dynamodb.Keys`), the order DynamoDB Streams itself keeps.
    ItemKey,
    /// A template rendered as text ([`Template::render_text`]).
    Template(Template),
}

/// How a compiled route builds the event detail.
#[derive(Debug, Clone)]
pub enum Detail {
    /// A Pipes input template that renders a JSON object for every record.
    Template(Template),
    /// See [`DetailSpec::Unmarshall`].
    Unmarshall {
        image: ImageSelector,
        event_id_field: String,
        trace_context_field: String,
    },
}

/// One problem with a route spec: the field (`filters[1]`, `template`, `source`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RouteProblem {
    /// The field of the route, as the config file names it.
    pub field: String,
    pub reason: String,
}

impl RouteProblem {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Route {
    /// Checks and compiles `spec`.
    ///
    /// # Errors
    /// Every problem found, each naming its field.
    pub fn compile(spec: RouteSpec) -> Result<Self, Vec<RouteProblem>> {
        let mut problems = Vec::new();
        if spec.name.trim().is_empty() {
            problems.push(RouteProblem::new("name", "must not be empty"));
        }
        check_target(&spec.target, &mut problems);
        let mut filters = Vec::with_capacity(spec.filters.len());
        for (j, text) in spec.filters.iter().enumerate() {
            match Filter::compile(text) {
                Ok(f) => filters.push(f),
                Err(e) => problems.push(RouteProblem::new(format!("filters[{j}]"), e.to_string())),
            }
        }
        for (j, attribute) in spec.expand_json.iter().enumerate() {
            if attribute.is_empty() {
                problems.push(RouteProblem::new(
                    format!("expand_json[{j}]"),
                    "must not be empty",
                ));
            }
        }
        let ordering_key = match &spec.ordering_key {
            None => Some(OrderingKey::ItemKey),
            Some(text) if text.trim().is_empty() => {
                problems.push(RouteProblem::new("ordering_key", "must not be empty"));
                None
            }
            Some(text) => match Template::parse(text) {
                Ok(t) => Some(OrderingKey::Template(t)),
                Err(e) => {
                    problems.push(RouteProblem::new("ordering_key", e.to_string()));
                    None
                }
            },
        };
        let (subject, metadata) = check_format(&spec, &mut problems);
        let detail = match spec.detail {
            DetailSpec::Template(text) => match Template::parse_detail(&text) {
                Ok(t) => Some(Detail::Template(t)),
                Err(e) => {
                    problems.push(RouteProblem::new("template", e.to_string()));
                    None
                }
            },
            DetailSpec::Unmarshall {
                image,
                event_id_field,
                trace_context_field,
            } => Some(Detail::Unmarshall {
                image,
                event_id_field,
                trace_context_field,
            }),
        };
        match (detail, ordering_key) {
            (Some(detail), Some(ordering_key)) if problems.is_empty() => Ok(Self {
                name: spec.name,
                filters,
                target: spec.target,
                detail,
                expand_json: spec.expand_json,
                ordering_key,
                format: spec.format,
                subject,
                metadata,
            }),
            _ => Err(problems),
        }
    }

    /// Every image the route reads, with the field that reads it (`filters[0]`, `template`,
    /// `unmarshall`, `ordering_key`), in config order: what a stream's view type must hold
    /// for the route to work on its records.
    #[must_use]
    pub fn images_read(&self) -> Vec<(String, ImageSelector)> {
        let mut out = Vec::new();
        for (j, filter) in self.filters.iter().enumerate() {
            out.extend(
                filter
                    .images_read()
                    .into_iter()
                    .map(|image| (format!("filters[{j}]"), image)),
            );
        }
        match &self.detail {
            Detail::Template(t) => out.extend(
                t.images_read()
                    .into_iter()
                    .map(|image| ("template".to_owned(), image)),
            ),
            Detail::Unmarshall { image, .. } => out.push(("unmarshall".to_owned(), *image)),
        }
        let texts = std::iter::once((
            "ordering_key".to_owned(),
            match &self.ordering_key {
                OrderingKey::Template(t) => Some(t),
                OrderingKey::ItemKey => None,
            },
        ))
        .chain(std::iter::once((
            "subject".to_owned(),
            self.subject.as_ref(),
        )))
        .chain(
            self.metadata
                .iter()
                .map(|(key, t)| (format!("metadata.{key}"), Some(t))),
        );
        for (field, template) in texts {
            if let Some(t) = template {
                out.extend(
                    t.images_read()
                        .into_iter()
                        .map(|image| (field.clone(), image)),
                );
            }
        }
        out
    }

    /// Unique name, used in logs, metrics and `<aws.pipes.pipe-name>`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compiled event patterns; a record matches if any does. Empty = every record.
    #[must_use]
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// Where the events go and what they are called.
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How the detail is made.
    #[must_use]
    pub fn detail(&self) -> &Detail {
        &self.detail
    }

    /// Top-level attributes parsed from JSON text in the plain images.
    #[must_use]
    pub fn expand_json(&self) -> &[String] {
        &self.expand_json
    }

    /// What orders the route's entries.
    #[must_use]
    pub fn ordering_key(&self) -> &OrderingKey {
        &self.ordering_key
    }

    /// How the route's events are shaped.
    #[must_use]
    pub fn format(&self) -> EventFormat {
        self.format
    }

    /// A `cloudevents` route's `subject` template.
    #[must_use]
    pub fn subject(&self) -> Option<&Template> {
        self.subject.as_ref()
    }

    /// A `cloudevents` route's own `Metadata` keys and their templates, in key order.
    #[must_use]
    pub fn metadata(&self) -> &[(String, Template)] {
        &self.metadata
    }

    /// Whether the route publishes with `PutRawEvents` (a CloudEvents route on a Custom Event
    /// Bus) rather than `PutEvents`.
    #[must_use]
    pub fn publishes_raw(&self) -> bool {
        self.format == EventFormat::CloudEvents && self.target.bus.kind() == BusKind::Custom
    }
}

/// The format's own fields: a `cloudevents` route's `source` is a URI-reference and its
/// `subject` and `metadata` templates parse; `subject` belongs to `cloudevents` routes and
/// `metadata` to `cloudevents` routes on a Custom Event Bus (only `PutRawEvents` carries it).
fn check_format(
    spec: &RouteSpec,
    problems: &mut Vec<RouteProblem>,
) -> (Option<Template>, Vec<(String, Template)>) {
    let cloudevents = spec.format == EventFormat::CloudEvents;
    if cloudevents {
        if let Err(reason) = check_source(&spec.target.source) {
            problems.push(RouteProblem::new("source", reason));
        }
    } else if spec.subject.is_some() {
        problems.push(RouteProblem::new(
            "subject",
            "only a `format = \"cloudevents\"` route has a subject (CloudEvents' `subject`)",
        ));
    }
    let raw = cloudevents && spec.target.bus.kind() == BusKind::Custom;
    if !spec.metadata.is_empty() && !raw {
        problems.push(RouteProblem::new(
            "metadata",
            "only a `format = \"cloudevents\"` route on a Custom Event Bus (`event_bus_arn`) \
             carries Metadata: it publishes with PutRawEvents, and PutEvents has no Metadata",
        ));
    }
    // The relay adds `traceparent` and `tracestate` to the route's own keys.
    let room = MAX_METADATA_ENTRIES - 2;
    if spec.metadata.len() > room {
        problems.push(RouteProblem::new(
            "metadata",
            format!(
                "has {} keys; at most {room} (PutRawEvents takes {MAX_METADATA_ENTRIES}, two \
                 kept for the trace context)",
                spec.metadata.len()
            ),
        ));
    }
    let text = |field: String, text: &str, problems: &mut Vec<RouteProblem>| {
        if text.trim().is_empty() {
            problems.push(RouteProblem::new(field, "must not be empty"));
            return None;
        }
        Template::parse(text)
            .map_err(|e| problems.push(RouteProblem::new(field, e.to_string())))
            .ok()
    };
    let subject = spec
        .subject
        .as_deref()
        .and_then(|t| text("subject".to_owned(), t, problems));
    let mut metadata = Vec::with_capacity(spec.metadata.len());
    for (key, value) in &spec.metadata {
        let field = format!("metadata.{key}");
        if let Err(reason) = check_metadata_key(key) {
            problems.push(RouteProblem::new(field.clone(), reason));
        }
        if let Some(t) = text(field, value, problems) {
            metadata.push((key.clone(), t));
        }
    }
    (subject, metadata)
}

/// The target's limits, as PutEvents enforces them (see the constants' sources).
fn check_target(t: &Target, problems: &mut Vec<RouteProblem>) {
    match &t.bus {
        Bus::Classic(name) if name.trim().is_empty() => {
            problems.push(RouteProblem::new("event_bus_name", "must not be empty"));
        }
        Bus::Classic(_) => {}
        Bus::Custom(arn) => {
            if let Err(reason) = check_custom_bus_arn(arn) {
                problems.push(RouteProblem::new("event_bus_arn", reason));
            }
        }
    }
    let source_chars = t.source.chars().count();
    if t.source.trim().is_empty() {
        problems.push(RouteProblem::new("source", "must not be empty"));
    } else if source_chars > MAX_SOURCE_CHARS {
        problems.push(RouteProblem::new(
            "source",
            format!("is {source_chars} characters, above PutEvents' limit of {MAX_SOURCE_CHARS}"),
        ));
    }
    if t.source.starts_with(RESERVED_SOURCE_PREFIX) {
        problems.push(RouteProblem::new(
            "source",
            format!(
                "sources starting with {RESERVED_SOURCE_PREFIX:?} are reserved by AWS and \
                 rejected by PutEvents"
            ),
        ));
    }
    let detail_type_chars = t.detail_type.chars().count();
    if t.detail_type.trim().is_empty() {
        problems.push(RouteProblem::new("detail_type", "must not be empty"));
    } else if detail_type_chars > MAX_DETAIL_TYPE_CHARS {
        problems.push(RouteProblem::new(
            "detail_type",
            format!(
                "is {detail_type_chars} characters, above PutEvents' limit of \
                 {MAX_DETAIL_TYPE_CHARS}"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RouteSpec {
        RouteSpec {
            name: "r".into(),
            filters: vec![r#"{"eventName": ["INSERT"]}"#.into()],
            target: Target {
                bus: Bus::Classic("bus".into()),
                source: "Demo".into(),
                detail_type: "Changed".into(),
                resources: Vec::new(),
            },
            detail: DetailSpec::Unmarshall {
                image: ImageSelector::NewImage,
                event_id_field: "eventId".into(),
                trace_context_field: String::new(),
            },
            expand_json: Vec::new(),
            ordering_key: None,
            format: EventFormat::EventBridge,
            subject: None,
            metadata: Vec::new(),
        }
    }

    fn fields(problems: &[RouteProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_valid_spec_compiles() {
        let route = Route::compile(spec()).expect("valid");
        assert_eq!(route.name(), "r");
        assert_eq!(route.filters().len(), 1);
        assert!(matches!(route.detail(), Detail::Unmarshall { .. }));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut s = spec();
        s.name = " ".into();
        s.filters.push("not json".into());
        s.target.source = "aws.demo".into();
        s.target.detail_type = "x".repeat(MAX_DETAIL_TYPE_CHARS + 1).into();
        s.target.bus = Bus::Classic("".into());
        s.expand_json = vec![String::new()];
        let problems = Route::compile(s).expect_err("broken");
        assert_eq!(
            fields(&problems),
            [
                "name",
                "event_bus_name",
                "source",
                "detail_type",
                "filters[1]",
                "expand_json[0]"
            ]
        );
    }

    #[test]
    fn limits_are_counted_in_characters_at_the_documented_bounds() {
        let mut s = spec();
        // Multi-byte characters: the limit is on characters, as AWS documents it.
        s.target.source = "é".repeat(MAX_SOURCE_CHARS).into();
        s.target.detail_type = "ü".repeat(MAX_DETAIL_TYPE_CHARS).into();
        Route::compile(s.clone()).expect("at the limits");
        s.target.source = "é".repeat(MAX_SOURCE_CHARS + 1).into();
        let problems = Route::compile(s).expect_err("one above");
        assert_eq!(fields(&problems), ["source"]);
        assert!(
            problems[0].reason.contains("257 characters"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_route_names_every_image_it_reads_with_the_field_that_reads_it() {
        let mut s = spec();
        s.filters = vec![
            r#"{"eventName": ["INSERT"]}"#.into(),
            r#"{"$or": [{"dynamodb": {"OldImage": {"a": [{"exists": true}]}}}, {"eventName": ["REMOVE"]}]}"#.into(),
        ];
        s.ordering_key = Some("<$.NewImage.aggregateId>".into());
        let route = Route::compile(s.clone()).expect("valid");
        let reads: Vec<(String, ImageSelector)> = route.images_read();
        assert_eq!(
            reads,
            [
                ("filters[1]".to_owned(), ImageSelector::OldImage),
                ("unmarshall".to_owned(), ImageSelector::NewImage),
                ("ordering_key".to_owned(), ImageSelector::NewImage),
            ]
        );
        // A template reads the typed and the plain images alike; Keys are in every record.
        s.filters.clear();
        s.ordering_key = None;
        s.detail = DetailSpec::Template(
            r#"{"k": <$.Keys.pk>, "n": <$.dynamodb.NewImage.name.S>, "o": "<$.OldImage.name>", "e": <$.eventName>}"#.into(),
        );
        let route = Route::compile(s).expect("valid");
        assert_eq!(
            route.images_read(),
            [
                ("template".to_owned(), ImageSelector::NewImage),
                ("template".to_owned(), ImageSelector::OldImage),
            ]
        );
    }

    #[test]
    fn format_fields_are_checked_where_they_apply() {
        const ARN: &str =
            "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";
        // An eventbridge route has no subject and no metadata.
        let mut s = spec();
        s.subject = Some("x".into());
        s.metadata = vec![("k".into(), "v".into())];
        let problems = Route::compile(s).expect_err("refused");
        assert_eq!(fields(&problems), ["subject", "metadata"]);
        // A cloudevents route on a classic bus has a subject but no metadata (PutEvents).
        let mut s = spec();
        s.format = EventFormat::CloudEvents;
        s.subject = Some("<$.NewImage.id>".into());
        Route::compile(s.clone()).expect("a subject is fine");
        s.metadata = vec![("k".into(), "v".into())];
        let problems = Route::compile(s.clone()).expect_err("refused");
        assert_eq!(fields(&problems), ["metadata"]);
        assert!(problems[0].reason.contains("PutRawEvents"), "{problems:?}");
        // On a Custom Event Bus: metadata keys within PutRawEvents' limits, a URI-reference
        // source, parseable templates.
        s.target.bus = Bus::Custom(ARN.into());
        Route::compile(s.clone()).expect("metadata on a Custom Event Bus");
        s.target.source = "my books".into();
        s.subject = Some("<$.NewImage".into());
        s.metadata = vec![
            ("a/b".into(), "v".into()),
            ("k".repeat(129), "v".into()),
            ("traceparent".into(), "v".into()),
            ("empty".into(), " ".into()),
        ];
        let problems = Route::compile(s.clone()).expect_err("refused");
        let long = format!("metadata.{}", "k".repeat(129));
        assert_eq!(
            fields(&problems),
            [
                "source",
                "subject",
                "metadata.a/b",
                long.as_str(),
                "metadata.traceparent",
                "metadata.empty"
            ]
        );
        s.target.source = "books".into();
        s.subject = None;
        s.metadata = (0..99).map(|i| (format!("k{i}"), "v".into())).collect();
        let problems = Route::compile(s).expect_err("refused");
        assert_eq!(fields(&problems), ["metadata"]);
        assert!(problems[0].reason.contains("at most 98"), "{problems:?}");
    }

    #[test]
    fn a_template_that_cannot_render_an_object_is_a_problem_of_the_template_field() {
        let mut s = spec();
        s.detail = DetailSpec::Template(r#"{"a": <$.eventName>,,}"#.into());
        let problems = Route::compile(s).expect_err("broken");
        assert_eq!(fields(&problems), ["template"]);
    }
}
