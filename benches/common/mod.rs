//! Records the benches share: an outbox row's INSERT as DynamoDB Streams delivers it, and a
//! GetRecords answer made of them; and a Custom Event Bus's answer to PutEvents.

// Each bench compiles this module and uses only some of it.
#![allow(dead_code)]

use serde_json::{json, Value};

/// A seed-shaped outbox row INSERT as DynamoDB Streams delivers it (Pipes JSON shape).
pub fn outbox_insert(event_type: &str) -> Value {
    json!({
        "eventID": "7de3041dd709b024af6f29e4fa13d34c",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_700_000_000,
            "Keys": {"pk": {"S": "2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11"}, "sk": {"S": event_type}},
            "NewImage": {
                "pk": {"S": "2b1c6f0e-8d0a-4c4e-9a57-3e5f0c1d2a11"},
                "sk": {"S": event_type},
                "eventType": {"S": event_type},
                "eventData": {"M": {
                    "name": {"S": "Team Topologies"},
                    "authors": {"L": [{"S": "Manuel Pais"}, {"S": "Matthew Skelton"}]},
                    "year": {"N": "2019"}
                }},
                "expiresAt": {"N": "1700604800"}
            },
            "SequenceNumber": "111100000000017454423012",
            "SizeBytes": 231,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/EventsTable/stream/2026-01-01T00:00:00.000"
    })
}

/// A GetRecords answer of 1,000 seed-shaped records as DynamoDB Streams sends it: 80 %
/// INSERT with a `NewImage`, 20 % REMOVE with an `OldImage`.
pub fn get_records_body() -> Vec<u8> {
    let records: Vec<Value> = (0..1000_u64)
        .map(|i| {
            let mut record = outbox_insert("BookAdded");
            let object = record.as_object_mut().expect("an object");
            object.remove("eventSourceARN");
            object.insert("eventID".into(), json!(format!("{i:032x}")));
            let ddb = &mut record["dynamodb"];
            ddb["ApproximateCreationDateTime"] = json!(1_700_000_000.0 + i as f64 / 1000.0);
            ddb["SequenceNumber"] = json!(format!("1111{:020}", i));
            if i % 5 == 4 {
                let image = ddb
                    .as_object_mut()
                    .and_then(|d| d.remove("NewImage"))
                    .expect("an image");
                ddb["OldImage"] = image;
                record["eventName"] = json!("REMOVE");
            }
            record
        })
        .collect();
    serde_json::to_vec(&json!({"Records": records, "NextShardIterator": "next"})).expect("json")
}

/// A Custom Event Bus's answer to PutEvents or PutRawEvents (Smithy RPC v2 CBOR) that
/// publishes every entry, one per event id of `ids`.
pub fn custom_bus_answer(ids: impl Iterator<Item = String>) -> Vec<u8> {
    use ciborium::Value as Cbor;
    let text = |s: &str| Cbor::Text(s.to_owned());
    let entries = ids
        .map(|id| {
            Cbor::Map(vec![
                (text("EventId"), Cbor::Text(id)),
                (text("SuccessCode"), text("PUBLISHED")),
            ])
        })
        .collect();
    let answer = Cbor::Map(vec![
        (text("FailedEntryCount"), Cbor::Integer(0.into())),
        (text("Entries"), Cbor::Array(entries)),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&answer, &mut bytes).expect("CBOR");
    bytes
}
