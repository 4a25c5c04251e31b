//! What becomes of each entry of a PutEvents call, from the call's result: accepted, retried,
//! dead-lettered, or sent again alone to find the culprit. Pure; the shard worker carries the
//! verdicts out.
//!
//! The rules, in one place:
//! - an entry the answer does not list as failed is accepted;
//! - a failure is retried when [`classify`] says it may pass (throttling, faults, transport,
//!   credentials), unless the entry has used up `max_attempts` or its record is older than
//!   `max_record_age`; then, and for every other failure, it is dead-lettered;
//! - a whole call refused for a reason about the events (e.g. a bus that does not exist) is
//!   split: each of its entries is sent again alone, so only the culprit is dead-lettered; a
//!   single entry refused that way is dead-lettered.

use std::time::{Duration, SystemTime};

use crate::publish::{classify, Disposition, PublishError, PutOutcome};

/// How far a retryable failure is retried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per entry before a retryable failure is dead-lettered (`None` = unbounded).
    pub max_attempts: Option<u32>,
    /// Record age after which a retryable failure is dead-lettered (`None` = unbounded).
    pub max_record_age: Option<Duration>,
}

impl RetryPolicy {
    /// The policy `[publisher]` configures (`max_attempts`, `max_record_age`): the relay's
    /// and backfill's alike.
    #[must_use]
    pub fn of(publisher: &crate::config::PublisherConfig) -> Self {
        Self {
            max_attempts: publisher.max_attempts.map(std::num::NonZeroU32::get),
            max_record_age: publisher.max_record_age,
        }
    }
}

/// One entry of the call, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Attempts so far, this call included.
    pub attempts: u32,
    /// The record's creation time.
    pub created_at: Option<SystemTime>,
}

/// Why an entry failed: the error code and message of its entry or of the whole call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// The fate of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// EventBridge took it: settled.
    Accepted,
    /// A retryable failure: send it again after a backoff, before any later entry of its key.
    Retry(Failure),
    /// Give up: write it to the dead-letter sink with this reason.
    DeadLetter(Failure),
    /// The whole call was refused because of some entry: send this one again alone.
    Split(Failure),
}

/// Decides every entry's fate (in request order) from the call's `result`.
#[must_use]
pub fn decide(
    result: &Result<PutOutcome, PublishError>,
    sent: &[Sent],
    policy: RetryPolicy,
    now: SystemTime,
) -> Vec<Verdict> {
    let retry_or_give_up = |entry: &Sent, failure: Failure| {
        if classify(&failure.code) == Disposition::Retry && !exhausted(entry, policy, now) {
            Verdict::Retry(failure)
        } else {
            Verdict::DeadLetter(failure)
        }
    };
    match result {
        Ok(outcome) => {
            let mut verdicts = vec![Verdict::Accepted; sent.len()];
            for f in &outcome.failed {
                // An index outside the request is the service's bug; the entry stays accepted
                // only if it is not listed, so ignore it rather than panic.
                if let (Some(v), Some(entry)) = (verdicts.get_mut(f.index), sent.get(f.index)) {
                    *v = retry_or_give_up(
                        entry,
                        Failure {
                            code: f.code.clone(),
                            message: f.message.clone(),
                        },
                    );
                }
            }
            verdicts
        }
        Err(e) => {
            let failure = Failure {
                code: e.code.clone(),
                message: e.message.clone(),
            };
            match classify(&e.code) {
                Disposition::GiveUp if sent.len() > 1 => {
                    vec![Verdict::Split(failure); sent.len()]
                }
                _ => sent
                    .iter()
                    .map(|entry| retry_or_give_up(entry, failure.clone()))
                    .collect(),
            }
        }
    }
}

/// Whether a retryable failure has used up `max_attempts` or `max_record_age`.
fn exhausted(entry: &Sent, policy: RetryPolicy, now: SystemTime) -> bool {
    let too_many = policy.max_attempts.is_some_and(|max| entry.attempts >= max);
    let too_old = match (policy.max_record_age, entry.created_at) {
        (Some(max), Some(created)) => now.duration_since(created).is_ok_and(|age| age >= max),
        _ => false,
    };
    too_many || too_old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::FailedEntry;

    fn sent(n: usize) -> Vec<Sent> {
        vec![
            Sent {
                attempts: 1,
                created_at: None,
            };
            n
        ]
    }

    fn failed(index: usize, code: &str) -> FailedEntry {
        FailedEntry {
            index,
            code: code.into(),
            message: "m".into(),
        }
    }

    fn call_error(code: &str) -> Result<PutOutcome, PublishError> {
        Err(PublishError {
            code: code.into(),
            message: "m".into(),
        })
    }

    fn kinds(verdicts: &[Verdict]) -> Vec<&'static str> {
        verdicts
            .iter()
            .map(|v| match v {
                Verdict::Accepted => "accepted",
                Verdict::Retry(_) => "retry",
                Verdict::DeadLetter(_) => "dead",
                Verdict::Split(_) => "split",
            })
            .collect()
    }

    #[test]
    fn per_entry_failures_are_retried_or_dead_lettered_by_their_code() {
        let outcome = Ok(PutOutcome {
            failed: vec![
                failed(1, "ThrottlingException"),
                failed(3, "MalformedDetail"),
            ],
            ..PutOutcome::default()
        });
        let v = decide(
            &outcome,
            &sent(4),
            RetryPolicy::default(),
            SystemTime::now(),
        );
        assert_eq!(kinds(&v), ["accepted", "retry", "accepted", "dead"]);
        assert_eq!(
            v[3],
            Verdict::DeadLetter(Failure {
                code: "MalformedDetail".into(),
                message: "m".into()
            })
        );
    }

    #[test]
    fn a_call_refused_because_of_an_event_is_split_and_a_lone_entry_is_dead_lettered() {
        let now = SystemTime::now();
        let policy = RetryPolicy::default();
        let v = decide(
            &call_error("ResourceNotFoundException"),
            &sent(3),
            policy,
            now,
        );
        assert_eq!(kinds(&v), ["split", "split", "split"]);
        let v = decide(
            &call_error("ResourceNotFoundException"),
            &sent(1),
            policy,
            now,
        );
        assert_eq!(kinds(&v), ["dead"]);
        // A transient whole-call failure is retried, whatever the batch size.
        let v = decide(&call_error("InternalFailure"), &sent(3), policy, now);
        assert_eq!(kinds(&v), ["retry", "retry", "retry"]);
    }

    #[test]
    fn retries_end_at_max_attempts_or_max_record_age() {
        let now = SystemTime::now();
        let throttled = Ok(PutOutcome {
            failed: vec![failed(0, "ThrottlingException")],
            ..PutOutcome::default()
        });
        let policy = RetryPolicy {
            max_attempts: Some(3),
            max_record_age: Some(Duration::from_secs(60)),
        };
        let at = |attempts, age_secs| Sent {
            attempts,
            created_at: Some(now - Duration::from_secs(age_secs)),
        };
        assert_eq!(
            kinds(&decide(&throttled, &[at(2, 10)], policy, now)),
            ["retry"]
        );
        assert_eq!(
            kinds(&decide(&throttled, &[at(3, 10)], policy, now)),
            ["dead"]
        );
        assert_eq!(
            kinds(&decide(&throttled, &[at(1, 60)], policy, now)),
            ["dead"]
        );
        // Non-retryable failures never wait for the limits.
        let rejected = Ok(PutOutcome {
            failed: vec![failed(0, "InvalidArgument")],
            ..PutOutcome::default()
        });
        assert_eq!(
            kinds(&decide(&rejected, &[at(1, 0)], policy, now)),
            ["dead"]
        );
    }

    #[test]
    fn an_index_outside_the_request_is_ignored() {
        let outcome = Ok(PutOutcome {
            failed: vec![failed(7, "ThrottlingException")],
            ..PutOutcome::default()
        });
        let v = decide(
            &outcome,
            &sent(2),
            RetryPolicy::default(),
            SystemTime::now(),
        );
        assert_eq!(kinds(&v), ["accepted", "accepted"]);
    }
}
