//! Which failures are worth retrying. The one place that classifies them, for a failed entry
//! (`Entries[i].ErrorCode`) and for a failed PutEvents call alike, on either kind of bus (the
//! Custom Event Bus API, eventsv2, documents `ThrottlingException`, `InternalException`,
//! `InvalidStateException`, `AccessDeniedException`, `ResourceNotFoundException` and
//! `InvalidInputException` for PutEvents).

/// What to do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient, or about the environment rather than the event: retry with backoff. The shard
    /// waits; metrics and logs show it.
    Retry,
    /// About the event itself: retrying cannot help. The entry is dead-lettered (a whole call
    /// failing this way is first split into single entries to find the culprit).
    GiveUp,
}

/// Classifies an error code.
///
/// Retried:
/// - throttling: `ThrottlingException`, `LimitExceededException`;
/// - service faults: `InternalFailure`, `InternalException`, `InternalServerError`,
///   `ServiceUnavailable(Exception)`;
/// - `InvalidStateException` (eventsv2: "an event bus that is still being created cannot
///   accept events"): the bus will be ready;
/// - transport: `DispatchFailure`, `Timeout`, `ResponseError`, `Unknown` (no service answer);
/// - credentials and permissions (`AccessDeniedException`, `NotAuthorizedForSourceException`,
///   `UnrecognizedClientException`, `ExpiredTokenException`, `InvalidSignatureException`):
///   every event would fail alike until an operator fixes the role, and dead-lettering them
///   all would turn a misconfiguration into a redrive chore.
///
/// Everything else gives up: `InvalidArgument`, `MalformedDetail`, `ValidationException`,
/// `InvalidInputException` (eventsv2's; a whole call refused this way is split to find the
/// entry), `ResourceNotFoundException` (the route's bus does not exist), and unknown codes
/// from the service (an answer about the request, so retrying it unchanged cannot succeed).
#[must_use]
pub fn classify(code: &str) -> Disposition {
    match code {
        "ThrottlingException"
        | "LimitExceededException"
        | "InternalFailure"
        | "InternalException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InvalidStateException"
        | "DispatchFailure"
        | "Timeout"
        | "ResponseError"
        | "Unknown"
        | "AccessDeniedException"
        | "NotAuthorizedForSourceException"
        | "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "InvalidSignatureException" => Disposition::Retry,
        _ => Disposition::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_environment_errors_are_retried_event_errors_are_not() {
        for code in [
            "ThrottlingException",
            "InternalFailure",
            "DispatchFailure",
            "AccessDeniedException",
            "InternalException",
            "InvalidStateException",
        ] {
            assert_eq!(classify(code), Disposition::Retry, "{code}");
        }
        for code in [
            "InvalidArgument",
            "MalformedDetail",
            "ResourceNotFoundException",
            "ValidationException",
            "InvalidInputException",
        ] {
            assert_eq!(classify(code), Disposition::GiveUp, "{code}");
        }
    }
}
