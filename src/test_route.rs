//! `outbox-relay test-route`: what every route would do with one stream record, without
//! touching any AWS service: whether it matched, and the exact PutEvents entries it would send
//! (or why it could not render one).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::Config;
use crate::pipeline::router::stable_event_id;
use crate::pipeline::Router;

/// Stream ARN used when neither the record (`eventSourceARN`) nor the config names one.
const PLACEHOLDER_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/test-route/stream/test-route";

/// Why a record cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum TestRouteError {
    #[error("the record is not JSON: {0}")]
    NotJson(String),
    #[error("the record must be a stream record object (eventName, dynamodb, ...) or {{\"Records\": [one record]}}")]
    NotARecord,
}

/// One route's verdict on the record.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteVerdict {
    pub name: String,
    pub matched: bool,
    /// The entries as PutEvents would receive them (`EventBusName`, `Source`, ...).
    pub entries: Vec<Value>,
    pub error: Option<String>,
}

/// Runs `record_text` through every route of `config`.
///
/// # Errors
/// When the text is not a JSON stream record.
pub fn test_route(config: &Config, record_text: &str) -> Result<Vec<RouteVerdict>, TestRouteError> {
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
    let stream_arn = object
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| config.source.stream_arn.clone())
        .unwrap_or_else(|| PLACEHOLDER_ARN.to_owned());
    object
        .entry("eventSourceARN")
        .or_insert_with(|| Value::String(stream_arn.clone()));
    let created_at = record["dynamodb"]["ApproximateCreationDateTime"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    let event_id = stable_event_id(&record, config.source.event_id_attribute.as_deref());

    let router = Router::new(config.routes.clone()).map_err(|_| TestRouteError::NotARecord)?;
    let results = router.route(&record, &stream_arn, &event_id, created_at);
    let mut verdicts: Vec<RouteVerdict> = router
        .routes()
        .iter()
        .map(|r| RouteVerdict {
            name: r.name.clone(),
            matched: false,
            entries: Vec::new(),
            error: None,
        })
        .collect();
    for result in results {
        match result {
            Ok(entry) => {
                let v = &mut verdicts[entry.route];
                v.matched = true;
                let detail: Value = serde_json::from_str(&entry.detail).unwrap_or(Value::Null);
                v.entries.push(json!({
                    "EventBusName": entry.event_bus_name,
                    "Source": entry.source,
                    "DetailType": entry.detail_type,
                    "Detail": entry.detail,
                    "DetailParsed": detail,
                    "Resources": entry.resources,
                    "Time": entry.time.map(crate::publish::rfc3339),
                }));
            }
            Err(e) => {
                if let Some(v) = verdicts.iter_mut().find(|v| v.name == e.route()) {
                    v.matched = true;
                    v.error = Some(e.to_string());
                }
            }
        }
    }
    Ok(verdicts)
}

/// The verdicts as the `--output json` document.
#[must_use]
pub fn to_json(verdicts: &[RouteVerdict]) -> Value {
    json!({
        "routes": verdicts.iter().map(|v| json!({
            "name": v.name,
            "matched": v.matched,
            "entries": v.entries,
            "error": v.error,
        })).collect::<Vec<_>>()
    })
}

/// The verdicts for a terminal.
#[must_use]
pub fn to_text(verdicts: &[RouteVerdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        let status = match (&v.error, v.matched) {
            (Some(_), _) => "matched, but cannot render",
            (None, true) => "matched",
            (None, false) => "no match",
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
