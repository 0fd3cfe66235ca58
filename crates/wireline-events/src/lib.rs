//! The event-sourced pattern, beyond the log itself: trigger rules that derive events from
//! patterns in the log (sequence, absence with durable timers, threshold), projections of the
//! latest state per subject that can be dropped and rebuilt from offset 0, and retention.
//!
//! - [`rules`]: the rules, evaluated in memory, pure (the clock is an argument).
//! - [`runner`]: [`Triggers`], the task that walks the log through the rules, appends derived
//!   events and keeps the rules' state durable, exactly once across restarts.
//! - [`projection`]: [`Projections`], per-subject state kept up to date and rebuilt in a new
//!   generation while readers keep the old one.
//! - [`retention`]: old events deleted or their payloads dropped, per type.
//! - [`Clock`]: the system clock, or a manual one that makes days pass in milliseconds.
#![warn(missing_docs)]

mod clock;
pub mod projection;
pub mod retention;
pub mod rules;
pub mod runner;

pub use clock::{Clock, ManualClock};
pub use projection::Projections;
pub use retention::Retention;
pub use runner::Triggers;

/// The id and subject of a stored event, parsed without the rest of it (rules and projections
/// need nothing else).
#[derive(serde::Deserialize)]
pub(crate) struct Fields<'a> {
    #[serde(borrow)]
    pub(crate) id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) subject: Option<std::borrow::Cow<'a, str>>,
}
