//! The CloudEvents written here, read back by the CloudEvents SDK for Rust (`cloudevents-sdk`),
//! not by our own code.

use std::time::{Duration, SystemTime};

use cloudevents::{AttributesReader, Data, Event};

use super::*;

const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn parse(json: &str) -> Event {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a CloudEvent ({e}): {json}"))
}

#[test]
fn every_attribute_reads_back_through_the_cloudevents_sdk() {
    let mut trace = TraceContext::from_traceparent(W3C, "traceparent").expect("valid");
    trace.tracestate = Some("rojo=00f067aa0ba902b7".to_owned());
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_928_800_123);
    let json = CloudEvent {
        id: "evt-1",
        source: "/books/api",
        event_type: "BookAdded",
        time: Some(at),
        subject: Some("book-9"),
        partition_key: "book-9",
        trace: Some(&trace),
        data: r#"{"title":"Dune","price":12.50,"big":123456789012345678901234567890}"#,
    }
    .to_json();
    let event = parse(&json);
    assert_eq!(event.specversion().as_str(), "1.0");
    assert_eq!(event.id(), "evt-1");
    assert_eq!(event.source().as_str(), "/books/api");
    assert_eq!(event.ty(), "BookAdded");
    assert_eq!(event.subject(), Some("book-9"));
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(
        event.time().map(|t| t.timestamp_millis()),
        Some(1_764_928_800_123)
    );
    let ext = |name: &str| event.extension(name).map(ToString::to_string);
    assert_eq!(ext("partitionkey").as_deref(), Some("book-9"));
    assert_eq!(ext("traceparent").as_deref(), Some(W3C));
    assert_eq!(ext("tracestate").as_deref(), Some("rojo=00f067aa0ba902b7"));
    match event.data() {
        Some(Data::Json(data)) => assert_eq!(data["title"], "Dune"),
        other => panic!("data is JSON, got {other:?}"),
    }
    // The data is the detail's text as it was: every digit of every number kept.
    assert!(
        json.ends_with(
            r#""data":{"title":"Dune","price":12.50,"big":123456789012345678901234567890}}"#
        ),
        "{json}"
    );
}

#[test]
fn optional_attributes_are_left_out_when_there_is_nothing_to_say() {
    let json = CloudEvent {
        id: "e\"1",
        source: "books",
        event_type: "Book \"Added\"",
        time: None,
        subject: None,
        partition_key: "",
        trace: None,
        data: "{}",
    }
    .to_json();
    let event = parse(&json);
    assert_eq!(event.id(), "e\"1", "strings are JSON-escaped");
    assert_eq!(event.ty(), "Book \"Added\"");
    assert!(event.time().is_none() && event.subject().is_none());
    assert!(event.extension("partitionkey").is_none());
    assert!(event.extension("traceparent").is_none());
}

#[test]
fn the_trace_becomes_metadata_without_empty_values() {
    let mut trace = TraceContext::from_traceparent(W3C, "traceparent").expect("valid");
    assert_eq!(
        trace_metadata(Some(&trace)),
        vec![("traceparent".to_owned(), W3C.to_owned())]
    );
    trace.tracestate = Some("a=b".to_owned());
    assert_eq!(trace_metadata(Some(&trace)).len(), 2);
    assert!(trace_metadata(None).is_empty());
}

#[test]
fn a_source_must_be_a_uri_reference() {
    for ok in [
        "books",
        "/books/api",
        "urn:example:books",
        "https://example.com/books",
        "com.example.books",
    ] {
        assert_eq!(check_source(ok), Ok(()), "{ok}");
    }
    for bad in ["", "my books", "books%zz", "a\"b"] {
        assert!(check_source(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn metadata_keys_follow_put_raw_events_limits() {
    assert_eq!(check_metadata_key("tenant"), Ok(()));
    assert_eq!(
        check_metadata_key(&"é".repeat(128)),
        Ok(()),
        "characters, not bytes"
    );
    assert!(check_metadata_key("").is_err());
    assert!(check_metadata_key(&"k".repeat(129)).is_err());
    assert!(check_metadata_key("a/b").is_err());
    assert!(check_metadata_key("traceparent").is_err());
    assert!(check_metadata_key("tracestate").is_err());
}
