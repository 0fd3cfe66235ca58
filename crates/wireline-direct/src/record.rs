//! Audit events, alerts and metrics for every call.
//!
//! Every call becomes a `wireline.direct.call` event in the log; breaker transitions become
//! `wireline.direct.breaker` events; what needs a human becomes a `wireline.alert.*` event,
//! also POSTed to `[alerts] url` if set. Events are appended by one background task so the
//! agent's reply never waits on the audit write; [`Recorder::shutdown`] drains it before the
//! store closes, so a clean stop loses no record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rand::RngCore;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;
use wireline_core::Event;
use wireline_policy::breaker::{BreakerState, Transition};
use wireline_policy::{Execution, Failure, FallbackUsed, Outcome, Signal};
use wireline_store::{NewEvent, Store};

struct Record {
    /// The event, serialized by the caller (a call event's `event` carries only the indexed
    /// fields; its data is in the JSON alone).
    new: NewEvent,
    alert: bool,
}

/// Records appended together at most (one store batch).
const RECORD_BATCH: usize = 1024;

/// Logs an alert; returns the POST of it to `[alerts] url`, if set, to run in the background
/// with its own retries (three attempts: at once, after 1 s, after 5 s), so a slow chat webhook never
/// holds up the audit trail. `slack = true` sends Slack-compatible JSON (`{"text": ...}`),
/// else the CloudEvent itself.
fn alert(
    client: &reqwest::Client,
    url: Option<&str>,
    slack: bool,
    event: &Event,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let data = event
        .data
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    warn!(alert = %event.ty, data = %data, "alert");
    metrics::counter!("wireline_alerts_total", "type" => event.ty.clone()).increment(1);
    let url = url?;
    let (content_type, body) = if slack {
        let text = format!(":rotating_light: *{}* {} at {}", event.ty, data, event.time);
        (
            "application/json",
            serde_json::to_vec(&json!({ "text": text })).unwrap_or_default(),
        )
    } else {
        (
            "application/cloudevents+json",
            serde_json::to_vec(event).unwrap_or_default(),
        )
    };
    let (client, url) = (client.clone(), url.to_owned());
    Some(async move {
        for wait in [0u64, 1, 5] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let sent = client
                .post(&url)
                .header("content-type", content_type)
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => warn!(status = %response.status(), "[alerts] url refused an alert"),
                Err(error) => {
                    warn!(error = %error.without_url(), "alert not delivered to [alerts] url")
                }
            }
        }
        warn!("alert given up after 3 attempts; it stays in the event log");
    })
}

/// The background recorder.
pub(crate) struct Recorder {
    sender: Mutex<Option<mpsc::UnboundedSender<Record>>>,
    /// Set by [`Recorder::shutdown`]: the task stops gathering and writes what it has.
    stop: tokio::sync::watch::Sender<bool>,
    /// Call metrics per service, registered on first use.
    metrics: Mutex<HashMap<String, ServiceMetrics>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct CallRecord<'a> {
    pub agent: &'a str,
    pub service: &'a str,
    pub operation: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub execution: &'a Execution,
    pub latency: Duration,
    pub breaker: BreakerState,
    /// The service's rate-limit usage per window after the call (`[]` without a limit).
    pub usage: &'a [(String, f64)],
}

/// A new event id: `wl_`, the time in milliseconds (12 hex digits), 80 random bits. Unique as
/// a random id is, but in time order (as UUIDv7 is), so the log's unique index on ids grows at
/// its end: a batch of audit events changes a few index pages instead of one page per event,
/// and what a commit writes shrinks with it.
fn event_id() -> String {
    let millis = Timestamp::now().as_millisecond().max(0);
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    format!("wl_{millis:012x}{}", hex::encode(random))
}

fn event(ty: &str, service: &str, subject: Option<&str>, data: serde_json::Value) -> Event {
    let mut event = Event::new(
        event_id(),
        format!("wireline://direct/{service}"),
        ty,
        Timestamp::now(),
        data,
    );
    event.subject = subject.map(str::to_owned);
    event
}

fn outcome_label(execution: &Execution) -> (&'static str, Option<u16>) {
    match &execution.outcome {
        Outcome::Response(response) => (
            match response.status / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            },
            Some(response.status),
        ),
        Outcome::Failed(failure) => (
            match failure {
                Failure::InFlight => "idempotency_in_flight",
                Failure::KeyMismatch => "idempotency_mismatch",
                Failure::RateLimited { .. } => "rate_limited",
                Failure::BreakerOpen { .. } => "breaker_open",
                Failure::Unreachable { .. } => "unreachable",
                Failure::Timeout => "timeout",
                Failure::Store(_) => "store_error",
            },
            None,
        ),
    }
}

/// One service's call metrics, registered once: looking a labelled metric up on every call
/// (its labels built as strings, the registry hashed) cost more than counting.
struct ServiceMetrics {
    attempts: metrics::Counter,
    retries: metrics::Counter,
    duration: metrics::Histogram,
    /// Per agent, per outcome.
    requests: HashMap<String, HashMap<&'static str, metrics::Counter>>,
    /// The limiter's usage ratio per window.
    usage: HashMap<String, metrics::Gauge>,
}

impl ServiceMetrics {
    fn new(service: &str) -> Self {
        Self {
            attempts: metrics::counter!("wireline_direct_attempts_total", "service" => service.to_owned()),
            retries: metrics::counter!("wireline_direct_retries_total", "service" => service.to_owned()),
            duration: metrics::histogram!("wireline_direct_request_duration_seconds", "service" => service.to_owned()),
            requests: HashMap::new(),
            usage: HashMap::new(),
        }
    }
}

/// The type of a call's audit event.
const CALL_EVENT: &str = "wireline.direct.call";
const JSON: &str = "application/json";

/// A call's audit event as CloudEvents JSON: the fields of [`Event`], in its order.
#[derive(serde::Serialize)]
struct CallEvent<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    subject: &'a str,
    time: Timestamp,
    datacontenttype: &'a str,
    data: CallData<'a>,
}

/// The audit event's data for one call.
#[derive(serde::Serialize)]
struct CallData<'a> {
    agent: &'a str,
    service: &'a str,
    operation: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: Option<u16>,
    outcome: &'static str,
    attempts: u32,
    replayed: bool,
    latency_ms: f64,
    queued_ms: f64,
    breaker: &'static str,
    fallback: Option<String>,
}

fn fallback_label(fallback: &Option<FallbackUsed>) -> Option<String> {
    fallback.as_ref().map(|used| match used {
        FallbackUsed::Alternate(name) => format!("service:{name}"),
        FallbackUsed::Stale { .. } => "stale".to_owned(),
        FallbackUsed::Static => "static".to_owned(),
    })
}

impl Recorder {
    /// Starts the background task.
    pub(crate) fn start(
        store: std::sync::Arc<dyn Store>,
        client: reqwest::Client,
        alert_url: Option<String>,
        alert_slack: bool,
        flush: Duration,
    ) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Record>();
        let (stop, mut stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Gather what arrives within `flush` ([events] audit_flush) and append it as one
            // store job: the lot shares one durable commit (an fsync) and one wake-up of the
            // store's writer, so the recorder keeps up with the proxy instead of queueing
            // without bound. (Appending them one by one, even concurrently, let the writer
            // commit after every few events: the commits, not the rows, were most of the
            // cost.) The price: events land up to `flush` after the reply (which never waits
            // for them), and a crash loses that last stretch; a clean stop loses nothing.
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            // Alert notifications in flight: a clean stop gives them up to 10 s to land.
            let mut notifications = tokio::task::JoinSet::new();
            while receiver.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                // A full batch goes at once (so a backlog drains at full speed); otherwise
                // sleep, rather than wait on the channel (every call would wake this task
                // again), and take what came meanwhile. A stop cuts the sleep short, so that
                // `wireline call` or a shutdown never waits out `flush`.
                if batch.len() < RECORD_BATCH && !flush.is_zero() && !*stopping.borrow() {
                    tokio::select! {
                        () = tokio::time::sleep(flush) => {}
                        // Also ends at once if the Recorder is gone (the sender dropped).
                        _ = stopping.changed() => {}
                    }
                    let room = RECORD_BATCH - batch.len();
                    if !receiver.is_empty() {
                        receiver.recv_many(&mut batch, room).await;
                    }
                }
                let mut alerts = Vec::new();
                let events: Vec<NewEvent> = batch
                    .drain(..)
                    .map(|Record { new, alert }| {
                        if alert {
                            alerts.push(new.event.clone());
                        }
                        new
                    })
                    .collect();
                // The batch is all or nothing: if it fails, each event is tried on its own so
                // one bad event costs only itself (a retry of a stored one is a duplicate).
                if let Err(error) = store.append_many(&events).await {
                    warn!(%error, count = events.len(), "audit batch not stored; storing its events one by one");
                    for new in &events {
                        if let Err(error) = store
                            .append_json(&new.dedupe_id, &new.event, new.body.clone())
                            .await
                        {
                            warn!(%error, event_type = %new.event.ty, "audit event not stored");
                        }
                    }
                }
                for event in &alerts {
                    if let Some(delivery) = alert(&client, alert_url.as_deref(), alert_slack, event)
                    {
                        notifications.spawn(delivery);
                    }
                }
                while notifications.try_join_next().is_some() {}
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while notifications.join_next().await.is_some() {}
            })
            .await;
        });
        Self {
            sender: Mutex::new(Some(sender)),
            stop,
            metrics: Mutex::new(HashMap::new()),
            task: Mutex::new(Some(task)),
        }
    }

    fn send(&self, event: Event, alert: bool) {
        match NewEvent::new(event.id.clone(), event) {
            Ok(new) => self.push(Record { new, alert }),
            Err(error) => warn!(%error, "audit event not serialisable"),
        }
    }

    fn push(&self, record: Record) {
        if let Ok(guard) = self.sender.lock()
            && let Some(sender) = guard.as_ref()
        {
            let _ = sender.send(record);
        }
    }

    /// A policy signal from `service`'s stack.
    pub(crate) fn signal(&self, service: &str, signal: Signal) {
        match signal {
            Signal::Breaker(Transition { from, to }) => {
                metrics::gauge!("wireline_direct_breaker_state", "service" => service.to_owned())
                    .set(to.gauge());
                metrics::counter!("wireline_direct_breaker_transitions_total", "service" => service.to_owned(), "to" => to.as_str()).increment(1);
                let data = json!({ "service": service, "from": from.as_str(), "to": to.as_str() });
                self.send(
                    event("wireline.direct.breaker", service, None, data.clone()),
                    false,
                );
                if to == BreakerState::Open {
                    self.send(
                        event("wireline.alert.breaker_opened", service, None, data),
                        true,
                    );
                }
            }
            Signal::Usage { agent, alert } => {
                let data = json!({ "service": service, "agent": agent, "window": alert.window, "ratio": alert.ratio });
                self.send(
                    event(
                        "wireline.alert.rate_limit_usage",
                        service,
                        agent.as_deref(),
                        data,
                    ),
                    true,
                );
            }
        }
    }

    /// The metrics of one call, and its audit record if `audit`.
    pub(crate) fn call(&self, audit: bool, record: CallRecord<'_>) {
        let (outcome, status) = outcome_label(record.execution);
        let fallback = fallback_label(&record.execution.fallback);
        let execution = record.execution;
        {
            // A panic elsewhere while this lock was held leaves the counts usable: recover
            // them rather than stop counting for the life of the process.
            let mut services = self
                .metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let service = crate::slot(&mut services, record.service, || {
                ServiceMetrics::new(record.service)
            });
            service.attempts.increment(u64::from(execution.attempts));
            service
                .retries
                .increment(u64::from(execution.attempts.saturating_sub(1)));
            service.duration.record(record.latency.as_secs_f64());
            crate::slot(&mut service.requests, record.agent, HashMap::new)
                .entry(outcome)
                .or_insert_with(|| {
                    metrics::counter!("wireline_direct_requests_total", "service" => record.service.to_owned(), "agent" => record.agent.to_owned(), "outcome" => outcome)
                })
                .increment(1);
            for (window, ratio) in record.usage {
                crate::slot(&mut service.usage, window, || {
                    metrics::gauge!("wireline_direct_limiter_usage_ratio", "service" => record.service.to_owned(), "window" => window.to_owned())
                })
                .set(*ratio);
            }
        }
        if let Some(fallback) = &fallback {
            metrics::counter!("wireline_direct_fallbacks_total", "service" => record.service.to_owned(), "fallback" => fallback.clone()).increment(1);
        }
        if !audit {
            return;
        }
        let data = CallData {
            agent: record.agent,
            service: record.service,
            operation: record.operation,
            method: record.method,
            path: record.path,
            status,
            outcome,
            attempts: execution.attempts,
            replayed: execution.replayed,
            latency_ms: record.latency.as_secs_f64() * 1000.0,
            queued_ms: execution.queued.as_secs_f64() * 1000.0,
            breaker: record.breaker.as_str(),
            fallback,
        };
        // The event's JSON is written straight from `data`: going through a
        // `serde_json::Value` tree and `Event`'s map of extensions cost a few microseconds on
        // every call. `CallEvent` writes what `Event` would (a test holds them together).
        let mut event = event(
            CALL_EVENT,
            record.service,
            Some(record.agent),
            serde_json::Value::Null,
        );
        event.data = None;
        let Ok(body) = serde_json::to_string(&CallEvent {
            specversion: &event.specversion,
            id: &event.id,
            source: &event.source,
            ty: CALL_EVENT,
            subject: record.agent,
            time: event.time,
            datacontenttype: JSON,
            data,
        }) else {
            return;
        };
        self.push(Record {
            new: NewEvent {
                dedupe_id: event.id.clone(),
                event,
                body,
            },
            alert: false,
        });
    }

    /// An OAuth token refresh (the service's, or `agent`'s own): an audit event (scopes,
    /// lifetime; never a token).
    pub(crate) fn oauth_refreshed(
        &self,
        service: &str,
        agent: Option<&str>,
        scopes: &str,
        expires_in: u64,
        rotated: bool,
    ) {
        metrics::counter!("wireline_oauth_refreshes_total", "service" => service.to_owned(), "outcome" => "ok").increment(1);
        let data = crate::oauth::refresh_data(service, agent, scopes, expires_in, rotated);
        self.send(
            event("wireline.oauth.refreshed", service, agent, data),
            false,
        );
    }

    /// A failed OAuth refresh: the calls that need the token fail until someone fixes the
    /// credential.
    pub(crate) fn oauth_failed(&self, service: &str, agent: Option<&str>, why: &str) {
        metrics::counter!("wireline_oauth_refreshes_total", "service" => service.to_owned(), "outcome" => "failed").increment(1);
        let data = json!({ "service": service, "agent": agent, "reason": why });
        self.send(
            event("wireline.alert.credential_expired", service, agent, data),
            true,
        );
    }

    /// A call-rate spike (see `anomaly.rs`): a human should know.
    pub(crate) fn anomaly(&self, agent: &str, service: &str, spike: &crate::anomaly::Spike) {
        metrics::counter!("wireline_anomalies_total", "key" => spike.key.clone()).increment(1);
        let data = json!({ "key": spike.key, "agent": agent, "service": service, "calls_in_window": spike.calls, "baseline_per_window": spike.baseline });
        self.send(
            event("wireline.alert.anomaly", service, Some(agent), data),
            true,
        );
    }

    /// The chain failed and no fallback was left: a human should know.
    pub(crate) fn call_failed(&self, agent: &str, service: &str, execution: &Execution) {
        let (outcome, status) = outcome_label(execution);
        let data = json!({ "service": service, "agent": agent, "outcome": outcome, "status": status, "attempts": execution.attempts });
        self.send(
            event("wireline.alert.call_failed", service, Some(agent), data),
            true,
        );
    }

    /// Stops accepting records and waits until every one sent is stored.
    pub(crate) async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use wireline_core::Offset;
    use wireline_policy::Response;
    use wireline_store::EventLog;
    use wireline_store::sqlite::SqliteStore;

    use super::*;

    /// A recorder appending to a new SQLite store (kept while the folder lives), gathering
    /// events for `flush`.
    fn recorder_on_sqlite(flush: Duration) -> (tempfile::TempDir, SqliteStore, Recorder) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        let client = crate::client::build(None).unwrap();
        let recorder = Recorder::start(Arc::new(store.clone()), client, None, false, flush);
        (dir, store, recorder)
    }

    fn ok_execution() -> Execution {
        Execution {
            outcome: Outcome::Response(Response {
                status: 200,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
            }),
            attempts: 1,
            replayed: false,
            fallback: None,
            queued: Duration::ZERO,
        }
    }

    /// An event waits out `flush` ([events] audit_flush) before it is stored; a stop writes
    /// it at once instead of waiting out the rest (`wireline call` stops right after its one
    /// call). Paused time: a sleep that ran its course would show as virtual time passing.
    #[tokio::test(start_paused = true)]
    async fn events_wait_for_the_flush_and_a_stop_cuts_the_wait_short() {
        let flush = Duration::from_secs(5);
        let (_dir, store, recorder) = recorder_on_sqlite(flush);
        let execution = ok_execution();
        recorder.call(true, bot_call("/a", &execution, Duration::from_millis(1)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            store.read(Offset::START, 10).await.unwrap().is_empty(),
            "stored before its flush"
        );
        let stopping = tokio::time::Instant::now();
        recorder.shutdown().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(1),
            "the stop waited out the flush: {:?}",
            stopping.elapsed()
        );
        assert_eq!(store.read(Offset::START, 10).await.unwrap().len(), 1);
        store.close().await.unwrap();
    }

    /// A call by `bot` on `svc`, no operation, breaker closed, no rate limit.
    fn bot_call<'a>(path: &'a str, execution: &'a Execution, latency: Duration) -> CallRecord<'a> {
        CallRecord {
            agent: "bot",
            service: "svc",
            operation: None,
            method: "GET",
            path,
            execution,
            latency,
            breaker: BreakerState::Closed,
            usage: &[],
        }
    }

    /// Calls recorded faster than the recorder wakes: it takes them in full batches of
    /// RECORD_BATCH, then the rest after its pause; every call has exactly one event.
    #[tokio::test]
    async fn a_backlog_larger_than_a_batch_is_stored_once_each() {
        let calls = RECORD_BATCH * 2 + 100;
        let (_dir, store, recorder) = recorder_on_sqlite(Duration::from_millis(10));
        let execution = ok_execution();
        for n in 0..calls {
            let path = format!("/v1/things/{n}");
            recorder.call(true, bot_call(&path, &execution, Duration::from_millis(1)));
        }
        recorder.shutdown().await;
        let stored = store.read(Offset::START, calls + 10).await.unwrap();
        let paths: std::collections::BTreeSet<String> = stored
            .iter()
            .map(|e| e.event().unwrap().data.unwrap()["path"].to_string())
            .collect();
        assert_eq!(stored.len(), calls, "one event per call, none doubled");
        assert_eq!(paths.len(), calls, "every call's own event");
        store.close().await.unwrap();
    }

    /// A call's audit event, as `Recorder::call` stores it, reads back as the CloudEvent it
    /// stands for: its attributes, the indexed fields the log filters on, and the data as
    /// `CallData` serializes it, absent values as nulls.
    #[tokio::test]
    async fn a_stored_call_event_is_the_cloudevent_it_stands_for() {
        let (_dir, store, recorder) = recorder_on_sqlite(Duration::from_millis(10));
        let execution = Execution {
            outcome: Outcome::Failed(Failure::Timeout),
            attempts: 2,
            replayed: false,
            fallback: None,
            queued: Duration::from_millis(3),
        };
        let before = Timestamp::now();
        recorder.call(
            true,
            bot_call(
                "/v1/customers/cus_\"1\"",
                &execution,
                Duration::from_millis(7),
            ),
        );
        recorder.shutdown().await;
        let mut query = wireline_store::EventQuery::after(Offset::START, 10);
        query.subject = Some("bot".into());
        query.source = Some("wireline://direct/svc".into());
        let stored = store.query(&query).await.unwrap();
        assert_eq!(stored.len(), 1, "found by its subject and source");
        assert_eq!(stored[0].ty, CALL_EVENT);
        let event = stored[0].event().unwrap();
        assert!(event.id.starts_with("wl_"), "{}", event.id);
        assert_eq!(
            stored[0].time.as_microsecond(),
            event.time.as_microsecond(),
            "the indexed time is the event's (the index keeps microseconds)"
        );
        assert!(event.time >= before && event.time <= Timestamp::now());
        let mut expected = Event::new(
            event.id.clone(),
            "wireline://direct/svc",
            CALL_EVENT,
            event.time,
            serde_json::json!({
                "agent": "bot", "service": "svc", "operation": null, "method": "GET",
                "path": "/v1/customers/cus_\"1\"", "status": null, "outcome": "timeout",
                "attempts": 2, "replayed": false, "latency_ms": 7.0, "queued_ms": 3.0,
                "breaker": "closed", "fallback": null,
            }),
        );
        expected.subject = Some("bot".into());
        assert_eq!(event, expected);
        store.close().await.unwrap();
    }
}
