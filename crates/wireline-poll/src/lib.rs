//! The polling pattern: each `[services.NAME.poll]` source is synced on a schedule through
//! the service's policy stack (as the operator, with the service's credential), page by page,
//! with a durable checkpoint after every page ([`sync`]), by one task per source
//! ([`Pollers`]).
//!
//! Items become CloudEvents appended under the dedupe id `event:{service}:{id}` — the same
//! key the service's webhooks use — so in the hybrid pattern an event reaches the log once,
//! whichever path saw it first.

pub mod report;
pub mod sync;

mod scheduler;

pub use scheduler::Pollers;
