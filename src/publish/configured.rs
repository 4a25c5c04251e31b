//! The dead-letter sink a config selects (`[dead_letter]`): an SQS queue by URL or name, a
//! JSON-lines file, or the log. Built here, beside the sinks, so `run` and `backfill` share it.

use tracing::warn;

use super::dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterSink, FileDeadLetterSink, LogDeadLetterSink,
};
use super::sqs::SqsDeadLetterSink;
use crate::config::Config;

/// Builds the dead-letter sink the config asks for; with none, the log (and a warning says so).
pub fn configured_dead_letter_sink(
    config: &Config,
    sqs: aws_sdk_sqs::Client,
) -> ConfiguredDeadLetters {
    let d = &config.dead_letter;
    if let Some(url) = &d.queue_url {
        return ConfiguredDeadLetters::Sqs(SqsDeadLetterSink::new(sqs, url.clone()));
    }
    if let Some(name) = &d.queue_name {
        return ConfiguredDeadLetters::Sqs(SqsDeadLetterSink::by_name(sqs, name.clone()));
    }
    if let Some(path) = &d.file {
        return ConfiguredDeadLetters::File(FileDeadLetterSink::new(path.clone()));
    }
    warn!("No [dead_letter] sink configured: undeliverable events are logged at ERROR with their payload.");
    ConfiguredDeadLetters::Log(LogDeadLetterSink)
}

/// The dead-letter sink the config asks for.
pub enum ConfiguredDeadLetters {
    Sqs(SqsDeadLetterSink),
    File(FileDeadLetterSink),
    Log(LogDeadLetterSink),
}

impl DeadLetterSink for ConfiguredDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        match self {
            Self::Sqs(s) => s.send(letter).await,
            Self::File(s) => s.send(letter).await,
            Self::Log(s) => s.send(letter).await,
        }
    }
}
