//! PutEvents to a Custom Event Bus (`eventsv2`, `aws-sdk-eventbridgev2`): the SDK translation
//! as pure functions. One call carries entries of one bus (`EventBusArn` is a request field).
//!
//! Each entry carries `SystemMetadata.EventGroupId` = its ordering key and
//! `SystemMetadata.DeduplicationId` = its stable event id, so a FIFO subscriber gets a group in
//! publish order and a re-sent entry (after a crash, a timeout, a redrive) is answered
//! `DEDUPLICATED` and not stored twice. Request-level `DeduplicationConfiguration`
//! (content-based dedup, billed per event) is never set.
//!
//! A `cloudevents` route's entries go through `PutRawEvents` instead: the CloudEvent as
//! `Data`, `SystemMetadata.ContentType` `application/json`, the same two ids, and the trace
//! context and the route's own keys as `Metadata` (see `pipeline::cloudevent`). Its answer has
//! the same shape as `PutEvents`' and is read by the same rule.

use std::borrow::Borrow;

use aws_sdk_eventbridgev2::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridgev2::types::{
    PutEventsRequestEntry, PutEventsSystemMetadata, PutRawEventsRequestEntry,
    PutRawEventsSystemMetadata, SuccessCode,
};
use aws_smithy_types::{Blob, DateTime};

use super::publisher::{FailedEntry, PublishError, PutOutcome};
use crate::pipeline::Entry;

/// Sends `entries` (one bus, at most 100, within 1 MiB) in one Custom Event Bus PutEvents call.
pub(super) async fn put_events<E: Borrow<Entry>>(
    client: &aws_sdk_eventbridgev2::Client,
    bus_arn: &str,
    entries: &[E],
) -> Result<PutOutcome, PublishError> {
    let request = entries
        .iter()
        .map(|e| to_request_entry(e.borrow()))
        .collect::<Result<Vec<_>, _>>()?;
    match client
        .put_events()
        .event_bus_arn(bus_arn)
        .set_entries(Some(request))
        .send()
        .await
    {
        Ok(out) => Ok(outcome(&out, entries.len())),
        Err(e) => Err(super::eventbridge::publish_error(&e)),
    }
}

/// Sends `entries` (one bus, all `cloudevents`, at most 100, within 1 MiB) in one
/// `PutRawEvents` call.
pub(super) async fn put_raw_events<E: Borrow<Entry>>(
    client: &aws_sdk_eventbridgev2::Client,
    bus_arn: &str,
    entries: &[E],
) -> Result<PutOutcome, PublishError> {
    let request = entries
        .iter()
        .map(|e| to_raw_request_entry(e.borrow()))
        .collect::<Result<Vec<_>, _>>()?;
    match client
        .put_raw_events()
        .event_bus_arn(bus_arn)
        .set_entries(Some(request))
        .send()
        .await
    {
        Ok(out) => Ok(read_answers(
            out.entries()
                .iter()
                .map(|e| (e.error_code(), e.success_code(), e.error_message())),
            entries.len(),
        )),
        Err(e) => Err(super::eventbridge::publish_error(&e)),
    }
}

/// The SDK's `PutRawEvents` entry (see the module documentation).
pub(super) fn to_raw_request_entry(
    entry: &Entry,
) -> Result<PutRawEventsRequestEntry, PublishError> {
    let invalid = |e: aws_smithy_types::error::operation::BuildError| PublishError {
        code: "InvalidInputException".to_owned(),
        message: format!("could not build the request entry: {e}"),
    };
    let system = PutRawEventsSystemMetadata::builder()
        .content_type(crate::pipeline::cloudevent::RAW_CONTENT_TYPE)
        .event_group_id(&entry.ordering_key)
        .deduplication_id(&entry.event_id)
        .build()
        .map_err(invalid)?;
    let metadata = (!entry.metadata.is_empty()).then(|| entry.metadata.iter().cloned().collect());
    PutRawEventsRequestEntry::builder()
        .data(Blob::new(entry.detail.as_bytes()))
        .set_metadata(metadata)
        .system_metadata(system)
        .build()
        .map_err(invalid)
}

/// The SDK's request entry. Fails only if a required field is missing, which routing rules
/// out (`Source` and `DetailType` are checked at start-up).
pub(super) fn to_request_entry(entry: &Entry) -> Result<PutEventsRequestEntry, PublishError> {
    let metadata = PutEventsSystemMetadata::builder()
        .event_group_id(&entry.ordering_key)
        .deduplication_id(&entry.event_id)
        .build();
    PutEventsRequestEntry::builder()
        .source(&*entry.source)
        .detail_type(&*entry.detail_type)
        .detail(&entry.detail)
        .set_resources((!entry.resources.is_empty()).then(|| entry.resources.clone()))
        .set_time(entry.time.map(DateTime::from))
        .system_metadata(metadata)
        .build()
        .map_err(|e| PublishError {
            code: "InvalidInputException".to_owned(),
            message: format!("could not build the request entry: {e}"),
        })
}

/// The answer in domain terms: `Entries[i]` answers request entry `i` ("in the same order as
/// the request entries"). `PUBLISHED` and `DEDUPLICATED` both accept an entry; an entry with
/// an `ErrorCode`, or with no success code at all, failed (nothing is assumed accepted
/// without evidence), as does every entry the answer is missing.
pub(super) fn outcome(out: &PutEventsOutput, sent: usize) -> PutOutcome {
    read_answers(
        out.entries()
            .iter()
            .map(|e| (e.error_code(), e.success_code(), e.error_message())),
        sent,
    )
}

/// The rule of [`outcome`] over `(ErrorCode, SuccessCode, ErrorMessage)` per answered entry,
/// shared by `PutEvents` and `PutRawEvents` (their result entries have the same fields).
fn read_answers<'a>(
    answers: impl Iterator<Item = (Option<&'a str>, Option<&'a SuccessCode>, Option<&'a str>)>,
    sent: usize,
) -> PutOutcome {
    let mut result = PutOutcome::default();
    let mut answered = 0;
    for (index, (code, success, message)) in answers.enumerate().take(sent) {
        answered += 1;
        match (code, success) {
            (None, Some(SuccessCode::Published)) => {}
            (None, Some(SuccessCode::Deduplicated)) => result.deduplicated.push(index),
            (code, success) => result.failed.push(FailedEntry {
                index,
                code: code.unwrap_or("InternalException").to_owned(),
                message: message.map_or_else(
                    || format!("no error message; success code {success:?}"),
                    str::to_owned,
                ),
            }),
        }
    }
    result
        .failed
        .extend((answered..sent).map(|index| FailedEntry {
            index,
            code: "InternalException".to_owned(),
            message: "no result returned for this entry".to_owned(),
        }));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Bus;
    use aws_sdk_eventbridgev2::types::PutEventsResultEntry;

    fn entry(key: &str, id: &str) -> Entry {
        Entry {
            route: 0,
            bus: Bus::Custom("arn".into()),
            source: "books".into(),
            detail_type: "BookAdded".into(),
            detail: "{}".into(),
            format: crate::pipeline::EventFormat::EventBridge,
            metadata: Vec::new(),
            resources: vec![],
            time: None,
            ordering_key: key.into(),
            event_id: id.into(),
            trace: None,
        }
    }

    #[test]
    fn the_ordering_key_is_the_group_and_the_event_id_the_dedup_id() {
        let request = to_request_entry(&entry("book-1", "evt-9")).expect("valid");
        let metadata = request.system_metadata().expect("metadata");
        assert_eq!(metadata.event_group_id(), Some("book-1"));
        assert_eq!(metadata.deduplication_id(), Some("evt-9"));
        assert_eq!(
            request.resources(),
            &[] as &[String],
            "no empty Resources list"
        );
    }

    #[test]
    fn a_cloudevents_entry_is_raw_data_with_its_content_type_ids_and_metadata() {
        let mut e = entry("book-1", "evt-9");
        e.format = crate::pipeline::EventFormat::CloudEvents;
        e.detail = r#"{"specversion":"1.0","data":{}}"#.into();
        e.metadata = vec![("traceparent".into(), "00-aa-bb-01".into())];
        let request = to_raw_request_entry(&e).expect("valid");
        assert_eq!(request.data().as_ref(), e.detail.as_bytes());
        let system = request.system_metadata().expect("system metadata");
        assert_eq!(system.content_type(), "application/json");
        assert_eq!(system.event_group_id(), Some("book-1"));
        assert_eq!(system.deduplication_id(), Some("evt-9"));
        let metadata = request.metadata().expect("metadata");
        assert_eq!(
            metadata.get("traceparent").map(String::as_str),
            Some("00-aa-bb-01")
        );
        e.metadata.clear();
        let untraced = to_raw_request_entry(&e).expect("valid");
        assert!(untraced.metadata().is_none(), "no empty Metadata map");
    }

    #[test]
    fn published_and_deduplicated_accept_errors_and_silence_fail() {
        let ok = |code: SuccessCode| PutEventsResultEntry::builder().success_code(code).build();
        let out = PutEventsOutput::builder()
            .failed_entry_count(2)
            .entries(ok(SuccessCode::Published))
            .entries(ok(SuccessCode::Deduplicated))
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("ThrottlingException")
                    .error_message("group over its rate")
                    .build(),
            )
            .entries(PutEventsResultEntry::builder().build())
            .build();
        let outcome = outcome(&out, 5);
        assert_eq!(outcome.deduplicated, vec![1]);
        let failed: Vec<(usize, &str)> = outcome
            .failed
            .iter()
            .map(|f| (f.index, f.code.as_str()))
            .collect();
        assert_eq!(
            failed,
            vec![
                (2, "ThrottlingException"),
                (3, "InternalException"),
                (4, "InternalException")
            ],
            "an entry without a success code, and one not answered, are not assumed accepted"
        );
    }
}
