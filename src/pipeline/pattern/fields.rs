//! The part of an event quamina reads: the fields its patterns name, and nothing else.
//!
//! quamina matches an event's JSON text, and reads only the fields on its patterns' paths; it
//! still has to scan past every other byte. A stream record is mostly what no pattern names
//! (the images, sizes, sequence numbers), so serializing it whole for the matcher and
//! scanning it again was about a quarter of the relay's CPU per record (BENCHMARKS.md, issue
//! #28). [`ReadFields`] keeps the union of the patterns' paths, and [`ReadFields::write`]
//! serializes only those.
//!
//! The rules, so that a pattern matches the written text exactly when it matches the whole
//! event:
//! - a path a pattern ends on (its conditions) keeps the event's value there whole;
//! - along a path, an object keeps only the named keys; an array keeps every element, in
//!   order, each pruned the same way (quamina matches through arrays, and tells elements apart
//!   by position, so none may be dropped or moved); a scalar is kept as it is (no pattern's
//!   deeper field can be found in it, kept or not);
//! - a key no pattern names is left out.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The union of the field paths of quamina's patterns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadFields {
    /// A pattern ends here: the event's value is kept whole.
    whole: bool,
    /// The keys patterns name below this point.
    children: BTreeMap<String, ReadFields>,
}

impl ReadFields {
    /// Adds the paths of `pattern` (a `$or`-free quamina pattern).
    pub fn add(&mut self, pattern: &Map<String, Value>) {
        for (key, value) in pattern {
            let child = self.children.entry(key.clone()).or_default();
            match value {
                Value::Object(nested) => child.add(nested),
                _ => child.whole = true,
            }
        }
    }

    /// Appends to `out` the JSON text of `event` reduced to these fields (see the module
    /// documentation).
    pub fn write(&self, event: &Value, out: &mut Vec<u8>) {
        if self.whole {
            write_value(event, out);
            return;
        }
        match event {
            Value::Object(fields) => {
                out.push(b'{');
                let mut first = true;
                for (key, read) in &self.children {
                    let Some(value) = fields.get(key) else {
                        continue;
                    };
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_string(key, out);
                    out.push(b':');
                    read.write(value, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(item, out);
                }
                out.push(b']');
            }
            scalar => write_value(scalar, out),
        }
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    // Writing a `Value` into a `Vec` cannot fail: its keys are strings and the writer is
    // memory.
    serde_json::to_writer(out, value).expect("a serde_json::Value always serializes");
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, text).expect("a string always serializes");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(patterns: &[Value], event: &Value) -> Value {
        let mut fields = ReadFields::default();
        for p in patterns {
            fields.add(p.as_object().expect("object"));
        }
        let mut out = Vec::new();
        fields.write(event, &mut out);
        serde_json::from_slice(&out).expect("the written text is JSON")
    }

    #[test]
    fn keeps_only_the_named_fields_and_whole_values_where_patterns_end() {
        let record = json!({
            "eventName": "INSERT",
            "eventID": "1",
            "dynamodb": {
                "SizeBytes": 90,
                "NewImage": {"type": {"S": "BookAdded"}, "payload": {"M": {"x": {"N": "1"}}}},
                "Keys": {"pk": {"S": "a"}},
            },
        });
        let patterns = [
            json!({"eventName": ["INSERT"]}),
            json!({"dynamodb": {"NewImage": {"type": {"S": ["BookAdded"]}}}}),
        ];
        assert_eq!(
            written(&patterns, &record),
            json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"type": {"S": "BookAdded"}}}})
        );
        // A pattern ending on an object keeps it whole, whatever else names its insides.
        let whole = [
            json!({"dynamodb": {"Keys": ["x"]}}),
            json!({"dynamodb": {"Keys": {"pk": {"S": ["a"]}}}}),
        ];
        assert_eq!(
            written(&whole, &record),
            json!({"dynamodb": {"Keys": {"pk": {"S": "a"}}}})
        );
    }

    #[test]
    fn arrays_keep_every_element_in_order_and_scalars_stay() {
        let event = json!({"a": [{"b": 1, "c": 2}, 7, {"c": 3}, [{"b": 4}]], "z": 1});
        assert_eq!(
            written(&[json!({"a": {"b": [1]}})], &event),
            json!({"a": [{"b": 1}, 7, {}, [{"b": 4}]]})
        );
    }

    #[test]
    fn no_pattern_reads_nothing() {
        assert_eq!(written(&[], &json!({"a": 1})), json!({}));
    }
}
