//! Publishing entries to EventBridge: the [`EventPublisher`] seam, its SDK implementation and
//! the classification of failures into retry or give up.

mod eventbridge;
mod publisher;
mod retry;

pub use eventbridge::EventBridgePublisher;
pub use publisher::{EventPublisher, FailedEntry, PublishError, PutOutcome};
pub use retry::{is_retryable_entry_code, Disposition};
