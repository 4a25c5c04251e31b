//! Liveness and readiness, shared between the supervisor (the single writer) and the HTTP
//! endpoint (readers).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Health state. Cheap to clone; every clone sees the same state.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    /// Milliseconds after `started` of the supervisor loop's last tick.
    last_tick_ms: AtomicU64,
    /// The supervisor loop must tick at least this often to be alive.
    stall_after: Duration,
    ready: AtomicBool,
    /// Set when a task panicked: the process should be restarted.
    failed: AtomicBool,
    /// Shards whose last PutEvents call failed as a whole (EventBridge unreachable): the relay
    /// is not ready while any is.
    publish_failing: Mutex<HashSet<String>>,
}

impl Health {
    #[must_use]
    pub fn new(stall_after: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                last_tick_ms: AtomicU64::new(0),
                stall_after,
                ready: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                publish_failing: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The supervisor loop is alive.
    pub fn tick(&self) {
        let ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_tick_ms.store(ms, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Records whether `shard`'s last PutEvents call got an answer.
    pub fn publish_call_result(&self, shard: &str, answered: bool) {
        let mut failing = self
            .inner
            .publish_failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if answered {
            failing.remove(shard);
        } else {
            failing.insert(shard.to_owned());
        }
    }

    /// Marks the process as broken (a task panicked); liveness fails from now on.
    pub fn fail(&self) {
        self.inner.failed.store(true, Ordering::Relaxed);
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        let publishing = self
            .inner
            .publish_failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        self.inner.ready.load(Ordering::Relaxed) && publishing && self.is_alive()
    }

    #[must_use]
    pub fn is_alive(&self) -> bool {
        if self.inner.failed.load(Ordering::Relaxed) {
            return false;
        }
        let last = Duration::from_millis(self.inner.last_tick_ms.load(Ordering::Relaxed));
        self.inner.started.elapsed().saturating_sub(last) <= self.inner.stall_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_when_the_loop_stops_ticking_or_a_task_panicked() {
        let h = Health::new(Duration::from_secs(30));
        h.tick();
        assert!(h.is_alive());
        assert!(!h.is_ready(), "not ready before the first lease sync");
        h.set_ready(true);
        assert!(h.is_ready());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!h.is_alive());
        assert!(!h.is_ready());
        h.tick();
        assert!(h.is_alive());
        h.publish_call_result("shard-1", false);
        assert!(!h.is_ready(), "not ready while a shard cannot publish");
        h.publish_call_result("shard-1", true);
        assert!(h.is_ready());
        h.fail();
        assert!(!h.is_alive());
    }
}
