//! Second sightings of an event, for the hybrid capture report.
//!
//! The log keeps each event once, with the `source` of the path that saw it first
//! (`wireline://hooks/SERVICE` or `wireline://poll/SERVICE`) and when it arrived. What the log
//! cannot say is whether a webhook came after the poll had stored the event (late, not
//! missed), or came twice: that is recorded here, on a duplicate webhook append — rare
//! (provider retries). The poll re-reading what the webhook brought is the normal case and is
//! not recorded.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use wireline_core::Offset;
use wireline_store::{Store, StoreError};

/// The state namespace of a service's sightings.
pub fn namespace(service: &str) -> String {
    format!("sightings.{service}")
}

/// Which path delivered an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// `POST /hooks/{service}`.
    Webhook,
    /// The service's poll.
    Poll,
}

impl Path {
    /// The `source` prefix of events this path stores first.
    pub fn source(self, service: &str) -> String {
        match self {
            Self::Webhook => format!("wireline://hooks/{service}"),
            Self::Poll => format!("wireline://poll/{service}"),
        }
    }
}

/// Later webhook sightings of one event (the first sighting is the log's own record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// When a webhook first delivered it, if the poll stored it first.
    pub webhook_at: Option<Timestamp>,
    /// Webhook deliveries of it after the first one (provider retries and doubles).
    pub webhook_duplicates: u32,
}

/// Records that a webhook delivered event `id` (already stored at `offset`) again at `now`.
pub async fn record_duplicate(
    store: &dyn Store,
    service: &str,
    id: &str,
    offset: Offset,
    now: Timestamp,
) -> Result<(), StoreError> {
    let namespace = namespace(service);
    let mut sighting: Sighting = store
        .get(&namespace, id, now)
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let stored = store.read(Offset(offset.0.saturating_sub(1)), 1).await?;
    let first_by_poll = stored.first().is_some_and(|e| {
        e.offset == offset
            && e.event()
                .is_ok_and(|event| event.source == Path::Poll.source(service))
    });
    if sighting.webhook_at.is_none() && first_by_poll {
        sighting.webhook_at = Some(now);
    } else {
        sighting.webhook_duplicates += 1;
    }
    let value = serde_json::to_vec(&sighting).unwrap_or_default();
    store.put(&namespace, id, &value, None).await
}
