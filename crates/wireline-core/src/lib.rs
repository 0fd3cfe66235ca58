//! Wireline's vocabulary: the words every other crate speaks.
//!
//! - [`units`]: durations (`"30s"`), rates (`"100/s"`) and sizes (`"1MiB"`) as they appear in
//!   `wireline.toml`, parsed once with clear errors.
//! - [`event`]: the CloudEvents 1.0 envelope that every pattern appends to the event log.
//! - [`error`]: where an error came from and whether a retry can help, so retry and breaker
//!   code match on data, never on strings.
//! - [`problem`]: the catalogue of RFC 9457 problem types Wireline answers with.
//! - [`glob`]: event type patterns such as `stripe.payment_intent.*`.
//! - [`retry_after`]: the one `Retry-After` parser (seconds and HTTP-date), bounded.
//!
//! This crate does no IO and knows no runtime: no tokio, no files, no sockets.
#![warn(missing_docs)]

pub mod error;
pub mod event;
pub mod glob;
pub mod json;
pub mod problem;
pub mod retry_after;
pub mod units;

pub use error::{Origin, Retryable};
pub use event::{Event, Offset};
pub use glob::TypeGlob;
pub use problem::{Problem, ProblemKind};
pub use units::{Duration, Rate, Size};
