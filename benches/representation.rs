//! What holding a stream record costs, in three representations (issue #28): the
//! `serde_json::Value` tree the relay held until it held records as text, the JSON text a
//! [`StreamRecord`] holds now (parsed into a tree only while it is routed), and a flat typed
//! item (each image a sorted `Vec` of `(name, typed value)`, the shape a record type of our
//! own would have).
//!
//! For the 1,000 records of the pipeline bench's GetRecords answer it prints the heap each
//! representation holds per record (bytes asked of the allocator, and allocations), then
//! criterion times building one from the record's JSON text, and cloning and dropping one (the
//! loop on fakes clones each record; the relay drops each once checkpointed).
//!
//! Run: `cargo bench --bench representation`. Figures are recorded in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outbox_relay::stream::{SequenceNumber, StreamRecord};
use serde::Deserialize;
use serde_json::Value;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

mod common;

/// The system allocator, counted (stats_alloc's only allocator a static can hold without
/// nightly Rust). What a representation asks of an allocator does not depend on which one
/// answers; its times here compare the two representations with each other, not with the
/// relay's figures, which are on mimalloc.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// A DynamoDB attribute value, typed as the stream sends it.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // only built, cloned and dropped here
enum Attribute {
    S(Box<str>),
    N(Box<str>),
    B(Box<str>),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    #[serde(rename = "SS")]
    StringSet(Vec<Box<str>>),
    #[serde(rename = "NS")]
    NumberSet(Vec<Box<str>>),
    #[serde(rename = "BS")]
    BinarySet(Vec<Box<str>>),
    M(Item),
    L(Vec<Attribute>),
}

/// An image: attributes in name order.
#[derive(Debug, Clone)]
struct Item(#[allow(dead_code)] Vec<(Box<str>, Attribute)>);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Attributes;
        impl<'de> serde::de::Visitor<'de> for Attributes {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a DynamoDB item")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut attributes = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<Box<str>, Attribute>()? {
                    attributes.push(entry);
                }
                attributes.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Item(attributes))
            }
        }
        deserializer.deserialize_map(Attributes)
    }
}

/// A stream record with flat typed images.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)]
struct FlatRecord {
    #[serde(rename = "eventID")]
    event_id: Box<str>,
    #[serde(rename = "eventName")]
    event_name: Box<str>,
    #[serde(rename = "eventVersion")]
    event_version: Box<str>,
    #[serde(rename = "eventSource")]
    event_source: Box<str>,
    #[serde(rename = "awsRegion")]
    aws_region: Box<str>,
    dynamodb: FlatChange,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
struct FlatChange {
    approximate_creation_date_time: Option<f64>,
    keys: Option<Item>,
    new_image: Option<Item>,
    old_image: Option<Item>,
    sequence_number: Box<str>,
    size_bytes: Option<u64>,
    stream_view_type: Option<Box<str>>,
}

/// The answer's records, each as its own JSON text.
fn record_texts() -> Vec<String> {
    let body: Value = serde_json::from_slice(&common::get_records_body()).expect("json");
    body["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(Value::to_string)
        .collect()
}

/// Heap held per record by `make`'s records, built from `texts`, besides the record's own
/// `size_of` bytes: (bytes, allocations).
fn held_per_record<T>(texts: &[String], make: impl Fn(&str) -> T) -> (usize, usize) {
    let mut held: Vec<T> = Vec::with_capacity(texts.len());
    let region = Region::new(GLOBAL);
    held.extend(texts.iter().map(|t| make(t)));
    let change = region.change();
    drop(held);
    let n = texts.len();
    // stats_alloc adds a reallocation's growth to `bytes_allocated` (and its shrinking to
    // `bytes_deallocated`) already; `bytes_reallocated` is the same change again.
    let bytes = change.bytes_allocated.abs_diff(change.bytes_deallocated);
    (bytes / n, (change.allocations - change.deallocations) / n)
}

fn representation(c: &mut Criterion) {
    let texts = record_texts();
    let n = texts.len();
    let value = |t: &str| serde_json::from_str::<Value>(t).expect("a record");
    let text = |t: &str| StreamRecord::new(SequenceNumber::new("1"), None, &value(t));
    let flat = |t: &str| serde_json::from_str::<FlatRecord>(t).expect("a record");
    let mean = texts.iter().map(String::len).sum::<usize>() / n;
    for (name, inline, (bytes, allocations)) in [
        (
            "serde_json::Value",
            std::mem::size_of::<Value>(),
            held_per_record(&texts, value),
        ),
        (
            "StreamRecord (JSON text)",
            std::mem::size_of::<StreamRecord>(),
            held_per_record(&texts, text),
        ),
        (
            "flat typed item",
            std::mem::size_of::<FlatRecord>(),
            held_per_record(&texts, flat),
        ),
    ] {
        println!(
            "record_representation: {name}: {inline} + {bytes} heap bytes in {allocations} \
             allocations per record (its JSON text: {mean} bytes)"
        );
    }
    let values: Vec<Value> = texts.iter().map(|t| value(t)).collect();
    let records: Vec<StreamRecord> = texts.iter().map(|t| text(t)).collect();
    let flats: Vec<FlatRecord> = texts.iter().map(|t| flat(t)).collect();

    let mut g = c.benchmark_group("record_representation_1000");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("value_parse", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| value(black_box(t)))
                .collect::<Vec<_>>()
        });
    });
    g.bench_function("value_clone_drop", |b| {
        b.iter(|| drop(black_box(values.clone())));
    });
    g.bench_function("stream_record_clone_drop", |b| {
        b.iter(|| drop(black_box(records.clone())));
    });
    g.bench_function("stream_record_to_tree_drop", |b| {
        b.iter(|| {
            for record in &records {
                drop(black_box(record.json()));
            }
        });
    });
    g.bench_function("flat_parse", |b| {
        b.iter(|| texts.iter().map(|t| flat(black_box(t))).collect::<Vec<_>>());
    });
    g.bench_function("flat_clone_drop", |b| {
        b.iter(|| drop(black_box(flats.clone())));
    });
    g.finish();
}

criterion_group!(benches, representation);
criterion_main!(benches);
