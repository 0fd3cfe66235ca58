//! Retry: the backoff schedule and the retry budget.
//!
//! Backoff is "full jitter" (AWS Architecture Blog): before retry `n` (1-based) the wait is a
//! uniform random duration in `[0, cap_n]`, with `cap_n = backoff * 2^(n-1)` (1 s, 2 s, 4 s,
//! 8 s by default) and never above `max_wait`. A `Retry-After` from the service replaces the
//! jittered wait; one longer than `max_wait` ends the retries (the caller is told when to come
//! back instead of being held).
//!
//! The budget (Finagle's and linkerd's idea) caps retries at a fraction of recent requests,
//! plus a small floor per second, so an outage never multiplies the load on a service: every
//! request deposits `ratio` of a retry, every retry withdraws one, over a sliding window.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The cap of the wait before retry `retry` (1-based): `backoff * 2^(retry-1)`, at most
/// `max_wait`.
pub fn backoff_cap(backoff: Duration, max_wait: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff.saturating_mul(factor).min(max_wait)
}

/// A full-jitter wait in `[0, cap]`.
pub fn full_jitter(cap: Duration, rng: &mut impl Rng) -> Duration {
    if cap.is_zero() {
        return cap;
    }
    Duration::from_nanos(rng.random_range(0..=cap.as_nanos().min(u128::from(u64::MAX)) as u64))
}

/// How the budget is sized.
#[derive(Debug, Clone, Copy)]
pub struct BudgetConfig {
    /// Retries allowed per request in the window (0.2 = 20 %).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic, so a quiet service can still retry.
    pub floor_per_second: f64,
    /// How far back requests and retries count.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            floor_per_second: 1.0,
            window: Duration::from_secs(10),
        }
    }
}

/// A sliding-window retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    requests: VecDeque<Instant>,
    retries: VecDeque<Instant>,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            requests: VecDeque::new(),
            retries: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        let window = self.config.window;
        for queue in [&mut self.requests, &mut self.retries] {
            while queue
                .front()
                .is_some_and(|at| now.duration_since(*at) >= window)
            {
                queue.pop_front();
            }
        }
    }

    /// Records an original (non-retry) request.
    pub fn deposit(&mut self, now: Instant) {
        self.expire(now);
        self.requests.push_back(now);
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.expire(now);
        let allowed = self.config.ratio * self.requests.len() as f64
            + self.config.floor_per_second * self.config.window.as_secs_f64();
        if (self.retries.len() as f64) < allowed.floor() {
            self.retries.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_from_the_base_and_stop_at_max_wait() {
        let caps: Vec<u64> = (1..=7)
            .map(|n| backoff_cap(Duration::from_secs(1), Duration::from_secs(30), n).as_secs())
            .collect();
        assert_eq!(caps, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            backoff_cap(Duration::from_secs(1), Duration::from_secs(30), 200),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn jitter_stays_within_the_cap_and_spreads() {
        let mut rng = rand::rng();
        let cap = Duration::from_secs(4);
        let waits: Vec<Duration> = (0..1000).map(|_| full_jitter(cap, &mut rng)).collect();
        assert!(waits.iter().all(|wait| *wait <= cap));
        assert!(waits.iter().any(|wait| *wait < Duration::from_secs(1)));
        assert!(waits.iter().any(|wait| *wait > Duration::from_secs(3)));
    }

    #[test]
    fn the_budget_allows_the_ratio_plus_the_floor_in_the_window() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(BudgetConfig {
            ratio: 0.2,
            floor_per_second: 0.5,
            window: Duration::from_secs(10),
        });
        for _ in 0..100 {
            budget.deposit(start);
        }
        // 0.2 * 100 + 0.5 * 10 = 25 retries.
        let granted = (0..100).filter(|_| budget.try_withdraw(start)).count();
        assert_eq!(granted, 25);
        // A window later the old requests and retries no longer count: only the floor remains.
        let later = start + Duration::from_secs(10);
        let granted = (0..100).filter(|_| budget.try_withdraw(later)).count();
        assert_eq!(granted, 5);
    }
}
