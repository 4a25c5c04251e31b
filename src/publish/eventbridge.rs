//! [`EventPublisher`] on the AWS SDK's PutEvents: classic buses here, Custom Event Buses in
//! `custom_bus.rs`; one call goes to one kind of bus (and, for a Custom Event Bus, one bus).

use std::borrow::Borrow;

use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_types::DateTime;

use super::publisher::{EventPublisher, FailedEntry, PublishError, PutOutcome};
use crate::pipeline::{Bus, BusKind, Entry};

/// EventBridge PutEvents through the SDK, to either kind of bus (failed *entries* come back in
/// the outcome and are retried by the relay).
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    classic: aws_sdk_eventbridge::Client,
    custom: aws_sdk_eventbridgev2::Client,
}

impl EventBridgePublisher {
    #[must_use]
    pub fn new(
        classic: aws_sdk_eventbridge::Client,
        custom: aws_sdk_eventbridgev2::Client,
    ) -> Self {
        Self { classic, custom }
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn put_events<E: Borrow<Entry> + Sync>(
        &self,
        entries: &[E],
    ) -> Result<PutOutcome, PublishError> {
        match call_bus(entries)? {
            Bus::Custom(arn) if entries[0].borrow().is_raw() => {
                super::custom_bus::put_raw_events(&self.custom, arn, entries).await
            }
            Bus::Custom(arn) => super::custom_bus::put_events(&self.custom, arn, entries).await,
            Bus::Classic(_) => {
                let request = entries
                    .iter()
                    .map(|e| to_request_entry(e.borrow()))
                    .collect();
                match self
                    .classic
                    .put_events()
                    .set_entries(Some(request))
                    .send()
                    .await
                {
                    Ok(out) => Ok(failed_entries(&out, entries.len())),
                    Err(e) => Err(publish_error(&e)),
                }
            }
        }
    }
}

/// The bus a call goes to: classic entries may name different buses (each entry names its
/// own), Custom Event Bus entries must all name the same one and go through the same API
/// (`PutEvents` or `PutRawEvents`). A mixed call is refused before it is sent, as an invalid
/// request (the relay then sends its entries one by one).
fn call_bus<E: Borrow<Entry>>(entries: &[E]) -> Result<&Bus, PublishError> {
    let first = entries
        .first()
        .map(|e| &e.borrow().bus)
        .ok_or_else(|| PublishError {
            code: "InvalidInputException".to_owned(),
            message: "a PutEvents call needs at least one entry".to_owned(),
        })?;
    let raw = entries[0].borrow().is_raw();
    let same = |e: &E| {
        let e = e.borrow();
        match first {
            Bus::Classic(_) => e.bus.kind() == BusKind::Classic,
            Bus::Custom(_) => &e.bus == first && e.is_raw() == raw,
        }
    };
    if entries.iter().all(same) {
        Ok(first)
    } else {
        Err(PublishError {
            code: "InvalidInputException".to_owned(),
            message: "one PutEvents call mixes bus kinds, Custom Event Buses, or PutEvents and \
                      PutRawEvents entries"
                .to_owned(),
        })
    }
}

fn to_request_entry(entry: &Entry) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .event_bus_name(entry.bus.id())
        .source(&*entry.source)
        .detail_type(&*entry.detail_type)
        .detail(&entry.detail)
        .set_resources((!entry.resources.is_empty()).then(|| entry.resources.clone()))
        .set_time(entry.time.map(DateTime::from))
        .set_trace_header(entry.trace.as_ref().map(|t| t.xray_header.clone()))
        .build()
}

/// The entries that failed: `Entries[i]` of the output answers `Entries[i]` of the request,
/// failed when it has an `ErrorCode`. An answer with fewer entries than were sent while
/// `FailedEntryCount` > 0 is treated as failing the unanswered ones, so nothing is assumed
/// accepted without evidence.
fn failed_entries(out: &PutEventsOutput, sent: usize) -> PutOutcome {
    let mut failed: Vec<FailedEntry> = out
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            e.error_code().map(|code| FailedEntry {
                index,
                code: code.to_owned(),
                message: e.error_message().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    let answered = out.entries().len();
    if answered < sent && out.failed_entry_count() > 0 {
        failed.extend((answered..sent).map(|index| FailedEntry {
            index,
            code: "InternalFailure".to_owned(),
            message: "no result returned for this entry".to_owned(),
        }));
    }
    PutOutcome {
        failed,
        deduplicated: Vec::new(),
    }
}

pub(super) fn publish_error<E, R>(err: &SdkError<E, R>) -> PublishError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = crate::aws::error_code(err);
    PublishError {
        code: code.to_owned(),
        message: crate::aws::describe_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;

    #[test]
    fn failed_entries_are_matched_to_the_request_by_index() {
        let out = PutEventsOutput::builder()
            .failed_entry_count(2)
            .entries(PutEventsResultEntry::builder().event_id("a").build())
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("ThrottlingException")
                    .error_message("slow down")
                    .build(),
            )
            .entries(PutEventsResultEntry::builder().event_id("c").build())
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("MalformedDetail")
                    .build(),
            )
            .build();
        let outcome = failed_entries(&out, 4);
        assert_eq!(
            outcome.failed,
            vec![
                FailedEntry {
                    index: 1,
                    code: "ThrottlingException".into(),
                    message: "slow down".into()
                },
                FailedEntry {
                    index: 3,
                    code: "MalformedDetail".into(),
                    message: String::new()
                },
            ]
        );
    }

    #[test]
    fn the_trace_header_goes_into_the_request_entry() {
        let entry = crate::pipeline::Entry {
            route: 0,
            bus: Bus::Classic("bus".into()),
            source: "books".into(),
            detail_type: "BookAdded".into(),
            detail: "{}".into(),
            format: crate::pipeline::EventFormat::EventBridge,
            metadata: Vec::new(),
            resources: vec![],
            time: None,
            ordering_key: String::new(),
            event_id: "evt-1".into(),
            trace: Some(Box::new(
                crate::pipeline::TraceContext::from_traceparent(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "traceparent",
                )
                .expect("valid"),
            )),
        };
        let request = to_request_entry(&entry);
        assert_eq!(
            request.trace_header(),
            Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1")
        );
        assert_eq!(request.event_bus_name(), Some("bus"));
        let untraced = to_request_entry(&crate::pipeline::Entry {
            trace: None,
            ..entry
        });
        assert_eq!(untraced.trace_header(), None);
    }

    #[test]
    fn unanswered_entries_count_as_failed_when_the_service_reports_failures() {
        let out = PutEventsOutput::builder()
            .failed_entry_count(1)
            .entries(PutEventsResultEntry::builder().event_id("a").build())
            .build();
        let outcome = failed_entries(&out, 3);
        assert_eq!(
            outcome.failed.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
