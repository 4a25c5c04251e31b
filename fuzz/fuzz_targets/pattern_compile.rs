//! Any text as an event pattern: compiling never panics, and a pattern that compiles matches
//! a sample record the same way through the router's matcher (on the fields it reads, and on
//! the whole record) and the direct evaluator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_relay::pipeline::pattern::eval;
use outbox_relay::pipeline::{Filter, Matcher};
use serde_json::Value;

const RECORD: &str = r#"{"eventID": "1", "eventName": "INSERT", "dynamodb": {"SizeBytes": 231,
  "Keys": {"pk": {"S": "e-1"}}, "NewImage": {"pk": {"S": "e-1"}, "eventType": {"S": "BookAdded"},
  "tags": {"L": [{"S": "a"}, {"S": "B"}]}, "ip": {"S": "10.0.0.7"}, "note": {"NULL": true}}}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(filter) = Filter::compile(text) else { return };
    let record: Value = serde_json::from_str(RECORD).expect("sample record is JSON");
    let bytes = serde_json::to_vec(&record).expect("serializes");
    let mut matcher = Matcher::new();
    matcher.add(0, &filter).expect("a compiled filter is accepted by the matcher");
    let mut hits = Vec::new();
    matcher.matching(&record, &matcher.input(&record), &mut hits);
    let mut whole = Vec::new();
    matcher.matching(&record, &bytes, &mut whole);
    assert_eq!(hits, whole, "{text}: the fields read vs the whole record");
    let pattern: Value = serde_json::from_str(text).expect("compiled, so JSON");
    // Without $or the pattern is its own single alternative: both paths must agree.
    if !text.contains("$or") {
        let direct = eval::matches(pattern.as_object().expect("object"), &record);
        assert_eq!(!hits.is_empty(), direct, "{text}");
    }
});
