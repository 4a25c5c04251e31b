//! Pipes input templates: static text with `<$.json.path>` placeholders and reserved variables.
//!
//! Quoting follows Pipes: a placeholder in JSON value position is replaced by the JSON of the
//! value it names (a string gets its quotes); inside a string literal the value's text is
//! inserted without quotes, escaped so the result stays valid JSON. A path that names nothing
//! renders as `null` in value position and as nothing inside a string.
//!
//! Paths starting `$.NewImage`, `$.OldImage` or `$.Keys` address that image *unmarshalled* to
//! plain JSON (`<$.NewImage.year>` is the number 2019, where `<$.dynamodb.NewImage.year.N>` is
//! the string "2019"): stream records have no such top-level keys, so Pipes paths keep their
//! meaning.
//!
//! Reserved variables: `<aws.pipes.event>` and `<aws.pipes.event.json>` (the whole record),
//! `<aws.pipes.pipe-name>` (the route name), `<aws.pipes.source-arn>` (the stream ARN),
//! `<aws.pipes.event.ingestion-time>` (the record's creation time, RFC 3339) and our own
//! `<outbox.event-id>`, the stable event id consumers deduplicate on, and
//! `<outbox.traceparent>`, the W3C trace context of the outbox row (`null` when it has none).

use std::borrow::Cow;

use serde_json::Value;

use super::image::{ImageError, ImageSelector};
use super::json_write::{push_str, push_value};
use super::pattern::fields::ReadFields;
use super::router::RecordContext;

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `<$...>` placeholder whose path is not `$.a.b[0]` syntax.
    #[error("invalid JSON path {path:?} at byte {offset}: {reason}")]
    InvalidPath {
        path: String,
        offset: usize,
        reason: &'static str,
    },
    /// An `<aws.pipes.*>` variable that Pipes does not define (or we do not support).
    #[error("unknown reserved variable <{name}> at byte {offset}")]
    UnknownVariable { name: String, offset: usize },
    /// A placeholder that starts (`<$`, `<aws.`, `<outbox.`) but never ends with `>`.
    #[error("unclosed placeholder at byte {offset}: expected '>' after {start:?}")]
    UnclosedPlaceholder { start: String, offset: usize },
    /// The template's literal text is not a JSON object around its placeholders, so no record
    /// can render it into a valid detail.
    #[error(
        "not a JSON object around its placeholders, so no record renders a valid detail: {reason}"
    )]
    NotAnObject { reason: String },
    /// Free text or a JSON string literal: it renders a string, never an object.
    #[error(
        "this template renders a string (free text or a JSON string), but an EventBridge \
         event's detail must be a JSON object: wrap it, e.g. {{\"message\": \"...\"}}"
    )]
    RendersString,
    /// A placeholder alone renders whatever its value is (`null` when it names nothing).
    #[error(
        "a lone placeholder renders whatever its value is (null when absent), not always a \
         JSON object: wrap it, e.g. {{\"value\": {placeholder}}}, or use `unmarshall`"
    )]
    LonePlaceholder { placeholder: String },
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What a placeholder refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Path(Vec<Step>),
    Event,
    PipeName,
    SourceArn,
    IngestionTime,
    EventId,
    TraceParent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var { var: Var, in_string: bool },
}

/// A parsed input template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Free text (not starting with `{`, `[` or `"`, and not a lone placeholder): Pipes
    /// inserts every value into it as text.
    plain: bool,
    /// The template renders a string: free text, or a JSON string literal.
    renders_string: bool,
    /// Every rendering is a JSON object, whatever the record: its shape was proven so by
    /// [`Template::parse_detail`].
    renders_object: bool,
}

impl Template {
    /// The images its paths read: `$.dynamodb.NewImage…` and `$.NewImage…` (likewise
    /// `OldImage`), in template order, repeats removed. `Keys` are in every record.
    #[must_use]
    pub fn images_read(&self) -> Vec<ImageSelector> {
        let mut out = Vec::new();
        for part in &self.parts {
            let Part::Var {
                var: Var::Path(steps),
                ..
            } = part
            else {
                continue;
            };
            let name = match steps.as_slice() {
                [Step::Key(first), Step::Key(second), ..] if first == "dynamodb" => second,
                [Step::Key(first), ..] => first,
                _ => continue,
            };
            if let Some(image) = super::image::image_named(name) {
                if !out.contains(&image) {
                    out.push(image);
                }
            }
        }
        out
    }

    /// Adds to `reads` every part of a record its placeholders read: a path's keys up to its
    /// first index (read whole from there), the image behind `$.NewImage…` as plain JSON (and
    /// the record's own key of that name, which would take its place), the whole record for
    /// `<aws.pipes.event>`.
    pub fn add_reads(&self, reads: &mut ReadFields) {
        for part in &self.parts {
            let Part::Var { var, .. } = part else {
                continue;
            };
            match var {
                Var::Path(steps) => {
                    let keys: Vec<&str> = steps
                        .iter()
                        .map_while(|step| match step {
                            Step::Key(k) => Some(k.as_str()),
                            Step::Index(_) => None,
                        })
                        .collect();
                    if let Some(image) = keys.first().and_then(|root| plain_image_root(root)) {
                        reads.add_plain_image(image);
                    }
                    reads.add_path(&keys);
                }
                Var::Event => reads.add_path::<&str>(&[]),
                Var::PipeName
                | Var::SourceArn
                | Var::IngestionTime
                | Var::EventId
                | Var::TraceParent => {}
            }
        }
    }

    /// Parses `text`, finding placeholders and whether each sits inside a string literal.
    ///
    /// # Errors
    /// [`TemplateError`] for a malformed path or an unknown reserved variable.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut in_string = false;
        let mut escaped = false;
        let mut rest = text;
        let mut offset = 0;
        while let Some(c) = rest.chars().next() {
            if c == '<' {
                if let Some(end) = placeholder_end(rest, offset)? {
                    let name = &rest[1..end];
                    if let Some(var) = parse_var(name, offset)? {
                        if !literal.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut literal)));
                        }
                        parts.push(Part::Var { var, in_string });
                        rest = &rest[end + 1..];
                        offset += end + 1;
                        continue;
                    }
                }
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
            offset += c.len_utf8();
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let trimmed = text.trim();
        let mut significant = parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.trim().is_empty()));
        let lone_placeholder = matches!(
            (significant.next(), significant.next()),
            (Some(Part::Var { .. }), None)
        );
        let plain = !trimmed.starts_with(['{', '[', '"']) && !lone_placeholder;
        let renders_string = plain || trimmed.starts_with('"');
        if plain {
            for part in &mut parts {
                if let Part::Var { in_string, .. } = part {
                    *in_string = true;
                }
            }
        }
        Ok(Self {
            parts,
            plain,
            renders_string,
            renders_object: false,
        })
    }

    /// Parses `text` as an event's detail: refused unless every rendering, whatever the
    /// record, is a JSON object.
    ///
    /// Value-position placeholders render a JSON value and placeholders inside strings render
    /// escaped text, so a rendering is valid JSON exactly when the [`Template::skeleton`]
    /// (each placeholder as `null` or nothing) is; and it is an object exactly when the
    /// skeleton is. A lone placeholder renders its value, which only the whole record
    /// (`<aws.pipes.event>`) always makes an object.
    ///
    /// # Errors
    /// [`TemplateError`] naming why the template cannot be a detail.
    pub fn parse_detail(text: &str) -> Result<Self, TemplateError> {
        let template = Self::parse(text)?;
        if template.renders_string {
            return Err(TemplateError::RendersString);
        }
        let mut significant = template
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.trim().is_empty()));
        if let (Some(Part::Var { var, .. }), None) = (significant.next(), significant.next()) {
            return match var {
                Var::Event => Ok(template),
                _ => Err(TemplateError::LonePlaceholder {
                    placeholder: text.trim().to_owned(),
                }),
            };
        }
        let skeleton = template.skeleton();
        match serde_json::from_str::<Value>(&skeleton) {
            Ok(Value::Object(_)) => Ok(Self {
                renders_object: true,
                ..template
            }),
            Ok(other) => Err(TemplateError::NotAnObject {
                reason: format!("its shape {skeleton} is a JSON {}", json_kind(&other)),
            }),
            Err(e) => Err(TemplateError::NotAnObject {
                reason: format!("its shape {skeleton} is not valid JSON ({e})"),
            }),
        }
    }

    /// Whether every rendering is a JSON object, whatever the record: true of a detail
    /// template whose shape [`Template::parse_detail`] proved, false of `<aws.pipes.event>`
    /// alone (the record decides) and of templates not parsed as a detail.
    #[must_use]
    pub fn renders_object(&self) -> bool {
        self.renders_object
    }

    /// Whether the template renders a string (free text, or a JSON string literal), which
    /// an EventBridge event cannot carry as its detail.
    #[must_use]
    pub fn renders_string(&self) -> bool {
        self.renders_string
    }

    /// The template with every placeholder rendered as a path that names nothing (`null` in
    /// value position, nothing inside a string): its shape, independent of any record.
    #[must_use]
    pub fn skeleton(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var {
                    in_string: false, ..
                } => out.push_str("null"),
                Part::Var {
                    in_string: true, ..
                } => {}
            }
        }
        out
    }

    /// Renders the template for one record.
    ///
    /// # Errors
    /// [`ImageError`] when a placeholder reads an image that cannot be made plain.
    pub fn render(&self, ctx: &RecordContext<'_>) -> Result<String, ImageError> {
        let mut out = self.buffer();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var { var, in_string } => {
                    let Some(value) = resolve(var, ctx)? else {
                        if !in_string {
                            out.extend_from_slice(b"null");
                        }
                        continue;
                    };
                    match (value.shown(), in_string) {
                        (Shown::Str(s), false) => push_str(&mut out, s),
                        (Shown::Json(v), false) => push_value(&mut out, v),
                        (Shown::Str(s), true) if self.plain => out.extend_from_slice(s.as_bytes()),
                        (Shown::Json(v), true) if self.plain => push_value(&mut out, v),
                        (Shown::Str(s), true) => push_escaped(&mut out, s),
                        (Shown::Json(v), true) => push_escaped(&mut out, &v.to_string()),
                    }
                }
            }
        }
        Ok(into_text(out))
    }

    /// A buffer for one rendering: its literal text and room for its placeholders' values.
    fn buffer(&self) -> Vec<u8> {
        let size = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Text(t) => t.len(),
                Part::Var { .. } => 24,
            })
            .sum();
        Vec::with_capacity(size)
    }
}

/// The JSON kind of a value, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where the placeholder starting at `rest` (which starts with `<`) ends: the byte index of
/// its `>`, skipping `>` inside a quoted bracket step (`['a>b']`). `Ok(None)` when `rest`
/// has no `>` and does not start like a placeholder (it is literal text, e.g. `a < b`).
///
/// # Errors
/// [`TemplateError::UnclosedPlaceholder`] when it starts like one but never ends.
fn placeholder_end(rest: &str, offset: usize) -> Result<Option<usize>, TemplateError> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices().skip(1) {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '>' => return Ok(Some(i)),
            None if (c == '\'' || c == '"') && rest[..i].ends_with('[') => quote = Some(c),
            None => {}
        }
    }
    let starts_placeholder = ["<$", "<aws.pipes.", "<outbox."]
        .iter()
        .any(|p| rest.starts_with(p));
    if starts_placeholder {
        let start: String = rest.chars().take(40).collect();
        return Err(TemplateError::UnclosedPlaceholder { start, offset });
    }
    Ok(None)
}

/// Why a text template (an ordering key) could not be rendered for a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A placeholder names nothing in this record.
    #[error("{placeholder} names nothing in this record")]
    Missing { placeholder: String },
    /// The rendered text is empty.
    #[error("it renders an empty text")]
    Empty,
    /// A placeholder reads an image that cannot be made plain.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl Template {
    /// Renders the template as text for one record (an ordering key): literal text as
    /// written, a string value as its characters, any other value as its JSON text. Every
    /// placeholder must name a value: a key made of "nothing" would merge unrelated records.
    ///
    /// # Errors
    /// [`TextError`] when a placeholder names nothing, an image is malformed, or the text is
    /// empty.
    pub fn render_text(&self, ctx: &RecordContext<'_>) -> Result<String, TextError> {
        let mut out = self.buffer();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var { var, .. } => match resolve(var, ctx)? {
                    Some(value) => match value.shown() {
                        Shown::Str(s) => out.extend_from_slice(s.as_bytes()),
                        Shown::Json(v) => push_value(&mut out, v),
                    },
                    None => {
                        return Err(TextError::Missing {
                            placeholder: var.to_string(),
                        })
                    }
                },
            }
        }
        if out.is_empty() {
            return Err(TextError::Empty);
        }
        Ok(into_text(out))
    }
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(steps) => {
                f.write_str("<$")?;
                for step in steps {
                    match step {
                        Step::Key(k)
                            if k.chars()
                                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_')) =>
                        {
                            write!(f, ".{k}")?;
                        }
                        Step::Key(k) => write!(f, "[{}]", Value::String(k.clone()))?,
                        Step::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                f.write_str(">")
            }
            Self::Event => f.write_str("<aws.pipes.event>"),
            Self::PipeName => f.write_str("<aws.pipes.pipe-name>"),
            Self::SourceArn => f.write_str("<aws.pipes.source-arn>"),
            Self::IngestionTime => f.write_str("<aws.pipes.event.ingestion-time>"),
            Self::EventId => f.write_str("<outbox.event-id>"),
            Self::TraceParent => f.write_str("<outbox.traceparent>"),
        }
    }
}

/// Appends `s` JSON-escaped, without surrounding quotes.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    push_str(out, s);
    // Drop the quotes: the closing one, then the opening one.
    out.pop();
    out.remove(start);
}

/// The rendered bytes as text: they are the template's text and JSON serde_json wrote, all
/// UTF-8.
fn into_text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Image names that, as the first step of a path, mean the plain (unmarshalled) image.
fn plain_image_root(root: &str) -> Option<ImageSelector> {
    match root {
        "NewImage" => Some(ImageSelector::NewImage),
        "OldImage" => Some(ImageSelector::OldImage),
        "Keys" => Some(ImageSelector::Keys),
        _ => None,
    }
}

fn walk<'a>(mut at: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for step in steps {
        at = match step {
            Step::Key(k) => at.get(k)?,
            Step::Index(i) => at.get(*i)?,
        };
    }
    Some(at)
}

/// What a placeholder names: a value of the record, or text the relay knows (the event id,
/// the route's name, …), written as a JSON string without first becoming a [`Value`].
enum Resolved<'c> {
    Value(&'c Value),
    Text(Cow<'c, str>),
}

/// How a resolved placeholder is written: a string's characters, or any other value's JSON.
enum Shown<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl Resolved<'_> {
    fn shown(&self) -> Shown<'_> {
        match self {
            Self::Text(s) => Shown::Str(s),
            Self::Value(Value::String(s)) => Shown::Str(s),
            Self::Value(v) => Shown::Json(v),
        }
    }
}

fn resolve<'c>(var: &Var, ctx: &'c RecordContext<'c>) -> Result<Option<Resolved<'c>>, ImageError> {
    let text = |s: &'c str| Some(Resolved::Text(Cow::Borrowed(s)));
    Ok(match var {
        Var::Path(steps) => {
            // `$.NewImage`, `$.OldImage` and `$.Keys` (not keys of a stream record) address
            // the image unmarshalled to plain JSON.
            let image = match steps.first() {
                Some(Step::Key(root)) if ctx.record.get(root).is_none() => plain_image_root(root),
                _ => None,
            };
            match image {
                Some(image) => ctx
                    .plain_image(image)?
                    .and_then(|plain| walk(plain, &steps[1..]))
                    .map(Resolved::Value),
                None => walk(ctx.record, steps).map(Resolved::Value),
            }
        }
        Var::Event => Some(Resolved::Value(ctx.record)),
        Var::PipeName => text(ctx.route_name),
        Var::SourceArn => text(ctx.source_arn),
        Var::IngestionTime => ctx
            .created_at
            .map(|t| Resolved::Text(Cow::Owned(humantime::format_rfc3339_millis(t).to_string()))),
        Var::EventId => text(ctx.event_id),
        Var::TraceParent => ctx.trace.and_then(|t| text(&t.traceparent)),
    })
}

/// `Ok(None)` means "not a placeholder": the text stays literal (e.g. `<b>` in a string).
fn parse_var(name: &str, offset: usize) -> Result<Option<Var>, TemplateError> {
    if let Some(path) = name.strip_prefix('$') {
        return parse_path(path, name, offset).map(Some);
    }
    let var = match name {
        "aws.pipes.event" | "aws.pipes.event.json" => Var::Event,
        "aws.pipes.pipe-name" => Var::PipeName,
        "aws.pipes.source-arn" => Var::SourceArn,
        "aws.pipes.event.ingestion-time" => Var::IngestionTime,
        "outbox.event-id" => Var::EventId,
        "outbox.traceparent" => Var::TraceParent,
        other if other.starts_with("aws.pipes.") || other.starts_with("outbox.") => {
            return Err(TemplateError::UnknownVariable {
                name: other.to_owned(),
                offset,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(var))
}

fn parse_path(path: &str, whole: &str, offset: usize) -> Result<Var, TemplateError> {
    let err = |reason| TemplateError::InvalidPath {
        path: whole.to_owned(),
        offset,
        reason,
    };
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key.is_empty() {
                return Err(err("empty key"));
            }
            if !key
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '/' | ':' | '@'))
            {
                return Err(err(
                    "keys may hold letters, digits, '-', '_', '/', ':' and '@'; quote any other \
                     key in brackets, as in $.NewImage['order.status']",
                ));
            }
            steps.push(Step::Key(key.to_owned()));
            rest = &after[end..];
        } else if let Some(quoted) = rest
            .strip_prefix("['")
            .map(|a| (a, '\''))
            .or_else(|| rest.strip_prefix("[\"").map(|a| (a, '"')))
        {
            let (key, after) = quoted_key(quoted.0, quoted.1).ok_or_else(|| {
                err("a quoted key must end with its quote and ']', as in ['order.status']")
            })?;
            steps.push(Step::Key(key));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| err("unclosed '['"))?;
            let index = after[..end]
                .parse()
                .map_err(|_| err("array index must be a whole number"))?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(err("expected '.' or '[' after '$'"));
        }
    }
    Ok(Var::Path(steps))
}

/// A quoted key's text (`\\` escapes the quote and itself) and what follows its `]`.
fn quoted_key(text: &str, quote: char) -> Option<(String, &str)> {
    let mut key = String::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            key.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            let after = text[i + c.len_utf8()..].strip_prefix(']')?;
            return Some((key, after));
        } else {
            key.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::image::{ImageTexts, PlainImages};
    use serde_json::json;

    fn with_ctx<T>(record: &Value, f: impl FnOnce(&mut RecordContext<'_>) -> T) -> T {
        let images = PlainImages::new(record, ImageTexts::default(), &[]);
        let mut ctx = RecordContext {
            record,
            route_name: "book-added",
            source_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/L",
            event_id: "evt-1",
            trace: None,
            created_at: None,
            images: &images,
        };
        f(&mut ctx)
    }

    fn render(t: &Template, record: &Value) -> String {
        with_ctx(record, |ctx| t.render(ctx).expect("renders"))
    }

    #[test]
    fn strings_are_quoted_in_value_position_and_raw_inside_strings() {
        let record = json!({"dynamodb": {"NewImage": {"name": {"S": "Dune \"1965\""}}}});
        let t = Template::parse(
            r#"{"name": <$.dynamodb.NewImage.name.S>, "msg": "added <$.dynamodb.NewImage.name.S>!"}"#,
        )
        .expect("valid");
        let rendered = render(&t, &record);
        let parsed: Value = serde_json::from_str(&rendered).expect("valid JSON");
        assert_eq!(
            parsed,
            json!({"name": "Dune \"1965\"", "msg": "added Dune \"1965\"!"})
        );
    }

    #[test]
    fn objects_arrays_and_indexes_insert_json() {
        let record = json!({"a": {"list": [{"x": 1}, {"x": 2}]}});
        let t =
            Template::parse(r#"{"all": <$.a.list>, "second": <$.a.list[1].x>}"#).expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&t, &record)).expect("json"),
            json!({"all": [{"x": 1}, {"x": 2}], "second": 2})
        );
    }

    #[test]
    fn reserved_variables_and_missing_paths() {
        let record = json!({});
        let t = Template::parse(
            r#"{"id": <outbox.event-id>, "pipe": "<aws.pipes.pipe-name>", "gone": <$.nope>, "s": "x<$.nope>y"}"#,
        )
        .expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&t, &record)).expect("json"),
            json!({"id": "evt-1", "pipe": "book-added", "gone": null, "s": "xy"})
        );
    }

    #[test]
    fn the_relays_own_text_is_written_as_a_string_value_escaped_or_raw_as_the_record_s_is() {
        // The event id, route name and stream ARN are written as text, not through a `Value`:
        // the same JSON a string value of the record gives, in every position.
        let record = json!({"id": "a\"b\\c<d>"});
        let images = PlainImages::new(&record, ImageTexts::default(), &[]);
        let ctx = RecordContext {
            record: &record,
            route_name: "r\"1",
            source_arn: "arn:\\s",
            event_id: "a\"b\\c<d>",
            trace: None,
            created_at: None,
            images: &images,
        };
        let t = Template::parse(
            r#"{"id": <outbox.event-id>, "in": "x<outbox.event-id>y", "pipe": <aws.pipes.pipe-name>, "arn": "<aws.pipes.source-arn>", "same": <$.id>, "same_in": "x<$.id>y"}"#,
        )
        .expect("valid");
        let rendered: Value =
            serde_json::from_str(&t.render(&ctx).expect("renders")).expect("json");
        assert_eq!(
            rendered,
            json!({"id": "a\"b\\c<d>", "in": "xa\"b\\c<d>y", "pipe": "r\"1", "arn": "arn:\\s",
                   "same": "a\"b\\c<d>", "same_in": "xa\"b\\c<d>y"})
        );
        // Free text takes every value as it is, and an ordering key the same.
        let plain =
            Template::parse("id <outbox.event-id> of <aws.pipes.pipe-name>").expect("valid");
        assert_eq!(
            plain.render(&ctx).expect("renders"),
            "id a\"b\\c<d> of r\"1"
        );
        assert_eq!(
            plain.render_text(&ctx).expect("renders"),
            "id a\"b\\c<d> of r\"1"
        );
    }

    #[test]
    fn image_roots_address_the_unmarshalled_image() {
        let record = json!({"dynamodb": {"NewImage": {
            "name": {"S": "Dune"}, "year": {"N": "1965"},
            "authors": {"L": [{"S": "Frank Herbert"}]}
        }}});
        let t = Template::parse(
            r#"{"name": <$.NewImage.name>, "year": <$.NewImage.year>, "first": "<$.NewImage.authors[0]>", "typed": <$.dynamodb.NewImage.year.N>, "old": <$.OldImage.name>}"#,
        )
        .expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&t, &record)).expect("json"),
            json!({"name": "Dune", "year": 1965, "first": "Frank Herbert", "typed": "1965", "old": null})
        );
    }

    /// (template, input, expected output) cases from the EventBridge user guide's "Amazon
    /// EventBridge Pipes input transformation" page (its SQS sample payload) and the
    /// EventBridge API reference's `InputTransformer` page; `expected` is the rendered text
    /// parsed as JSON, or the raw text for free-text templates.
    #[test]
    fn conformance_with_the_pipes_input_transformation_page() {
        const PIPES: &str = "Pipes input transformation";
        const API: &str = "API reference, InputTransformer";
        let sqs = json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": {"key": "value-from-body", "Records": [0, 1, 2, {"third": true}]},
            "attributes": {"SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateReceiveCount": "1"},
            "detail": {"instance": "i-0123", "status": "running"}
        });
        let created_at =
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        let cases: &[(&str, &str, Value)] = &[
            (PIPES, r#""Hello, sender""#, json!("Hello, sender")),
            (
                PIPES,
                "<$.attributes.SenderId>",
                json!("AIDAIENQZJOLO23YVJ4VO"),
            ),
            (
                PIPES,
                r#""Hello, <$.attributes.SenderId>""#,
                json!("Hello, AIDAIENQZJOLO23YVJ4VO"),
            ),
            (
                PIPES,
                r#"{"key1": "value1", "key2": "value2", "key3": "value3"}"#,
                json!({"key1": "value1", "key2": "value2", "key3": "value3"}),
            ),
            (
                PIPES,
                r#"{"key1": "value1", "key2": <$.body.key>, "d": <aws.pipes.event.ingestion-time>}"#,
                json!({"key1": "value1", "key2": "value-from-body", "d": "2023-11-14T22:13:20.000Z"}),
            ),
            (
                PIPES,
                r#"{"key1": "value1", "key2": <$.body.Records[3]>}"#,
                json!({"key1": "value1", "key2": {"third": true}}),
            ),
            (
                PIPES,
                r#"{"pipe": <aws.pipes.pipe-name>, "src": "<aws.pipes.source-arn>"}"#,
                json!({"pipe": "book-added", "src": "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/L"}),
            ),
            (
                PIPES,
                r#"{"whole": <aws.pipes.event.json>}"#,
                json!({"whole": sqs.clone()}),
            ),
            (
                PIPES,
                r#"{"count": "<$.attributes.ApproximateReceiveCount>", "obj": <$.attributes>}"#,
                json!({"count": "1", "obj": {"SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateReceiveCount": "1"}}),
            ),
            (
                API,
                r#"{"myInstance": <$.detail.instance>, "myStatus": "<$.detail.instance> is in state \"<$.detail.status>\""}"#,
                json!({"myInstance": "i-0123", "myStatus": "i-0123 is in state \"running\""}),
            ),
            (
                API,
                "<$.detail.instance> is in state <$.detail.status>",
                json!("i-0123 is in state running"),
            ),
        ];
        for (source, template, expected) in cases {
            let t = Template::parse(template).expect(template);
            let rendered = with_ctx(&sqs, |ctx| {
                ctx.created_at = created_at;
                t.render(ctx).expect("renders")
            });
            let actual = if t.plain {
                Value::String(rendered.clone())
            } else {
                serde_json::from_str(&rendered)
                    .unwrap_or_else(|e| panic!("{source}: {template} -> {rendered}: {e}"))
            };
            assert_eq!(&actual, expected, "{source}: {template} -> {rendered}");
            // A lone placeholder renders whatever its value is: known only per record.
            let lone = template.starts_with("<$") && template.matches('<').count() == 1;
            assert_eq!(
                t.renders_string(),
                expected.is_string() && !lone,
                "{source}: {template}"
            );
        }
    }

    #[test]
    fn only_a_placeholder_alone_is_a_lone_placeholder() {
        assert!(!Template::parse("  <$.a>  ")
            .expect("valid")
            .renders_string());
        // `<b>` is literal text, not a placeholder: free text, which renders a string.
        assert!(Template::parse("<b>").expect("valid").renders_string());
    }

    #[test]
    fn non_placeholders_stay_literal_and_bad_paths_are_rejected() {
        let t = Template::parse(r#"{"html": "<b>bold</b>"}"#).expect("valid");
        assert_eq!(render(&t, &json!({})), r#"{"html": "<b>bold</b>"}"#);
        assert!(matches!(
            Template::parse("<$.a[x]>"),
            Err(TemplateError::InvalidPath { .. })
        ));
        assert!(matches!(
            Template::parse("<aws.pipes.nope>"),
            Err(TemplateError::UnknownVariable { .. })
        ));
    }

    #[test]
    fn quoted_bracket_steps_name_keys_with_any_character() {
        let record = json!({"a": {"order.status": "PAID", "it's": 1, "x>y": [true], "q\"": 2}});
        let t = Template::parse(
            r#"{"s": <$.a['order.status']>, "q": <$.a["it's"]>, "gt": <$.a['x>y'][0]>, "esc": <$.a['q"']>, "in": "<$.a['order.status']>!"}"#,
        )
        .expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&t, &record)).expect("json"),
            json!({"s": "PAID", "q": 1, "gt": true, "esc": 2, "in": "PAID!"})
        );
        // A backslash escapes the quote inside a quoted key.
        let t = Template::parse(r#"{"s": <$.a['it\'s']>}"#).expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&t, &record)).expect("json"),
            json!({"s": 1})
        );
        for bad in ["<$.a['open]>", "<$.a['x'>", "<$.a.b.c d>"] {
            assert!(
                matches!(
                    Template::parse(bad),
                    Err(TemplateError::InvalidPath { .. }
                        | TemplateError::UnclosedPlaceholder { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_placeholder_that_never_closes_is_refused_but_a_lone_angle_bracket_is_text() {
        assert!(matches!(
            Template::parse(r#"{"a": <$.dynamodb.NewImage"#),
            Err(TemplateError::UnclosedPlaceholder { offset: 6, .. })
        ));
        assert!(matches!(
            Template::parse(r#"{"a": "<aws.pipes.pipe-name"}"#),
            Err(TemplateError::UnclosedPlaceholder { .. })
        ));
        Template::parse_detail(r#"{"cmp": "a < b"}"#).expect("literal '<' in a string");
    }

    #[test]
    fn a_detail_template_must_render_an_object_for_every_record() {
        for ok in [
            r#"{"a": <$.x>, "b": [<$.y>, "<$.z>"], "c": {"d": <aws.pipes.event>}}"#,
            r#"  {"<$.k>": 1}  "#,
            "<aws.pipes.event.json>",
            " <aws.pipes.event> ",
        ] {
            Template::parse_detail(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let refused = |text: &str| Template::parse_detail(text).expect_err(text);
        assert!(matches!(
            refused(r#"{"a": <$.x>,,}"#),
            TemplateError::NotAnObject { .. }
        ));
        assert!(matches!(
            refused(r#"{<$.k>: 1}"#),
            TemplateError::NotAnObject { .. }
        ));
        assert!(matches!(
            refused(r#"{"a": <$.x><$.y>}"#),
            TemplateError::NotAnObject { .. }
        ));
        assert!(matches!(
            refused(r#"{"a": 1<$.x>}"#),
            TemplateError::NotAnObject { .. }
        ));
        assert!(matches!(
            refused("[<$.x>]"),
            TemplateError::NotAnObject { .. }
        ));
        assert!(matches!(
            refused("<$.NewImage>"),
            TemplateError::LonePlaceholder { .. }
        ));
        assert!(matches!(
            refused("<outbox.event-id>"),
            TemplateError::LonePlaceholder { .. }
        ));
        assert!(matches!(
            refused(r#""text <$.x>""#),
            TemplateError::RendersString
        ));
        assert!(matches!(
            refused("<$.x> is here"),
            TemplateError::RendersString
        ));
    }

    mod every_accepted_template_renders_an_object {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of templates: structure, literals, and placeholders in value and string
        /// position, over paths that a record may or may not have.
        fn piece() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                " ",
                "\"k\"",
                "\"k2\"",
                "1",
                "null",
                "true",
                "<$.a>",
                "<$.b.c>",
                "<$.missing>",
                "\"<$.a>\"",
                "\"x <$.b.c> y\"",
                "<outbox.event-id>",
                "<aws.pipes.event>",
                "\"<aws.pipes.pipe-name>\"",
            ])
        }

        /// A JSON object's tokens, with placeholders among its values.
        fn shape() -> impl Strategy<Value = Vec<String>> {
            let leaf = piece()
                .prop_filter("a value", |p| {
                    !matches!(*p, "{" | "}" | "[" | "]" | "," | ":" | " ")
                })
                .prop_map(|p| vec![p.to_owned()]);
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| {
                        let mut out = vec!["[".to_owned()];
                        for (i, item) in items.into_iter().enumerate() {
                            if i > 0 {
                                out.push(",".to_owned());
                            }
                            out.extend(item);
                        }
                        out.push("]".to_owned());
                        out
                    }),
                    proptest::collection::vec(inner, 0..4).prop_map(object),
                ]
            });
            proptest::collection::vec(value, 0..5).prop_map(object)
        }

        fn object(values: Vec<Vec<String>>) -> Vec<String> {
            let mut out = vec!["{".to_owned()];
            for (i, value) in values.into_iter().enumerate() {
                if i > 0 {
                    out.push(",".to_owned());
                }
                out.push(format!("\"k{i}\""));
                out.push(":".to_owned());
                out.extend(value);
            }
            out.push("}".to_owned());
            out
        }

        /// Values a record's fields take: text that needs escaping, numbers, nesting.
        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                ".*".prop_map(Value::String),
                Just(json!({"n": [1, "\"", {"x": null}]})),
                Just(json!(["<", ">", "\\"])),
            ]
        }

        /// Also counts the accepted templates: a generator that rarely makes one would
        /// prove nothing.
        #[test]
        fn for_any_record() {
            use proptest::test_runner::{Config, TestRunner};
            let accepted = std::cell::Cell::new(0_u32);
            // A random JSON shape with placeholders, then one random piece inserted or one
            // token dropped half the time: valid templates and near misses.
            let strategy = (
                shape(),
                prop::option::of((any::<prop::sample::Index>(), piece())),
                prop::option::of(any::<prop::sample::Index>()),
                proptest::option::of(value()),
                proptest::option::of(value()),
            );
            let mut runner = TestRunner::new(Config::with_cases(3000));
            runner
                .run(&strategy, |(mut tokens, insert, drop, a, c)| {
                    if let Some((at, piece)) = insert {
                        tokens.insert(at.index(tokens.len() + 1), piece.to_owned());
                    }
                    if let Some(at) = drop {
                        tokens.remove(at.index(tokens.len()));
                    }
                    let text = tokens.concat();
                    let Ok(t) = Template::parse_detail(&text) else {
                        return Ok(());
                    };
                    accepted.set(accepted.get() + 1);
                    let mut record = json!({"b": {}});
                    if let Some(a) = a {
                        record["a"] = a;
                    }
                    if let Some(c) = c {
                        record["b"]["c"] = c;
                    }
                    let rendered = render(&t, &record);
                    let parsed: Value = serde_json::from_str(&rendered)
                        .map_err(|e| TestCaseError::fail(format!("{text} -> {rendered}: {e}")))?;
                    prop_assert!(parsed.is_object(), "{} -> {}", text, rendered);
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                accepted.get() >= 300,
                "only {} templates accepted",
                accepted.get()
            );
        }
    }
}
