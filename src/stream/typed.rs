//! Items as DynamoDB JSON (`{"S": "…"}`, `{"N": "…"}`, `{"M": {…}}`, …), the shape of a stream
//! record's `Keys`, `NewImage` and `OldImage`. Two SDKs carry items: DynamoDB Streams' records
//! (the live relay) and DynamoDB's Scan (backfill). Their `AttributeValue` types are distinct
//! but alike, so one macro writes the conversion for each: a backfilled item becomes exactly
//! what the stream would have carried.

use base64::Engine as _;
use serde_json::{Map, Value};

/// `{tag: value}`, built directly: `json!` would re-serialize a nested `Value` (a deep copy).
fn tagged(tag: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(tag.to_owned(), value);
    Value::Object(map)
}

fn strings<'a>(items: impl Iterator<Item = &'a String>) -> Value {
    Value::Array(items.map(|s| Value::String(s.clone())).collect())
}

fn b64(b: &aws_smithy_types::Blob) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

macro_rules! typed_conversion {
    ($item:ident, $value:ident, $av:ty) => {
        /// An item as DynamoDB JSON (serde_json's map keeps attributes in name order; the
        /// SDK's HashMap has none).
        #[must_use]
        pub fn $item(item: &std::collections::HashMap<String, $av>) -> Value {
            Value::Object(item.iter().map(|(k, v)| (k.clone(), $value(v))).collect())
        }

        fn $value(v: &$av) -> Value {
            type A = $av;
            match v {
                A::S(s) => tagged("S", Value::String(s.clone())),
                A::N(n) => tagged("N", Value::String(n.clone())),
                A::B(b) => tagged("B", b64(b)),
                A::Bool(b) => tagged("BOOL", Value::Bool(*b)),
                A::Null(n) => tagged("NULL", Value::Bool(*n)),
                A::M(m) => tagged("M", $item(m)),
                A::L(l) => tagged("L", Value::Array(l.iter().map($value).collect())),
                A::Ss(s) => tagged("SS", strings(s.iter())),
                A::Ns(n) => tagged("NS", strings(n.iter())),
                A::Bs(b) => tagged("BS", Value::Array(b.iter().map(b64).collect())),
                // A type newer than this SDK: keep the record, mark the value.
                _ => tagged("NULL", Value::Bool(true)),
            }
        }
    };
}

typed_conversion!(
    streams_item,
    streams_value,
    aws_sdk_dynamodbstreams::types::AttributeValue
);
typed_conversion!(
    table_item,
    table_value,
    aws_sdk_dynamodb::types::AttributeValue
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_smithy_types::Blob;
    use serde_json::json;

    use super::*;

    #[test]
    fn both_sdks_items_read_the_same() {
        use aws_sdk_dynamodb::types::AttributeValue as T;
        use aws_sdk_dynamodbstreams::types::AttributeValue as S;
        let table = HashMap::from([
            ("pk".to_owned(), T::S("evt-1".into())),
            ("n".to_owned(), T::N("12.5".into())),
            ("b".to_owned(), T::B(Blob::new(b"hi".to_vec()))),
            (
                "m".to_owned(),
                T::M(HashMap::from([(
                    "l".to_owned(),
                    T::L(vec![T::Bool(true), T::Null(true)]),
                )])),
            ),
            ("ss".to_owned(), T::Ss(vec!["a".into()])),
            ("ns".to_owned(), T::Ns(vec!["1".into()])),
            ("bs".to_owned(), T::Bs(vec![Blob::new(b"x".to_vec())])),
        ]);
        let streams = HashMap::from([
            ("pk".to_owned(), S::S("evt-1".into())),
            ("n".to_owned(), S::N("12.5".into())),
            ("b".to_owned(), S::B(Blob::new(b"hi".to_vec()))),
            (
                "m".to_owned(),
                S::M(HashMap::from([(
                    "l".to_owned(),
                    S::L(vec![S::Bool(true), S::Null(true)]),
                )])),
            ),
            ("ss".to_owned(), S::Ss(vec!["a".into()])),
            ("ns".to_owned(), S::Ns(vec!["1".into()])),
            ("bs".to_owned(), S::Bs(vec![Blob::new(b"x".to_vec())])),
        ]);
        let expected = json!({
            "pk": {"S": "evt-1"}, "n": {"N": "12.5"}, "b": {"B": "aGk="},
            "m": {"M": {"l": {"L": [{"BOOL": true}, {"NULL": true}]}}},
            "ss": {"SS": ["a"]}, "ns": {"NS": ["1"]}, "bs": {"BS": ["eA=="]},
        });
        assert_eq!(table_item(&table), expected);
        assert_eq!(streams_item(&streams), expected);
    }
}
