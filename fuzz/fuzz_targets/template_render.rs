//! Any text as an input template, rendered against any JSON record: parsing and rendering
//! never panic, and a template that is a JSON object with placeholders only in value
//! positions renders valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_relay::pipeline::{PlainImages, RecordContext, Template};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // "template\0record": the record half is any JSON value (default: a stream record).
    let (template, record) = text.split_once('\0').unwrap_or((text, ""));
    let record: Value = serde_json::from_str(record).unwrap_or_else(|_| {
        serde_json::json!({"eventName": "INSERT", "dynamodb": {"NewImage": {
            "name": {"S": "Dune \"1965\" \\ <b>"}, "year": {"N": "1965"},
            "tags": {"L": [{"S": "x"}, {"N": "1e400"}]}}}})
    });
    let Ok(t) = Template::parse(template) else { return };
    let expand = vec!["name".to_owned()];
    let images = PlainImages::new(&record, &expand);
    let ctx = RecordContext {
        record: &record,
        route_name: "fuzz",
        source_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/L",
        event_id: "evt-1",
        trace: None,
        created_at: None,
        images: &images,
    };
    let Ok(rendered) = t.render(&ctx) else { return };
    // A JSON template whose skeleton (placeholders as `null`) is valid JSON renders valid JSON
    // for any record: values are quoted and escaped as Pipes does.
    if !t.renders_string() && serde_json::from_str::<Value>(&t.skeleton()).is_ok() {
        assert!(
            serde_json::from_str::<Value>(&rendered).is_ok(),
            "{template:?} rendered invalid JSON: {rendered}"
        );
    }
});
