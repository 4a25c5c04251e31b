//! [`DeadLetterSink`] on an SQS queue: one message per dead letter.

use aws_smithy_types::error::display::DisplayErrorContext;

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, MAX_MESSAGE_BYTES};

/// Sends dead letters to an SQS queue (by URL). Message attributes carry the route, stage and
/// error code so operators can filter without parsing the body.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetterSink {
    #[must_use]
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

fn attribute(value: &str) -> aws_sdk_sqs::types::MessageAttributeValue {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

impl DeadLetterSink for SqsDeadLetterSink {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        // Attributes count towards the 256 KiB limit too: leave them room.
        let body = letter.to_message(MAX_MESSAGE_BYTES - 1024);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("route", attribute(&letter.route))
            .message_attributes("stage", attribute(letter.stage.as_str()))
            .message_attributes("error_code", attribute(&letter.error_code))
            .send()
            .await
            .map(drop)
            .map_err(|e| DeadLetterError {
                code: crate::aws::error_code(&e).to_owned(),
                message: DisplayErrorContext(&e).to_string(),
            })
    }
}
