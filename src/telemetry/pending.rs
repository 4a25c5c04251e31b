//! The creation time of the oldest record each shard has read but not yet fully handled, so
//! the supervisor can export the age of the oldest unpublished record (the "stuck" signal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Shared by the workers (each writes its own shard's entry) and the supervisor (reads).
#[derive(Debug, Clone, Default)]
pub struct PendingRecords {
    oldest: Arc<Mutex<HashMap<String, SystemTime>>>,
}

impl PendingRecords {
    /// `shard`'s oldest unhandled record was created at `created`.
    pub fn set(&self, shard: &str, created: SystemTime) {
        self.lock().insert(shard.to_owned(), created);
    }

    /// `shard` has nothing pending.
    pub fn clear(&self, shard: &str) {
        self.lock().remove(shard);
    }

    /// Age of the oldest pending record over all shards; zero when none is pending.
    #[must_use]
    pub fn oldest_age(&self, now: SystemTime) -> Duration {
        self.lock()
            .values()
            .min()
            .map(|t| now.duration_since(*t).unwrap_or_default())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SystemTime>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.oldest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pending_record_over_all_shards_sets_the_age() {
        let p = PendingRecords::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(p.oldest_age(t0), Duration::ZERO);
        p.set("a", t0 + Duration::from_secs(5));
        p.set("b", t0);
        assert_eq!(
            p.oldest_age(t0 + Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        p.clear("b");
        assert_eq!(
            p.oldest_age(t0 + Duration::from_secs(30)),
            Duration::from_secs(25)
        );
    }
}
