//! The local runner (the `book-consumer` binary without the Lambda runtime): it long-polls the
//! queue a rule feeds, applies each event through the same handler, deletes what it handled,
//! and leaves what failed for redelivery.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use books_common::testing::{create_table, endpoint, sdk_config, unique};

/// Stops the runner when the test ends.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_runner_applies_queued_events_and_deletes_them() {
    let config = sdk_config();
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let presentation = create_table(&ddb, "presentation", "name", None).await;
    let idempotency = create_table(&ddb, "idempotency", "id", None).await;
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("consumer"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let _runner = Runner(
        Command::new(env!("CARGO_BIN_EXE_book-consumer"))
            .env("BOOK_CONSUMER_QUEUE_URL", &queue_url)
            .env("PRESENTATION_TABLE", &presentation)
            .env("IDEMPOTENCY_TABLE", &idempotency)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdout(Stdio::null())
            .spawn()
            .expect("book-consumer starts"),
    );

    // An event as a rule delivers it (the body is the event), sent twice, and a poison message.
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eventbridge-book-added.json"),
    )
    .expect("fixture");
    for body in [event.as_str(), event.as_str(), "not an event"] {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let item = ddb
            .get_item()
            .table_name(&presentation)
            .key("name", AttributeValue::S("Team Topologies".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item;
        let visible = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
            visible.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        // Applied once, both deliveries deleted, the poison message still there (redelivered).
        if let Some(item) = &item {
            assert_eq!(item["timesApplied"], AttributeValue::N("1".into()));
            if left == 1 {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "runner did not settle: item {item:?}, {left} messages left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
