//! `outbox-relay test-route`: what every route would do with one stream record, without
//! touching any AWS service: whether it matched, and the exact PutEvents entries it would send
//! (or why it could not render one).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::{table_of_stream_arn, Config, StreamSelector};
use crate::pipeline::ImageTexts;

/// Account and region of the stream ARN made up when the record names none.
const PLACEHOLDER_ARN_PREFIX: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/";

/// Why a record cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum TestRouteError {
    #[error("the record is not JSON: {0}")]
    NotJson(String),
    #[error("the record must be a stream record object (eventName, dynamodb, ...) or {{\"Records\": [one record]}}")]
    NotARecord,
    /// `--source`, or the record's `eventSourceARN`, names no source of the config.
    #[error("{what} is not a source of this config (its sources: {known})")]
    UnknownSource { what: String, known: String },
    /// The record does not say its source and the config has several.
    #[error("the record has no eventSourceARN and the config reads {count} sources: pass --source with one of {known}")]
    AmbiguousSource { count: usize, known: String },
    /// The routes cannot be merged into one matcher (unreachable for a loaded config).
    #[error("cannot build the routes: {0}")]
    RoutesRejected(#[from] crate::pipeline::PatternError),
}

/// What `test-route` found for one record: its source and every route's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The source the record belongs to (table name or stream ARN, as configured).
    pub source: String,
    /// Why the row's trace context is left out of the entries (malformed), as the relay
    /// would leave it out.
    pub trace_context_ignored: Option<String>,
    /// Every route of the config, in config order.
    pub routes: Vec<RouteVerdict>,
}

/// One route's verdict on the record.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteVerdict {
    pub name: String,
    /// Whether the route applies to the record's source (its `sources`, or every source).
    pub applies: bool,
    pub matched: bool,
    /// The entries as PutEvents would receive them (`EventBusName`, `Source`, ...).
    pub entries: Vec<Value>,
    pub error: Option<String>,
}

/// Runs `record_text` through the routes of `config` that apply to its source: `source` if
/// given (a table name or stream ARN of the config), else the record's `eventSourceARN`,
/// else the config's only source.
///
/// # Errors
/// When the text is not a JSON stream record, or its source is unknown or ambiguous.
pub fn test_route(
    config: &Config,
    record_text: &str,
    source: Option<&str>,
) -> Result<Report, TestRouteError> {
    let parsed: Value =
        serde_json::from_str(record_text).map_err(|e| TestRouteError::NotJson(e.to_string()))?;
    // A Lambda/Pipes batch with a single record is accepted as well.
    let mut record = match parsed.get("Records").and_then(Value::as_array) {
        Some(records) if records.len() == 1 => records[0].clone(),
        Some(_) => return Err(TestRouteError::NotARecord),
        None => parsed,
    };
    let object = record.as_object_mut().ok_or(TestRouteError::NotARecord)?;
    if !object.contains_key("dynamodb") && !object.contains_key("eventName") {
        return Err(TestRouteError::NotARecord);
    }
    let record_arn = object
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let selector = record_source(config, source, record_arn.as_deref())?;
    let stream_arn = record_arn.unwrap_or_else(|| match &selector {
        StreamSelector::Arn(arn) => arn.clone(),
        StreamSelector::Table(table) => {
            format!("{PLACEHOLDER_ARN_PREFIX}{table}/stream/test-route")
        }
    });
    let created_at = record["dynamodb"]["ApproximateCreationDateTime"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    // The same choice of routes as the running relay makes for this source.
    let router = config.router_for(&selector)?;
    let mut verdicts: Vec<RouteVerdict> = config
        .routes
        .iter()
        .map(|b| RouteVerdict {
            name: b.route.name().to_owned(),
            applies: b.applies_to(&selector),
            matched: false,
            entries: Vec::new(),
            error: None,
        })
        .collect();
    let verdict = |verdicts: &mut Vec<RouteVerdict>, name: &str| {
        verdicts.iter_mut().position(|v| v.name == name)
    };
    // The relay's own way from a record to its entries (and its trace policy).
    let routed = config.source.record_policy().route(
        &router,
        &mut record,
        ImageTexts::default(),
        &stream_arn,
        created_at,
    );
    for result in routed.results {
        match result {
            Ok(entry) => {
                let name = router.routes()[entry.route].name();
                let Some(i) = verdict(&mut verdicts, name) else {
                    continue;
                };
                let v = &mut verdicts[i];
                v.matched = true;
                let detail: Value = serde_json::from_str(&entry.detail).unwrap_or(Value::Null);
                let mut shown = entry.request_json();
                if let Some(obj) = shown.as_object_mut() {
                    // Beside the request's own fields: the route's format, and the payload
                    // (a PutRawEvents entry's `Data`, else the `Detail`) parsed.
                    obj.insert("Format".into(), entry.format.as_str().into());
                    let parsed = if entry.is_raw() {
                        "DataParsed"
                    } else {
                        "DetailParsed"
                    };
                    obj.insert(parsed.into(), detail);
                }
                v.entries.push(shown);
            }
            Err(e) => {
                if let Some(i) = verdict(&mut verdicts, e.route()) {
                    verdicts[i].matched = true;
                    verdicts[i].error = Some(e.to_string());
                }
            }
        }
    }
    Ok(Report {
        source: selector.name().to_owned(),
        trace_context_ignored: routed.trace_ignored.map(|e| e.to_string()),
        routes: verdicts,
    })
}

/// The configured source a record belongs to (see [`test_route`]).
fn record_source(
    config: &Config,
    source: Option<&str>,
    record_arn: Option<&str>,
) -> Result<StreamSelector, TestRouteError> {
    let streams = config.source.streams();
    let known = || {
        streams
            .iter()
            .map(|s| format!("{:?}", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = source {
        return streams
            .iter()
            .find(|s| s.name() == name)
            .cloned()
            .ok_or_else(|| TestRouteError::UnknownSource {
                what: format!("--source {name:?}"),
                known: known(),
            });
    }
    if let Some(arn) = record_arn {
        return config
            .source
            .source_of_stream(arn)
            .ok_or_else(|| TestRouteError::UnknownSource {
                what: match table_of_stream_arn(arn) {
                    Some(table) => format!("the record's table {table:?} (eventSourceARN {arn})"),
                    None => format!("the record's eventSourceARN {arn:?}"),
                },
                known: known(),
            });
    }
    match streams.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(TestRouteError::AmbiguousSource {
            count: streams.len(),
            known: known(),
        }),
    }
}

/// The verdicts as the `--output json` document.
#[must_use]
pub fn to_json(report: &Report) -> Value {
    json!({
        "source": report.source,
        "trace_context_ignored": report.trace_context_ignored,
        "routes": report.routes.iter().map(|v| json!({
            "name": v.name,
            "applies": v.applies,
            "matched": v.matched,
            "entries": v.entries,
            "error": v.error,
        })).collect::<Vec<_>>()
    })
}

/// The verdicts for a terminal.
#[must_use]
pub fn to_text(report: &Report) -> String {
    let mut out = format!("source {:?}\n", report.source);
    if let Some(why) = &report.trace_context_ignored {
        out.push_str(&format!(
            "trace context ignored (the relay sends these entries without it): {why}\n"
        ));
    }
    for v in &report.routes {
        let status = match (&v.error, v.matched, v.applies) {
            (_, _, false) => "does not apply to this source (see its `sources`)",
            (Some(_), _, true) => "matched, but cannot render",
            (None, true, true) => "matched",
            (None, false, true) => "no match",
        };
        out.push_str(&format!("route {:?}: {status}\n", v.name));
        if let Some(e) = &v.error {
            out.push_str(&format!("  error: {e}\n"));
        }
        for e in &v.entries {
            let pretty = serde_json::to_string_pretty(e).unwrap_or_default();
            for line in pretty.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}
