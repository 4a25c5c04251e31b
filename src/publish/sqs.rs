//! [`DeadLetterSink`] on an SQS queue: one message per dead letter.

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, MAX_MESSAGE_BYTES};

/// Sends dead letters to an SQS queue. Message attributes carry the route, stage and error
/// code so operators can filter without parsing the body.
#[derive(Debug)]
pub struct SqsDeadLetterSink {
    client: aws_sdk_sqs::Client,
    /// Set at construction (by URL) or on the first successful GetQueueUrl (by name), so an
    /// unreachable SQS at start-up is retried like any failed dead-letter write.
    queue_url: tokio::sync::OnceCell<String>,
    queue_name: Option<String>,
}

impl SqsDeadLetterSink {
    /// A sink for the queue at `queue_url`.
    #[must_use]
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: tokio::sync::OnceCell::new_with(Some(queue_url.into())),
            queue_name: None,
        }
    }

    /// A sink for the queue named `queue_name`, resolved to its URL on first use.
    #[must_use]
    pub fn by_name(client: aws_sdk_sqs::Client, queue_name: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: tokio::sync::OnceCell::new(),
            queue_name: Some(queue_name.into()),
        }
    }

    async fn url(&self) -> Result<&str, DeadLetterError> {
        self.queue_url
            .get_or_try_init(|| async {
                let name = self.queue_name.as_deref().unwrap_or_default();
                self.client
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(|e| DeadLetterError {
                        code: crate::aws::error_code(&e).to_owned(),
                        message: format!(
                            "resolving queue {name:?}: {}",
                            crate::aws::describe_error(&e)
                        ),
                    })?
                    .queue_url
                    .ok_or_else(|| DeadLetterError {
                        code: "NoQueueUrl".into(),
                        message: format!("no URL returned for queue {name:?}"),
                    })
            })
            .await
            .map(String::as_str)
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
        // Attributes count towards the message size limit too: leave them room.
        let body = letter.to_message(MAX_MESSAGE_BYTES - 1024);
        let queue_url = self.url().await?;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .message_attributes("route", attribute(&letter.route))
            .message_attributes("stage", attribute(letter.stage.as_str()))
            .message_attributes("error_code", attribute(&letter.error_code))
            .send()
            .await
            .map(drop)
            .map_err(|e| DeadLetterError {
                code: crate::aws::error_code(&e).to_owned(),
                message: crate::aws::describe_error(&e),
            })
    }
}
