//! Retention: old events deleted, or their payloads dropped while the envelope stays, per
//! `[events.retention]`.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wireline_config::model::EventsConfig;
use wireline_core::TypeGlob;
use wireline_store::{Expiry, Store, StoreError};

/// How often the server applies retention.
const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// Events changed per store call, so one pass never holds the writer for long.
const CHUNK: usize = 5000;

/// What one pass did for one pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The type pattern.
    pub pattern: String,
    /// Events whose payload was dropped.
    pub redacted: u64,
    /// Events deleted.
    pub deleted: u64,
}

/// Applies `[events.retention]` as of `now`.
pub async fn expire(
    config: &EventsConfig,
    store: &dyn Store,
    now: Timestamp,
) -> Result<Vec<Expired>, StoreError> {
    let mut report = Vec::new();
    for (pattern, retention) in &config.retention {
        let Ok(glob) = pattern.parse::<TypeGlob>() else {
            continue; // `check` refuses it
        };
        let mut done = Expired {
            pattern: pattern.clone(),
            redacted: 0,
            deleted: 0,
        };
        for (period, what, count) in [
            (retention.payload, Expiry::DropData, &mut done.redacted),
            (retention.keep, Expiry::Delete, &mut done.deleted),
        ] {
            let Some(period) = period else { continue };
            let cutoff = now - jiff::SignedDuration::try_from(period.get()).unwrap_or_default();
            loop {
                let changed = store.expire(&glob, cutoff, what, CHUNK).await?;
                *count += changed;
                if changed < CHUNK as u64 {
                    break;
                }
            }
        }
        report.push(done);
    }
    Ok(report)
}

/// Applies retention at start and then hourly until stopped.
pub struct Retention {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Retention {
    /// Starts the hourly pass (nothing runs without `[events.retention]`).
    pub fn start(config: &EventsConfig, store: Arc<dyn Store>) -> Self {
        let (stop, mut stopping) = watch::channel(false);
        let task = (!config.retention.is_empty()).then(|| {
            let config = config.clone();
            tokio::spawn(async move {
                loop {
                    match expire(&config, store.as_ref(), Timestamp::now()).await {
                        Ok(report) => {
                            for done in report.iter().filter(|d| d.redacted + d.deleted > 0) {
                                info!(pattern = %done.pattern, redacted = done.redacted, deleted = done.deleted, "retention applied");
                            }
                        }
                        Err(error) => warn!(%error, "retention pass failed; it runs again in an hour"),
                    }
                    tokio::select! {
                        _ = stopping.changed() => return,
                        () = tokio::time::sleep(EVERY) => {}
                    }
                }
            })
        });
        Self { stop, task }
    }

    /// Stops the pass.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}
