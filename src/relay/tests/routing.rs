//! `test-route` shows what the relay does: for generated records under routes of every kind
//! (filtered, unmarshalled, templated, Custom Event Bus with an ordering key) and trace
//! contexts valid, malformed or absent, the entries `test-route` prints are the ones the
//! shard worker puts in its window, and the routes it says cannot render are the ones the
//! worker dead-letters.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::worker_settings;
use crate::config::Config;
use crate::relay::deliver::{Window, Work};
use crate::relay::schedule::Order;
use crate::relay::shard_loop::Command;
use crate::stream::{SequenceNumber, StreamRecord};
use crate::telemetry::ShardEvent;

const CUSTOM_BUS: &str =
    "arn:aws:events:us-east-1:123456789012:event-busv2/books/abcdefghij0123456789abcde";

fn config(event_id_attribute: bool) -> Config {
    let id = if event_id_attribute {
        "event_id_attribute = \"pk\"\n"
    } else {
        ""
    };
    Config::from_toml(&format!(
        r#"
[source]
table_name = "T"
trace_context_attribute = "traceparent"
{id}
[[routes]]
name = "inserts"
event_bus_name = "bus"
source = "S"
detail_type = "Created"
filters = ['{{"eventName": ["INSERT"]}}']
unmarshall = "NewImage"
trace_context_field = "traceparent"

[[routes]]
name = "templated"
event_bus_name = "bus"
source = "S"
detail_type = "T"
template = '{{"id": <outbox.event-id>, "trace": "<outbox.traceparent>", "count": <$.dynamodb.NewImage.count.N>}}'

[[routes]]
name = "custom"
event_bus_arn = "{CUSTOM_BUS}"
source = "S"
detail_type = "T"
ordering_key = "<$.NewImage.aggregateId>"
unmarshall = "NewImage"
"#
    ))
    .expect("a valid config")
}

/// A stream record in the Pipes JSON shape.
fn record() -> impl Strategy<Value = (Value, u64)> {
    let trace = prop_oneof![
        Just(None),
        Just(Some(
            json!({"S": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        )),
        Just(Some(json!({"S": "not-a-traceparent"}))),
        Just(Some(json!({"N": "7"}))),
    ];
    (
        prop_oneof![Just("INSERT"), Just("MODIFY"), Just("REMOVE")],
        "[a-z]{1,6}",
        proptest::option::of("[a-z]{0,4}"),
        proptest::option::of(-1_000_000i64..1_000_000),
        trace,
        1_700_000_000u64..1_800_000_000,
        0u64..1_000_000,
    )
        .prop_map(|(name, pk, aggregate, count, trace, created, seq)| {
            let mut image = json!({"pk": {"S": pk}});
            if let Some(a) = aggregate {
                image["aggregateId"] = json!({"S": a});
            }
            if let Some(n) = count {
                image["count"] = json!({"N": n.to_string()});
            }
            if let Some(t) = trace {
                image["traceparent"] = t;
            }
            let mut ddb = json!({
                "Keys": {"pk": {"S": pk}},
                "SequenceNumber": seq.to_string(),
                "SizeBytes": 100,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "ApproximateCreationDateTime": created,
            });
            if name != "REMOVE" {
                ddb["NewImage"] = image.clone();
            }
            if name != "INSERT" {
                ddb["OldImage"] = image;
            }
            let record = json!({
                "eventID": format!("e-{seq}"),
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": ddb,
            });
            (record, created)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn test_route_shows_the_entries_and_failures_the_relay_makes(
        (record, created) in record(),
        event_id_attribute in any::<bool>(),
    ) {
        let config = config(event_id_attribute);
        let stream_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2026-12-04T00:00:00.000";
        let mut settings = worker_settings();
        settings.records = config.source.record_policy();
        let window = Window::new(
            std::sync::Arc::new(settings),
            stream_arn.to_owned(),
            "shard-1".to_owned(),
            Order::Strict,
        );
        let router = config.router_for(&config.source.streams()[0]).expect("routes");
        // The shard's stream is the record's: test-route takes it from `eventSourceARN`.
        let mut pasted = record.clone();
        pasted["eventSourceARN"] = json!(stream_arn);
        let report = crate::test_route::test_route(
            &config,
            &pasted.to_string(),
            Some("T"),
        )
        .expect("a stream record");
        let shown: Vec<Value> = report
            .routes
            .iter()
            .flat_map(|v| v.entries.iter().cloned())
            .map(|mut e| {
                if let Some(o) = e.as_object_mut() {
                    for shown_only in ["DetailParsed", "DataParsed", "Format"] {
                        o.remove(shown_only);
                    }
                }
                e
            })
            .collect();
        let failing: Vec<&str> = report
            .routes
            .iter()
            .filter(|v| v.error.is_some())
            .map(|v| v.name.as_str())
            .collect();

        let mut happened = Vec::new();
        let routed = window.route(
            StreamRecord::new(
SequenceNumber::new(
                    record["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default(),
                ),
Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(created)),
&record,
),
            &router,
            0,
            true,
            &mut happened,
        );
        let mut sent = Vec::new();
        let mut poisoned = Vec::new();
        for entry in &routed.entries {
            match &entry.payload {
                Work::Publish { entry, .. } => sent.push(entry.request_json()),
                Work::Poison(e) => poisoned.push(e.route().to_owned()),
            }
        }
        prop_assert_eq!(shown, sent);
        prop_assert_eq!(failing, poisoned);
        prop_assert_eq!(
            report.trace_context_ignored.is_some(),
            happened
                .iter()
                .any(|c| matches!(c, Command::Emit(ShardEvent::TraceIgnored { .. })))
        );
    }
}
