//! Retry delays: exponential from a base, capped, with jitter so a fleet of
//! retries after an outage does not arrive in one burst; a receiver's
//! `Retry-After` is honoured up to the cap.

use std::time::Duration;

/// The delay before attempt `attempt + 1`, given `attempt` failures so far
/// (1-based) and a jitter draw in [0, 1).
pub fn delay(
    base: Duration,
    max: Duration,
    attempt: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(62) as i32);
    let capped = exp.min(max.as_secs_f64());
    // "Equal jitter": half fixed, half random, so the delay never collapses to zero.
    let d = capped / 2.0 + capped / 2.0 * jitter.clamp(0.0, 1.0);
    let d = Duration::from_secs_f64(d);
    match retry_after {
        Some(r) => d.max(r.min(max)),
        None => d,
    }
}

/// Whether an attempt `delay` after `now` would fall past the retry window
/// that opened at `since`: then the notification is dead-lettered instead.
pub fn window_spent(
    since: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    delay: Duration,
    window: Duration,
) -> bool {
    let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let end = since + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    next > end
}

/// A jitter draw in [0, 1).
pub fn jitter() -> f64 {
    // getrandom only fails where the OS has no entropy source at all; no
    // jitter is then the safe fallback.
    getrandom::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_half_and_all_of_the_capped_exponential(
            base_ms in 1u64..10_000, max_ms in 1u64..1_000_000, attempt in 1u32..200, j in 0.0f64..1.0
        ) {
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms.max(base_ms)));
            let d = delay(base, max, attempt, j, None).as_secs_f64();
            let ideal = (base.as_secs_f64() * 2f64.powi((attempt - 1).min(62) as i32)).min(max.as_secs_f64());
            prop_assert!(d <= ideal + 1e-9 && d >= ideal / 2.0 - 1e-9);
        }

        #[test]
        fn retry_after_is_honoured_up_to_the_cap(ra in 0u64..100_000, attempt in 1u32..10) {
            let (base, max) = (Duration::from_secs(1), Duration::from_secs(600));
            let d = delay(base, max, attempt, 0.3, Some(Duration::from_secs(ra)));
            prop_assert!(d >= Duration::from_secs(ra).min(max));
            prop_assert!(d <= max);
        }

        #[test]
        fn an_outage_shorter_than_the_window_is_never_dead_lettered(
            window_s in 60u64..7_200, base_ms in 10u64..5_000, max_s in 1u64..600, outage_s in 0u64..7_200
        ) {
            // Failures from t=0 until the outage ends; each retry waits at
            // most backoff_max, so the first attempt after the outage is at
            // most that late, and must still be inside the window.
            let (base, max, window) = (Duration::from_millis(base_ms), Duration::from_secs(max_s.max(1)), Duration::from_secs(window_s));
            prop_assume!(outage_s + max.as_secs() < window_s);
            let t0 = chrono::Utc::now();
            let mut now = t0;
            let mut attempt = 1;
            while (now - t0).num_seconds() < outage_s as i64 {
                let d = delay(base, max, attempt, 0.99, None);
                prop_assert!(!window_spent(t0, now, d, window), "dead at {:?} of a {window_s} s window", now - t0);
                now += chrono::Duration::from_std(d).unwrap();
                attempt += 1;
            }
        }

        #[test]
        fn a_window_is_spent_once_the_next_attempt_would_leave_it(delay_s in 0u64..10_000, window_s in 0u64..10_000) {
            let t0 = chrono::Utc::now();
            let spent = window_spent(t0, t0, Duration::from_secs(delay_s), Duration::from_secs(window_s));
            prop_assert_eq!(spent, delay_s > window_s);
        }

        #[test]
        fn delays_never_shrink_as_attempts_grow(attempt in 1u32..100) {
            let (base, max) = (Duration::from_millis(250), Duration::from_secs(300));
            prop_assert!(delay(base, max, attempt + 1, 0.0, None) >= delay(base, max, attempt, 0.0, None));
        }
    }
}
