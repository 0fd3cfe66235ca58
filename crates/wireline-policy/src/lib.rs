//! The one policy stack every outbound call goes through: idempotency, rate limit, retry,
//! circuit breaker, timeout, fallback.
//!
//! Each policy is a small state machine in its own file that takes the current time
//! (`tokio::time::Instant`, so tests pause and advance it instead of sleeping):
//! [`breaker`], [`retry`] (backoff and the retry budget), [`limiter`] (at most N calls in
//! any window, an optional burst limit, usage and the 80 % alert). [`idempotency`] has the fingerprints and the
//! stored-response format. [`stack`] composes them in one function, with the reason for
//! each layer's place written beside it; the Direct API proxy, the poller and the delivery of
//! events to agents all call that function instead of re-implementing any of it.
//!
//! What this crate does not do: connections. It sees an attempt as a future that yields a
//! status, headers (`http::HeaderMap`, bytes as received) and a body, or an error that says
//! whether the request reached the other side. What a provider says in its own headers
//! (Stripe's retry advice, rate-limit usage) comes from [`hints`], given by the caller.
#![warn(missing_docs)]

pub mod breaker;
pub mod hints;
pub mod idempotency;
pub mod limiter;
pub mod retry;
pub mod stack;

pub use hints::{Hints, NoHints};
pub use stack::{
    AttemptError, Call, Execution, Failure, FallbackUsed, Outcome, PolicyConfig, PolicyStack,
    Response, Signal,
};
