//! The idempotency store on the emulator's DynamoDB: claims, completion, duplicates, takeover
//! of an abandoned claim, and that a late release never frees a claim another delivery took.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use books_common::testing::{create_table, sdk_config};
use dynamodb_idempotency::{Begin, Error, Idempotency, Outcome, Settings};

async fn store(in_progress_timeout: Duration) -> (Idempotency, aws_sdk_dynamodb::Client, String) {
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config());
    let table = create_table(&ddb, "idempotency", "id", None).await;
    let settings = Settings {
        expires_after: Duration::from_secs(3600),
        in_progress_timeout,
    };
    (Idempotency::new(ddb.clone(), &table, settings), ddb, table)
}

/// Claims `key`, retrying while a twin holds it, until `deadline`.
async fn claim_within(store: &Idempotency, key: &str, deadline: Duration) -> Begin {
    let end = Instant::now() + deadline;
    loop {
        match store.begin(key).await {
            Err(Error::InProgress(_)) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.expect("begin"),
        }
    }
}

#[tokio::test]
async fn run_applies_once_and_returns_the_stored_result_to_duplicates() {
    let (store, _, _) = store(Duration::from_secs(30)).await;
    let first = store
        .run("k", || async { Ok::<_, Error>(7) }, |v| Some(v.to_string()))
        .await
        .expect("ran");
    assert_eq!(first, Outcome::Ran(7));
    let second = store
        .run("k", || async { Ok::<_, Error>(8) }, |v| Some(v.to_string()))
        .await
        .expect("duplicate");
    assert_eq!(second, Outcome::Duplicate(Some("7".into())));
}

#[tokio::test]
async fn a_late_release_does_not_free_a_claim_taken_over_by_another_delivery() {
    let (store, ddb, table) = store(Duration::from_secs(1)).await;
    let Begin::Claimed(abandoned) = store.begin("k").await.expect("begin") else {
        panic!("first claim");
    };
    // The first delivery stalls past its in-progress expiry; a retry takes the key over.
    let Begin::Claimed(current) = claim_within(&store, "k", Duration::from_secs(15)).await else {
        panic!("taken over");
    };
    // The stalled delivery fails and releases: the current claim must survive.
    abandoned.release().await.expect("release is a no-op");
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S("k".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item
        .expect("the current claim is still there");
    assert_eq!(item["status"], AttributeValue::S("INPROGRESS".into()));
    current.complete(None).await.expect("complete");
    assert!(matches!(
        store.begin("k").await.expect("begin"),
        Begin::AlreadyCompleted(None)
    ));
}
