//! Durable storage: the event log and the state store, as traits every backend implements, one
//! conformance suite they all pass, and the embedded SQLite backend.
//!
//! - [`EventLog`]: append with a caller-supplied dedupe id, read from an offset, query by type
//!   pattern and time range, subscriber offsets.
//! - [`StateStore`]: idempotency records with a TTL, poll cursors, small keyed state (breaker,
//!   limiter) with optional expiry.
//! - [`sqlite::SqliteStore`]: WAL mode, one writer thread with group commit.
//! - [`conformance`]: the behaviour every backend must show, written once.
//!
//! Only this crate knows SQL. Time comes from the caller (`now` arguments), never from the
//! clock, so expiry is testable without sleeping.
#![warn(missing_docs)]

pub mod conformance;
pub mod encrypted;
mod error;
pub mod sqlite;

use async_trait::async_trait;
use jiff::Timestamp;
use wireline_core::{Event, Offset, TypeGlob};

pub use error::StoreError;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's offset: new, or the original one for a duplicate.
    pub offset: Offset,
    /// True when an event with the same dedupe id was already stored; nothing was written.
    pub duplicate: bool,
}

/// An event to append with [`EventLog::append_many`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its dedupe id.
    pub dedupe_id: String,
    /// Its indexed fields (type, source, subject, time); must describe `body`.
    pub event: Event,
    /// The CloudEvents JSON to store.
    pub body: String,
}

impl NewEvent {
    /// `event` serialized, under `dedupe_id`.
    pub fn new(dedupe_id: impl Into<String>, event: Event) -> Result<Self, StoreError> {
        let body = serde_json::to_string(&event)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        Ok(Self {
            dedupe_id: dedupe_id.into(),
            event,
            body,
        })
    }
}

/// An event as stored: its offset, and the CloudEvents JSON exactly as appended.
///
/// The body stays serialized: delivery forwards it as it is, and only readers that need the
/// fields pay for parsing ([`StoredEvent::event`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the log.
    pub offset: Offset,
    /// The event's `type`.
    pub ty: String,
    /// The event's `time`.
    pub time: Timestamp,
    /// When the store accepted it.
    pub recorded_at: Timestamp,
    /// The CloudEvents JSON.
    pub body: String,
}

impl StoredEvent {
    /// The parsed event.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// A filtered read of the log, in offset order.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Only events after this offset.
    pub after: Offset,
    /// Only events whose type matches.
    pub types: Option<TypeGlob>,
    /// Only events with `time >= since`.
    pub since: Option<Timestamp>,
    /// Only events with `time < until`.
    pub until: Option<Timestamp>,
    /// Only events about this subject (the CloudEvents `subject`): a customer's or an
    /// order's timeline.
    pub subject: Option<String>,
    /// Only events from this source.
    pub source: Option<String>,
    /// At most this many events.
    pub limit: usize,
}

impl EventQuery {
    /// Everything after `after`, at most `limit` events.
    pub fn after(after: Offset, limit: usize) -> Self {
        Self {
            after,
            types: None,
            since: None,
            until: None,
            subject: None,
            source: None,
            limit,
        }
    }
}

/// What retention does to an old event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Removes the event (its offset stays used: readers see a gap).
    Delete,
    /// Removes its `data` (the payload) and marks it with the `wlredacted` extension
    /// attribute (the time of redaction); the envelope (id, type, source, subject, time and
    /// the other attributes) stays, so the audit trail does. Its dedupe id stays too, so a
    /// redelivered original is still recognised as a duplicate.
    DropData,
}

/// The append-only, ordered, de-duplicated event log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends `event` unless an event with `dedupe_id` is already stored. Returns once the
    /// event is durable (or known to be a duplicate).
    async fn append(&self, dedupe_id: &str, event: &Event) -> Result<Appended, StoreError> {
        let body =
            serde_json::to_string(event).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        self.append_json(dedupe_id, event, body).await
    }

    /// Like [`EventLog::append`], for a producer that serialized the event itself (to keep
    /// exact bytes, such as a webhook's raw body as `data`): `body` is stored and read back
    /// as it is; `event` gives the indexed fields (type, source, subject, time) and must
    /// describe the same event.
    async fn append_json(
        &self,
        dedupe_id: &str,
        event: &Event,
        body: String,
    ) -> Result<Appended, StoreError>;

    /// Appends several events in order, each as [`EventLog::append_json`] would (a dedupe id
    /// already stored, or repeated within `events`, is skipped and reported as a duplicate),
    /// and returns once all are durable. Backends write them in one job, so a batch costs one
    /// commit instead of one per event. On an error some of them may be stored; appending the
    /// same batch again is safe, since what was stored comes back as duplicates.
    async fn append_many(&self, events: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        let mut appended = Vec::with_capacity(events.len());
        for new in events {
            appended.push(
                self.append_json(&new.dedupe_id, &new.event, new.body.clone())
                    .await?,
            );
        }
        Ok(appended)
    }

    /// Events after `after`, in order, at most `limit`.
    async fn read(&self, after: Offset, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.query(&EventQuery::after(after, limit)).await
    }

    /// Events matching `query`, in order.
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Retention: applies `what` to events whose type matches `types` and whose `time` is
    /// before `before`, at most `limit` of them (oldest first); returns how many changed.
    /// The newest event of the log is never deleted, so an offset is never handed out twice.
    async fn expire(
        &self,
        types: &TypeGlob,
        before: Timestamp,
        what: Expiry,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// The offset of the newest event ([`Offset::START`] when empty).
    async fn head(&self) -> Result<Offset, StoreError>;

    /// Records that `subscriber` has processed everything up to `offset`.
    async fn commit_offset(&self, subscriber: &str, offset: Offset) -> Result<(), StoreError>;

    /// The last offset `subscriber` committed.
    async fn load_offset(&self, subscriber: &str) -> Result<Option<Offset>, StoreError>;
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free (or expired): the caller owns it and must complete or release it.
    Claimed,
    /// Another request with this key is still running.
    InFlight,
    /// A request with this key and the same fingerprint completed: here is its stored result.
    Completed(Vec<u8>),
    /// The key was used with a different request (another fingerprint).
    Mismatch,
}

/// One change in a [`StateStore::write_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Sets a keyed value (see [`StateStore::put`]).
    Put {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// When it expires, if ever.
        expires: Option<Timestamp>,
    },
    /// Removes a keyed value.
    Delete {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
}

/// Small durable state: idempotency records, poll cursors, keyed values.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Claims `key` in `scope` for a request whose body hashes to `fingerprint`; the record
    /// lives until `expires`.
    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8],
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the result of a claimed key; later claims with the same fingerprint get it.
    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        result: &[u8],
    ) -> Result<(), StoreError>;

    /// Gives up a claimed key (the request failed in a way that may be retried).
    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// Saves a poll cursor.
    async fn save_cursor(&self, name: &str, cursor: &str) -> Result<(), StoreError>;

    /// The last saved poll cursor.
    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Sets a keyed value, optionally expiring.
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError>;

    /// A keyed value, unless absent or expired at `now`.
    async fn get(
        &self,
        namespace: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes a keyed value; true if it was there.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError>;

    /// The unexpired keys and values of a namespace, in key order, at most `limit`.
    async fn list(
        &self,
        namespace: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Applies `changes` and, if given, commits `offset` for a subscriber, all or nothing:
    /// after a crash either every change and the offset are there or none is. Derived state
    /// (projections, trigger rules) saves what a page of events did together with the
    /// position it reached, so a restart never applies an event twice.
    async fn write_batch(
        &self,
        changes: Vec<Change>,
        offset: Option<(String, Offset)>,
    ) -> Result<(), StoreError>;

    /// Deletes expired idempotency records and keyed values; returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// A whole backend: the log, the state, and its lifecycle.
#[async_trait]
pub trait Store: EventLog + StateStore {
    /// Succeeds when the store can serve reads and writes (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything acknowledged durable and stops accepting writes (for shutdown).
    async fn close(&self) -> Result<(), StoreError>;
}
