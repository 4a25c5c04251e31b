//! Publishing entries to EventBridge: the [`EventPublisher`] seam, its SDK implementation, the
//! classification of failures into retry or give up, and the dead-letter sinks for what cannot
//! be delivered.

mod configured;
mod custom_bus;
mod dead_letter;
mod eventbridge;
mod publisher;
mod retry;
mod sqs;

pub use configured::{configured_dead_letter_sink, ConfiguredDeadLetters};
pub use dead_letter::{
    rfc3339, Attempts, DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterSink,
    FileDeadLetterSink, LogDeadLetterSink, Origin, Stage, MAX_MESSAGE_BYTES,
};
pub use eventbridge::EventBridgePublisher;
pub use publisher::{EventPublisher, FailedEntry, PublishError, PutOutcome};
pub use retry::{classify, Disposition};
pub use sqs::SqsDeadLetterSink;
