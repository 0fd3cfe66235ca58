//! Rate limits: at most N calls in any window of the stated length, a bounded wait instead of
//! an instant refusal, an optional burst limit, usage per window from local counts and the
//! provider's reports, and the 80 % alert with hysteresis.
//!
//! A limit may have several windows (`["100/s", "100000/day"]`); a call needs room in each.
//! `headroom` keeps a share of the provider's limit unused (0.1 keeps 10 %), for other
//! clients of the same account, clock skew and network jitter between Wireline's count and
//! the provider's.
//!
//! **What a window means.** "20/s" means at most 20 calls in *any* second, as the provider
//! counts them (rolling windows, or fixed ones, which a rolling guarantee covers). A token
//! bucket or GCRA sized to the rate does not hold that: it lets a full burst through and then
//! the steady rate, nearly twice the limit in the first window. So each window counts every
//! call from the moment it is granted ([`Permit`]) until a whole window length after it
//! *completed*: the provider saw the request somewhere between the two, so the next call can
//! never share a provider's window with it, however the network delays either. Completed
//! calls sit in a sliding log compressed into slices of 1/256 of the window; a slice leaves
//! the window only when its newest entry does, so the count is never below the truth: the
//! limit holds, at the price of up to one slice of idle time when a window is full.
//!
//! **Burst.** By default a full window's worth may go at once (what the provider allows). With
//! `burst = B`, calls in the shortest window are also spaced: at most B back to back, then one
//! every `window / limit` (GCRA, the virtual-scheduling form). Both checks and the grant happen
//! under one lock, which is why this is written here instead of on a crate such as `governor`:
//! a grant must be taken in every window or in none.
//!
//! Time is tokio's clock, so tests pause time and the limiter follows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wireline_core::Rate;

/// How a limiter is sized.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// The provider's declared limits.
    pub windows: Vec<Rate>,
    /// Share of each limit kept unused (0.0 to 0.9).
    pub headroom: f64,
    /// Longest a call waits for a permit before it is refused with 429.
    pub max_wait: Duration,
    /// At most this many calls back to back in the shortest window (then spaced evenly);
    /// `None`: a whole window's worth.
    pub burst: Option<u32>,
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

/// Slices per window in the sliding log.
const SLICES: u32 = 256;

/// Grants within one slice of the log.
#[derive(Debug, Clone, Copy)]
struct Slice {
    first: Instant,
    last: Instant,
    count: u64,
}

/// One window: the sliding log, the optional spacing, and its alert state.
#[derive(Debug)]
struct Window {
    /// `rate` as written (`100/s`), the window's name in metrics and alerts.
    label: String,
    /// The provider's count for the window (usage is measured against it).
    declared: u64,
    /// What Wireline admits per window: the declared count less the headroom.
    limit: u64,
    length: Duration,
    slice: Duration,
    /// Completed calls still within a window length of their completion.
    log: VecDeque<Slice>,
    /// Calls in `log`.
    total: u64,
    /// Calls granted and not yet completed.
    in_flight: u64,
    /// GCRA for `burst`: the emission interval, the tolerance, and the theoretical arrival
    /// time of the next call.
    spacing: Option<(Duration, Duration)>,
    tat: Option<Instant>,
    alerted: bool,
}

impl Window {
    fn new(rate: Rate, headroom: f64, burst: Option<u32>) -> Self {
        let keep = 1.0 - headroom.clamp(0.0, 0.9);
        let limit = ((rate.count as f64 * keep).floor() as u64).max(1);
        let length = rate.per.get();
        let spacing = burst
            .map(|burst| u64::from(burst.max(1)).min(limit))
            .filter(|burst| *burst < limit)
            .map(|burst| {
                let interval = length / u32::try_from(limit).unwrap_or(u32::MAX);
                (
                    interval,
                    interval * u32::try_from(burst - 1).unwrap_or(u32::MAX),
                )
            });
        Self {
            label: rate.to_string(),
            declared: rate.count,
            limit,
            length,
            slice: (length / SLICES).max(Duration::from_micros(1)),
            log: VecDeque::new(),
            total: 0,
            in_flight: 0,
            spacing,
            tat: None,
            alerted: false,
        }
    }

    /// Drops the slices whose newest grant is a whole window old.
    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.log.front() {
            if now.duration_since(front.last) < self.length {
                break;
            }
            self.total -= front.count;
            self.log.pop_front();
        }
    }

    /// Calls that count against the window now.
    fn active(&self) -> u64 {
        self.total + self.in_flight
    }

    /// How long until a call may be granted here (zero: now).
    fn wait(&mut self, now: Instant) -> Duration {
        self.expire(now);
        let mut wait = Duration::ZERO;
        if self.active() >= self.limit {
            // Full: room comes when the oldest slices leave the window. If calls in flight
            // hold the room, none frees before a window after one of them completes: look
            // again in a window's time.
            wait = self.length;
            let mut freed = 0;
            for slice in &self.log {
                freed += slice.count;
                if self.active() - freed < self.limit {
                    wait = (slice.last + self.length).saturating_duration_since(now);
                    break;
                }
            }
        }
        if let (Some((_, tolerance)), Some(tat)) = (self.spacing, self.tat) {
            wait = wait.max(tat.saturating_duration_since(now + tolerance));
        }
        wait
    }

    /// Records a grant at `now` (after [`Window::wait`] said zero).
    fn grant(&mut self, now: Instant) {
        self.in_flight += 1;
        if let Some((interval, _)) = self.spacing {
            self.tat = Some(self.tat.map_or(now, |tat| tat.max(now)) + interval);
        }
    }

    /// A granted call completed at `now` (or was given up without being sent).
    fn complete(&mut self, now: Instant, sent: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !sent {
            return;
        }
        match self.log.back_mut() {
            Some(slice) if now.duration_since(slice.first) < self.slice => {
                slice.last = now;
                slice.count += 1;
            }
            _ => self.log.push_back(Slice {
                first: now,
                last: now,
                count: 1,
            }),
        }
        self.total += 1;
    }

    fn ratio(&self) -> f64 {
        self.active() as f64 / self.declared as f64
    }
}

/// One limiter (a service's, or one agent's on a service).
#[derive(Debug)]
pub struct Limiter {
    windows: Mutex<Vec<Window>>,
    max_wait: Duration,
    blocked_until: Mutex<Option<Instant>>,
    provider: Mutex<(Option<f64>, bool)>,
}

impl Limiter {
    /// A limiter with empty windows. `burst` applies to the shortest window.
    pub fn new(config: &LimiterConfig) -> Self {
        let shortest = config.windows.iter().map(|rate| rate.per.get()).min();
        let windows = config
            .windows
            .iter()
            .map(|rate| {
                let burst = config.burst.filter(|_| Some(rate.per.get()) == shortest);
                Window::new(*rate, config.headroom, burst)
            })
            .collect();
        Self {
            windows: Mutex::new(windows),
            max_wait: config.max_wait,
            blocked_until: Mutex::new(None),
            provider: Mutex::new((None, false)),
        }
    }

    /// Waits for room in every window, at most `max_wait` in all. `Ok` carries the permit
    /// (hold it until the call completed), the time waited and any usage alerts; `Err` is the
    /// wait that would have been needed.
    pub async fn acquire(
        self: &Arc<Self>,
    ) -> Result<(Permit, Duration, Vec<UsageAlert>), Duration> {
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
        loop {
            let now = Instant::now();
            let wait = {
                let mut windows = self
                    .windows
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let wait = windows
                    .iter_mut()
                    .map(|window| window.wait(now))
                    .max()
                    .unwrap_or_default();
                if wait.is_zero() {
                    let alerts = windows
                        .iter_mut()
                        .filter_map(|window| {
                            window.grant(now);
                            let ratio = window.ratio();
                            hysteresis(&mut window.alerted, ratio).then(|| UsageAlert {
                                window: window.label.clone(),
                                ratio,
                            })
                        })
                        .collect();
                    let permit = Permit {
                        limiter: Arc::clone(self),
                        sent: true,
                    };
                    return Ok((permit, started.elapsed(), alerts));
                }
                wait
            };
            let waited = started.elapsed();
            if waited + wait > self.max_wait {
                return Err(waited + wait);
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn complete(&self, sent: bool) {
        let now = Instant::now();
        for window in self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
        {
            window.complete(now, sent);
        }
    }

    /// Refuses or delays calls until `until` (the provider said `Retry-After`).
    pub fn block_until(&self, until: Instant) {
        if let Ok(mut guard) = self.blocked_until.lock() {
            *guard = Some(guard.map_or(until, |current| current.max(until)));
        }
    }

    /// Usage per window at `now`: `(window, used share)`, local counts and provider reports.
    pub fn usage(&self, now: Instant) -> Vec<(String, f64)> {
        let mut usage: Vec<(String, f64)> = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .map(|window| {
                window.expire(now);
                (window.label.clone(), window.ratio())
            })
            .collect();
        if let Some(ratio) = self.provider.lock().ok().and_then(|guard| guard.0) {
            usage.push(("provider".to_owned(), ratio));
        }
        usage
    }

    /// Records the provider's own report of its usage (from [`crate::Hints::usage`]);
    /// returns an alert when it crosses 80 %.
    pub fn observe_usage(&self, ratio: f64) -> Option<UsageAlert> {
        let mut state = self.provider.lock().ok()?;
        state.0 = Some(ratio);
        hysteresis(&mut state.1, ratio).then(|| UsageAlert {
            window: "provider".to_owned(),
            ratio,
        })
    }
}

/// A granted call: it counts against every window of its limiter until dropped, and for a
/// window length after that (the provider may have counted it at any moment until the call
/// completed). Drop it when the call's attempt completed; [`Permit::unused`] when the call
/// was not sent after all.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    sent: bool,
}

impl Permit {
    /// The call was not sent (refused before it left): it stops counting at once.
    pub fn unused(mut self) {
        self.sent = false;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.complete(self.sent);
    }
}

/// True once when `ratio` reaches [`ALERT_AT`]; re-armed when it falls below [`REARM_BELOW`].
fn hysteresis(alerted: &mut bool, ratio: f64) -> bool {
    if *alerted {
        if ratio < REARM_BELOW {
            *alerted = false;
        }
        false
    } else if ratio >= ALERT_AT {
        *alerted = true;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(
        windows: &[&str],
        headroom: f64,
        max_wait_ms: u64,
        burst: Option<u32>,
    ) -> Arc<Limiter> {
        Arc::new(Limiter::new(&LimiterConfig {
            windows: windows.iter().map(|w| w.parse().expect("rate")).collect(),
            headroom,
            max_wait: Duration::from_millis(max_wait_ms),
            burst,
        }))
    }

    /// A call that completes at once.
    async fn call(limiter: &Arc<Limiter>) -> Result<(Duration, Vec<UsageAlert>), Duration> {
        limiter
            .acquire()
            .await
            .map(|(_permit, waited, alerts)| (waited, alerts))
    }

    /// The most grants in any window of `length` among `times` (sorted).
    fn most_in_any_window(times: &[Instant], length: Duration) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < length)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// 30 callers as fast as they can for 5 s against "20/s": never more than 20 in any
    /// second (a token bucket sized to the rate lets 39 through in the first), and the limit
    /// is used, not wasted.
    #[tokio::test(start_paused = true)]
    async fn no_window_ever_holds_more_than_the_limit() {
        let limiter = limiter(&["20/s"], 0.0, 60_000, None);
        let start = Instant::now();
        let granted = Arc::new(Mutex::new(Vec::new()));
        let callers: Vec<_> = (0..30)
            .map(|_| {
                let (limiter, granted) = (Arc::clone(&limiter), Arc::clone(&granted));
                tokio::spawn(async move {
                    while Instant::now().duration_since(start) < Duration::from_secs(5) {
                        call(&limiter).await.expect("granted within max_wait");
                        granted.lock().expect("lock").push(Instant::now());
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller");
        }
        let mut times = granted.lock().expect("lock").clone();
        times.sort();
        assert_eq!(most_in_any_window(&times, Duration::from_secs(1)), 20);
        let first_second = times
            .iter()
            .filter(|t| t.duration_since(start) < Duration::from_secs(1))
            .count();
        assert_eq!(first_second, 20, "a full window at once, then no more");
        assert!(
            times.len() >= 5 * 20 - 5,
            "the limit is used: {} calls in 5 s",
            times.len()
        );
    }

    /// A slow call counts until a whole window after it completed (the provider may have
    /// counted it at its end); a permit given up unused frees its room at once.
    #[tokio::test(start_paused = true)]
    async fn calls_count_until_a_window_after_they_complete() {
        let limiter = limiter(&["1/s"], 0.0, 10_000, None);
        let (slow, _, _) = limiter.acquire().await.expect("granted");
        tokio::time::advance(Duration::from_millis(1500)).await;
        drop(slow);
        let started = Instant::now();
        call(&limiter).await.expect("granted");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let limiter = self::limiter(&["1/s"], 0.0, 10_000, None);
        let (unsent, _, _) = limiter.acquire().await.expect("granted");
        unsent.unused();
        assert_eq!(call(&limiter).await.map(|(w, _)| w), Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_in_line_up_to_max_wait_then_is_refused() {
        let patient = limiter(&["10/s"], 0.0, 1500, None);
        for _ in 0..10 {
            assert_eq!(
                call(&patient).await.map(|(waited, _)| waited),
                Ok(Duration::ZERO)
            );
        }
        // The 11th waits until the first leaves the window.
        assert_eq!(
            call(&patient).await.map(|(waited, _)| waited),
            Ok(Duration::from_secs(1))
        );

        let impatient = limiter(&["10/s"], 0.0, 50, None);
        for _ in 0..10 {
            assert!(call(&impatient).await.is_ok());
        }
        // The 11th would need a second, more than max_wait: refused at once with the wait.
        let before = Instant::now();
        assert_eq!(call(&impatient).await, Err(Duration::from_secs(1)));
        assert_eq!(Instant::now(), before, "a refusal does not wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_limit_spaces_calls_in_the_shortest_window() {
        let spaced = limiter(&["10/s", "1000/day"], 0.0, 10_000, Some(2));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            call(&spaced).await.expect("granted");
            at.push(Instant::now().duration_since(start).as_millis());
        }
        assert_eq!(
            at,
            [0, 0, 100, 200, 300],
            "two at once, then one per 100 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn headroom_lowers_the_limit_and_every_window_applies() {
        let limiter = limiter(&["100/s", "150/day"], 0.1, 0, None);
        // 90 per second with 10 % headroom.
        let granted = futures_count(&limiter, 200).await;
        assert_eq!(granted, 90);
        tokio::time::advance(Duration::from_secs(2)).await;
        // The day window (135 with headroom) now binds: 45 more.
        assert_eq!(futures_count(&limiter, 200).await, 45);
    }

    async fn futures_count(limiter: &Arc<Limiter>, n: usize) -> usize {
        let mut granted = 0;
        for _ in 0..n {
            if call(limiter).await.is_ok() {
                granted += 1;
            }
        }
        granted
    }

    #[tokio::test(start_paused = true)]
    async fn alerts_once_at_80_percent_and_rearms_below_70() {
        let limiter = limiter(&["10/s"], 0.0, 0, None);
        let mut alerts = Vec::new();
        for _ in 0..10 {
            alerts.extend(call(&limiter).await.expect("permit").1);
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
        assert_eq!(limiter.usage(Instant::now()), [("10/s".to_owned(), 0.0)]);
        let mut again = Vec::new();
        for _ in 0..8 {
            again.extend(call(&limiter).await.expect("permit").1);
        }
        assert_eq!(again.len(), 1, "re-armed in a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_the_limiter() {
        let limiter = limiter(&["100/s"], 0.0, 1000, None);
        limiter.block_until(Instant::now() + Duration::from_millis(500));
        assert_eq!(
            call(&limiter).await.map(|(w, _)| w),
            Ok(Duration::from_millis(500))
        );
        limiter.block_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(call(&limiter).await, Err(Duration::from_secs(5)));
    }

    #[test]
    fn provider_reports_alert_once_past_80_percent() {
        let limiter = limiter(&["10/s"], 0.0, 0, None);
        let alert = limiter.observe_usage(0.9);
        assert_eq!(alert.map(|a| a.window), Some("provider".to_owned()));
        assert_eq!(limiter.observe_usage(1.0), None);
        assert!(
            limiter
                .usage(Instant::now())
                .contains(&("provider".to_owned(), 1.0))
        );
    }
}
