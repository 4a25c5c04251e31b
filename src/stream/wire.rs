//! Stream records in one parse of GetRecords' response body.
//!
//! A GetRecords answer is JSON already close to the shape Pipes and Lambda use: the same
//! `eventID`, `eventName`, … keys and `dynamodb.Keys`/`NewImage`/`OldImage` as DynamoDB JSON.
//! Letting the SDK parse it into `AttributeValue` hash maps and then converting those into our
//! `Value` built two trees per record (30 % of the process, BENCHMARKS.md). Here the body is
//! read once by a strict cursor ([`page`]): the few scalar fields into [`WireRecord`], the
//! images checked to be JSON and kept as their text, which [`WireRecord::into_stream_record`]
//! writes out in the Lambda shape as the record's text (parsed into a tree only when the
//! record is routed). The SDK path ([`super::to_stream_record`]) fills the same [`WireRecord`],
//! so the layout exists once.
//!
//! Where the two parses differ, on input AWS does not send: an attribute type newer than the
//! SDK is kept as sent here (the SDK's union reads it as unknown, which becomes `{"NULL": true}`),
//! and base64 in `B`/`BS` is kept as sent (the SDK decodes and re-encodes it).
//!
//! [`TakeRecords`] is the SDK interceptor that hands the body to this parse and gives the SDK's
//! own deserializer an empty answer (`{}`).

mod page;

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::DateTime;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use serde_json::value::RawValue;

use super::shard::SequenceNumber;
use super::source::{RecordText, RecordsPage, StreamRecord};
use crate::pipeline::json_write;

pub use page::NotAnswer;

/// One record as DynamoDB Streams sends it (and as the SDK's `Record` holds it); the JSON
/// member each field is read from is named beside it.
#[derive(Debug, Default)]
pub(super) struct WireRecord<'a> {
    /// `eventID`
    pub event_id: Option<Cow<'a, str>>,
    /// `eventName`
    pub event_name: Option<Cow<'a, str>>,
    /// `eventVersion`
    pub event_version: Option<Cow<'a, str>>,
    /// `eventSource`
    pub event_source: Option<Cow<'a, str>>,
    /// `awsRegion`
    pub aws_region: Option<Cow<'a, str>>,
    /// `dynamodb`
    pub dynamodb: Option<WireStreamRecord<'a>>,
    /// `userIdentity`
    pub user_identity: Option<WireIdentity<'a>>,
}

/// The record's `dynamodb` member.
#[derive(Debug, Default)]
pub(super) struct WireStreamRecord<'a> {
    /// `ApproximateCreationDateTime`: epoch seconds, a JSON number with a fraction
    /// (awsJson1.0 timestamps).
    pub approximate_creation_date_time: Option<DateTime>,
    /// `Keys`, `NewImage`, `OldImage`: the images as sent, checked to be JSON, not parsed
    /// into a tree.
    pub keys: Option<&'a str>,
    pub new_image: Option<&'a str>,
    pub old_image: Option<&'a str>,
    /// `SequenceNumber`
    pub sequence_number: Option<Cow<'a, str>>,
    /// `SizeBytes`
    pub size_bytes: Option<i64>,
    /// `StreamViewType`
    pub stream_view_type: Option<Cow<'a, str>>,
}

/// `userIdentity` (records of TTL deletions): `Type` and `PrincipalId` on the wire.
#[derive(Debug, Default)]
pub(super) struct WireIdentity<'a> {
    pub r#type: Option<Cow<'a, str>>,
    pub principal_id: Option<Cow<'a, str>>,
}

impl WireRecord<'_> {
    /// The record in the JSON shape Pipes and Lambda use (keys in name order); `None` without
    /// a sequence number, which DynamoDB always sends.
    pub(super) fn into_stream_record(self) -> Option<StreamRecord> {
        let ddb = self.dynamodb?;
        let sequence = ddb.sequence_number?;
        let sequence_number = SequenceNumber::new(&*sequence);
        let created = ddb.approximate_creation_date_time;
        let pipes = PipesRecord {
            aws_region: self.aws_region.as_deref(),
            dynamodb: PipesStreamRecord {
                // Whole seconds as a JSON integer, like the Lambda event; sub-second precision
                // kept.
                approximate_creation_date_time: created.map(|t| {
                    if t.subsec_nanos() == 0 {
                        EpochSeconds::Whole(t.secs())
                    } else {
                        EpochSeconds::Fraction(t.as_secs_f64())
                    }
                }),
                keys: ddb.keys,
                new_image: ddb.new_image,
                old_image: ddb.old_image,
                sequence_number: &sequence,
                size_bytes: ddb.size_bytes,
                stream_view_type: ddb.stream_view_type.as_deref(),
            },
            event_id: self.event_id.as_deref(),
            event_name: self.event_name.as_deref(),
            event_source: self.event_source.as_deref(),
            event_version: self.event_version.as_deref(),
            user_identity: self.user_identity.as_ref().map(|identity| PipesIdentity {
                principal_id: identity.principal_id.as_deref(),
                r#type: identity.r#type.as_deref(),
            }),
        };
        // Sized once: the images, and room for the rest (keys, ids, the sequence number).
        let images: usize = [ddb.keys, ddb.new_image, ddb.old_image]
            .into_iter()
            .flatten()
            .map(str::len)
            .sum();
        let mut text = Vec::with_capacity(images + 512);
        pipes.write(&mut text);
        let text = String::from_utf8(text).expect("the text is written from UTF-8 strings");
        let created_at = created.and_then(|t| {
            let nanos = u64::try_from(t.as_nanos()).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
        });
        let size_bytes = ddb.size_bytes.and_then(|n| u64::try_from(n).ok());
        Some(StreamRecord::from_text(
            sequence_number,
            created_at,
            RecordText::written(text),
            size_bytes,
        ))
    }
}

/// A record in the Pipes and Lambda shape, as written: keys in name order, absent members left
/// out (`userIdentity` keeps both of its keys, `null` when absent).
///
/// The serde derive defines the text; [`PipesRecord::write`] writes the same bytes without
/// serde's per-member machinery (a third of the body's parse, issue #28), and a property test
/// keeps the two equal.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PipesRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    aws_region: Option<&'a str>,
    dynamodb: PipesStreamRecord<'a>,
    #[serde(rename = "eventID", skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_identity: Option<PipesIdentity<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PipesStreamRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_creation_date_time: Option<EpochSeconds>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "raw_json")]
    keys: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "raw_json")]
    new_image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "raw_json")]
    old_image: Option<&'a str>,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_view_type: Option<&'a str>,
}

impl PipesRecord<'_> {
    /// Appends the record's text: byte for byte what `serde_json::to_writer` writes for it.
    fn write(&self, out: &mut Vec<u8>) {
        let mut members = Members::open(out);
        if let Some(region) = self.aws_region {
            members.string("awsRegion", region);
        }
        members.key("dynamodb");
        self.dynamodb.write(members.out);
        if let Some(id) = self.event_id {
            members.string("eventID", id);
        }
        if let Some(name) = self.event_name {
            members.string("eventName", name);
        }
        if let Some(source) = self.event_source {
            members.string("eventSource", source);
        }
        if let Some(version) = self.event_version {
            members.string("eventVersion", version);
        }
        if let Some(identity) = &self.user_identity {
            members.key("userIdentity");
            let mut inner = Members::open(members.out);
            inner.key("principalId");
            push_optional(inner.out, identity.principal_id);
            inner.key("type");
            push_optional(inner.out, identity.r#type);
            inner.close();
        }
        members.close();
    }
}

impl PipesStreamRecord<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut members = Members::open(out);
        match self.approximate_creation_date_time {
            Some(EpochSeconds::Whole(seconds)) => {
                members.key("ApproximateCreationDateTime");
                push_integer(members.out, seconds);
            }
            Some(EpochSeconds::Fraction(seconds)) => {
                members.key("ApproximateCreationDateTime");
                // Writing a number into memory cannot fail; serde_json's float digits.
                let _ = serde_json::to_writer(&mut *members.out, &seconds);
            }
            None => {}
        }
        for (key, image) in [
            ("Keys", self.keys),
            ("NewImage", self.new_image),
            ("OldImage", self.old_image),
        ] {
            if let Some(image) = image {
                members.key(key);
                members.out.extend_from_slice(image.as_bytes());
            }
        }
        members.string("SequenceNumber", self.sequence_number);
        if let Some(size) = self.size_bytes {
            members.key("SizeBytes");
            push_integer(members.out, size);
        }
        if let Some(view) = self.stream_view_type {
            members.string("StreamViewType", view);
        }
        members.close();
    }
}

/// An image's text in serde's reading of [`PipesRecord`]: JSON, not a string (the
/// property test's reference; [`PipesRecord::write`] copies the text).
fn raw_json<S: serde::Serializer>(image: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    image
        .map(|text| RawValue::from_string(text.to_owned()))
        .transpose()
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// An object's members written one by one: `{` before the first, `,` between, `}` at the end.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// A member's key (a name that needs no escape), ready for its value.
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        json_write::push_str(self.out, value);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn push_optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => json_write::push_str(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_integer(out: &mut Vec<u8>, n: i64) {
    use std::io::Write as _;
    // Writing into memory cannot fail; `Display` writes an integer's digits as serde_json does.
    let _ = write!(out, "{n}");
}

/// `ApproximateCreationDateTime` as written: a JSON integer for whole seconds, else a number
/// with a fraction.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
enum EpochSeconds {
    Whole(i64),
    Fraction(f64),
}

#[derive(Serialize)]
struct PipesIdentity<'a> {
    #[serde(rename = "principalId")]
    principal_id: Option<&'a str>,
    #[serde(rename = "type")]
    r#type: Option<&'a str>,
}

/// A GetRecords response body as a page of our records (records without a sequence number
/// skipped, as [`super::to_stream_record`] does).
///
/// # Errors
/// The body is not GetRecords' JSON (or not UTF-8).
pub fn records_page(body: &[u8]) -> Result<RecordsPage, NotAnswer> {
    let text = std::str::from_utf8(body).map_err(|e| NotAnswer {
        at: e.valid_up_to(),
        what: "the body is not UTF-8",
    })?;
    let (records, next_iterator) = page::read(text)?;
    Ok(RecordsPage {
        records,
        next_iterator,
    })
}

/// Where [`TakeRecords`] leaves the page it parsed.
type Slot = Arc<Mutex<Option<RecordsPage>>>;

/// A per-call SDK interceptor: a successful GetRecords body is parsed by [`records_page`], and
/// the SDK deserializes `{}` instead. A body this parse refuses goes to the SDK unchanged, so
/// the SDK's own error (or its records, through [`super::to_stream_record`]) stands.
#[derive(Debug, Clone, Default)]
pub(super) struct TakeRecords {
    slot: Slot,
}

impl TakeRecords {
    /// The page parsed from the last successful attempt's body, if this parse read it.
    pub(super) fn take(&self) -> Option<RecordsPage> {
        self.slot.lock().ok()?.take()
    }
}

impl Intercept for TakeRecords {
    fn name(&self) -> &'static str {
        "TakeRecords"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if !response.status().is_success() {
            return Ok(());
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() = SdkBody::from_body_1_x(ParsedBody::new(body, self.slot.clone()));
        Ok(())
    }
}

/// Reads the whole body, parses it into the slot, and then yields `{}` (or the original
/// bytes, when the parse refused them).
struct ParsedBody {
    inner: Pin<Box<SdkBody>>,
    buffer: Vec<u8>,
    slot: Slot,
    done: bool,
}

impl ParsedBody {
    fn new(inner: SdkBody, slot: Slot) -> Self {
        let capacity = inner
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        Self {
            inner: Box::pin(inner),
            buffer: Vec::with_capacity(capacity),
            slot,
            done: false,
        }
    }

    /// What the SDK reads once the body has been received whole.
    fn finish(&mut self) -> Bytes {
        let body = std::mem::take(&mut self.buffer);
        match records_page(&body) {
            Ok(page) => {
                if let Ok(mut slot) = self.slot.lock() {
                    *slot = Some(page);
                }
                Bytes::from_static(b"{}")
            }
            Err(error) => {
                tracing::warn!(%error, "GetRecords answer not parsed here; the SDK reads it");
                Bytes::from(body)
            }
        }
    }
}

impl Body for ParsedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(frame))) => {
                    // HTTP/1 answers carry no trailers; data is all there is to keep.
                    if let Ok(data) = frame.into_data() {
                        this.buffer.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::data(this.finish()))));
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example answer in the DynamoDB Streams API reference (GetRecords), with a
    /// `userIdentity` as TTL deletions carry and every attribute type in the image.
    const ANSWER: &str = r#"{
        "NextShardIterator": "arn:aws:dynamodb:us-west-2:111122223333:table/Forum/stream/2015-05-20T20:51:10.252|1|AAAAAAAAAAGQBYshYDEe",
        "Records": [
            {
                "awsRegion": "us-west-2",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1.46480646E9,
                    "Keys": {"ForumName": {"S": "DynamoDB"}, "Subject": {"S": "DynamoDB Thread 3"}},
                    "SequenceNumber": "300000000000000499659",
                    "SizeBytes": 41,
                    "StreamViewType": "KEYS_ONLY"
                },
                "eventID": "e2fd9c34eff2d779b297b26f5fef4206",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.0"
            },
            {
                "awsRegion": "us-west-2",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1464806460.25,
                    "Keys": {"pk": {"S": "a"}},
                    "OldImage": {
                        "pk": {"S": "a"}, "n": {"N": "12345678901234567890.000000000000000001"},
                        "b": {"B": "aGk="}, "bs": {"BS": ["eA=="]}, "ss": {"SS": ["x", "y"]},
                        "ns": {"NS": ["1", "2.5"]}, "t": {"BOOL": false}, "z": {"NULL": true},
                        "m": {"M": {"l": {"L": [{"S": "\u00e9\n"}, {"N": "0"}]}}}
                    },
                    "SequenceNumber": "400000000000000499660",
                    "SizeBytes": 90,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                },
                "eventID": "f3",
                "eventName": "REMOVE",
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.1",
                "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
            },
            {"eventID": "no-dynamodb-member"}
        ]
    }"#;

    #[test]
    fn an_answer_becomes_the_pipes_json_shape() {
        let page = records_page(ANSWER.as_bytes()).expect("parses");
        assert_eq!(
            page.next_iterator.as_deref(),
            Some("arn:aws:dynamodb:us-west-2:111122223333:table/Forum/stream/2015-05-20T20:51:10.252|1|AAAAAAAAAAGQBYshYDEe")
        );
        assert_eq!(
            page.records.len(),
            2,
            "the record without `dynamodb` is skipped"
        );
        let [first, second] = &page.records[..] else {
            panic!("two records");
        };
        assert_eq!(
            first.sequence_number,
            SequenceNumber::new("300000000000000499659")
        );
        assert_eq!(
            first.created_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_464_806_460))
        );
        assert_eq!(
            first.json(),
            json!({
                "awsRegion": "us-west-2",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_464_806_460,
                    "Keys": {"ForumName": {"S": "DynamoDB"}, "Subject": {"S": "DynamoDB Thread 3"}},
                    "SequenceNumber": "300000000000000499659",
                    "SizeBytes": 41,
                    "StreamViewType": "KEYS_ONLY"
                },
                "eventID": "e2fd9c34eff2d779b297b26f5fef4206",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.0"
            })
        );
        assert_eq!(
            second.created_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_464_806_460_250))
        );
        assert_eq!(
            second.json()["dynamodb"]["ApproximateCreationDateTime"],
            json!(1_464_806_460.25)
        );
        assert_eq!(
            second.json()["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        assert_eq!(
            second.json()["dynamodb"]["OldImage"]["n"],
            json!({"N": "12345678901234567890.000000000000000001"}),
            "numbers keep every digit"
        );
        assert_eq!(
            second.json()["dynamodb"]["OldImage"]["m"],
            json!({"M": {"l": {"L": [{"S": "é\n"}, {"N": "0"}]}}})
        );
    }

    #[test]
    fn records_without_a_sequence_number_are_skipped_and_the_rest_keep_their_order() {
        let body = br#"{"Records": [
            {"eventID": "a", "dynamodb": {"SequenceNumber": "1"}},
            {"eventID": "no dynamodb"},
            {"eventID": "b", "dynamodb": {"SequenceNumber": "2"}},
            {"eventID": "no sequence", "dynamodb": {"SizeBytes": 1}},
            {"eventID": "c", "dynamodb": {"SequenceNumber": "3"}}
        ], "NextShardIterator": "it"}"#;
        let page = records_page(body).expect("parses");
        let ids: Vec<String> = page
            .records
            .iter()
            .map(|r| r.json()["eventID"].as_str().expect("an id").to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(page.next_iterator.as_deref(), Some("it"));
    }

    #[test]
    fn an_empty_answer_and_a_closed_shards_end() {
        let page = records_page(br#"{"Records": [], "NextShardIterator": "it"}"#).expect("parses");
        assert_eq!(
            page,
            RecordsPage {
                records: vec![],
                next_iterator: Some("it".into())
            }
        );
        let end = records_page(br#"{"Records": []}"#).expect("parses");
        assert_eq!(end.next_iterator, None);
        let nulls =
            records_page(br#"{"Records": null, "NextShardIterator": null}"#).expect("parses");
        assert_eq!(
            nulls,
            RecordsPage {
                records: vec![],
                next_iterator: None
            }
        );
    }

    #[test]
    fn strings_with_escapes_are_read_as_their_value() {
        // The scalar fields are borrowed from the body when they hold no escape; one that
        // does is decoded (AWS sends none, but JSON allows them).
        let body = br#"{"Records": [{"eventID": "e\u0031", "eventName": "INS\u0045RT",
            "userIdentity": {"PrincipalId": "a\"b", "Type": "Service"},
            "dynamodb": {"SequenceNumber": "1\u0030", "StreamViewType": "KEYS_ONLY",
                         "Keys": {"pk": {"S": "k"}}}}]}"#;
        let page = records_page(body).expect("parses");
        let [record] = page.records.as_slice() else {
            panic!("one record: {page:?}");
        };
        assert_eq!(record.sequence_number, SequenceNumber::new("10"));
        let json = record.text.json();
        assert_eq!(json["eventID"], "e1");
        assert_eq!(json["eventName"], "INSERT");
        assert_eq!(json["userIdentity"]["principalId"], "a\"b");
        assert_eq!(json["dynamodb"]["SequenceNumber"], "10");
    }

    #[test]
    fn a_body_that_is_not_the_answer_is_refused() {
        assert!(records_page(b"<html>").is_err());
        assert!(records_page(
            br#"{"Records": [{"dynamodb": {"ApproximateCreationDateTime": "x"}}]}"#
        )
        .is_err());
        assert!(records_page(br#"{"Records": {}}"#).is_err());
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_wherever_the_bad_byte_is() {
        // In a string the byte parse reads, in an image kept as text, and outside strings.
        let next = b"{\"Records\": [], \"NextShardIterator\": \"it\xff\"}";
        let image = b"{\"Records\": [{\"dynamodb\": {\"SequenceNumber\": \"1\", \
            \"NewImage\": {\"pk\": {\"S\": \"a\xc3\"}}}}]}";
        let outside = b"{\"Records\": []\xff}";
        for body in [&next[..], &image[..], &outside[..]] {
            assert!(
                records_page(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The same bodies with the bytes made valid parse.
        let fixed = b"{\"Records\": [], \"NextShardIterator\": \"it\xc3\xa9\"}";
        let page = records_page(fixed).expect("parses");
        assert_eq!(page.next_iterator.as_deref(), Some("it\u{e9}"));
    }

    mod pipes_text {
        use super::*;
        use proptest::prelude::*;

        /// Any string: quotes, backslashes, control characters and non-ASCII included.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9:._-]{0,12}",
                "\\PC{0,8}",
                ".{0,8}",
                "[\"\\\\\u{0}-\u{1f}\u{7f}é]{0,6}"
            ]
        }

        /// An image's text as sent: compact or with spaces.
        fn image() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(prop_oneof![
                text().prop_map(|s| json!({"pk": {"S": s}}).to_string()),
                Just(r#"{ "n" : {"N": "1.50E+3"} , "l": {"L": []} }"#.to_owned()),
            ])
        }

        fn seconds() -> impl Strategy<Value = Option<EpochSeconds>> {
            proptest::option::of(prop_oneof![
                any::<i64>().prop_map(EpochSeconds::Whole),
                (0_u32..2_000_000_000, 1_u32..1000).prop_map(|(s, ms)| EpochSeconds::Fraction(
                    f64::from(s) + f64::from(ms) / 1000.0
                )),
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            /// The writer's text is serde's for the same record, byte for byte.
            #[test]
            fn the_written_text_is_serdes(
                strings in proptest::collection::vec(proptest::option::of(text()), 8),
                sequence in text(),
                images in proptest::collection::vec(image(), 3),
                seconds in seconds(),
                size in proptest::option::of(any::<i64>()),
                identity in any::<bool>(),
            ) {
                let raw = images;
                let s = |i: usize| strings[i].as_deref();
                let record = PipesRecord {
                    aws_region: s(0),
                    dynamodb: PipesStreamRecord {
                        approximate_creation_date_time: seconds,
                        keys: raw[0].as_deref(),
                        new_image: raw[1].as_deref(),
                        old_image: raw[2].as_deref(),
                        sequence_number: &sequence,
                        size_bytes: size,
                        stream_view_type: s(1),
                    },
                    event_id: s(2),
                    event_name: s(3),
                    event_source: s(4),
                    event_version: s(5),
                    user_identity: identity.then(|| PipesIdentity {
                        principal_id: s(6),
                        r#type: s(7),
                    }),
                };
                let mut written = Vec::new();
                record.write(&mut written);
                let serde = serde_json::to_vec(&record).expect("serializes");
                prop_assert_eq!(String::from_utf8(written).expect("UTF-8"), String::from_utf8(serde).expect("UTF-8"));
            }
        }
    }

    /// The SDK's own reading of a GetRecords body: a real client whose HTTP client answers
    /// every call with `body`, read with and without [`TakeRecords`].
    mod against_the_sdk {
        use super::*;
        use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_runtime_api::client::http::{
            http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
        };
        use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
        use base64::Engine as _;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        struct Canned(Bytes);
        impl HttpConnector for Canned {
            fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
                let status = 200.try_into().expect("a status");
                HttpConnectorFuture::ready(Ok(HttpResponse::new(
                    status,
                    SdkBody::from(self.0.clone()),
                )))
            }
        }

        fn client(body: &[u8]) -> aws_sdk_dynamodbstreams::Client {
            let canned = Canned(Bytes::copy_from_slice(body));
            let config = aws_sdk_dynamodbstreams::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
                .endpoint_url("http://127.0.0.1:9")
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(canned.clone())
                }))
                .build();
            aws_sdk_dynamodbstreams::Client::from_conf(config)
        }

        /// (what TakeRecords left, what the SDK read) for one body.
        fn both_readings(body: &[u8]) -> (Option<RecordsPage>, RecordsPage) {
            let client = client(body);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let take = TakeRecords::default();
                let with = client
                    .get_records()
                    .shard_iterator("it")
                    .customize()
                    .interceptor(take.clone())
                    .send()
                    .await
                    .expect("the SDK accepts `{}`");
                assert!(with.records().is_empty(), "the SDK was handed no records");
                let sdk = client
                    .get_records()
                    .shard_iterator("it")
                    .send()
                    .await
                    .expect("the SDK reads the body");
                let sdk = RecordsPage {
                    records: sdk
                        .records()
                        .iter()
                        .filter_map(crate::stream::to_stream_record)
                        .collect(),
                    next_iterator: sdk.next_shard_iterator().map(str::to_owned),
                };
                (take.take(), sdk)
            })
        }

        #[test]
        fn the_reference_answer_reads_the_same_both_ways() {
            let (ours, sdk) = both_readings(ANSWER.as_bytes());
            assert_eq!(ours, Some(sdk));
        }

        #[test]
        fn a_body_the_parse_refuses_is_left_to_the_sdk() {
            // Not GetRecords' JSON: refused here, so the SDK reads the original bytes and
            // reports its own error.
            let body = br#"{"Records": [{"dynamodb": {"SizeBytes": "many"}}]}"#;
            assert!(records_page(body).is_err());
            let client = client(body);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let take = TakeRecords::default();
            let answer = runtime.block_on(
                client
                    .get_records()
                    .shard_iterator("it")
                    .customize()
                    .interceptor(take.clone())
                    .send(),
            );
            assert_eq!(take.take(), None);
            // The SDK read the original bytes (and refused them itself).
            assert!(answer.is_err(), "{answer:?}");
        }

        fn attribute() -> impl Strategy<Value = serde_json::Value> {
            let number = "-?[0-9]{1,25}(\\.[0-9]{1,12})?(E-?[0-9]{1,2})?";
            let bytes = proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| {
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            });
            let leaf = prop_oneof![
                any::<String>().prop_map(|s| json!({"S": s})),
                number.prop_map(|n| json!({"N": n})),
                bytes.clone().prop_map(|b| json!({"B": b})),
                any::<bool>().prop_map(|b| json!({"BOOL": b})),
                Just(json!({"NULL": true})),
                proptest::collection::vec("\\PC{0,6}", 1..4).prop_map(|s| json!({"SS": s})),
                proptest::collection::vec(number, 1..4).prop_map(|n| json!({"NS": n})),
                proptest::collection::vec(bytes, 1..4).prop_map(|b| json!({"BS": b})),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(|l| json!({"L": l})),
                    proptest::collection::btree_map("\\PC{1,6}", inner, 0..4)
                        .prop_map(|m| json!({"M": m})),
                ]
            })
        }

        fn image() -> impl Strategy<Value = Option<serde_json::Value>> {
            proptest::option::of(
                proptest::collection::btree_map("\\PC{1,8}", attribute(), 1..5)
                    .prop_map(|m| serde_json::to_value(m).expect("a map")),
            )
        }

        prop_compose! {
            fn record()(
                name in prop_oneof![Just("INSERT"), Just("MODIFY"), Just("REMOVE")],
                secs in 0_i64..4_000_000_000,
                millis in proptest::option::of(0_u32..1000),
                keys in image(),
                new_image in image(),
                old_image in image(),
                sequence in "[1-9][0-9]{0,39}",
                size in proptest::option::of(0_i64..400_000),
                view in proptest::option::of(prop_oneof![Just("NEW_IMAGE"), Just("NEW_AND_OLD_IMAGES")]),
                ttl in any::<bool>(),
            ) -> serde_json::Value {
                let created = match millis {
                    Some(ms) => json!(secs as f64 + f64::from(ms) / 1000.0),
                    None => json!(secs),
                };
                let mut dynamodb = json!({
                    "ApproximateCreationDateTime": created,
                    "SequenceNumber": sequence,
                });
                for (key, value) in [("Keys", keys), ("NewImage", new_image), ("OldImage", old_image)] {
                    if let Some(value) = value {
                        dynamodb[key] = value;
                    }
                }
                if let Some(size) = size {
                    dynamodb["SizeBytes"] = json!(size);
                }
                if let Some(view) = view {
                    dynamodb["StreamViewType"] = json!(view);
                }
                let mut record = json!({
                    "awsRegion": "eu-west-1", "eventID": format!("id-{sequence}"),
                    "eventName": name, "eventSource": "aws:dynamodb", "eventVersion": "1.1",
                    "dynamodb": dynamodb,
                });
                if ttl {
                    record["userIdentity"] =
                        json!({"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"});
                }
                record
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever DynamoDB Streams can send, the wire parse reads exactly as the SDK's
            /// deserializer followed by `to_stream_record` does.
            #[test]
            fn the_wire_parse_reads_every_answer_as_the_sdk_does(
                records in proptest::collection::vec(record(), 0..6),
                next in proptest::option::of("[A-Za-z0-9|:/+=]{1,40}"),
            ) {
                let mut body = json!({"Records": records});
                if let Some(next) = next {
                    body["NextShardIterator"] = json!(next);
                }
                let body = serde_json::to_vec(&body).expect("serializes");
                let (ours, sdk) = both_readings(&body);
                prop_assert_eq!(ours, Some(sdk));
            }
        }
    }
}
