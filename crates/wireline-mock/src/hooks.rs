//! The webhook sender: one queue for every emulator, in order, with the webhook faults of the
//! emulator (drop, duplicate, reorder, delay) and a provider's retries (three more attempts,
//! 0.1 s, 0.5 s and 2 s apart) when the endpoint fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::debug;

use crate::{Kind, Shared, lock};

/// Waits before the retries of a failed webhook.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// A webhook to send.
pub(crate) struct Outgoing {
    pub kind: Kind,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the sender did for one emulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Webhooks the emulator produced.
    pub produced: u64,
    /// Delivered (2xx), duplicates included.
    pub delivered: u64,
    /// Dropped by a fault.
    pub dropped: u64,
    /// Sent a second time by a fault.
    pub duplicated: u64,
    /// Held back and sent after the next one.
    pub reordered: u64,
    /// Given up after the retries.
    pub failed: u64,
}

pub(crate) struct Sender {
    queue: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<OnceLock<Weak<Shared>>>,
    stats: Arc<Mutex<BTreeMap<String, WebhookStats>>>,
}

impl Sender {
    pub(crate) fn start() -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Outgoing>();
        let shared: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
        let stats: Arc<Mutex<BTreeMap<String, WebhookStats>>> = Arc::default();
        let (owner, counts) = (Arc::clone(&shared), Arc::clone(&stats));
        tokio::spawn(async move {
            let client = match wireline_direct::client::build(None) {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(%error, "the emulators cannot send webhooks");
                    return;
                }
            };
            let mut held: Option<Outgoing> = None;
            loop {
                // A held-back webhook goes out after the next one, or after a quiet 0.5 s.
                let next = match &held {
                    Some(_) => {
                        match tokio::time::timeout(Duration::from_millis(500), incoming.recv())
                            .await
                        {
                            Ok(next) => next,
                            Err(_) => {
                                if let Some(late) = held.take() {
                                    deliver(&client, &late, &counts).await;
                                }
                                continue;
                            }
                        }
                    }
                    None => incoming.recv().await,
                };
                let Some(hook) = next else { return };
                let Some(shared) = owner.get().and_then(Weak::upgrade) else {
                    return;
                };
                let name = hook.kind.name().to_owned();
                let faults = shared
                    .faults_for(hook.kind.name(), "", true)
                    .unwrap_or_default();
                lock(&counts).entry(name.clone()).or_default().produced += 1;
                if let Some(delay) = faults.webhook_delay {
                    tokio::time::sleep(delay.get()).await;
                }
                if faults.webhook_drop_next > 0 || shared.chance(faults.webhook_drop_rate) {
                    lock(&counts).entry(name).or_default().dropped += 1;
                    continue;
                }
                if held.is_none() && shared.chance(faults.webhook_reorder_rate) {
                    lock(&counts).entry(name).or_default().reordered += 1;
                    held = Some(hook);
                    continue;
                }
                let twice = shared.chance(faults.webhook_duplicate_rate);
                drop(shared);
                deliver(&client, &hook, &counts).await;
                if twice {
                    lock(&counts).entry(name).or_default().duplicated += 1;
                    deliver(&client, &hook, &counts).await;
                }
                if let Some(late) = held.take() {
                    deliver(&client, &late, &counts).await;
                }
            }
        });
        Self {
            queue,
            shared,
            stats,
        }
    }

    pub(crate) fn attach(&self, shared: Weak<Shared>) {
        let _ = self.shared.set(shared);
    }

    pub(crate) fn send(&self, hook: Outgoing) {
        let _ = self.queue.send(hook);
    }

    pub(crate) fn stats(&self) -> BTreeMap<String, WebhookStats> {
        lock(&self.stats).clone()
    }
}

async fn deliver(
    client: &reqwest::Client,
    hook: &Outgoing,
    stats: &Mutex<BTreeMap<String, WebhookStats>>,
) {
    for attempt in 0..=RETRIES.len() {
        let mut request = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(hook.body.clone());
        for (name, value) in &hook.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                lock(stats)
                    .entry(hook.kind.name().to_owned())
                    .or_default()
                    .delivered += 1;
                return;
            }
            Ok(response) => debug!(url = %hook.url, status = %response.status(), "webhook refused"),
            Err(error) => debug!(url = %hook.url, %error, "webhook not delivered"),
        }
        if let Some(wait) = RETRIES.get(attempt) {
            tokio::time::sleep(*wait).await;
        }
    }
    lock(stats)
        .entry(hook.kind.name().to_owned())
        .or_default()
        .failed += 1;
}
