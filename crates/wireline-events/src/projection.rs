//! Projections: the latest state per subject, rebuilt from the log.
//!
//! A projection's state for a subject ([`SubjectState`]) is a pure function of the events of
//! its types with that subject, in log order: no clock, no randomness. That is what makes
//! "drop it and replay from offset 0" give exactly the state kept up incrementally, and what
//! the test checks.
//!
//! Storage: each rebuild writes a new *generation* (namespace `projection:NAME:GEN`, position
//! `projection:NAME:GEN`); readers keep reading the current generation until the new one has
//! caught up with the log, then the pointer (namespace `projections`, key NAME) moves in the
//! same batch as the new generation's last page, and the old generation is deleted. A crash
//! mid-rebuild resumes the rebuild from its own position.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wireline_config::model::Projection;
use wireline_core::{Offset, TypeGlob};
use wireline_store::{Change, StateStore, Store, StoreError, StoredEvent};
use wireline_webhook::delivery::Head;

/// Namespace of the generation pointers.
const POINTERS: &str = "projections";
/// Namespace of rebuild requests (from the CLI or the API), taken by the running projector.
const REBUILDS: &str = "projection-rebuilds";
/// Events read per page.
const PAGE: usize = 1000;
/// Subject states kept in memory between pages (the projector is their only writer).
const CACHE: usize = 50_000;

/// One type's part of a subject's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeState {
    /// Events of this type.
    pub count: u64,
    /// The last one's offset.
    pub last_offset: u64,
    /// The last one's id.
    pub last_id: String,
    /// The last one's time.
    pub last_time: Timestamp,
}

/// What a projection knows about one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// The subject.
    pub subject: String,
    /// Events seen.
    pub events: u64,
    /// The earliest event time seen.
    pub first_time: Timestamp,
    /// The latest event time seen.
    pub last_time: Timestamp,
    /// The offset of the last event applied.
    pub last_offset: u64,
    /// Per event type.
    pub types: BTreeMap<String, TypeState>,
}

impl SubjectState {
    fn new(subject: &str, time: Timestamp) -> Self {
        Self {
            subject: subject.to_owned(),
            events: 0,
            first_time: time,
            last_time: time,
            last_offset: 0,
            types: BTreeMap::new(),
        }
    }

    /// Applies one event (in log order; an event at or before `last_offset` is ignored, so
    /// applying a page twice changes nothing).
    pub fn apply(&mut self, offset: Offset, id: &str, ty: &str, time: Timestamp) {
        if offset.0 <= self.last_offset {
            return;
        }
        self.events += 1;
        self.first_time = self.first_time.min(time);
        self.last_time = self.last_time.max(time);
        self.last_offset = offset.0;
        let entry = self
            .types
            .entry(ty.to_owned())
            .or_insert_with(|| TypeState {
                count: 0,
                last_offset: 0,
                last_id: String::new(),
                last_time: time,
            });
        entry.count += 1;
        entry.last_offset = offset.0;
        entry.last_id = id.to_owned();
        entry.last_time = time;
    }
}

/// Where a projection's state is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The generation readers read.
    pub current: u64,
    /// A generation being rebuilt, if any.
    pub building: Option<u64>,
}

fn generation_name(name: &str, generation: u64) -> String {
    format!("projection:{name}:{generation}")
}

/// The pointer of projection `name` (generation 1 before the first run).
pub async fn pointer(store: &dyn StateStore, name: &str) -> Result<Pointer, StoreError> {
    Ok(store
        .get(POINTERS, name, Timestamp::now())
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Pointer {
            current: 1,
            building: None,
        }))
}

/// The state of `subject` in projection `name`, as readers see it.
pub async fn read(
    store: &dyn StateStore,
    name: &str,
    subject: &str,
) -> Result<Option<SubjectState>, StoreError> {
    let pointer = pointer(store, name).await?;
    Ok(store
        .get(
            &generation_name(name, pointer.current),
            subject,
            Timestamp::now(),
        )
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Every subject's state of projection `name` (current generation), in subject order, at most
/// `limit`.
pub async fn list(
    store: &dyn StateStore,
    name: &str,
    limit: usize,
) -> Result<Vec<SubjectState>, StoreError> {
    let pointer = pointer(store, name).await?;
    Ok(store
        .list(
            &generation_name(name, pointer.current),
            Timestamp::now(),
            limit,
        )
        .await?
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .collect())
}

/// How far the current generation of `name` has applied the log.
pub async fn position(store: &dyn Store, name: &str) -> Result<Offset, StoreError> {
    let pointer = pointer(store, name).await?;
    Ok(store
        .load_offset(&generation_name(name, pointer.current))
        .await?
        .unwrap_or(Offset::START))
}

/// Asks the running projector of `name` to drop and rebuild it from offset 0.
pub async fn request_rebuild(store: &dyn StateStore, name: &str) -> Result<(), StoreError> {
    store.put(REBUILDS, name, b"1", None).await
}

/// True while a rebuild of `name` has been asked for or is running.
pub async fn rebuilding(store: &dyn StateStore, name: &str) -> Result<bool, StoreError> {
    Ok(store.get(REBUILDS, name, Timestamp::now()).await?.is_some()
        || pointer(store, name).await?.building.is_some())
}

/// The running projections.
pub struct Projections {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Projections {
    /// Starts one task per configured projection.
    pub fn start(
        projections: &BTreeMap<String, Projection>,
        store: Arc<dyn Store>,
        head: &Arc<Head>,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        let tasks = projections
            .iter()
            .map(|(name, projection)| {
                let projector = Projector {
                    name: name.clone(),
                    types: projection.events.clone(),
                    store: Arc::clone(&store),
                    cache: HashMap::new(),
                };
                let (head, stop) = (head.watch(), stopping.clone());
                tokio::spawn(async move {
                    let name = projector.name.clone();
                    if let Err(error) = projector.run(head, stop).await {
                        warn!(projection = %name, %error, "projection stopped: the store failed; restart wireline to resume");
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops every projector after the page it is on.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Keeps one projection up to date; drives rebuilds.
pub struct Projector {
    name: String,
    types: Vec<TypeGlob>,
    store: Arc<dyn Store>,
    cache: HashMap<String, SubjectState>,
}

impl Projector {
    /// A projector for projection `name` over events of `types`.
    pub fn new(name: &str, types: Vec<TypeGlob>, store: Arc<dyn Store>) -> Self {
        Self {
            name: name.to_owned(),
            types,
            store,
            cache: HashMap::new(),
        }
    }

    async fn run(
        mut self,
        mut head: watch::Receiver<Offset>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        while !*stop.borrow() {
            if self.step().await? {
                continue;
            }
            tokio::select! {
                _ = head.changed() => {}
                _ = stop.changed() => {}
                // Rebuild requests come through the store (the CLI may be another process).
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
        Ok(())
    }

    /// Does one page of work: takes a rebuild request, applies a page of the log to the
    /// generation being written, or finishes a rebuild. False when there was nothing to do.
    pub async fn step(&mut self) -> Result<bool, StoreError> {
        let store = Arc::clone(&self.store);
        let mut pointer = pointer(store.as_ref(), &self.name).await?;
        if store
            .get(REBUILDS, &self.name, Timestamp::now())
            .await?
            .is_some()
        {
            let next = pointer.current.max(pointer.building.unwrap_or(0)) + 1;
            info!(projection = %self.name, generation = next, "rebuilding from offset 0");
            pointer.building = Some(next);
            store
                .write_batch(
                    vec![
                        pointer_change(&self.name, pointer),
                        Change::Delete {
                            namespace: REBUILDS.to_owned(),
                            key: self.name.clone(),
                        },
                    ],
                    Some((generation_name(&self.name, next), Offset::START)),
                )
                .await?;
            self.cache.clear();
            return Ok(true);
        }
        let generation = pointer.building.unwrap_or(pointer.current);
        let position = generation_name(&self.name, generation);
        let after = store.load_offset(&position).await?.unwrap_or(Offset::START);
        let page = store.read(after, PAGE).await?;
        let Some(last) = page.last().map(|e| e.offset) else {
            if let Some(building) = pointer.building {
                self.finish_rebuild(pointer.current, building).await?;
                return Ok(true);
            }
            return Ok(false);
        };
        let changes = self.apply(&position, &page).await?;
        if self.cache.len() > CACHE {
            self.cache.clear();
        }
        store.write_batch(changes, Some((position, last))).await?;
        Ok(true)
    }

    /// Applies a page to generation `position`'s states; returns the changed ones.
    async fn apply(
        &mut self,
        position: &str,
        page: &[StoredEvent],
    ) -> Result<Vec<Change>, StoreError> {
        let mut changed = BTreeSet::<String>::new();
        for stored in page {
            if !self.types.iter().any(|glob| glob.matches(&stored.ty)) {
                continue;
            }
            let Ok(crate::Fields {
                id,
                subject: Some(subject),
            }) = serde_json::from_str::<crate::Fields<'_>>(&stored.body)
            else {
                continue;
            };
            let subject = subject.into_owned();
            if !self.cache.contains_key(&subject) {
                let loaded = self
                    .store
                    .get(position, &subject, Timestamp::now())
                    .await?
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_else(|| SubjectState::new(&subject, stored.time));
                self.cache.insert(subject.clone(), loaded);
            }
            if let Some(state) = self.cache.get_mut(&subject) {
                state.apply(stored.offset, &id, &stored.ty, stored.time);
            }
            changed.insert(subject);
        }
        Ok(changed
            .into_iter()
            .filter_map(|subject| {
                let value = serde_json::to_vec(self.cache.get(&subject)?).ok()?;
                Some(Change::Put {
                    namespace: position.to_owned(),
                    key: subject,
                    value,
                    expires: None,
                })
            })
            .collect())
    }

    /// The rebuilt generation has caught up: readers switch to it, the old one goes.
    async fn finish_rebuild(&mut self, old: u64, new: u64) -> Result<(), StoreError> {
        self.store
            .write_batch(
                vec![pointer_change(
                    &self.name,
                    Pointer {
                        current: new,
                        building: None,
                    },
                )],
                None,
            )
            .await?;
        let old = generation_name(&self.name, old);
        loop {
            let keys = self.store.list(&old, Timestamp::UNIX_EPOCH, 1000).await?;
            if keys.is_empty() {
                break;
            }
            let deletes = keys
                .into_iter()
                .map(|(key, _)| Change::Delete {
                    namespace: old.clone(),
                    key,
                })
                .collect();
            self.store.write_batch(deletes, None).await?;
        }
        info!(projection = %self.name, generation = new, "rebuild finished; readers use the new state");
        Ok(())
    }
}

fn pointer_change(name: &str, pointer: Pointer) -> Change {
    Change::Put {
        namespace: POINTERS.to_owned(),
        key: name.to_owned(),
        value: serde_json::to_vec(&pointer).unwrap_or_default(),
        expires: None,
    }
}
