//! Encryption at rest: a [`Store`] wrapper that seals sensitive event payloads and every
//! idempotency response with AES-256-GCM before they reach the backend, and opens them on the
//! way out. The backend (and its file) only ever holds ciphertext for them; the envelope
//! fields the log is queried by (type, source, subject, time) stay readable.
//!
//! Format: `wl1:KEYID:BASE64(nonce || ciphertext || tag)`. The key id travels with every
//! ciphertext, so keys rotate: the current key seals, any configured key opens. AES-GCM comes
//! from `ring`, already in the build for TLS; nonces are 96 random bits per seal.
//!
//! Keyed state in namespaces starting with `sealed:` (OAuth refresh tokens) is sealed too.
//!
//! A sealed event keeps its envelope and carries `wlencrypted` in place of `data` (and of
//! `data_base64` / `wlrawbody64`); opening restores those fields with their exact bytes. A
//! sealed single field becomes `{"wlsealed": "wl1:..."}`, and the event lists the paths it
//! sealed in the envelope attribute `wlsealedpaths`. Both markers are attributes Wireline
//! owns (producers cannot set `wl*` attributes, and payloads sit below `data`), so a payload
//! that happens to contain `{"wlsealed": ...}` is stored and read back unchanged: only listed
//! paths are opened. (Events sealed before the list existed have none; their markers are
//! opened where they authenticate under a configured key, and left alone where they do not.)

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use jiff::Timestamp;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::value::RawValue;
use wireline_core::{Event, Offset, TypeGlob};

use crate::{
    Appended, Change, EventLog, EventQuery, Expiry, IdempotencyClaim, NewEvent, StateStore, Store,
    StoreError, StoredEvent,
};

/// The fields that carry a payload.
const PAYLOAD: [&str; 3] = ["data", "data_base64", "wlrawbody64"];
/// Keyed-state namespaces whose values are sealed (OAuth tokens).
pub const SEALED_NAMESPACE: &str = "sealed:";
/// The key of a sealed single field: `{"wlsealed": "wl1:..."}`.
const SEALED_FIELD: &str = "wlsealed";
/// The field holding a sealed payload.
const SEALED: &str = "wlencrypted";
/// The envelope attribute listing the dotted paths of sealed single fields.
const SEALED_PATHS: &str = "wlsealedpaths";

/// Keys by id; one of them seals.
pub struct Cipher {
    current: String,
    keys: BTreeMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cipher(current key {}, {} keys)",
            self.current,
            self.keys.len()
        )
    }
}

impl Cipher {
    /// `keys`: id -> 32 raw bytes; `current` seals.
    pub fn new(current: &str, keys: BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let mut bound = BTreeMap::new();
        for (id, bytes) in keys {
            if id.is_empty() || id.contains(':') {
                return Err(format!(
                    "encryption key id {id:?}: use letters and digits, no ':'"
                ));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
                format!("encryption key {id} must be 32 bytes (AES-256), given as 64 hex digits or base64; it has {}", bytes.len())
            })?;
            bound.insert(id, LessSafeKey::new(key));
        }
        if !bound.contains_key(current) {
            return Err(format!("no encryption key with id {current}"));
        }
        Ok(Self {
            current: current.to_owned(),
            keys: bound,
            random: SystemRandom::new(),
        })
    }

    /// Seals `plaintext` with the current key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, StoreError> {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| StoreError::Database("no randomness for a nonce".into()))?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.current.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| StoreError::Database("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "wl1:{}:{}",
            self.current,
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens what [`Cipher::seal`] (with any configured key) produced.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("an encrypted value {why}"));
        let rest = sealed
            .strip_prefix("wl1:")
            .ok_or_else(|| corrupt("has an unknown format"))?;
        let (id, data) = rest
            .split_once(':')
            .ok_or_else(|| corrupt("has no key id"))?;
        let key = self.keys.get(id).ok_or_else(|| {
            StoreError::Corrupt(format!("an encrypted value needs key {id}, which is not configured; add it to [security] previous_keys"))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| corrupt("is not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt("is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("has a bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buffer)
            .map_err(|_| {
                corrupt("does not open with its key (tampered, or the wrong key under that id)")
            })?;
        Ok(plain.to_vec())
    }
}

/// A store that encrypts sensitive payloads and idempotency responses.
#[derive(Clone)]
pub struct EncryptedStore<S> {
    inner: S,
    cipher: Arc<Cipher>,
    sensitive: Vec<TypeGlob>,
    /// Per type pattern, dotted paths (`data.object.email`) of single fields to seal.
    paths: Vec<(TypeGlob, Vec<String>)>,
}

impl<S> EncryptedStore<S> {
    /// Wraps `inner`; events whose type matches `sensitive` have their payload sealed.
    pub fn new(inner: S, cipher: Arc<Cipher>, sensitive: Vec<TypeGlob>) -> Self {
        Self {
            inner,
            cipher,
            sensitive,
            paths: Vec::new(),
        }
    }

    /// Also seals single fields of matching types (card numbers, emails, health fields),
    /// leaving the rest of the payload readable in the store. The event is re-serialized, so
    /// its payload is no longer byte for byte as received.
    pub fn with_paths(mut self, paths: Vec<(TypeGlob, Vec<String>)>) -> Self {
        self.paths = paths;
        self
    }

    fn seal_fields(&self, body: &str, paths: &[&String]) -> Result<String, StoreError> {
        let corrupt = |error: serde_json::Error| StoreError::Corrupt(error.to_string());
        let mut event: serde_json::Value = serde_json::from_str(body).map_err(corrupt)?;
        let mut sealed = Vec::new();
        for path in paths {
            if let Some(field) = event.pointer_mut(&pointer(path)) {
                let plaintext = serde_json::to_vec(field).map_err(corrupt)?;
                *field = serde_json::json!({ SEALED_FIELD: self.cipher.seal(&plaintext)? });
                sealed.push(path.as_str());
            }
        }
        if sealed.is_empty() {
            return Ok(body.to_owned());
        }
        if let Some(envelope) = event.as_object_mut() {
            envelope.insert(SEALED_PATHS.to_owned(), serde_json::json!(sealed));
        }
        serde_json::to_string(&event).map_err(corrupt)
    }

    /// Opens the sealed single fields of `event`: the paths its `wlsealedpaths` lists, each
    /// of which must open; for an event sealed before the list existed, every
    /// `{"wlsealed": ...}` object that authenticates under a configured key.
    fn open_fields(&self, event: &mut serde_json::Value) -> Result<(), StoreError> {
        let listed = event
            .as_object_mut()
            .and_then(|envelope| envelope.remove(SEALED_PATHS));
        let Some(listed) = listed else {
            self.open_legacy_fields(event);
            return Ok(());
        };
        let paths: Vec<String> = serde_json::from_value(listed)
            .map_err(|_| StoreError::Corrupt(format!("{SEALED_PATHS} is not a list of paths")))?;
        for path in paths {
            let field = event.pointer_mut(&pointer(&path)).ok_or_else(|| {
                StoreError::Corrupt(format!("the sealed field {path} is missing"))
            })?;
            let sealed = field
                .get(SEALED_FIELD)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| StoreError::Corrupt(format!("the field {path} is not sealed")))?;
            let plaintext = self.cipher.open(sealed)?;
            *field = serde_json::from_slice(&plaintext)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        Ok(())
    }

    /// Opens every `{"wlsealed": ...}` object in `value` that authenticates, recursively;
    /// anything else (a payload's own object of that shape) stays as it is.
    fn open_legacy_fields(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.len() == 1
                    && let Some(serde_json::Value::String(sealed)) = map.get(SEALED_FIELD)
                    && let Ok(plaintext) = self.cipher.open(sealed)
                    && let Ok(opened) = serde_json::from_slice(&plaintext)
                {
                    *value = opened;
                    return;
                }
                for child in map.values_mut() {
                    self.open_legacy_fields(child);
                }
            }
            serde_json::Value::Array(items) => {
                for child in items {
                    self.open_legacy_fields(child);
                }
            }
            _ => {}
        }
    }

    /// Whether events of type `ty` have anything sealed (their payload, or some fields).
    fn seals(&self, ty: &str) -> bool {
        self.sensitive.iter().any(|glob| glob.matches(ty))
            || self.paths.iter().any(|(glob, _)| glob.matches(ty))
    }

    /// `body` as stored: whole payload sealed for a sensitive type, else the sensitive paths.
    fn seal_body(&self, event: &Event, body: String) -> Result<String, StoreError> {
        Self::check_unmarked(&body)?;
        if self.sensitive.iter().any(|glob| glob.matches(&event.ty)) {
            return self.seal_event(&body);
        }
        let paths: Vec<&String> = self
            .paths
            .iter()
            .filter(|(glob, _)| glob.matches(&event.ty))
            .flat_map(|(_, paths)| paths)
            .collect();
        if paths.is_empty() {
            Ok(body)
        } else {
            self.seal_fields(&body, &paths)
        }
    }

    fn seal_event(&self, body: &str) -> Result<String, StoreError> {
        let corrupt = |error: serde_json::Error| StoreError::Corrupt(error.to_string());
        let mut fields: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(body).map_err(corrupt)?;
        let mut payload = BTreeMap::new();
        for name in PAYLOAD {
            if let Some(value) = fields.remove(name) {
                payload.insert(name, value);
            }
        }
        if payload.is_empty() {
            return Ok(body.to_owned());
        }
        let plaintext = serde_json::to_vec(&payload).map_err(corrupt)?;
        let sealed = serde_json::to_string(&self.cipher.seal(&plaintext)?).map_err(corrupt)?;
        fields.insert(
            SEALED.to_owned(),
            RawValue::from_string(sealed).map_err(corrupt)?,
        );
        serde_json::to_string(&fields).map_err(corrupt)
    }

    /// Refuses a body that already carries one of the markers only this wrapper writes: it
    /// could only come from a producer that got past the API's stripping of `wl*`
    /// attributes, and would make the event unreadable or misread.
    fn check_unmarked(body: &str) -> Result<(), StoreError> {
        if !body.contains("\"wlencrypted\"") && !body.contains("\"wlsealedpaths\"") {
            return Ok(());
        }
        let fields: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(body).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        match [SEALED, SEALED_PATHS]
            .iter()
            .find(|name| fields.contains_key(**name))
        {
            Some(name) => Err(StoreError::Corrupt(format!(
                "the event carries the attribute {name}, which only Wireline sets; drop it"
            ))),
            None => Ok(()),
        }
    }

    fn open_event(&self, mut stored: StoredEvent) -> Result<StoredEvent, StoreError> {
        if stored.body.contains("\"wlsealed\"") {
            let mut event: serde_json::Value = serde_json::from_str(&stored.body)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.open_fields(&mut event)?;
            stored.body =
                serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        if !stored.body.contains("\"wlencrypted\"") {
            return Ok(stored);
        }
        let corrupt = |error: serde_json::Error| StoreError::Corrupt(error.to_string());
        let mut fields: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(&stored.body).map_err(corrupt)?;
        let Some(sealed) = fields.remove(SEALED) else {
            return Ok(stored);
        };
        let sealed: String = serde_json::from_str(sealed.get()).map_err(corrupt)?;
        let plaintext = self.cipher.open(&sealed)?;
        let payload: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(&plaintext).map_err(corrupt)?;
        fields.extend(payload);
        stored.body = serde_json::to_string(&fields).map_err(corrupt)?;
        Ok(stored)
    }
}

impl<S> EncryptedStore<S> {
    /// A value of a `sealed:` namespace, opened. One written before such namespaces were
    /// sealed is plaintext (no `wl1:` prefix) and comes back as it is; the next write seals
    /// it.
    fn open_state(&self, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match std::str::from_utf8(&value) {
            Ok(text) if text.starts_with("wl1:") => self.cipher.open(text),
            _ => Ok(value),
        }
    }
}

/// A dotted path (`data.object.email`) as a JSON pointer.
fn pointer(path: &str) -> String {
    format!(
        "/{}",
        path.replace('~', "~0").replace('/', "~1").replace('.', "/")
    )
}

#[async_trait]
impl<S: Store> EventLog for EncryptedStore<S> {
    async fn append_json(
        &self,
        dedupe_id: &str,
        event: &Event,
        body: String,
    ) -> Result<Appended, StoreError> {
        let body = self.seal_body(event, body)?;
        self.inner.append_json(dedupe_id, event, body).await
    }

    async fn append_many(&self, events: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        // Most batches (the audit trail's) hold nothing to seal: pass them on as they are
        // rather than copy every event to change none.
        if !events.iter().any(|new| self.seals(&new.event.ty)) {
            for new in events {
                Self::check_unmarked(&new.body)?;
            }
            return self.inner.append_many(events).await;
        }
        let sealed = events
            .iter()
            .map(|new| {
                Ok(NewEvent {
                    dedupe_id: new.dedupe_id.clone(),
                    event: new.event.clone(),
                    body: self.seal_body(&new.event, new.body.clone())?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.append_many(&sealed).await
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner
            .query(query)
            .await?
            .into_iter()
            .map(|stored| self.open_event(stored))
            .collect()
    }

    async fn expire(
        &self,
        types: &TypeGlob,
        before: Timestamp,
        what: Expiry,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.expire(types, before, what, limit).await
    }

    async fn head(&self) -> Result<Offset, StoreError> {
        self.inner.head().await
    }

    async fn commit_offset(&self, subscriber: &str, offset: Offset) -> Result<(), StoreError> {
        self.inner.commit_offset(subscriber, offset).await
    }

    async fn load_offset(&self, subscriber: &str) -> Result<Option<Offset>, StoreError> {
        self.inner.load_offset(subscriber).await
    }
}

#[async_trait]
impl<S: Store> StateStore for EncryptedStore<S> {
    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8],
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        match self
            .inner
            .idempotency_claim(scope, key, fingerprint, now, expires)
            .await?
        {
            IdempotencyClaim::Completed(sealed) => {
                let text =
                    String::from_utf8(sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(IdempotencyClaim::Completed(self.cipher.open(&text)?))
            }
            other => Ok(other),
        }
    }

    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        result: &[u8],
    ) -> Result<(), StoreError> {
        let sealed = self.cipher.seal(result)?;
        self.inner
            .idempotency_complete(scope, key, sealed.as_bytes())
            .await
    }

    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        self.inner.idempotency_release(scope, key).await
    }

    async fn save_cursor(&self, name: &str, cursor: &str) -> Result<(), StoreError> {
        self.inner.save_cursor(name, cursor).await
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_cursor(name).await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        if namespace.starts_with(SEALED_NAMESPACE) {
            let sealed = self.cipher.seal(value)?;
            return self
                .inner
                .put(namespace, key, sealed.as_bytes(), expires)
                .await;
        }
        self.inner.put(namespace, key, value, expires).await
    }

    async fn get(
        &self,
        namespace: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.inner.get(namespace, key, now).await?;
        match value {
            Some(value) if namespace.starts_with(SEALED_NAMESPACE) => {
                self.open_state(value).map(Some)
            }
            other => Ok(other),
        }
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(namespace, key).await
    }

    async fn list(
        &self,
        namespace: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let listed = self.inner.list(namespace, now, limit).await?;
        if !namespace.starts_with(SEALED_NAMESPACE) {
            return Ok(listed);
        }
        listed
            .into_iter()
            .map(|(key, value)| Ok((key, self.open_state(value)?)))
            .collect()
    }

    async fn write_batch(
        &self,
        changes: Vec<Change>,
        offset: Option<(String, Offset)>,
    ) -> Result<(), StoreError> {
        let changes = changes
            .into_iter()
            .map(|change| match change {
                Change::Put {
                    namespace,
                    key,
                    value,
                    expires,
                } if namespace.starts_with(SEALED_NAMESPACE) => Ok(Change::Put {
                    value: self.cipher.seal(&value)?.into_bytes(),
                    namespace,
                    key,
                    expires,
                }),
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.write_batch(changes, offset).await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
}

#[async_trait]
impl<S: Store> Store for EncryptedStore<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
