//! Time for rules: the system clock in production, a manual one in tests, so a simulated week
//! of signups runs in milliseconds and timers fire when the test moves the clock.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

/// Where rules get `now` from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The machine's clock.
    #[default]
    System,
    /// A clock that moves only when told to.
    Manual(Arc<ManualClock>),
}

/// A clock for tests and simulations: it stands still until [`ManualClock::set`] or
/// [`ManualClock::advance`], and wakes whatever waits on it.
#[derive(Debug)]
pub struct ManualClock(watch::Sender<Timestamp>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> Arc<Self> {
        Arc::new(Self(watch::Sender::new(now)))
    }

    /// Moves the clock to `now` (never backwards).
    pub fn set(&self, now: Timestamp) {
        self.0.send_if_modified(|current| {
            let later = now > *current;
            if later {
                *current = now;
            }
            later
        });
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let now = *self.0.borrow() + jiff::SignedDuration::try_from(by).unwrap_or_default();
        self.set(now);
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        *self.0.borrow()
    }
}

/// The longest a system-clock wait sleeps before looking again (the machine's clock may jump).
const LONGEST_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

impl Clock {
    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => Timestamp::now(),
            Self::Manual(clock) => clock.now(),
        }
    }

    /// A receiver that sees the manual clock move (`None` for the system clock, which
    /// moves all the time).
    pub fn ticks(&self) -> Option<watch::Receiver<Timestamp>> {
        match self {
            Self::System => None,
            Self::Manual(clock) => Some(clock.0.subscribe()),
        }
    }

    /// Waits until the clock shows `at` or later (a system-clock wait may end early; callers
    /// look at `now` again).
    pub async fn sleep_until(&self, at: Timestamp) {
        match self {
            Self::System => {
                let wait = std::time::Duration::try_from(at.duration_since(Timestamp::now()))
                    .unwrap_or_default();
                tokio::time::sleep(wait.min(LONGEST_SLEEP)).await;
            }
            Self::Manual(clock) => {
                let mut changes = clock.0.subscribe();
                while *changes.borrow_and_update() < at {
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
