//! The hybrid pattern's capture report: of a service's events in a period, which path saw
//! each first, what the webhooks missed (the poll found them and no webhook ever came),
//! duplicates suppressed, and the lag between an event's own time and its arrival by each
//! path.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use wireline_core::{Offset, TypeGlob};
use wireline_store::{EventQuery, Store, StoreError};
use wireline_webhook::sightings::{self, Path, Sighting};

/// One service's capture over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureReport {
    /// The service.
    pub service: String,
    /// Events with `time >= since`.
    pub since: Option<Timestamp>,
    /// Events with `time < until`.
    pub until: Option<Timestamp>,
    /// Events in the log for the period (each once).
    pub total: u64,
    /// Stored by a webhook first.
    pub first_by_webhook: u64,
    /// Stored by the poll first.
    pub first_by_poll: u64,
    /// Found only by the poll: the webhooks missed them.
    pub webhook_missed: u64,
    /// Found by the poll first, the webhook arrived later.
    pub webhook_late: u64,
    /// Webhook deliveries of events already stored (provider retries and doubles).
    pub webhook_duplicates: u64,
    /// Share of events the webhooks delivered at all: (total - missed) / total.
    pub webhook_capture_rate: Option<f64>,
    /// Event time to webhook arrival, p50 and p99, milliseconds.
    pub webhook_lag_ms: Option<(i64, i64)>,
    /// Event time to poll arrival, p50 and p99, milliseconds, of the events the poll stored
    /// first (the ones it delivered).
    pub poll_lag_ms: Option<(i64, i64)>,
}

fn percentiles(mut lags: Vec<i64>) -> Option<(i64, i64)> {
    if lags.is_empty() {
        return None;
    }
    lags.sort_unstable();
    let at = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];
    Some((at(0.5), at(0.99)))
}

/// Builds the report from the log and the recorded sightings.
pub async fn capture_report(
    store: &dyn Store,
    service: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<CaptureReport, StoreError> {
    let seen: BTreeMap<String, Sighting> = store
        .list(&sightings::namespace(service), Timestamp::now(), usize::MAX)
        .await?
        .into_iter()
        .filter_map(|(id, value)| Some((id, serde_json::from_slice(&value).ok()?)))
        .collect();
    let hooks = Path::Webhook.source(service);
    let poll = Path::Poll.source(service);
    let types: TypeGlob = format!("{service}.*")
        .parse()
        .map_err(|error| StoreError::Corrupt(format!("service name as a type glob: {error}")))?;
    let mut report = CaptureReport {
        service: service.to_owned(),
        since,
        until,
        ..CaptureReport::default()
    };
    let (mut webhook_lags, mut poll_lags) = (Vec::new(), Vec::new());
    let lag = |time: Timestamp, at: Timestamp| at.as_millisecond() - time.as_millisecond();
    let mut after = Offset::START;
    loop {
        let page = store
            .query(&EventQuery {
                after,
                types: Some(types.clone()),
                since,
                until,
                subject: None,
                source: None,
                limit: 1000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.offset;
        for stored in &page {
            let Ok(event) = stored.event() else { continue };
            let sighting = seen.get(&event.id).cloned().unwrap_or_default();
            report.webhook_duplicates += u64::from(sighting.webhook_duplicates);
            if event.source == hooks {
                report.total += 1;
                report.first_by_webhook += 1;
                webhook_lags.push(lag(event.time, stored.recorded_at));
            } else if event.source == poll {
                report.total += 1;
                report.first_by_poll += 1;
                poll_lags.push(lag(event.time, stored.recorded_at));
                match sighting.webhook_at {
                    Some(at) => {
                        report.webhook_late += 1;
                        webhook_lags.push(lag(event.time, at));
                    }
                    None => report.webhook_missed += 1,
                }
            }
        }
    }
    report.webhook_capture_rate = (report.total > 0)
        .then(|| (report.total - report.webhook_missed) as f64 / report.total as f64);
    report.webhook_lag_ms = percentiles(webhook_lags);
    report.poll_lag_ms = percentiles(poll_lags);
    Ok(report)
}
