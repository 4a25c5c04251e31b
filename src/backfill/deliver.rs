//! Publishing one Scan page's records through the live relay's delivery core
//! ([`crate::relay::Window`]): the same routing, calls cut per lane under each bus kind's
//! limits, call limit, retries with backoff, splits, dead letters and telemetry events as a
//! shard's. The page is settled when every entry is accepted or dead-lettered; only then does
//! its Scan position move on. Order is kept per ordering key within a segment, as live (a
//! backfill replays rows in Scan order, which is no order across keys at all).
//!
//! One difference, on purpose: a dead letter that cannot be stored fails the segment at once
//! (the page is not settled, its position not saved, so `--resume` sends it again), where the
//! live relay retries it forever because it cannot stop reading its stream.

use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::pipeline::Router;
use crate::publish::{DeadLetterError, DeadLetterSink, EventPublisher};
use crate::relay::{Answer, Command, Now, Window};
use crate::stream::StreamRecord;
use crate::telemetry::{Metrics, ShardEvent};

/// How a segment's pages are published.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a, P, D> {
    pub publisher: &'a P,
    pub dead_letters: &'a D,
    pub router: &'a Router,
    /// Where the delivery events are counted (their log lines are what a backfill shows).
    pub metrics: &'a Metrics,
}

/// What became of a page's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Entries accepted (a Custom Event Bus's duplicates included).
    pub published: u64,
    pub dead_lettered: u64,
    /// Records no route matched.
    pub filtered: u64,
}

impl Settled {
    /// Counts what a command reports, and carries out its telemetry.
    fn count(&mut self, event: &ShardEvent<'_>) {
        match event {
            ShardEvent::Published { .. } | ShardEvent::Deduplicated { .. } => {
                self.published += 1;
            }
            ShardEvent::Filtered => self.filtered += 1,
            ShardEvent::DeadLettered { .. } => self.dead_lettered += 1,
            _ => {}
        }
    }
}

/// Publishes `records` (a Scan page as stream records) through `window` until each of their
/// entries is accepted or dead-lettered.
///
/// # Errors
/// The dead-letter sink failed: the page is not settled (its position does not move, so a
/// resume sends it again; nothing is lost).
pub async fn settle<P: EventPublisher, D: DeadLetterSink>(
    window: &mut Window,
    records: Vec<StreamRecord>,
    d: &Delivery<'_, P, D>,
) -> Result<Settled, DeadLetterError> {
    let mut settled = Settled::default();
    let mut out = Vec::new();
    window.push_page(records, d.router, Now::read(), &mut out);
    let mut calls = FuturesUnordered::new();
    loop {
        for command in std::mem::take(&mut out) {
            match command {
                Command::WriteLetter(id, letter) => {
                    d.dead_letters.send(&letter).await?;
                    let stored = ShardEvent::DeadLettered { letter: &letter };
                    settled.count(&stored);
                    stored.emit(d.metrics);
                    window.letter_stored(id);
                }
                Command::Emit(event) => {
                    settled.count(&event);
                    event.emit(d.metrics);
                }
                // The shard loop's own commands: a window never asks for them.
                Command::Read
                | Command::WriteCheckpoint { .. }
                | Command::Renewed { .. }
                | Command::Exit(_) => {}
            }
        }
        while window.advance().is_some() {}
        if window.is_empty() {
            return Ok(settled);
        }
        let now = Instant::now();
        while let Some(batch) = window.next_call(now) {
            let (entries, ticket) = window.start_call(&batch, SystemTime::now());
            calls.push(async move {
                ShardEvent::CallStarted.emit(d.metrics);
                let sent = Instant::now();
                let result = d.publisher.put_events(&entries).await;
                let round_trip = sent.elapsed();
                ShardEvent::CallAnswered { round_trip }.emit(d.metrics);
                Answer {
                    batch,
                    result,
                    ticket,
                    round_trip,
                }
            });
        }
        let retry_at = window.next_retry().filter(|&t| t > now);
        tokio::select! {
            Some(answer) = calls.next() => window.answered(&answer, d.router, Now::read(), &mut out),
            () = sleep_until(retry_at), if retry_at.is_some() => {}
            // Neither a call out nor a retry ahead, with records held: only a retry due at
            // this very instant; look again.
            else => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Sleeps until `at` (never, for `None`: the select arm is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! Backfill's page settling against the shared fakes: throttled entries are retried, a
    //! call refused because of one entry is split so only that entry is dead-lettered, and a
    //! dead-letter sink that fails leaves the page unsettled.

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::Config;
    use crate::relay::{Order, WorkerSettings};
    use crate::stream::SequenceNumber;
    use crate::test_support::{Behaviour, FakeDeadLetters, FakePublisher};

    fn config() -> Config {
        Config::from_toml(
            "[source]\ntable_name = \"T\"\n[publisher]\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\"\n[[routes]]\nname = \"all\"\nevent_bus_name = \"b\"\nsource = \"S\"\ndetail_type = \"T\"\nunmarshall = \"NewImage\"\n",
        )
        .expect("valid")
    }

    /// Rows `from..to` as backfilled stream records (`NewImage.n` = the row number).
    fn page(from: u64, to: u64) -> Vec<StreamRecord> {
        (from..to)
            .map(|n| {
                StreamRecord::new(
                    SequenceNumber::new(format!("backfill-{n}")),
                    None,
                    &json!({"eventID": format!("backfill-{n}"), "eventName": "INSERT",
                    "dynamodb": {"Keys": {"pk": {"S": format!("k{n}")}},
                                 "NewImage": {"n": {"N": n.to_string()}}}}),
                )
            })
            .collect()
    }

    async fn settle_pages(
        behaviour: Behaviour,
        dead_letters: &FakeDeadLetters,
    ) -> (Vec<Result<Settled, DeadLetterError>>, Arc<FakePublisher>) {
        let config = config();
        let router = config
            .router_for(&config.source.streams()[0])
            .expect("valid");
        let publisher = Arc::new(FakePublisher::new(behaviour, None));
        let metrics = Metrics::new();
        let d = Delivery {
            publisher: &*publisher,
            dead_letters,
            router: &router,
            metrics: &metrics,
        };
        let settings = Arc::new(WorkerSettings::from_config(&config));
        let mut window = Window::new(
            Arc::clone(&settings),
            "arn:s".into(),
            "backfill-segment-0".into(),
            Order::for_in_flight(settings.max_in_flight),
        );
        let mut results = Vec::new();
        for (from, to) in [(0, 25), (25, 50)] {
            let result = settle(&mut window, page(from, to), &d).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break; // as a segment does: its window is dropped with it
            }
        }
        (results, publisher)
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_entries_are_retried_until_each_page_is_published() {
        let dead_letters = FakeDeadLetters::default();
        let (results, publisher) =
            settle_pages(Behaviour::ThrottleFirstAttemptOfEvery(3), &dead_letters).await;
        for r in &results {
            let settled = r.as_ref().expect("settled");
            assert_eq!((settled.published, settled.dead_lettered), (25, 0));
        }
        let mut accepted = publisher.accepted.lock().expect("lock").clone();
        accepted.sort_unstable();
        assert_eq!(accepted, (0..50).collect::<Vec<u64>>(), "each row once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_refused_because_of_one_row_is_split_and_only_that_row_is_dead_lettered() {
        let dead_letters = FakeDeadLetters::default();
        let (results, publisher) = settle_pages(
            Behaviour::RejectCallContaining(7, "ValidationException"),
            &dead_letters,
        )
        .await;
        let first = results[0].as_ref().expect("settled");
        assert_eq!((first.published, first.dead_lettered), (24, 1));
        let stored = dead_letters.stored.lock().expect("lock");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].sequence_number, "backfill-7");
        assert_eq!(stored[0].shard_id, "backfill-segment-0");
        assert!(!publisher.accepted.lock().expect("lock").contains(&7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_letter_sink_that_fails_leaves_the_page_unsettled() {
        let dead_letters = FakeDeadLetters::default();
        dead_letters
            .fail_first
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let (results, _) =
            settle_pages(Behaviour::RejectEntry(3, "MalformedDetail"), &dead_letters).await;
        assert!(results[0].is_err(), "the page's position must not move");
    }
}
