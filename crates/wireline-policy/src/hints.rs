//! What a provider says about itself in its responses beyond HTTP's own words: whether a
//! retry may help (Stripe's `Stripe-Should-Retry`), and how much of its rate limit is used
//! (GitHub's `X-RateLimit-*`, HubSpot's, Salesforce's). The stack is given [`Hints`] and asks
//! them; which providers say what is a table kept with the outbound client
//! (`wireline_direct::providers`), not here.

use http::HeaderMap;

use crate::stack::Response;

/// A provider's habits, as the stack needs them. Every answer is optional: `None` means "the
/// provider said nothing", and the stack decides from the status alone.
pub trait Hints: Send + Sync {
    /// Whether the provider says a retry of this response may help.
    fn should_retry(&self, _response: &Response) -> Option<bool> {
        None
    }

    /// The share of its rate limit the provider says is used (0.0 to 1.0 or more).
    fn usage(&self, _headers: &HeaderMap) -> Option<f64> {
        None
    }
}

/// A provider that says nothing beyond HTTP (push endpoints of agents, token endpoints).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHints;

impl Hints for NoHints {}
