//! An outage between the relay and AWS: every connection cut for 10 s while rows flow.
//! The relay must report not-ready, keep everything it read, and recover on its own.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{distinct, Fixture, Relay};

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_outage_loses_nothing_and_heals_without_a_restart() {
    let mut f = Fixture::new().await;
    let proxy = Proxy::start(&f.endpoint).await;
    let relay = Relay::start(&f.config(""), &proxy.endpoint);
    relay.wait_ready(DEADLINE).await;

    // The writer talks to the emulator directly; only the relay's traffic crosses the proxy.
    f.write_books(100).await;
    proxy.cut();
    let cut_at = Instant::now();
    f.write_books(100).await;
    // Not ready while it cannot reach the lease table.
    let end = Instant::now() + DEADLINE;
    while relay.get("/readyz").await.0 != 503 {
        assert!(
            Instant::now() < end,
            "never reported not-ready:\n{}",
            relay.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        relay.get("/healthz").await.0,
        200,
        "alive through the outage"
    );
    let remaining = Duration::from_secs(10).saturating_sub(cut_at.elapsed());
    tokio::time::sleep(remaining).await; // the outage lasts 10 s (the scenario, not an assertion)
    proxy.restore();
    f.write_books(100).await;

    let mut received = Vec::new();
    f.receive_until(&mut received, DEADLINE, |r| distinct(r).0.len() >= 300)
        .await;
    relay.wait_ready(DEADLINE).await;
    let (ids, dups) = distinct(&received);
    assert_eq!(ids.len(), 300, "every row arrived");
    assert!(
        relay.metric("outbox_relay_put_events_errors_total").await
            + relay.metric("outbox_relay_stream_errors_total").await
            + relay.metric("outbox_relay_lease_table_errors_total").await
            > 0.0,
        "the outage was seen:\n{}",
        relay.log_text()
    );
    eprintln!(
        "outage: 300 rows delivered, {dups} duplicates (calls cut after EventBridge accepted them)"
    );
    assert!(!relay.log_text().contains("panicked"));
}
