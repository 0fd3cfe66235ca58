//! Call-rate anomalies per agent and per credential: the calls of the last `window` against a
//! rolling baseline (the average per window over the `baseline` before it). A spike — at least
//! `factor` times the baseline and at least `min_calls` — raises one alert, and with
//! `throttle` refuses the agent's calls until its rate falls back under twice the baseline.
//!
//! Pure: time is an argument, so a day of traffic is tested in microseconds. Counts live in
//! buckets of a fifth of the window; a key's memory is bounded by baseline / bucket.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// How many times the baseline is a spike.
    pub factor: f64,
    /// The window compared (default 5 minutes).
    pub window: Duration,
    /// How far back the baseline reaches (default 1 hour).
    pub baseline: Duration,
    /// Fewer calls than this in a window are never a spike.
    pub min_calls: u64,
    /// Refuse a spiking agent's calls.
    pub throttle: bool,
}

/// A spike, when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// `agent:NAME` or `credential:SERVICE:OWNER`.
    pub key: String,
    /// Calls in the last window.
    pub calls: u64,
    /// The baseline's calls per window.
    pub baseline: f64,
}

struct Series {
    /// (bucket number, calls), oldest first.
    buckets: VecDeque<(u64, u64)>,
    /// The bucket of the key's first call (the warm-up counts from it).
    first: u64,
    flagged: bool,
}

/// The detector.
pub struct Detector {
    thresholds: Thresholds,
    bucket: Duration,
    series: HashMap<String, Series>,
}

impl Detector {
    /// A detector with `thresholds`.
    pub fn new(thresholds: Thresholds) -> Self {
        let bucket = (thresholds.window / 5).max(Duration::from_millis(1));
        Self {
            thresholds,
            bucket,
            series: HashMap::new(),
        }
    }

    fn buckets_in(&self, span: Duration) -> u64 {
        (span.as_nanos() / self.bucket.as_nanos()).max(1) as u64
    }

    /// Counts one call for `key` at `now` (time since any fixed start); returns the spike if
    /// this call starts one.
    pub fn observe(&mut self, key: &str, now: Duration) -> Option<Spike> {
        let current = (now.as_nanos() / self.bucket.as_nanos()) as u64;
        let window = self.buckets_in(self.thresholds.window);
        let history = self.buckets_in(self.thresholds.baseline);
        // Called on every agent call: the key is copied only the first time it is seen.
        let series = crate::slot(&mut self.series, key, || Series {
            buckets: VecDeque::new(),
            first: current,
            flagged: false,
        });
        let first_seen = series.first;
        match series.buckets.back_mut() {
            Some((bucket, calls)) if *bucket == current => *calls += 1,
            _ => series.buckets.push_back((current, 1)),
        }
        while series
            .buckets
            .front()
            .is_some_and(|(b, _)| b + window + history <= current)
        {
            series.buckets.pop_front();
        }
        let recent: u64 = series
            .buckets
            .iter()
            .filter(|(b, _)| b + window > current)
            .map(|(_, c)| c)
            .sum();
        let older: u64 = series
            .buckets
            .iter()
            .filter(|(b, _)| b + window <= current)
            .map(|(_, c)| c)
            .sum();
        let baseline = older as f64 / (history as f64 / window as f64);
        // No verdict before a whole baseline period has been seen.
        let warm = current >= first_seen + history + window;
        let spiking = warm
            && recent >= self.thresholds.min_calls
            && recent as f64 >= self.thresholds.factor * baseline.max(1.0);
        if spiking && !series.flagged {
            series.flagged = true;
            return Some(Spike {
                key: key.to_owned(),
                calls: recent,
                baseline,
            });
        }
        if series.flagged && (recent as f64) < 2.0 * baseline.max(1.0) {
            series.flagged = false;
        }
        None
    }

    /// Whether `key` is refused now (flagged, with throttling on).
    pub fn throttled(&self, key: &str) -> bool {
        self.thresholds.throttle && self.series.get(key).is_some_and(|s| s.flagged)
    }

    /// Keys tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(throttle: bool) -> Detector {
        Detector::new(Thresholds {
            factor: 5.0,
            window: Duration::from_secs(300),
            baseline: Duration::from_secs(3600),
            min_calls: 100,
            throttle,
        })
    }

    /// `per_minute` calls a minute from `from` for `minutes`.
    fn traffic(
        d: &mut Detector,
        key: &str,
        from: u64,
        minutes: u64,
        per_minute: u64,
    ) -> Vec<Spike> {
        let mut spikes = Vec::new();
        for minute in 0..minutes {
            for n in 0..per_minute {
                let at = Duration::from_secs((from + minute) * 60)
                    + Duration::from_millis(n * 60_000 / per_minute);
                spikes.extend(d.observe(key, at));
            }
        }
        spikes
    }

    #[test]
    fn a_fivefold_burst_over_a_steady_baseline_alerts_once_and_throttles_until_it_calms() {
        let mut d = detector(true);
        assert!(
            traffic(&mut d, "agent:bot", 0, 90, 10).is_empty(),
            "steady traffic never alerts"
        );
        let spikes = traffic(&mut d, "agent:bot", 90, 5, 120);
        assert_eq!(spikes.len(), 1, "one alert per spike");
        assert!(
            spikes[0].calls >= 250 && (spikes[0].baseline - 50.0).abs() < 15.0,
            "{spikes:?}"
        );
        assert!(d.throttled("agent:bot"));
        assert!(!d.throttled("agent:other"));
        traffic(&mut d, "agent:bot", 95, 20, 10);
        assert!(!d.throttled("agent:bot"), "back to normal");
    }

    #[test]
    fn small_volumes_and_the_warm_up_never_alert() {
        let mut d = detector(false);
        assert!(
            traffic(&mut d, "agent:new", 0, 10, 500).is_empty(),
            "no baseline yet"
        );
        let mut quiet = detector(false);
        traffic(&mut quiet, "agent:quiet", 0, 90, 1);
        assert!(
            traffic(&mut quiet, "agent:quiet", 90, 5, 15).is_empty(),
            "75 calls is below min_calls"
        );
        assert!(!quiet.throttled("agent:quiet"), "throttling off");
    }
}
