//! Retry delays for every retry loop of the relay: exponential with full jitter and a cap
//! (AWS Architecture Blog, "Exponential Backoff And Jitter": `sleep = random(0, min(cap,
//! base * 2^attempt))`), which spreads retries of many shards hitting the same throttle.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Endless delays: the k-th is uniform in `[0, min(max, initial * 2^k)]`.
// NOTE: backon's own `with_jitter()` adds `random(0, d)` to `d` (so `[d, 2d)`, up to twice the
// cap); we take its un-jittered exponential schedule and apply full jitter ourselves.
pub fn backoff(initial: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max)
        .without_max_times()
        .build()
        .map(|ceiling| ceiling.mul_f64(rand::random::<f64>()))
}

/// The delay before retry number `retry` (1 = the first retry) of the same schedule: uniform
/// in `[0, min(max, initial * 2^(retry - 1))]`.
#[must_use]
pub fn delay(initial: Duration, max: Duration, retry: u32) -> Duration {
    let exponent = retry.saturating_sub(1).min(31);
    let ceiling = initial.saturating_mul(1 << exponent).min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_of_a_retry_is_jittered_under_the_same_ceiling() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for retry in 1..40 {
            let ceiling = initial
                .saturating_mul(2u32.saturating_pow(retry - 1))
                .min(max);
            for _ in 0..50 {
                assert!(delay(initial, max, retry) <= ceiling, "retry {retry}");
            }
        }
        assert!(
            (0..200).any(|_| delay(initial, max, 30) > max / 2),
            "late delays reach the cap"
        );
    }

    #[test]
    fn delays_are_fully_jittered_under_an_exponential_ceiling_and_the_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let delays: Vec<Duration> = backoff(initial, max).take(2000).collect();
        for (k, d) in delays.iter().enumerate() {
            let ceiling = initial
                .saturating_mul(2u32.saturating_pow(u32::try_from(k).unwrap_or(u32::MAX)))
                .min(max);
            assert!(*d <= ceiling, "delay {k} = {d:?} above {ceiling:?}");
        }
        // Full jitter: late delays spread over the whole [0, cap] range.
        let late = &delays[100..];
        assert!(late.iter().any(|d| *d < max / 4), "some short delays");
        assert!(late.iter().any(|d| *d > max * 3 / 4), "some long delays");
    }
}
