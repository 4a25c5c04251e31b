//! The [`EventPublisher`] seam: one PutEvents call, in domain types.

use std::borrow::Borrow;
use std::future::Future;

use crate::pipeline::Entry;

/// An entry EventBridge did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Index of the entry in the request.
    pub index: usize,
    /// `Entries[i].ErrorCode` (e.g. `ThrottlingException`, `InternalFailure`).
    pub code: String,
    pub message: String,
}

/// The result of a PutEvents call that got an answer: which entries failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutOutcome {
    pub failed: Vec<FailedEntry>,
    /// Indices of entries a Custom Event Bus accepted as repeats of an entry it already had
    /// (`SuccessCode: DEDUPLICATED`): settled, and not stored again.
    pub deduplicated: Vec<usize>,
}

/// The whole call failed (nothing was accepted, as far as we can know).
#[derive(Debug, thiserror::Error)]
#[error("PutEvents failed ({code}): {message}")]
pub struct PublishError {
    /// The service error code, or `DispatchFailure`/`Timeout`/... for transport failures.
    pub code: String,
    pub message: String,
}

/// EventBridge as the relay uses it.
pub trait EventPublisher: Send + Sync + 'static {
    /// Sends `entries` in one PutEvents call: all to classic buses (at most 10, 1 MiB) or
    /// all to one Custom Event Bus (at most 100, 1 MiB). The entries are borrowed: the relay
    /// lends the ones its window holds (`Arc<Entry>`), a caller with its own passes `Entry`.
    fn put_events<E: Borrow<Entry> + Sync>(
        &self,
        entries: &[E],
    ) -> impl Future<Output = Result<PutOutcome, PublishError>> + Send;
}
