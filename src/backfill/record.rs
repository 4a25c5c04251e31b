//! A table item as the stream record the live relay would have read (pure).
//!
//! The record has the shape EventBridge Pipes and Lambda use for an `INSERT`: `eventName`
//! `INSERT`, `dynamodb.Keys` from the table's key schema, `dynamodb.NewImage` = the item,
//! `ApproximateCreationDateTime` from `source.created_at_attribute` when the row has it, and
//! `eventSourceARN` = the source's stream. Two fields differ from a live record:
//! - `eventID` is `backfill-` and the SHA-256 of the item's key (hex, first 32 digits): the
//!   same on every run, so a record backfilled twice has one id. (Consumers deduplicate on the
//!   route's stable event id, `source.event_id_attribute`, which is the row's own id either
//!   way.)
//! - the top-level leaf `"backfill": true` marks it: filters select backfilled records with
//!   `{"backfill": [true]}` and live ones with `{"backfill": [{"exists": false}]}`
//!   (`exists` matches leaves only, hence not an object).

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Which rows a backfill selects by creation time: `since <= created_at < until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Window {
    /// Whether the window selects every row (no bound).
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether a row created at `created_at` is selected. A row without a (readable)
    /// creation time is selected only when the window has no bound: a bounded backfill
    /// cannot tell whether it belongs, and says so in its count of skipped rows.
    #[must_use]
    pub fn selects(&self, created_at: Option<SystemTime>) -> bool {
        match created_at {
            None => self.is_all(),
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
        }
    }
}

/// Numbers above this are milliseconds since the epoch, not seconds (10^11 s is the year 5138).
const MILLIS_ABOVE: f64 = 1e11;

/// The creation time in `attribute` of `item` (DynamoDB JSON): `{"N": seconds or
/// milliseconds since the epoch}` or `{"S": RFC 3339}`. `None` when absent or unreadable.
#[must_use]
pub fn created_at(item: &Value, attribute: &str) -> Option<SystemTime> {
    let value = item.get(attribute)?;
    if let Some(n) = value.get("N").and_then(Value::as_str) {
        let n: f64 = n.parse().ok()?;
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        let secs = if n > MILLIS_ABOVE { n / 1000.0 } else { n };
        return SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?);
    }
    let s = value.get("S").and_then(Value::as_str)?;
    crate::time::parse_stored(s)
}

/// The stable `eventID` of the item whose key is `keys` (DynamoDB JSON).
#[must_use]
pub fn event_id(keys: &Value) -> String {
    // serde_json's map is ordered by name: the text is canonical.
    let digest = Sha256::digest(keys.to_string().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("backfill-{hex}")
}

/// The stream record of `item` (DynamoDB JSON) for a table whose key attributes are
/// `key_names`, on `stream_arn` in `region`.
#[must_use]
pub fn stream_record(
    item: Value,
    key_names: &[String],
    created_at: Option<SystemTime>,
    stream_arn: &str,
    region: &str,
) -> Value {
    let keys: Map<String, Value> = key_names
        .iter()
        .filter_map(|k| Some((k.clone(), item.get(k)?.clone())))
        .collect();
    let keys = Value::Object(keys);
    let mut dynamodb = Map::new();
    if let Some(t) = created_at.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        // Whole seconds as an integer, like the stream's records; sub-second precision kept.
        let value = if t.subsec_nanos() == 0 {
            json!(t.as_secs())
        } else {
            json!(t.as_secs_f64())
        };
        dynamodb.insert("ApproximateCreationDateTime".into(), value);
    }
    dynamodb.insert("Keys".into(), keys.clone());
    dynamodb.insert("NewImage".into(), item);
    dynamodb.insert("StreamViewType".into(), json!("NEW_IMAGE"));
    json!({
        "eventID": event_id(&keys),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": Value::Object(dynamodb),
        "eventSourceARN": stream_arn,
        "backfill": true,
    })
}

/// A backfilled record has no sequence number; its dead letter names its `eventID` there.
#[must_use]
pub fn sequence_label(record: &Value) -> String {
    record
        .get("eventID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn creation_time_from_seconds_milliseconds_or_rfc3339() {
        let item = json!({
            "s": {"N": "1764547200"},
            "ms": {"N": "1764547200000"},
            "frac": {"N": "1764547200.5"},
            "iso": {"S": "2025-12-01T00:00:00Z"},
            "bad": {"S": "yesterday"},
            "neg": {"N": "-1"},
            "bool": {"BOOL": true},
        });
        assert_eq!(created_at(&item, "s"), Some(at(1_764_547_200)));
        assert_eq!(created_at(&item, "ms"), Some(at(1_764_547_200)));
        assert_eq!(
            created_at(&item, "frac"),
            Some(at(1_764_547_200) + Duration::from_millis(500))
        );
        assert_eq!(created_at(&item, "iso"), Some(at(1_764_547_200)));
        for unreadable in ["bad", "neg", "bool", "missing"] {
            assert_eq!(created_at(&item, unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn the_window_is_half_open_and_rows_without_a_time_only_go_in_an_unbounded_one() {
        let w = Window {
            since: Some(at(10)),
            until: Some(at(20)),
        };
        assert!(!w.selects(Some(at(9))));
        assert!(w.selects(Some(at(10))));
        assert!(w.selects(Some(at(19))));
        assert!(!w.selects(Some(at(20))));
        assert!(!w.selects(None));
        assert!(Window::default().selects(None));
        assert!(Window::default().selects(Some(at(0))));
    }

    #[test]
    fn an_item_becomes_an_insert_record_in_the_pipes_shape() {
        let item = json!({"pk": {"S": "evt-1"}, "sk": {"S": "BookAdded"}, "n": {"N": "1"}});
        let record = stream_record(
            item.clone(),
            &["pk".to_owned(), "sk".to_owned()],
            Some(at(1_764_547_200)),
            "arn:aws:dynamodb:us-east-1:1:table/T/stream/L",
            "us-east-1",
        );
        assert_eq!(record["eventName"], "INSERT");
        assert_eq!(record["eventSource"], "aws:dynamodb");
        assert_eq!(record["backfill"], true);
        assert_eq!(
            record["dynamodb"]["Keys"],
            json!({"pk": {"S": "evt-1"}, "sk": {"S": "BookAdded"}})
        );
        assert_eq!(record["dynamodb"]["NewImage"], item);
        assert_eq!(
            record["dynamodb"]["ApproximateCreationDateTime"],
            1_764_547_200
        );
        assert_eq!(
            record["eventSourceARN"],
            "arn:aws:dynamodb:us-east-1:1:table/T/stream/L"
        );
        let id = record["eventID"].as_str().expect("eventID");
        assert_eq!(id.len(), "backfill-".len() + 32);
    }

    proptest! {
        /// The id depends on the key only, never on the rest of the item or on the attribute
        /// order of the key; different keys get different ids.
        #[test]
        fn the_event_id_is_the_keys_own(a in "[a-z0-9]{1,12}", b in "[a-z0-9]{1,12}", n in 0u32..1000) {
            let keys = ["pk".to_owned(), "sk".to_owned()];
            let item = |pk: &str, extra: u32| json!({"pk": {"S": pk}, "sk": {"S": "x"}, "n": {"N": extra.to_string()}});
            let id = |v: Value| stream_record(v, &keys, None, "arn", "r")["eventID"].clone();
            prop_assert_eq!(id(item(&a, n)), id(item(&a, n + 1)));
            let reversed = ["sk".to_owned(), "pk".to_owned()];
            prop_assert_eq!(
                id(item(&a, n)),
                stream_record(item(&a, n), &reversed, None, "arn", "r")["eventID"].clone()
            );
            if a != b {
                prop_assert_ne!(id(item(&a, n)), id(item(&b, n)));
            }
        }
    }
}
