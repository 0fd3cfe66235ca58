//! Delivery of events to agents: signed pushes on a durable retry schedule, with dead letters.
//!
//! One task per push subscription walks the log from its committed offset, in log order, and
//! pushes each matching event as a CloudEvent signed with Standard Webhooks headers
//! (`webhook-id` = the event id, stable across retries and re-drives, so receivers dedupe).
//! The offset is committed after the endpoint answered 2xx or the event was dead-lettered, so
//! delivery is at least once. A failed attempt's next time is stored before the task waits, so
//! a restart resumes the schedule where it was. A failing endpoint only holds up its own
//! subscription.
//!
//! Pushes go through a [`PolicyStack`] per endpoint (its breaker and rate limit), with one
//! attempt per call: the retries are this module's durable schedule, not the stack's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use rand::Rng;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wireline_config::model::{Config, Subscription, SubscriptionStart};
use wireline_core::{Event, Offset, TypeGlob};
use wireline_direct::client::{self, Outbound};
use wireline_policy::limiter::LimiterConfig;
use wireline_policy::{Call, Failure, Outcome, PolicyConfig, PolicyStack};
use wireline_store::{Store, StoreError, StoredEvent};

use crate::schemes::{standard_key, standard_sign};

/// Namespace of the retry state of the event each subscription is on.
const PENDING: &str = "deliveries.pending";
/// Namespace of dead letters, keyed `SUBSCRIPTION/OFFSET`.
const DEAD: &str = "deliveries.dead";
/// Namespace of dead letters queued to be sent again.
const REDRIVE: &str = "deliveries.redrive";
/// Namespace of replays asked for, keyed by subscription: the offset to continue after.
const REPLAY: &str = "deliveries.replay";
/// Events read per page.
const PAGE: usize = 256;
/// How often a waiting task looks at the log even without a wake-up (events appended by
/// other processes or by producers that do not bump the [`Head`]).
const IDLE_LOOK: Duration = Duration::from_millis(500);

/// The log's newest offset as this process knows it: producers bump it after an append, and
/// deliveries and streams wait on it instead of polling.
#[derive(Debug)]
pub struct Head(watch::Sender<Offset>);

impl Head {
    /// A head at `offset`.
    pub fn new(offset: Offset) -> Arc<Self> {
        Arc::new(Self(watch::Sender::new(offset)))
    }

    /// Records that the log reached `offset`.
    pub fn bump(&self, offset: Offset) {
        self.0.send_if_modified(|head| {
            let newer = offset > *head;
            if newer {
                *head = offset;
            }
            newer
        });
    }

    /// A receiver that sees every bump.
    pub fn watch(&self) -> watch::Receiver<Offset> {
        self.0.subscribe()
    }
}

/// Type patterns: an event matches if any pattern does.
#[derive(Debug, Clone)]
pub struct Patterns(Vec<TypeGlob>);

impl Patterns {
    /// From a subscription's patterns.
    pub fn new(patterns: Vec<TypeGlob>) -> Self {
        Self(patterns)
    }

    /// True if `event_type` matches a pattern.
    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|glob| glob.matches(event_type))
    }
}

/// An event that could not be delivered, kept until re-driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The subscription.
    pub subscription: String,
    /// The event's offset in the log.
    pub offset: Offset,
    /// The event's id (the `webhook-id` it was sent with).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt got.
    pub last_error: String,
    /// When it was given up.
    pub failed_at: Timestamp,
}

/// The retry state of the event a subscription is on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    offset: Offset,
    /// Attempts made so far.
    attempts: u32,
    next_at: Timestamp,
    last_error: String,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// The endpoint said 410 Gone: no more attempts for this event.
    Gone,
    Failed {
        error: String,
        /// The endpoint's `Retry-After`, or the open breaker's.
        wait_at_least: Option<Duration>,
    },
}

struct Worker {
    name: String,
    subscription: Subscription,
    url: String,
    key: Vec<u8>,
    patterns: Patterns,
    stack: PolicyStack,
    client: reqwest::Client,
    store: Arc<dyn Store>,
    head: watch::Receiver<Offset>,
    stop: watch::Receiver<bool>,
    /// Delivered (or skipped) up to here, not yet committed.
    uncommitted: Option<Offset>,
    /// True until the first event after a start: only then may stored retry state exist.
    first_delivery: bool,
    /// `[alerts] url`, where exhausted deliveries are also posted.
    alert_url: Option<String>,
    /// During a replay filtered by type: the types, and the offset the filter ends at.
    replay_only: Option<(TypeGlob, Offset)>,
}

/// The running push deliveries.
pub struct Deliveries {
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Deliveries {
    /// Starts one task per push subscription (secrets must be resolved). A new
    /// subscription's position is fixed here, before this returns: it gets every event
    /// appended after.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        head: &Head,
    ) -> Result<Self, String> {
        let (stop, stopped) = watch::channel(false);
        let client = client::build(None)?;
        let mut tasks = Vec::new();
        for (name, subscription) in config.named_subscriptions() {
            let (Some(url), Some(secret)) = (&subscription.url, &subscription.secret) else {
                continue;
            };
            let secret = secret
                .value()
                .ok_or_else(|| format!("subscription {name}: the secret was not resolved"))?;
            let key = standard_key(secret.expose_secret()).ok_or_else(|| {
                format!("subscription {name}: secret is not a Standard Webhooks secret (whsec_ followed by base64); generate one with `openssl rand -base64 32` and prefix it with whsec_")
            })?;
            let mut policy = PolicyConfig::defaults(&name);
            policy.attempts = 1;
            policy.timeout = subscription.timeout.get();
            policy.deadline = subscription.timeout.get() + Duration::from_secs(60);
            policy.service_limit = subscription
                .rate_limit
                .as_ref()
                .map(|windows| LimiterConfig {
                    windows: windows.0.clone(),
                    headroom: 0.0,
                    max_wait: Duration::from_secs(60),
                    burst: None,
                });
            let worker = Worker {
                name: name.clone(),
                subscription: subscription.clone(),
                url: url.clone(),
                key,
                patterns: Patterns::new(subscription.events.clone()),
                stack: PolicyStack::new(policy, Arc::clone(&store), |_| {}),
                client: client.clone(),
                store: Arc::clone(&store),
                head: head.watch(),
                stop: stopped.clone(),
                uncommitted: None,
                first_delivery: true,
                alert_url: config.alerts.url.as_ref().and_then(|url| url.value()),
                replay_only: None,
            };
            let cursor = worker
                .start_position()
                .await
                .map_err(|error| format!("subscription {name}: the store failed ({error})"))?;
            tasks.push(tokio::spawn(worker.run(cursor)));
        }
        Ok(Self {
            tasks: std::sync::Mutex::new(tasks),
            stop,
        })
    }

    /// Tells every task, and every stream holding [`Deliveries::stopping`], to stop.
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Becomes true when the server stops (streams end on it).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops every task at its next wait (an attempt in flight finishes first) and waits for
    /// them; the retry state is already stored.
    pub async fn shutdown(&self) {
        self.signal_stop();
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

/// Dead letters, oldest first (of one subscription, or of all).
pub async fn dead_letters(
    store: &dyn Store,
    subscription: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let listed = store.list(DEAD, Timestamp::now(), usize::MAX).await?;
    Ok(listed
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_slice::<DeadLetter>(&value).ok())
        .filter(|letter| subscription.is_none_or(|name| letter.subscription == name))
        .collect())
}

/// Queues dead letters to be sent again (all of a subscription's, or the one at `offset`);
/// the subscription's task sends them before new events, with a fresh schedule. Returns how
/// many were queued.
pub async fn redrive(
    store: &dyn Store,
    subscription: &str,
    offset: Option<Offset>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for letter in dead_letters(store, Some(subscription)).await? {
        if offset.is_some_and(|offset| offset != letter.offset) {
            continue;
        }
        let key = letter_key(&letter.subscription, letter.offset);
        let value = serde_json::to_vec(&letter).unwrap_or_default();
        store.put(REDRIVE, &key, &value, None).await?;
        store.delete(DEAD, &key).await?;
        queued += 1;
    }
    Ok(queued)
}

/// A replay asked for with [`replay`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReplayRequest {
    after: Offset,
    /// Only these types, up to `until` (the head when the replay was asked for).
    #[serde(default)]
    only: Option<(String, Offset)>,
}

/// Asks the running subscription `subscription` to deliver again every event after `after`
/// (in log order, with their original ids, so receivers dedupe what they already have);
/// with `types`, only the replayed events of those types (events appended after the request
/// are delivered as the subscription says). The subscription's task picks it up at its next
/// page.
pub async fn replay(
    store: &dyn Store,
    subscription: &str,
    after: Offset,
    types: Option<&TypeGlob>,
) -> Result<(), StoreError> {
    let only = match types {
        Some(glob) => Some((glob.as_str().to_owned(), store.head().await?)),
        None => None,
    };
    let value = serde_json::to_vec(&ReplayRequest { after, only }).unwrap_or_default();
    store.put(REPLAY, subscription, &value, None).await
}

/// True while a replay asked for with [`replay`] has not been picked up yet.
pub async fn replay_pending(store: &dyn Store, subscription: &str) -> Result<bool, StoreError> {
    Ok(store
        .get(REPLAY, subscription, Timestamp::now())
        .await?
        .is_some())
}

/// Where subscription `subscription` has delivered up to (its committed offset).
pub async fn position(store: &dyn Store, subscription: &str) -> Result<Option<Offset>, StoreError> {
    store.load_offset(&offset_name(subscription)).await
}

fn letter_key(subscription: &str, offset: Offset) -> String {
    format!("{subscription}/{:020}", offset.0)
}

fn offset_name(subscription: &str) -> String {
    format!("delivery:{subscription}")
}

impl Worker {
    async fn run(mut self, cursor: Offset) {
        if let Err(error) = self.walk(cursor).await {
            warn!(subscription = %self.name, %error, "delivery stopped: the store failed");
        }
    }

    /// Where the subscription is: its committed offset, or for a new one the log's head now
    /// (`start = "now"`) or its beginning.
    async fn start_position(&self) -> Result<Offset, StoreError> {
        let name = offset_name(&self.name);
        if let Some(offset) = self.store.load_offset(&name).await? {
            return Ok(offset);
        }
        let from = match self.subscription.start {
            SubscriptionStart::Now => self.store.head().await?,
            SubscriptionStart::Beginning => Offset::START,
        };
        self.store.commit_offset(&name, from).await?;
        info!(subscription = %self.name, after = %from, "new subscription: delivering events after this offset");
        Ok(from)
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn walk(&mut self, mut cursor: Offset) -> Result<(), StoreError> {
        while !self.stopping() {
            self.redrives().await?;
            if let Some(request) = self.take_replay().await? {
                let from = request.after;
                info!(subscription = %self.name, after = %from, only = ?request.only, "replaying from an earlier offset");
                self.flush_offset().await?;
                self.replay_only = request
                    .only
                    .and_then(|(glob, until)| Some((glob.parse().ok()?, until)));
                cursor = from;
                self.store
                    .commit_offset(&offset_name(&self.name), cursor)
                    .await?;
            }
            let events = self.store.read(cursor, PAGE).await?;
            if events.is_empty() {
                self.idle().await;
                continue;
            }
            for stored in events {
                if self.stopping() {
                    break;
                }
                if self
                    .replay_only
                    .as_ref()
                    .is_some_and(|(_, until)| stored.offset > *until)
                {
                    self.replay_only = None;
                }
                let replayed = self
                    .replay_only
                    .as_ref()
                    .is_none_or(|(glob, _)| glob.matches(&stored.ty));
                if replayed
                    && self.patterns.matches(&stored.ty)
                    && !self.deliver(&stored, false).await?
                {
                    break; // stopped while waiting to retry; the state is stored
                }
                cursor = stored.offset;
                self.uncommitted = Some(cursor);
            }
            // One durable write per page, not per event: after a crash at most a page is
            // sent again, with the same webhook-ids, which receivers dedupe.
            self.flush_offset().await?;
        }
        self.flush_offset().await
    }

    /// A replay asked for with [`replay`], if any (taken: it runs once).
    async fn take_replay(&self) -> Result<Option<ReplayRequest>, StoreError> {
        let Some(bytes) = self.store.get(REPLAY, &self.name, Timestamp::now()).await? else {
            return Ok(None);
        };
        self.store.delete(REPLAY, &self.name).await?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Commits the position reached, if it moved.
    async fn flush_offset(&mut self) -> Result<(), StoreError> {
        if let Some(offset) = self.uncommitted.take() {
            self.store
                .commit_offset(&offset_name(&self.name), offset)
                .await?;
        }
        Ok(())
    }

    /// Waits for a new event, a stop, or the idle look.
    async fn idle(&mut self) {
        let _ = tokio::time::timeout(IDLE_LOOK, async {
            tokio::select! {
                _ = self.head.changed() => {}
                _ = self.stop.changed() => {}
            }
        })
        .await;
    }

    async fn redrives(&mut self) -> Result<(), StoreError> {
        let prefix = format!("{}/", self.name);
        for (key, value) in self
            .store
            .list(REDRIVE, Timestamp::now(), usize::MAX)
            .await?
        {
            if !key.starts_with(&prefix) {
                continue;
            }
            let Ok(letter) = serde_json::from_slice::<DeadLetter>(&value) else {
                self.store.delete(REDRIVE, &key).await?;
                continue;
            };
            let events = self
                .store
                .read(Offset(letter.offset.0.saturating_sub(1)), 1)
                .await?;
            if let Some(stored) = events.into_iter().find(|e| e.offset == letter.offset) {
                info!(subscription = %self.name, offset = %letter.offset, "re-driving a dead letter");
                if !self.deliver(&stored, true).await? {
                    return Ok(());
                }
            }
            self.store.delete(REDRIVE, &key).await?;
        }
        Ok(())
    }

    /// Delivers one event on the schedule; false if stopped while waiting. A re-drive keeps
    /// its retry state under its own key so it never disturbs the subscription's position.
    async fn deliver(&mut self, stored: &StoredEvent, redrive: bool) -> Result<bool, StoreError> {
        let state_key = if redrive {
            format!("{}/redrive", self.name)
        } else {
            self.name.clone()
        };
        // Retry state is read from the store only for the first event after a (re)start and
        // for re-drives; after that it lives here and is written only when an attempt fails.
        let resumed = if redrive || self.first_delivery {
            self.first_delivery = redrive && self.first_delivery;
            match self
                .store
                .get(PENDING, &state_key, Timestamp::now())
                .await?
            {
                Some(bytes) => serde_json::from_slice::<Pending>(&bytes)
                    .ok()
                    .filter(|p| p.offset == stored.offset),
                None => None,
            }
        } else {
            None
        };
        let mut stored_state = resumed.is_some();
        let mut pending = resumed.unwrap_or(Pending {
            offset: stored.offset,
            attempts: 0,
            next_at: Timestamp::now() + self.delay(0),
            last_error: String::new(),
        });
        let event_id = event_id(stored);
        let schedule_len = u32::try_from(self.subscription.schedule.len()).unwrap_or(u32::MAX);
        loop {
            if !self.wait_until(pending.next_at).await {
                return Ok(false);
            }
            let attempt = self.attempt(stored, &event_id).await;
            pending.attempts += 1;
            let outcome = match attempt {
                Attempt::Delivered => {
                    metrics::counter!("wireline_delivery_total", "subscription" => self.name.clone(), "outcome" => "delivered").increment(1);
                    if stored_state {
                        self.store.delete(PENDING, &state_key).await?;
                    }
                    return Ok(true);
                }
                Attempt::Gone => Err("the endpoint answered 410 Gone".to_owned()),
                Attempt::Failed {
                    error,
                    wait_at_least,
                } => Ok((error, wait_at_least)),
            };
            metrics::counter!("wireline_delivery_attempts_failed_total", "subscription" => self.name.clone()).increment(1);
            let (error, wait_at_least) = match outcome {
                Ok(failed) if pending.attempts < schedule_len => failed,
                Ok((error, _)) | Err(error) => {
                    self.dead_letter(stored, &event_id, pending.attempts, error)
                        .await?;
                    if stored_state {
                        self.store.delete(PENDING, &state_key).await?;
                    }
                    return Ok(true);
                }
            };
            let wait = self
                .delay(pending.attempts)
                .max(wait_at_least.unwrap_or_default());
            pending.next_at = Timestamp::now() + wait;
            pending.last_error = error;
            // Before waiting: the position reached so far, and this event's retry state.
            if !redrive {
                self.flush_offset().await?;
            }
            stored_state = true;
            self.store
                .put(
                    PENDING,
                    &state_key,
                    &serde_json::to_vec(&pending).unwrap_or_default(),
                    None,
                )
                .await?;
        }
    }

    /// The scheduled wait before attempt number `index` (0 = the first), with up to 10 %
    /// jitter so endpoints coming back are not hit by every retry at once.
    fn delay(&self, index: u32) -> Duration {
        let base = self
            .subscription
            .schedule
            .get(index as usize)
            .map_or(Duration::ZERO, |d| d.get());
        if base.is_zero() {
            return base;
        }
        base.mul_f64(1.0 + rand::rng().random_range(0.0..0.1))
    }

    /// Sleeps until `at`; false if asked to stop first.
    async fn wait_until(&mut self, at: Timestamp) -> bool {
        let wait = at
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() {
            return !self.stopping();
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => !self.stopping(),
            _ = self.stop.changed() => false,
        }
    }

    async fn attempt(&self, stored: &StoredEvent, event_id: &str) -> Attempt {
        let event_id = event_id.to_owned();
        let timestamp = Timestamp::now().as_second();
        let body = Bytes::from(stored.body.clone());
        let mut headers = http::HeaderMap::new();
        let mut header = |name: &'static str, value: String| {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        header("content-type", "application/cloudevents+json".to_owned());
        header("webhook-id", event_id.clone());
        header("webhook-timestamp", timestamp.to_string());
        header(
            "webhook-signature",
            standard_sign(&self.key, &event_id, timestamp, &body),
        );
        let Ok(url) = url::Url::parse(&self.url) else {
            return Attempt::Gone;
        };
        let outbound = Outbound {
            method: http::Method::POST,
            url,
            headers,
            body,
        };
        let call = Call {
            agent: self.subscription.agent.clone(),
            idempotent: false,
            idempotency_key: None,
            fingerprint: String::new(),
            stale_key: None,
        };
        let execution = self
            .stack
            .execute(&call, |_| client::send(&self.client, &outbound, 64 * 1024))
            .await;
        match execution.outcome {
            Outcome::Response(response) if (200..300).contains(&response.status) => {
                Attempt::Delivered
            }
            Outcome::Response(response) if response.status == 410 => Attempt::Gone,
            Outcome::Response(response) => Attempt::Failed {
                error: format!("the endpoint answered {}", response.status),
                wait_at_least: response
                    .header("retry-after")
                    .and_then(|v| wireline_core::retry_after::parse(v, Timestamp::now())),
            },
            Outcome::Failed(failure) => Attempt::Failed {
                wait_at_least: match &failure {
                    Failure::BreakerOpen { retry_after } | Failure::RateLimited { retry_after } => {
                        Some(*retry_after)
                    }
                    _ => None,
                },
                error: describe(&failure),
            },
        }
    }

    async fn dead_letter(
        &self,
        stored: &StoredEvent,
        event_id: &str,
        attempts: u32,
        last_error: String,
    ) -> Result<(), StoreError> {
        let event_id = event_id.to_owned();
        let letter = DeadLetter {
            subscription: self.name.clone(),
            offset: stored.offset,
            event_id: event_id.clone(),
            event_type: stored.ty.clone(),
            attempts,
            last_error: last_error.clone(),
            failed_at: Timestamp::now(),
        };
        warn!(subscription = %self.name, offset = %stored.offset, %last_error, "delivery exhausted: dead-lettered");
        metrics::counter!("wireline_delivery_total", "subscription" => self.name.clone(), "outcome" => "dead_lettered").increment(1);
        self.store
            .put(
                DEAD,
                &letter_key(&self.name, stored.offset),
                &serde_json::to_vec(&letter).unwrap_or_default(),
                None,
            )
            .await?;
        let mut data = BTreeMap::new();
        data.insert("subscription", serde_json::json!(self.name));
        data.insert("agent", serde_json::json!(self.subscription.agent));
        data.insert("offset", serde_json::json!(stored.offset));
        data.insert("event_id", serde_json::json!(event_id));
        data.insert("attempts", serde_json::json!(attempts));
        data.insert("last_error", serde_json::json!(last_error));
        let alert = Event::new(
            format!(
                "alert-dead-{}-{}-{}",
                self.name,
                stored.offset,
                letter.failed_at.as_microsecond()
            ),
            format!("wireline://deliveries/{}", self.name),
            "wireline.alert.delivery_exhausted",
            Timestamp::now(),
            serde_json::to_value(data).unwrap_or_default(),
        );
        self.store.append(&alert.id.clone(), &alert).await?;
        if let Some(url) = &self.alert_url {
            // Off the delivery path: a slow alert endpoint must not hold up the subscription.
            let (client, url) = (self.client.clone(), url.clone());
            let body = serde_json::to_vec(&alert).unwrap_or_default();
            tokio::spawn(async move {
                let sent = client
                    .post(url)
                    .header("content-type", "application/cloudevents+json")
                    .timeout(Duration::from_secs(10))
                    .body(body)
                    .send()
                    .await;
                if let Err(error) = sent {
                    warn!(error = %error.without_url(), "alert not delivered to [alerts] url");
                }
            });
        }
        Ok(())
    }
}

/// The event's id (the `webhook-id` of every attempt), read once per delivery: only the
/// `id` field is taken out of the stored JSON.
fn event_id(stored: &StoredEvent) -> String {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(&stored.body)
        .map(|e| e.id)
        .unwrap_or_else(|_| format!("offset-{}", stored.offset))
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::BreakerOpen { .. } => {
            "the endpoint's breaker is open after repeated failures".to_owned()
        }
        Failure::RateLimited { .. } => "the endpoint's rate limit is used up".to_owned(),
        Failure::Unreachable { detail, .. } => format!("the endpoint is unreachable ({detail})"),
        Failure::Timeout => "the endpoint did not answer in time".to_owned(),
        Failure::Store(detail) => format!("the store failed ({detail})"),
        Failure::InFlight | Failure::KeyMismatch => "unexpected idempotency failure".to_owned(),
    }
}
