//! The policy stack against a scripted upstream, in paused time: every wait is exact and no
//! test sleeps for real.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wireline_policy::breaker::{BreakerState, Transition};
use wireline_policy::limiter::LimiterConfig;
use wireline_policy::{
    AttemptError, Call, Failure, Outcome, PolicyConfig, PolicyStack, Response, Signal,
};
use wireline_store::sqlite::SqliteStore;

/// What the upstream does on each attempt, in order; the last step repeats.
#[derive(Clone)]
enum Step {
    Status(u16, &'static [(&'static str, &'static str)]),
    NotSent,
    Hang,
}

struct Upstream {
    script: Mutex<VecDeque<Step>>,
    last: Mutex<Option<Step>>,
    calls: Mutex<Vec<Instant>>,
}

impl Upstream {
    fn new(script: Vec<Step>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into()),
            last: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
        })
    }

    async fn attempt(&self) -> Result<Response, AttemptError> {
        self.calls.lock().expect("lock").push(Instant::now());
        let step = {
            let mut script = self.script.lock().expect("lock");
            let mut last = self.last.lock().expect("lock");
            match script.pop_front() {
                Some(step) => {
                    *last = Some(step.clone());
                    step
                }
                None => last.clone().expect("a script"),
            }
        };
        match step {
            Step::Status(status, headers) => Ok(Response {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            http::HeaderName::from_static(n),
                            http::HeaderValue::from_static(v),
                        )
                    })
                    .collect(),
                body: format!("{{\"status\":{status}}}").into(),
            }),
            Step::NotSent => Err(AttemptError::NotSent("connection refused".into())),
            Step::Hang => std::future::pending().await,
        }
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }
}

/// A provider that gives its retry advice in `x-retry-advice: yes|no`.
struct Advice;

impl wireline_policy::Hints for Advice {
    fn should_retry(&self, response: &Response) -> Option<bool> {
        match response.header("x-retry-advice")? {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }
    }
}

struct Harness {
    stack: PolicyStack,
    signals: Arc<Mutex<Vec<Signal>>>,
    _dir: tempfile::TempDir,
}

fn harness(configure: impl FnOnce(&mut PolicyConfig)) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let mut config = PolicyConfig::defaults("svc");
    configure(&mut config);
    let signals = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&signals);
    let stack = PolicyStack::new(config, Arc::new(store), move |signal| {
        sink.lock().expect("lock").push(signal)
    })
    .with_hints(Arc::new(Advice));
    Harness {
        stack,
        signals,
        _dir: dir,
    }
}

fn get() -> Call {
    Call {
        agent: "bot".into(),
        idempotent: true,
        fingerprint: "fp".into(),
        ..Call::default()
    }
}

fn post() -> Call {
    Call {
        agent: "bot".into(),
        idempotent: false,
        fingerprint: "fp-post".into(),
        ..Call::default()
    }
}

async fn run(h: &Harness, call: &Call, upstream: &Arc<Upstream>) -> wireline_policy::Execution {
    let upstream = Arc::clone(upstream);
    h.stack
        .execute(call, move |_| {
            let upstream = Arc::clone(&upstream);
            async move { upstream.attempt().await }
        })
        .await
}

fn status(execution: &wireline_policy::Execution) -> Option<u16> {
    match &execution.outcome {
        Outcome::Response(response) => Some(response.status),
        Outcome::Failed(_) => None,
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_is_full_jitter_under_doubling_caps_for_five_attempts() {
    let h = harness(|_| {});
    for _ in 0..20 {
        let upstream = Upstream::new(vec![Step::Status(503, &[])]);
        let execution = run(&h, &get(), &upstream).await;
        assert_eq!(execution.attempts, 5);
        assert_eq!(
            status(&execution),
            Some(503),
            "the last response is passed on"
        );
        let calls = upstream.calls();
        for (retry, pair) in calls.windows(2).enumerate() {
            let wait = pair[1] - pair[0];
            let cap = Duration::from_secs(1 << retry);
            assert!(
                wait <= cap,
                "wait {wait:?} before retry {} above cap {cap:?}",
                retry + 1
            );
        }
        // Let the breaker forget (each call failed 5 times: it opened).
        tokio::time::advance(Duration::from_secs(61)).await;
        let _ = run(&h, &get(), &Upstream::new(vec![Step::Status(200, &[])])).await;
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_a_long_one_ends_the_retries() {
    let h = harness(|_| {});
    let upstream = Upstream::new(vec![
        Step::Status(429, &[("retry-after", "3")]),
        Step::Status(200, &[]),
    ]);
    let execution = run(&h, &get(), &upstream).await;
    assert_eq!((status(&execution), execution.attempts), (Some(200), 2));
    let calls = upstream.calls();
    assert_eq!(calls[1] - calls[0], Duration::from_secs(3));

    let upstream = Upstream::new(vec![Step::Status(429, &[("retry-after", "120")])]);
    let execution = run(&h, &get(), &upstream).await;
    assert_eq!(
        (status(&execution), execution.attempts),
        (Some(429), 1),
        "120 s is above max_wait: the agent is told"
    );
}

#[tokio::test(start_paused = true)]
async fn only_safe_requests_are_retried() {
    let h = harness(|c| c.breaker_failures = 100);
    let upstream = Upstream::new(vec![Step::Status(503, &[])]);
    assert_eq!(
        run(&h, &post(), &upstream).await.attempts,
        1,
        "a POST without a key is not retried after a 503"
    );
    let upstream = Upstream::new(vec![Step::NotSent, Step::Status(201, &[])]);
    let execution = run(&h, &post(), &upstream).await;
    assert_eq!(
        (status(&execution), execution.attempts),
        (Some(201), 2),
        "a request that never left is retried"
    );
    let keyed = Call {
        idempotency_key: Some("k1".into()),
        ..post()
    };
    let upstream = Upstream::new(vec![Step::Status(503, &[]), Step::Status(201, &[])]);
    assert_eq!(
        run(&h, &keyed, &upstream).await.attempts,
        2,
        "a POST with an idempotency key is retried"
    );
    let upstream = Upstream::new(vec![Step::Status(500, &[("x-retry-advice", "no")])]);
    assert_eq!(
        run(&h, &get(), &upstream).await.attempts,
        1,
        "the provider's advice against a retry stops"
    );
    let upstream = Upstream::new(vec![
        Step::Status(409, &[("x-retry-advice", "yes")]),
        Step::Status(200, &[]),
    ]);
    assert_eq!(
        run(&h, &get(), &upstream).await.attempts,
        2,
        "the provider's advice for a retry wins over a 4xx"
    );
    let upstream = Upstream::new(vec![Step::Status(409, &[("x-retry-advice", "yes")])]);
    assert_eq!(
        run(&h, &post(), &upstream).await.attempts,
        1,
        "advice never makes an unsafe request retryable"
    );
    let upstream = Upstream::new(vec![Step::Status(404, &[])]);
    assert_eq!(run(&h, &get(), &upstream).await.attempts, 1, "4xx is final");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_rejects_probes_and_closes() {
    let h = harness(|c| c.attempts = 1);
    let failing = Upstream::new(vec![Step::Status(502, &[])]);
    for _ in 0..5 {
        assert_eq!(status(&run(&h, &get(), &failing).await), Some(502));
    }
    assert_eq!(h.stack.breaker_state(), BreakerState::Open);
    let before = Instant::now();
    let rejected = run(&h, &get(), &failing).await;
    assert_eq!(
        rejected.outcome,
        Outcome::Failed(Failure::BreakerOpen {
            retry_after: Duration::from_secs(60)
        })
    );
    assert_eq!(rejected.attempts, 0);
    assert_eq!(Instant::now(), before, "rejected at once");
    assert_eq!(
        failing.calls().len(),
        5,
        "the upstream is not called while open"
    );
    // 4xx and 429 never count.
    tokio::time::advance(Duration::from_secs(60)).await;
    let probe_fails = Upstream::new(vec![Step::Status(503, &[])]);
    assert_eq!(
        status(&run(&h, &get(), &probe_fails).await),
        Some(503),
        "the probe goes through"
    );
    assert_eq!(
        h.stack.breaker_state(),
        BreakerState::Open,
        "a failed probe reopens"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    let healthy = Upstream::new(vec![Step::Status(200, &[])]);
    assert_eq!(status(&run(&h, &get(), &healthy).await), Some(200));
    assert_eq!(h.stack.breaker_state(), BreakerState::Closed);
    let transitions: Vec<(BreakerState, BreakerState)> = h
        .signals
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|s| match s {
            Signal::Breaker(Transition { from, to }) => Some((*from, *to)),
            Signal::Usage { .. } => None,
        })
        .collect();
    use BreakerState::*;
    assert_eq!(
        transitions,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
    for _ in 0..10 {
        let client_errors = Upstream::new(vec![Step::Status(400, &[]), Step::Status(429, &[])]);
        run(&h, &get(), &client_errors).await;
    }
    assert_eq!(
        h.stack.breaker_state(),
        BreakerState::Closed,
        "4xx and 429 never open the breaker"
    );
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_keeps_an_outage_from_multiplying_load() {
    let h = harness(|c| {
        c.breaker_failures = 1_000_000; // isolate the budget
        c.budget.floor_per_second = 0.1;
    });
    let upstream = Upstream::new(vec![Step::Status(503, &[])]);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let upstream = Arc::clone(&upstream);
        let stack = &h.stack;
        tasks.push(async move {
            stack
                .execute(&get(), |_| {
                    let u = Arc::clone(&upstream);
                    async move { u.attempt().await }
                })
                .await
        });
    }
    let executions = futures_join(tasks).await;
    let attempts: u32 = executions.iter().map(|e| e.attempts).sum();
    let ratio = f64::from(attempts) / 200.0;
    assert!(
        ratio <= 1.25,
        "{attempts} attempts for 200 requests ({ratio:.2} per request)"
    );
    assert!(attempts > 200, "some retries were allowed");
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll all concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *result = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

#[tokio::test(start_paused = true)]
async fn attempts_time_out_and_the_deadline_bounds_the_whole_call() {
    let h = harness(|c| {
        c.timeout = Duration::from_secs(2);
        c.deadline = Duration::from_secs(7);
        c.breaker_failures = 100;
    });
    let upstream = Upstream::new(vec![Step::Hang]);
    let started = Instant::now();
    let execution = run(&h, &get(), &upstream).await;
    assert_eq!(execution.outcome, Outcome::Failed(Failure::Timeout));
    assert!(
        Instant::now() - started <= Duration::from_secs(7),
        "within the deadline"
    );
    assert!(
        execution.attempts >= 2,
        "timeouts of idempotent requests are retried"
    );
}

#[tokio::test(start_paused = true)]
async fn idempotency_replays_refuses_mismatch_and_in_flight() {
    let h = harness(|_| {});
    let call = Call {
        idempotency_key: Some("key-1".into()),
        ..post()
    };
    let upstream = Upstream::new(vec![Step::Status(201, &[("request-id", "req_1")])]);
    let first = run(&h, &call, &upstream).await;
    assert!(!first.replayed);
    let second = run(&h, &call, &upstream).await;
    assert!(second.replayed);
    assert_eq!(
        second.outcome, first.outcome,
        "same status, headers and body"
    );
    assert_eq!(upstream.calls().len(), 1, "no second upstream call");

    let other_body = Call {
        fingerprint: "another body".into(),
        ..call.clone()
    };
    assert_eq!(
        run(&h, &other_body, &upstream).await.outcome,
        Outcome::Failed(Failure::KeyMismatch)
    );

    let slow = Upstream::new(vec![Step::Hang]);
    let racing = Call {
        idempotency_key: Some("key-2".into()),
        ..post()
    };
    let (a, b) = tokio::join!(run(&h, &racing, &slow), async {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        run(&h, &racing, &slow).await
    });
    assert_eq!(b.outcome, Outcome::Failed(Failure::InFlight));
    assert_eq!(a.outcome, Outcome::Failed(Failure::Timeout));

    // A 429 is not stored: the key is free for the next try, which reaches the service.
    let limited = Upstream::new(vec![
        Step::Status(429, &[("retry-after", "100")]),
        Step::Status(201, &[]),
    ]);
    let call3 = Call {
        idempotency_key: Some("key-3".into()),
        ..post()
    };
    assert_eq!(status(&run(&h, &call3, &limited).await), Some(429));
    let retried = run(&h, &call3, &limited).await;
    assert_eq!((status(&retried), retried.replayed), (Some(201), false));
}

#[tokio::test(start_paused = true)]
async fn the_last_good_response_is_kept_for_the_stale_fallback() {
    let h = harness(|c| {
        c.stale_for = Some(Duration::from_secs(900));
        c.attempts = 1;
    });
    let call = Call {
        stale_key: Some("GET /v1/customers/cus_1".into()),
        ..get()
    };
    let ok = Upstream::new(vec![Step::Status(200, &[])]);
    run(&h, &call, &ok).await;
    let down = Upstream::new(vec![Step::NotSent]);
    let failed = run(&h, &call, &down).await;
    assert!(failed.wants_fallback());
    let (response, used) = h.stack.stale(&call).await.expect("a stale response");
    assert_eq!(response.status, 200);
    assert!(matches!(used, wireline_policy::FallbackUsed::Stale { .. }));
    let other = Call {
        stale_key: Some("GET /v1/customers/cus_2".into()),
        ..get()
    };
    assert!(h.stack.stale(&other).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_service_rate_limit_queues_then_refuses_with_retry_after() {
    let h = harness(|c| {
        c.service_limit = Some(LimiterConfig {
            windows: vec!["2/s".parse().expect("rate")],
            headroom: 0.0,
            max_wait: Duration::from_millis(1500),
            burst: None,
        });
    });
    let ok = Upstream::new(vec![Step::Status(200, &[])]);
    for _ in 0..2 {
        assert_eq!(run(&h, &get(), &ok).await.queued, Duration::ZERO);
    }
    assert_eq!(
        run(&h, &get(), &ok).await.queued,
        Duration::from_secs(1),
        "the third waits until the first leaves the window"
    );
    let h = harness(|c| {
        c.service_limit = Some(LimiterConfig {
            windows: vec!["1/s".parse().expect("rate")],
            headroom: 0.0,
            max_wait: Duration::from_millis(100),
            burst: None,
        });
    });
    run(&h, &get(), &ok).await;
    let refused = run(&h, &get(), &ok).await;
    assert_eq!(
        refused.outcome,
        Outcome::Failed(Failure::RateLimited {
            retry_after: Duration::from_secs(1)
        })
    );
    let usage: Vec<Signal> = h.signals.lock().expect("lock").clone();
    assert!(
        usage
            .iter()
            .any(|s| matches!(s, Signal::Usage { agent: None, .. })),
        "1 of 1 is above 80 %: {usage:?}"
    );
}
