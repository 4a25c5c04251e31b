//! A backfill's progress: its counters, read every `progress_interval` (and once at the end)
//! as a [`Progress`] handed to the run's observer. How it shows is the observer's: the command
//! line draws a bar on a terminal and writes JSON lines otherwise (see `src/render.rs`); a relay
//! recovering a gap logs it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::SegmentProgress;

/// The run's counters, shared by its segments.
#[derive(Debug, Default)]
pub struct Counters {
    pub scanned: AtomicU64,
    pub published: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub skipped: AtomicU64,
    pub segments_done: AtomicU64,
}

/// A reading of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub scanned: u64,
    pub published: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub segments_done: u64,
}

impl Counters {
    /// Adds what a resumed segment had already done.
    pub fn add_done(&self, p: &SegmentProgress) {
        self.scanned.fetch_add(p.scanned, Ordering::Relaxed);
        self.published.fetch_add(p.published, Ordering::Relaxed);
        self.dead_lettered
            .fetch_add(p.dead_lettered, Ordering::Relaxed);
        self.skipped.fetch_add(p.skipped, Ordering::Relaxed);
        if p.done {
            self.segments_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            scanned: self.scanned.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            segments_done: self.segments_done.load(Ordering::Relaxed),
        }
    }
}

/// Rows scanned per second since the start (this process's share: `at_start` was done by an
/// earlier run), and the seconds left for the rest of `total` rows (the table's approximate
/// item count, which DynamoDB updates about every six hours) at that rate.
#[must_use]
pub fn rate_and_eta(
    now: Snapshot,
    at_start: Snapshot,
    elapsed: Duration,
    total: Option<u64>,
) -> (f64, Option<u64>) {
    let done = now.scanned.saturating_sub(at_start.scanned);
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = total
        .filter(|_| rate > 0.0)
        .map(|t| (t.saturating_sub(now.scanned) as f64 / rate).ceil() as u64);
    (rate, eta)
}

/// One reading of a run's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub now: Snapshot,
    /// Rows scanned per second by this process.
    pub rate: f64,
    /// Seconds left, at that rate, for the rest of `total`.
    pub eta: Option<u64>,
    /// The table's approximate item count.
    pub total: Option<u64>,
    pub segments: u32,
    /// The run's last reading.
    pub last: bool,
}

impl Progress {
    /// The JSON progress line.
    #[must_use]
    pub fn json_line(&self) -> Value {
        json_line(self.now, self.rate, self.eta, self.total, self.segments)
    }
}

/// The JSON progress line.
#[must_use]
pub fn json_line(
    now: Snapshot,
    rate: f64,
    eta: Option<u64>,
    total: Option<u64>,
    segments: u32,
) -> Value {
    json!({
        "backfill": "progress",
        "scanned": now.scanned,
        "published": now.published,
        "dead_lettered": now.dead_lettered,
        "skipped": now.skipped,
        "segments_done": now.segments_done,
        "segments": segments,
        "items_per_second": (rate * 10.0).round() / 10.0,
        "table_item_count": total,
        "eta_seconds": eta,
    })
}

/// Hands `counters` to `observe` every `interval` until `stop`, then once more (`last`).
pub async fn report(
    counters: Arc<Counters>,
    total: Option<u64>,
    segments: u32,
    interval: Duration,
    stop: CancellationToken,
    observe: super::Observer,
) {
    let started = Instant::now();
    let at_start = counters.snapshot();
    let tick = |last: bool| {
        let now = counters.snapshot();
        let (rate, eta) = rate_and_eta(now, at_start, started.elapsed(), total);
        observe(super::BackfillEvent::Progress(Progress {
            now,
            rate,
            eta,
            total,
            segments,
            last,
        }));
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => tick(false),
            () = stop.cancelled() => break,
        }
    }
    tick(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_this_runs_rows_and_eta_the_rest_of_the_table() {
        let at_start = Snapshot {
            scanned: 1000,
            ..Snapshot::default()
        };
        let now = Snapshot {
            scanned: 3000,
            ..Snapshot::default()
        };
        let (rate, eta) = rate_and_eta(now, at_start, Duration::from_secs(10), Some(10_000));
        assert!((rate - 200.0).abs() < f64::EPSILON);
        assert_eq!(eta, Some(35));
        assert_eq!(
            rate_and_eta(now, at_start, Duration::from_secs(10), None).1,
            None
        );
        assert_eq!(
            rate_and_eta(at_start, at_start, Duration::from_secs(1), Some(5)).1,
            None
        );
        let line = json_line(now, rate, eta, Some(10_000), 4);
        assert_eq!(line["scanned"], 3000);
        assert_eq!(line["eta_seconds"], 35);
        assert_eq!(line["segments"], 4);
    }
}
