//! Circuit breaker, per service (resilience4j's count-based breaker, simplified).
//!
//! Closed: calls pass; `failures` consecutive failures open it. Open: calls are refused at
//! once, with how long until the probe. After `open_for`: half-open, exactly one call (the
//! probe) passes; its success closes the breaker, its failure opens it again for another
//! `open_for`. What counts as a failure is the caller's decision (connection errors, timeouts,
//! 500/502/503/504; never 4xx or 429), reported through [`Breaker::record`].

use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state, as reported in metrics and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl BreakerState {
    /// Name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// A state change, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
}

/// Whether a call may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (`probe` is true for the half-open probe).
    Allowed {
        /// This call is the probe.
        probe: bool,
    },
    /// Refused; the probe is allowed after this long.
    Rejected {
        /// Time until the next probe.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// One service's breaker.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_for: Duration,
    state: State,
}

impl Breaker {
    /// A closed breaker that opens after `failures` consecutive failures for `open_for`.
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for,
            state: State::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The state at `now` (an open breaker whose time is up reports half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How long an open breaker stays open from `now` (`None` unless open and not yet due for
    /// its probe). Looking changes nothing.
    pub fn open_remaining(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Open { until } if now < until => Some(until - now),
            _ => None,
        }
    }

    /// Asks to make a call at `now`. A transition to half-open is returned with the admission.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        match self.state {
            State::Closed { .. } => (Admission::Allowed { probe: false }, None),
            State::Open { until } if now < until => (
                Admission::Rejected {
                    retry_after: until - now,
                },
                None,
            ),
            State::Open { .. } => {
                self.state = State::HalfOpen {
                    probe_in_flight: true,
                };
                let transition = Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                };
                (Admission::Allowed { probe: true }, Some(transition))
            }
            State::HalfOpen {
                probe_in_flight: true,
            } => {
                // Another call is probing; until it answers, refuse for a short while.
                (
                    Admission::Rejected {
                        retry_after: Duration::from_secs(1),
                    },
                    None,
                )
            }
            State::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = State::HalfOpen {
                    probe_in_flight: true,
                };
                (Admission::Allowed { probe: true }, None)
            }
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&mut self, now: Instant, success: bool) -> Option<Transition> {
        match (self.state, success) {
            (State::Closed { .. }, true) => {
                self.state = State::Closed {
                    consecutive_failures: 0,
                };
                None
            }
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.failures {
                    self.state = State::Open {
                        until: now + self.open_for,
                    };
                    Some(Transition {
                        from: BreakerState::Closed,
                        to: BreakerState::Open,
                    })
                } else {
                    self.state = State::Closed {
                        consecutive_failures: failures,
                    };
                    None
                }
            }
            (State::HalfOpen { .. }, true) => {
                self.state = State::Closed {
                    consecutive_failures: 0,
                };
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                })
            }
            (State::HalfOpen { .. }, false) => {
                self.state = State::Open {
                    until: now + self.open_for,
                };
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Open,
                })
            }
            // A call admitted before the breaker opened finished late: it changes nothing.
            (State::Open { .. }, _) => None,
        }
    }

    /// Forgets an admitted call without an outcome (it never reached the service, e.g. it was
    /// cancelled): a probe slot is freed.
    pub fn release(&mut self) {
        if let State::HalfOpen {
            probe_in_flight: true,
        } = self.state
        {
            self.state = State::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_once_and_closes_or_reopens() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut breaker = Breaker::new(5, Duration::from_secs(60));
        for _ in 0..4 {
            assert_eq!(breaker.admit(at(0)).0, Admission::Allowed { probe: false });
            assert_eq!(breaker.record(at(0), false), None);
        }
        assert_eq!(
            breaker.record(at(0), true),
            None,
            "a success resets the count"
        );
        for n in 0..5 {
            breaker.admit(at(1));
            let transition = breaker.record(at(1), false);
            assert_eq!(
                transition.is_some(),
                n == 4,
                "opens on the fifth consecutive failure"
            );
        }
        assert_eq!(breaker.state(at(1)), BreakerState::Open);
        assert_eq!(
            breaker.admit(at(31)).0,
            Admission::Rejected {
                retry_after: Duration::from_secs(30)
            }
        );
        let (admission, transition) = breaker.admit(at(61));
        assert_eq!(admission, Admission::Allowed { probe: true });
        assert_eq!(
            transition,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
        assert!(
            matches!(breaker.admit(at(61)).0, Admission::Rejected { .. }),
            "one probe at a time"
        );
        assert_eq!(
            breaker.record(at(62), false),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        assert_eq!(
            breaker.admit(at(100)).0,
            Admission::Rejected {
                retry_after: Duration::from_secs(22)
            }
        );
        assert_eq!(breaker.admit(at(122)).0, Admission::Allowed { probe: true });
        assert_eq!(
            breaker.record(at(122), true),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert_eq!(breaker.state(at(122)), BreakerState::Closed);
    }

    #[test]
    fn a_released_probe_frees_the_slot() {
        let now = Instant::now();
        let mut breaker = Breaker::new(1, Duration::from_secs(10));
        breaker.admit(now);
        breaker.record(now, false);
        let later = now + Duration::from_secs(10);
        assert_eq!(breaker.admit(later).0, Admission::Allowed { probe: true });
        breaker.release();
        assert_eq!(breaker.admit(later).0, Admission::Allowed { probe: true });
    }
}
