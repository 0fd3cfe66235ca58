//! One task per source: wait, poll, repeat. The first poll after a start is spread over one
//! interval (so a thousand sources do not fire in the same second), every later wait gets up
//! to 10 % jitter, and `X-Poll-Interval` or a `Retry-After` can only lengthen it. One task per
//! source means two polls of the same source never run at once; the checkpoint makes a
//! restart continue where the last poll stopped.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wireline_config::model::Config;
use wireline_core::Event;
use wireline_direct::Direct;
use wireline_store::Store;
use wireline_webhook::delivery::Head;

use crate::sync::Source;

/// Consecutive failed polls after which an alert event is raised (once, until a success).
const FAILURES_BEFORE_ALERT: u32 = 3;

/// The running pollers.
pub struct Pollers {
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Pollers {
    /// One task per `[services.NAME.poll]` (the config is valid, so every spec resolves).
    pub fn start(
        config: &Config,
        direct: Arc<Direct>,
        store: Arc<dyn Store>,
        head: Arc<Head>,
    ) -> Result<Self, String> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (name, service) in &config.services {
            let Some(poll) = &service.poll else { continue };
            let spec = poll
                .spec()
                .map_err(|(key, message)| format!("services.{name}.poll.{key}: {message}"))?;
            let base_url = url::Url::parse(&service.base_url)
                .map_err(|error| format!("services.{name}.base_url: {error}"))?;
            let sources: Vec<Option<&String>> = if poll.sources.is_empty() {
                vec![None]
            } else {
                poll.sources.iter().map(Some).collect()
            };
            for entry in sources {
                let source = Source {
                    service: name.clone(),
                    name: entry.cloned(),
                    spec: entry.map_or_else(|| spec.clone(), |entry| spec.for_source(entry)),
                    base_url: base_url.clone(),
                    subjects: wireline_webhook::Subjects::new(config),
                };
                tasks.push(tokio::spawn(run(
                    source,
                    Arc::clone(&direct),
                    Arc::clone(&store),
                    Arc::clone(&head),
                    stopped.clone(),
                )));
            }
        }
        Ok(Self {
            tasks: std::sync::Mutex::new(tasks),
            stop,
        })
    }

    /// Stops every source at its next wait (a poll in progress finishes its page first; its
    /// checkpoint is already stored) and waits for them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn jittered(every: Duration) -> Duration {
    every.mul_f64(1.0 + rand::rng().random_range(0.0..0.1))
}

async fn run(
    source: Source,
    direct: Arc<Direct>,
    store: Arc<dyn Store>,
    head: Arc<Head>,
    mut stop: watch::Receiver<bool>,
) {
    let every = source.spec.every;
    let mut wait = every.mul_f64(rand::rng().random_range(0.0..1.0));
    if let Ok(checkpoint) = source.checkpoint(store.as_ref()).await
        && checkpoint.run.is_some()
    {
        // A sync was cut short: finish it soon.
        wait = wait.min(Duration::from_secs(1));
    }
    let mut failures = 0u32;
    let mut missed_alerted = 0u64;
    let mut last_watermark = None;
    let mut still = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        // Boxed: a poll's future (the whole proxied call) is large, and ten thousand idle
        // sources would each carry one inline while they sleep. Boxed, it exists only while
        // the poll runs.
        let result = Box::pin(source.poll(&direct, &store, Some(&head))).await;
        wait = jittered(every);
        match result {
            Ok(outcome) => {
                failures = 0;
                metrics::counter!("wireline_poll_runs_total", "service" => source.service.clone(), "outcome" => if outcome.not_modified { "not_modified" } else { "ok" }).increment(1);
                metrics::counter!("wireline_poll_items_total", "service" => source.service.clone(), "outcome" => "new").increment(outcome.new);
                metrics::counter!("wireline_poll_items_total", "service" => source.service.clone(), "outcome" => "duplicate").increment(outcome.duplicates);
                if let Some(seconds) = outcome.poll_interval {
                    wait = wait.max(Duration::from_secs(seconds));
                }
                if !outcome.finished {
                    // More pages wait: continue soon rather than after a whole interval.
                    wait = Duration::from_millis(100);
                } else {
                    if source.spec.reconcile {
                        missed_alerted =
                            Box::pin(check_misses(&store, &source, missed_alerted)).await;
                    }
                    if let Some(limit) = source.spec.stall_alert {
                        let watermark = source
                            .checkpoint(store.as_ref())
                            .await
                            .ok()
                            .and_then(|c| c.watermark);
                        still = if watermark == last_watermark {
                            still + 1
                        } else {
                            0
                        };
                        last_watermark = watermark;
                        if still == limit {
                            alert(
                                &store,
                                &source,
                                "wireline.alert.poll_stalled",
                                still,
                                "the watermark has not moved",
                            )
                            .await;
                        }
                    }
                }
            }
            Err(problem) => {
                failures += 1;
                metrics::counter!("wireline_poll_runs_total", "service" => source.service.clone(), "outcome" => "failed").increment(1);
                warn!(service = %source.service, detail = %problem.detail, "poll failed; retrying at the next interval");
                if let Some(seconds) = problem.retry_after {
                    wait = wait.max(Duration::from_secs(seconds));
                }
                if failures == FAILURES_BEFORE_ALERT {
                    alert(
                        &store,
                        &source,
                        "wireline.alert.poll_failing",
                        failures,
                        &problem.detail,
                    )
                    .await;
                }
            }
        }
    }
}

async fn alert(store: &Arc<dyn Store>, source: &Source, ty: &str, intervals: u32, detail: &str) {
    let now = Timestamp::now();
    let service = &source.service;
    let event = Event::new(
        format!(
            "alert-poll-{}-{}",
            source.checkpoint_name(),
            now.as_microsecond()
        ),
        format!("wireline://poll/{service}"),
        ty,
        now,
        serde_json::json!({ "service": service, "source": source.name, "intervals": intervals, "detail": detail }),
    );
    info!(service, source = ?source.name, ty, intervals, "poll alert raised");
    if let Err(error) = store.append(&event.id.clone(), &event).await {
        warn!(%error, "poll alert not stored");
    }
}

/// After a reconciling poll: alert when the webhooks missed more than `miss_alert` of the
/// last day's events, once per new miss count. Returns the count alerted on.
async fn check_misses(store: &Arc<dyn Store>, source: &Source, alerted: u64) -> u64 {
    let since = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .ok();
    let Ok(report) =
        crate::report::capture_report(store.as_ref(), &source.service, since, None).await
    else {
        return alerted;
    };
    let rate = report.webhook_missed as f64 / report.total.max(1) as f64;
    metrics::gauge!("wireline_webhook_capture_ratio", "service" => source.service.clone())
        .set(report.webhook_capture_rate.unwrap_or(1.0));
    if rate <= source.spec.miss_alert || report.webhook_missed <= alerted {
        return alerted;
    }
    let now = Timestamp::now();
    let event = Event::new(
        format!("alert-misses-{}-{}", source.service, now.as_microsecond()),
        format!("wireline://poll/{}", source.service),
        "wireline.alert.webhook_misses",
        now,
        serde_json::json!({
            "service": source.service,
            "missed": report.webhook_missed,
            "total": report.total,
            "miss_rate": rate,
            "threshold": source.spec.miss_alert,
            "window": "24h",
        }),
    );
    warn!(service = %source.service, missed = report.webhook_missed, total = report.total, "webhooks are missing events: alert raised");
    if let Err(error) = store.append(&event.id.clone(), &event).await {
        warn!(%error, "webhook-miss alert not stored");
    }
    report.webhook_missed
}
