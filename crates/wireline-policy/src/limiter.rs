//! Rate limits: GCRA per window (the `governor` crate) on tokio's clock, a bounded wait instead
//! of an instant refusal, usage per window from local counts and the provider's headers, and
//! the 80 % alert with hysteresis.
//!
//! A limit may have several windows (`["100/s", "100000/day"]`); a call needs a permit from
//! each. `headroom` keeps a share of the provider's limit unused (0.1 keeps 10 %), for other
//! clients of the same account and for clock skew. Governor's clock is tokio's, so tests pause
//! time and the limiter follows.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;
use wireline_core::Rate;

/// Governor's clock, reading tokio's (pausable) time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// How a limiter is sized.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// The provider's declared limits.
    pub windows: Vec<Rate>,
    /// Share of each limit kept unused (0.0 to 0.9).
    pub headroom: f64,
    /// Longest a call waits for a permit before it is refused with 429.
    pub max_wait: Duration,
}

/// Usage crossed the alert threshold (80 %) of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageAlert {
    /// The window, as configured (`"100/s"`), or `provider` for header-reported usage.
    pub window: String,
    /// Used share, 0.0 to 1.0 (or more).
    pub ratio: f64,
}

/// Alert at this share of a window...
pub const ALERT_AT: f64 = 0.8;
/// ...and again only after usage fell below this (hysteresis).
pub const REARM_BELOW: f64 = 0.7;

#[derive(Debug)]
struct Usage {
    window_start: Option<Instant>,
    count: u64,
    alerted: bool,
}

struct Window {
    rate: Rate,
    /// `rate` as written (`100/s`), the window's name in metrics and alerts.
    label: String,
    gcra: Gcra,
    usage: Mutex<Usage>,
}

/// One limiter (a service's, or one agent's on a service).
pub struct Limiter {
    windows: Vec<Window>,
    max_wait: Duration,
    clock: TokioClock,
    blocked_until: Mutex<Option<Instant>>,
    provider: Mutex<Usage>,
    provider_ratio: Mutex<Option<f64>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let windows: Vec<String> = self.windows.iter().map(|w| w.rate.to_string()).collect();
        f.debug_struct("Limiter")
            .field("windows", &windows)
            .finish()
    }
}

impl Limiter {
    /// A limiter with full buckets.
    pub fn new(config: &LimiterConfig) -> Self {
        let clock = TokioClock::default();
        let keep = 1.0 - config.headroom.clamp(0.0, 0.9);
        let windows = config
            .windows
            .iter()
            .map(|rate| {
                let effective = ((rate.count as f64 * keep).floor() as u64)
                    .clamp(1, u64::from(u32::MAX)) as u32;
                let burst = NonZeroU32::new(effective).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(rate.per.get() / effective)
                    .unwrap_or_else(|| Quota::per_second(burst))
                    .allow_burst(burst);
                Window {
                    rate: *rate,
                    label: rate.to_string(),
                    gcra: RateLimiter::direct_with_clock(quota, clock.clone()),
                    usage: Mutex::new(Usage {
                        window_start: None,
                        count: 0,
                        alerted: false,
                    }),
                }
            })
            .collect();
        Self {
            windows,
            max_wait: config.max_wait,
            clock,
            blocked_until: Mutex::new(None),
            provider: Mutex::new(Usage {
                window_start: None,
                count: 0,
                alerted: false,
            }),
            provider_ratio: Mutex::new(None),
        }
    }

    /// Waits for a permit from every window, at most `max_wait` in all. `Ok` carries the time
    /// waited and any usage alerts; `Err` is the wait that would have been needed.
    pub async fn acquire(&self) -> Result<(Duration, Vec<UsageAlert>), Duration> {
        let started = Instant::now();
        let blocked = self.blocked_until.lock().ok().and_then(|guard| *guard);
        if let Some(until) = blocked {
            let now = Instant::now();
            if until > now {
                let wait = until - now;
                if wait > self.max_wait {
                    return Err(wait);
                }
                tokio::time::sleep(wait).await;
            }
        }
        for window in &self.windows {
            loop {
                match window.gcra.check() {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        let waited = started.elapsed();
                        if waited + wait > self.max_wait {
                            return Err(waited + wait);
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        let now = Instant::now();
        let alerts = self
            .windows
            .iter()
            .filter_map(|window| window.count(now))
            .collect();
        Ok((started.elapsed(), alerts))
    }

    /// Refuses or delays calls until `until` (the provider said `Retry-After`).
    pub fn block_until(&self, until: Instant) {
        if let Ok(mut guard) = self.blocked_until.lock() {
            *guard = Some(guard.map_or(until, |current| current.max(until)));
        }
    }

    /// Usage per window at `now`: `(window, used share)`, local counts and provider reports.
    pub fn usage(&self, now: Instant) -> Vec<(&str, f64)> {
        let mut usage: Vec<(&str, f64)> = self
            .windows
            .iter()
            .map(|window| (window.label.as_str(), window.ratio(now)))
            .collect();
        if let Some(ratio) = self.provider_ratio.lock().ok().and_then(|guard| *guard) {
            usage.push(("provider", ratio));
        }
        usage
    }

    /// Records the provider's own report of its usage (from [`crate::Hints::usage`]);
    /// returns an alert when it crosses 80 %.
    pub fn observe_usage(&self, ratio: f64) -> Option<UsageAlert> {
        if let Ok(mut guard) = self.provider_ratio.lock() {
            *guard = Some(ratio);
        }
        let mut state = self.provider.lock().ok()?;
        hysteresis(&mut state, ratio).then(|| UsageAlert {
            window: "provider".to_owned(),
            ratio,
        })
    }
}

impl Window {
    fn roll(&self, usage: &mut Usage, now: Instant) {
        let length = self.rate.per.get();
        match usage.window_start {
            Some(start) if now.duration_since(start) < length => {}
            _ => {
                usage.window_start = Some(now);
                usage.count = 0;
            }
        }
    }

    fn ratio(&self, now: Instant) -> f64 {
        let Ok(mut usage) = self.usage.lock() else {
            return 0.0;
        };
        self.roll(&mut usage, now);
        usage.count as f64 / self.rate.count as f64
    }

    /// Counts one call; an alert if this call took usage across 80 %.
    fn count(&self, now: Instant) -> Option<UsageAlert> {
        let mut usage = self.usage.lock().ok()?;
        self.roll(&mut usage, now);
        usage.count += 1;
        let ratio = usage.count as f64 / self.rate.count as f64;
        hysteresis(&mut usage, ratio).then(|| UsageAlert {
            window: self.rate.to_string(),
            ratio,
        })
    }
}

/// True once when `ratio` reaches [`ALERT_AT`]; re-armed when it falls below [`REARM_BELOW`].
fn hysteresis(usage: &mut Usage, ratio: f64) -> bool {
    if usage.alerted {
        if ratio < REARM_BELOW {
            usage.alerted = false;
        }
        false
    } else if ratio >= ALERT_AT {
        usage.alerted = true;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(windows: &[&str], headroom: f64, max_wait_ms: u64) -> Limiter {
        Limiter::new(&LimiterConfig {
            windows: windows.iter().map(|w| w.parse().expect("rate")).collect(),
            headroom,
            max_wait: Duration::from_millis(max_wait_ms),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_in_line_up_to_max_wait_then_is_refused() {
        let patient = limiter(&["10/s"], 0.0, 250);
        for _ in 0..10 {
            assert_eq!(
                patient.acquire().await.map(|(waited, _)| waited),
                Ok(Duration::ZERO)
            );
        }
        // The 11th waits one emission interval (100 ms), inside max_wait.
        assert_eq!(
            patient.acquire().await.map(|(waited, _)| waited),
            Ok(Duration::from_millis(100))
        );

        let impatient = limiter(&["10/s"], 0.0, 50);
        for _ in 0..10 {
            assert!(impatient.acquire().await.is_ok());
        }
        // The 11th would need 100 ms, more than max_wait: refused at once with the wait.
        let before = Instant::now();
        assert_eq!(impatient.acquire().await, Err(Duration::from_millis(100)));
        assert_eq!(Instant::now(), before, "a refusal does not wait");
    }

    #[tokio::test(start_paused = true)]
    async fn headroom_lowers_the_burst_and_every_window_applies() {
        let limiter = limiter(&["100/s", "150/day"], 0.1, 0);
        // 90 per second with 10 % headroom.
        let granted = futures_count(&limiter, 200).await;
        assert_eq!(granted, 90);
        tokio::time::advance(Duration::from_secs(2)).await;
        // The day window (135 with headroom) now binds: 45 more.
        assert_eq!(futures_count(&limiter, 200).await, 45);
    }

    async fn futures_count(limiter: &Limiter, n: usize) -> usize {
        let mut granted = 0;
        for _ in 0..n {
            if limiter.acquire().await.is_ok() {
                granted += 1;
            }
        }
        granted
    }

    #[tokio::test(start_paused = true)]
    async fn alerts_once_at_80_percent_and_rearms_below_70() {
        let limiter = limiter(&["10/s"], 0.0, 0);
        let mut alerts = Vec::new();
        for _ in 0..10 {
            alerts.extend(limiter.acquire().await.expect("permit").1);
        }
        assert_eq!(
            alerts,
            [UsageAlert {
                window: "10/s".into(),
                ratio: 0.8
            }],
            "one alert, at the 8th call"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.usage(Instant::now()), [("10/s", 0.0)]);
        let mut again = Vec::new();
        for _ in 0..8 {
            again.extend(limiter.acquire().await.expect("permit").1);
        }
        assert_eq!(again.len(), 1, "re-armed in a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_the_limiter() {
        let limiter = limiter(&["100/s"], 0.0, 1000);
        limiter.block_until(Instant::now() + Duration::from_millis(500));
        assert_eq!(
            limiter.acquire().await.map(|(w, _)| w),
            Ok(Duration::from_millis(500))
        );
        limiter.block_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(limiter.acquire().await, Err(Duration::from_secs(5)));
    }

    #[test]
    fn provider_reports_alert_once_past_80_percent() {
        let limiter = limiter(&["10/s"], 0.0, 0);
        let alert = limiter.observe_usage(0.9);
        assert_eq!(alert.map(|a| a.window), Some("provider".to_owned()));
        assert_eq!(limiter.observe_usage(1.0), None);
        assert!(limiter.usage(Instant::now()).contains(&("provider", 1.0)));
    }
}
