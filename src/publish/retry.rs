//! Which PutEvents failures are worth retrying. The one place that classifies them.

/// What to do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: retry with backoff.
    Retry,
    /// The entry itself is wrong; retrying cannot help (poison record).
    GiveUp,
}

/// Classifies an entry's `ErrorCode` (or a whole call's error code).
///
/// Retried: throttling (`ThrottlingException`, `LimitExceededException`), service faults
/// (`InternalFailure`, `InternalException`, `ServiceUnavailable`) and transport failures
/// (`DispatchFailure`, `Timeout`, `ResponseError`). Everything else, notably
/// `InvalidArgument`, `MalformedDetail`, `ResourceNotFoundException` (no such bus),
/// `AccessDeniedException` and `ValidationException`, describes the request itself.
// NOTE: AccessDenied and a missing bus are configuration problems an operator can fix; issue 5
// (dead letters) decides whether they block or dead-letter. Until then they are not retried.
#[must_use]
pub fn is_retryable_entry_code(code: &str) -> Disposition {
    match code {
        "ThrottlingException"
        | "LimitExceededException"
        | "InternalFailure"
        | "InternalException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "DispatchFailure"
        | "Timeout"
        | "ResponseError"
        | "Unknown" => Disposition::Retry,
        _ => Disposition::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_faults_are_retried_validation_errors_are_not() {
        for code in ["ThrottlingException", "InternalFailure", "DispatchFailure"] {
            assert_eq!(is_retryable_entry_code(code), Disposition::Retry, "{code}");
        }
        for code in [
            "InvalidArgument",
            "MalformedDetail",
            "AccessDeniedException",
        ] {
            assert_eq!(is_retryable_entry_code(code), Disposition::GiveUp, "{code}");
        }
    }
}
