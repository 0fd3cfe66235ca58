//! The policy stack, composed in one function: [`PolicyStack::execute`].
//!
//! From the outside in, and why each sits where it sits:
//! 1. **Idempotency** is outermost: a replayed key must cost nothing, no rate-limit permit, no
//!    attempt, no breaker slot; and the whole outcome of the layers below (after all retries)
//!    is what gets stored.
//! 2. **Retry** wraps everything that is per attempt, so each attempt is judged afresh: a
//!    retry waits for its own permit, and an open breaker ends the retries at once.
//! 3. **Circuit breaker, first look**: an open breaker refuses before the call waits in the
//!    rate limiter's queue for nothing.
//! 4. **Rate limit** (the service's, then the agent's): every attempt is a call the provider
//!    counts, so every attempt needs a permit, held until the attempt completed (see
//!    `limiter`). A first attempt that cannot get one within `queue_wait` is refused with
//!    429; a retry that cannot ends the retries with the last outcome. A 429's `Retry-After`
//!    blocks the limiter for everyone, so the provider's limit holds across agents.
//! 5. **Circuit breaker, admission**: after the permit, so a half-open probe slot is only
//!    taken by a call that goes out; a rejected call gives its permit back unused.
//! 6. **Timeout** is innermost: it bounds one attempt (and never runs past the deadline),
//!    and a timed-out attempt counts as a breaker failure.
//! 7. **Fallback** applies to what comes out when the chain failed: an alternate service (run
//!    by the caller through its own stack), the last good response ([`PolicyStack::stale`]),
//!    or a static response. It is not stored under the idempotency key: the key is released
//!    so that a later retry can still reach the real service.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::debug;
use wireline_store::{IdempotencyClaim, Store};

use crate::breaker::{Admission, Breaker, BreakerState, Transition};
use crate::hints::{Hints, NoHints};
use crate::idempotency;
use crate::limiter::{Limiter, LimiterConfig, Permit, UsageAlert};
use crate::retry::{BudgetConfig, RetryBudget, backoff_cap, full_jitter};

/// A response from the service (or replayed, or from a fallback).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers as received: values are bytes, and a value that is not UTF-8 is kept as it is
    /// (a relayed reply reaches the agent unchanged).
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The first header named `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why one attempt produced no response.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    /// The request provably never reached the service (connection refused, DNS, TLS
    /// handshake): always safe to retry.
    NotSent(String),
    /// The request may have reached the service (connection reset mid-request, bad response).
    Failed(String),
}

/// How a call failed when no response (real or fallback) could be given.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The idempotency key is being used by a request still running.
    InFlight,
    /// The idempotency key was used with a different request.
    KeyMismatch,
    /// No rate-limit permit within the max wait.
    RateLimited {
        /// When a permit will be free.
        retry_after: Duration,
    },
    /// The breaker is open.
    BreakerOpen {
        /// When the next probe is allowed.
        retry_after: Duration,
    },
    /// The service could not be reached (last attempt's error).
    Unreachable {
        /// What went wrong.
        detail: String,
        /// True if the request provably never reached the service.
        not_sent: bool,
    },
    /// The last attempt timed out.
    Timeout,
    /// The store failed (idempotency records could not be read or written).
    Store(String),
}

/// What a call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A response: the service's, a replay, or a fallback.
    Response(Response),
    /// No response.
    Failed(Failure),
}

/// Which fallback produced the response.
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackUsed {
    /// An alternate service.
    Alternate(String),
    /// The last good response, this old.
    Stale {
        /// Age of the stored response.
        age: Duration,
    },
    /// The configured static response.
    Static,
}

/// The record of one call through the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// The result.
    pub outcome: Outcome,
    /// Attempts made against the service (0 for a replay or a refusal).
    pub attempts: u32,
    /// True if the response was replayed from an idempotency record.
    pub replayed: bool,
    /// The fallback used, if any.
    pub fallback: Option<FallbackUsed>,
    /// Time spent waiting for rate-limit permits.
    pub queued: Duration,
}

impl Execution {
    fn failed(failure: Failure, attempts: u32) -> Self {
        Self {
            outcome: Outcome::Failed(failure),
            attempts,
            replayed: false,
            fallback: None,
            queued: Duration::ZERO,
        }
    }

    /// True when the chain failed in a way a fallback may cover: no response, or a 429/5xx
    /// from the service after the retries. Never for 4xx: a fallback would hide a bug.
    pub fn wants_fallback(&self) -> bool {
        match &self.outcome {
            Outcome::Failed(Failure::InFlight | Failure::KeyMismatch | Failure::Store(_)) => false,
            Outcome::Failed(_) => true,
            Outcome::Response(response) => {
                response.status == 429 || is_breaker_failure(response.status)
            }
        }
    }
}

/// Something the operator should know: turned into events and metrics by the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The breaker changed state.
    Breaker(Transition),
    /// A rate-limit window crossed 80 %.
    Usage {
        /// `None` for the service's limit, else the agent's.
        agent: Option<String>,
        /// Which window.
        alert: UsageAlert,
    },
}

/// One call's identity for the stack.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The agent making it (for per-agent limits and idempotency scope).
    pub agent: String,
    /// GET/HEAD/PUT/DELETE, or an operation declared idempotent.
    pub idempotent: bool,
    /// The idempotency key, from the agent or derived.
    pub idempotency_key: Option<String>,
    /// [`idempotency::fingerprint`] of the request; read only with an `idempotency_key`, so
    /// it may be left empty without one.
    pub fingerprint: String,
    /// Where to keep the last good response for the stale fallback (idempotent reads).
    pub stale_key: Option<String>,
}

/// A service's policies, with the product's defaults.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The service (for scopes of stored records).
    pub service: String,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff cap.
    pub backoff: Duration,
    /// Longest single wait.
    pub max_wait: Duration,
    /// Deadline over all attempts and waits.
    pub deadline: Duration,
    /// Retry budget.
    pub budget: BudgetConfig,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long it stays open.
    pub open_for: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// The service's rate limit.
    pub service_limit: Option<LimiterConfig>,
    /// Each agent's rate limit on this service.
    pub agent_limit: Option<LimiterConfig>,
    /// How long idempotency records live.
    pub idempotency_ttl: Duration,
    /// How old a last good response may be to serve as a fallback.
    pub stale_for: Option<Duration>,
    /// A static response to fall back to.
    pub static_fallback: Option<Response>,
}

impl PolicyConfig {
    /// The product's defaults for `service`.
    pub fn defaults(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            budget: BudgetConfig::default(),
            breaker_failures: 5,
            open_for: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            service_limit: None,
            agent_limit: None,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            stale_for: None,
            static_fallback: None,
        }
    }
}

type SignalSink = Arc<dyn Fn(Signal) + Send + Sync>;

/// One service's stack: its breaker, budget and limiters live here, shared by every call.
pub struct PolicyStack {
    config: PolicyConfig,
    store: Arc<dyn Store>,
    breaker: Mutex<Breaker>,
    budget: Mutex<RetryBudget>,
    service_limiter: Option<Arc<Limiter>>,
    agent_limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    signals: SignalSink,
    hints: Arc<dyn Hints>,
}

/// 500, 502, 503, 504: the statuses that count against the breaker (and may be retried).
pub fn is_breaker_failure(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// The response's `Retry-After`, either form ([`wireline_core::retry_after`]).
fn retry_after(response: &Response) -> Option<Duration> {
    wireline_core::retry_after::parse(response.header("retry-after")?, jiff::Timestamp::now())
}

impl PolicyStack {
    /// A stack for one service; `signals` receives breaker transitions and usage alerts.
    pub fn new(
        config: PolicyConfig,
        store: Arc<dyn Store>,
        signals: impl Fn(Signal) + Send + Sync + 'static,
    ) -> Self {
        Self {
            breaker: Mutex::new(Breaker::new(config.breaker_failures, config.open_for)),
            budget: Mutex::new(RetryBudget::new(config.budget)),
            service_limiter: config
                .service_limit
                .as_ref()
                .map(|limit| Arc::new(Limiter::new(limit))),
            agent_limiters: Mutex::new(HashMap::new()),
            config,
            store,
            signals: Arc::new(signals),
            hints: Arc::new(NoHints),
        }
    }

    /// The same stack, reading what the provider says in its headers through `hints`.
    pub fn with_hints(mut self, hints: Arc<dyn Hints>) -> Self {
        self.hints = hints;
        self
    }

    /// The policies this stack runs.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker
            .lock()
            .map(|b| b.state(Instant::now()))
            .unwrap_or(BreakerState::Closed)
    }

    /// Usage of the service's limiter windows.
    pub fn usage(&self) -> Vec<(String, f64)> {
        self.service_limiter
            .as_ref()
            .map(|l| l.usage(Instant::now()))
            .unwrap_or_default()
    }

    fn agent_limiter(&self, agent: &str) -> Option<Arc<Limiter>> {
        let config = self.config.agent_limit.as_ref()?;
        let mut limiters = self.agent_limiters.lock().ok()?;
        Some(Arc::clone(
            limiters
                .entry(agent.to_owned())
                .or_insert_with(|| Arc::new(Limiter::new(config))),
        ))
    }

    fn signal(&self, signal: Signal) {
        (self.signals)(signal);
    }

    /// Runs `send` (one attempt per call, numbered from 1) through the whole stack.
    pub async fn execute<F, Fut>(&self, call: &Call, send: F) -> Execution
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Response, AttemptError>>,
    {
        // 1. Idempotency: the key's record, scoped to the service and the agent.
        let keyed = call
            .idempotency_key
            .as_ref()
            .map(|key| (format!("{}:{}", self.config.service, call.agent), key));
        if let Some((scope, key)) = &keyed {
            let now = jiff::Timestamp::now();
            let expires = now + self.config.idempotency_ttl;
            match self
                .store
                .idempotency_claim(scope, key, call.fingerprint.as_bytes(), now, expires)
                .await
            {
                Ok(IdempotencyClaim::Claimed) => {}
                Ok(IdempotencyClaim::Completed(stored)) => {
                    return match idempotency::decode(&stored) {
                        Some((response, _)) => Execution {
                            outcome: Outcome::Response(response),
                            attempts: 0,
                            replayed: true,
                            fallback: None,
                            queued: Duration::ZERO,
                        },
                        None => Execution::failed(
                            Failure::Store("a stored idempotent response is unreadable".into()),
                            0,
                        ),
                    };
                }
                Ok(IdempotencyClaim::InFlight) => return Execution::failed(Failure::InFlight, 0),
                Ok(IdempotencyClaim::Mismatch) => {
                    return Execution::failed(Failure::KeyMismatch, 0);
                }
                Err(error) => return Execution::failed(Failure::Store(error.to_string()), 0),
            }
        }
        let execution = self.limited(call, send).await;
        if let Some((scope, key)) = &keyed {
            let stored = match &execution.outcome {
                // What the service answered is the outcome of this key, except a 401 or a
                // 429: the service refused before doing anything (who is calling, or not
                // now), so a later try, with a fixed credential or after the wait, may do it.
                Outcome::Response(response) if !matches!(response.status, 401 | 429) => {
                    let bytes = idempotency::encode(response, jiff::Timestamp::now());
                    self.store.idempotency_complete(scope, key, &bytes).await
                }
                // Nothing reached the service, or we cannot know: free the key.
                _ => self.store.idempotency_release(scope, key).await,
            };
            if let Err(error) = stored {
                debug!(%error, "idempotency record not updated");
            }
        }
        execution
    }

    /// The retry loop, then the last good response kept for the stale fallback.
    async fn limited<F, Fut>(&self, call: &Call, send: F) -> Execution
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Response, AttemptError>>,
    {
        let execution = self.retried(call, send).await;
        if let (Some(key), Some(stale_for), Outcome::Response(response)) =
            (&call.stale_key, self.config.stale_for, &execution.outcome)
            && (200..300).contains(&response.status)
        {
            let expires = jiff::Timestamp::now() + stale_for;
            let bytes = idempotency::encode(response, jiff::Timestamp::now());
            if let Err(error) = self.store.put("stale", key, &bytes, Some(expires)).await {
                debug!(%error, "last good response not kept");
            }
        }
        execution
    }

    /// The permits of one attempt (layer 4): the service's, then the agent's. `Err` is how
    /// long until one would be free.
    async fn permits(&self, call: &Call) -> Result<(Vec<Permit>, Duration), Duration> {
        let mut permits = Vec::with_capacity(2);
        let mut queued = Duration::ZERO;
        let limiters = [
            (self.service_limiter.clone(), None),
            (self.agent_limiter(&call.agent), Some(&call.agent)),
        ];
        for (limiter, agent) in limiters {
            let Some(limiter) = limiter else { continue };
            let (permit, waited, alerts) = limiter.acquire().await?;
            permits.push(permit);
            queued += waited;
            for alert in alerts {
                self.signal(Signal::Usage {
                    agent: agent.cloned(),
                    alert,
                });
            }
        }
        Ok((permits, queued))
    }

    /// 2. Retry, around 3.-5. the breaker, the rate limit and 6. the timeout.
    async fn retried<F, Fut>(&self, call: &Call, mut send: F) -> Execution
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Response, AttemptError>>,
    {
        let config = &self.config;
        let started = Instant::now();
        let deadline = started + config.deadline;
        if let Ok(mut budget) = self.budget.lock() {
            budget.deposit(started);
        }
        let may_retry = call.idempotent || call.idempotency_key.is_some();
        let mut attempt = 0;
        let mut queued = Duration::ZERO;
        let mut last: Option<Outcome> = None;
        loop {
            attempt += 1;
            let finish = |outcome, queued| Execution {
                outcome,
                attempts: attempt - 1,
                replayed: false,
                fallback: None,
                queued,
            };
            // 3. An open breaker refuses before the call queues for a permit.
            let open = self
                .breaker
                .lock()
                .ok()
                .and_then(|breaker| breaker.open_remaining(Instant::now()));
            if let Some(retry_after) = open {
                return finish(
                    Outcome::Failed(Failure::BreakerOpen { retry_after }),
                    queued,
                );
            }
            // 4. Rate limit.
            let permits = match self.permits(call).await {
                Ok((permits, waited)) => {
                    queued += waited;
                    permits
                }
                Err(retry_after) => {
                    return finish(
                        last.take()
                            .unwrap_or(Outcome::Failed(Failure::RateLimited { retry_after })),
                        queued,
                    );
                }
            };
            let now = Instant::now();
            // 5. Breaker admission.
            let admission = match self.breaker.lock() {
                Ok(mut breaker) => {
                    let (admission, transition) = breaker.admit(now);
                    if let Some(transition) = transition {
                        self.signal(Signal::Breaker(transition));
                    }
                    admission
                }
                Err(_) => Admission::Allowed { probe: false },
            };
            if let Admission::Rejected { retry_after } = admission {
                for permit in permits {
                    permit.unused();
                }
                return finish(
                    Outcome::Failed(Failure::BreakerOpen { retry_after }),
                    queued,
                );
            }
            // 6. Timeout, never past the deadline.
            let limit = config
                .timeout
                .min(deadline.saturating_duration_since(now))
                .max(Duration::from_millis(1));
            let result = tokio::time::timeout(limit, send(attempt)).await;
            let after = Instant::now();
            // The attempt is over: its permits count for a window from now on.
            drop(permits);
            let (outcome, retryable, wait_hint) = match result {
                Ok(Ok(response)) => {
                    let failure = is_breaker_failure(response.status);
                    self.record(after, !failure);
                    if let Some(limiter) = &self.service_limiter
                        && let Some(ratio) = self.hints.usage(&response.headers)
                        && let Some(alert) = limiter.observe_usage(ratio)
                    {
                        self.signal(Signal::Usage { agent: None, alert });
                    }
                    let hint = retry_after(&response);
                    if response.status == 429
                        && let (Some(limiter), Some(wait)) = (&self.service_limiter, hint)
                    {
                        limiter.block_until(after + wait);
                    }
                    // The provider's own advice wins over the status; it never makes an
                    // unsafe request retryable.
                    let retryable = match self.hints.should_retry(&response) {
                        Some(advice) => may_retry && advice,
                        None => may_retry && (response.status == 429 || failure),
                    };
                    (Outcome::Response(response), retryable, hint)
                }
                Ok(Err(AttemptError::NotSent(detail))) => {
                    self.record(after, false);
                    (
                        Outcome::Failed(Failure::Unreachable {
                            detail,
                            not_sent: true,
                        }),
                        true,
                        None,
                    )
                }
                Ok(Err(AttemptError::Failed(detail))) => {
                    self.record(after, false);
                    (
                        Outcome::Failed(Failure::Unreachable {
                            detail,
                            not_sent: false,
                        }),
                        may_retry,
                        None,
                    )
                }
                Err(_elapsed) => {
                    self.record(after, false);
                    (Outcome::Failed(Failure::Timeout), may_retry, None)
                }
            };
            let finish = |outcome| Execution {
                outcome,
                attempts: attempt,
                replayed: false,
                fallback: None,
                queued,
            };
            if !retryable || attempt >= config.attempts {
                return finish(outcome);
            }
            let wait = match wait_hint {
                // The service said when: honour it, unless it is longer than we may wait.
                Some(hint) if hint > config.max_wait => return finish(outcome),
                Some(hint) => hint,
                None => full_jitter(
                    backoff_cap(config.backoff, config.max_wait, attempt),
                    &mut rand::rng(),
                ),
            };
            if after + wait >= deadline {
                return finish(outcome);
            }
            let granted = self
                .budget
                .lock()
                .map(|mut b| b.try_withdraw(after))
                .unwrap_or(false);
            if !granted {
                debug!(service = %config.service, "retry budget exhausted; not retrying");
                return finish(outcome);
            }
            last = Some(outcome);
            tokio::time::sleep(wait).await;
        }
    }

    fn record(&self, now: Instant, success: bool) {
        let transition = self
            .breaker
            .lock()
            .ok()
            .and_then(|mut breaker| breaker.record(now, success));
        if let Some(transition) = transition {
            self.signal(Signal::Breaker(transition));
        }
    }

    /// The last good response for `call`, if one younger than `stale_for` is kept.
    pub async fn stale(&self, call: &Call) -> Option<(Response, FallbackUsed)> {
        let key = call.stale_key.as_ref()?;
        self.config.stale_for?;
        let now = jiff::Timestamp::now();
        let bytes = self.store.get("stale", key, now).await.ok().flatten()?;
        let (response, at) = idempotency::decode(&bytes)?;
        let age = now.duration_since(at).unsigned_abs();
        Some((response, FallbackUsed::Stale { age }))
    }

    /// The configured static response, if any.
    pub fn static_fallback(&self) -> Option<(Response, FallbackUsed)> {
        self.config
            .static_fallback
            .clone()
            .map(|response| (response, FallbackUsed::Static))
    }
}
