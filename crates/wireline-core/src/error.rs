//! Error kinds shared by every crate: where an error came from and whether a retry can help.
//!
//! Library errors stay typed (each crate its own `thiserror` enum) and implement [`Classify`],
//! so the retry policy, the circuit breaker and the HTTP edge decide on data, never by reading
//! message strings.

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The service Wireline called (a 5xx, a timeout, a refused connection).
    Upstream,
    /// The agent or provider that called Wireline (a bad token, a malformed body).
    Caller,
    /// Wireline itself (the store, a bug).
    Internal,
    /// The configuration (a missing secret, an invalid value).
    Config,
}

/// Whether trying the same thing again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retryable {
    /// No: the same request will fail the same way.
    No,
    /// Yes, after a backoff.
    Yes,
    /// Yes, but not before this long (a `Retry-After` the other side gave us).
    After(std::time::Duration),
}

/// Implemented by every error that crosses a crate boundary.
pub trait Classify {
    /// Where the error came from.
    fn origin(&self) -> Origin;
    /// Whether a retry can help.
    fn retryable(&self) -> Retryable;
}
