//! The problem types Wireline answers clients with (RFC 9457 `application/problem+json`).
//!
//! The catalogue is data here; turning a [`Problem`] into an HTTP response happens in exactly
//! one place per server (the binary's `server/problem.rs`). The `type` URIs are part of the
//! public contract: clients match on them, so a kind is never renamed.

use serde::Serialize;

/// The stable prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "https://wireline.dev/problems/";

/// Every kind of problem Wireline reports to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The request is malformed (bad JSON, a missing field).
    BadRequest,
    /// No or an unknown bearer token.
    Unauthorized,
    /// The token is valid but lacks the scope.
    Forbidden,
    /// No such route or resource.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The body is larger than `[server] body_limit`.
    BodyTooLarge,
    /// Too many requests; `retry_after` says when to come back.
    RateLimited,
    /// The store cannot be reached; retry later.
    StoreUnavailable,
    /// No such service or operation.
    UnknownService,
    /// The proxied path tries to leave the service's base URL.
    ForbiddenTarget,
    /// The same idempotency key is still being processed.
    IdempotencyInFlight,
    /// The idempotency key was used with a different request.
    IdempotencyMismatch,
    /// The upstream service could not be reached.
    UpstreamUnreachable,
    /// The upstream service did not answer in time.
    UpstreamTimeout,
    /// The service's circuit breaker is open.
    CircuitOpen,
    /// No usable credential for the service.
    CredentialUnavailable,
    /// A service's OAuth 2.0 token could not be obtained or refreshed (revoked, expired,
    /// refused): calls fail at once until an operator fixes the credential.
    CredentialExpired,
    /// A webhook whose signature does not verify (missing, wrong, or too old).
    BadSignature,
    /// A bug or an unexpected failure inside Wireline.
    Internal,
}

impl ProblemKind {
    /// The last segment of the `type` URI.
    pub const fn slug(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::BodyTooLarge => "body-too-large",
            Self::RateLimited => "rate-limited",
            Self::StoreUnavailable => "store-unavailable",
            Self::UnknownService => "unknown-service",
            Self::ForbiddenTarget => "forbidden-target",
            Self::IdempotencyInFlight => "idempotency-in-flight",
            Self::IdempotencyMismatch => "idempotency-mismatch",
            Self::UpstreamUnreachable => "upstream-unreachable",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::CircuitOpen => "circuit-open",
            Self::CredentialUnavailable => "credential-unavailable",
            Self::CredentialExpired => "credential-expired",
            Self::BadSignature => "bad-signature",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status code.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::BodyTooLarge => 413,
            Self::RateLimited => 429,
            Self::StoreUnavailable => 503,
            Self::UnknownService => 404,
            Self::ForbiddenTarget => 400,
            Self::IdempotencyInFlight => 409,
            Self::IdempotencyMismatch => 422,
            Self::UpstreamUnreachable => 502,
            Self::UpstreamTimeout => 504,
            Self::CircuitOpen => 503,
            Self::CredentialUnavailable => 503,
            Self::CredentialExpired => 503,
            Self::BadSignature => 401,
            Self::Internal => 500,
        }
    }

    /// A short, fixed summary of the kind.
    pub const fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "The request is malformed",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed for this agent",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::BodyTooLarge => "Request body too large",
            Self::RateLimited => "Too many requests",
            Self::StoreUnavailable => "Storage unavailable",
            Self::UnknownService => "No such service or operation",
            Self::ForbiddenTarget => "Target outside the service",
            Self::IdempotencyInFlight => "Idempotency key in use",
            Self::IdempotencyMismatch => "Idempotency key reused with another request",
            Self::UpstreamUnreachable => "Upstream unreachable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::CircuitOpen => "Upstream circuit open",
            Self::CredentialUnavailable => "Credential unavailable",
            Self::CredentialExpired => "Credential expired",
            Self::BadSignature => "Webhook signature not valid",
            Self::Internal => "Internal error",
        }
    }
}

/// An RFC 9457 problem detail, as sent to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `https://wireline.dev/problems/{slug}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The kind's fixed title.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What happened and what to do about it, for a human. Never contains a secret.
    pub detail: String,
    /// Seconds to wait before retrying, where waiting helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The kind, for the edge that renders the problem.
    #[serde(skip)]
    pub kind: ProblemKind,
}

impl Problem {
    /// A problem of `kind` with a human `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("{TYPE_PREFIX}{}", kind.slug()),
            title: kind.title(),
            status: kind.status(),
            detail: detail.into(),
            retry_after: None,
            kind,
        }
    }

    /// The same problem, telling the client to wait `seconds` before retrying.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}
