//! The trigger runner: one task walking the log through [`Rules`], appending what fires, and
//! keeping the rules' state durable.
//!
//! Exactly once, across crashes, without a transaction spanning the log and the state:
//! - a derived event's dedupe id is the rule and the offset of the event that completed the
//!   pattern, so firing twice appends once;
//! - after each page, the state changes and the position go in one [`StateStore::write_batch`]
//!   *after* the page's derived events are appended. A crash in between repeats the page from
//!   the stored state and position: the same events fire again and are duplicates.
//! - absence timers fire only once the runner has caught up with the log, so a `missing`
//!   event still waiting in a backlog (after a restart, say) cancels its timer before the
//!   clock can fire it.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wireline_config::model::Config;
use wireline_core::{Event, Offset};
use wireline_store::{Store, StoreError};
use wireline_webhook::delivery::Head;

use crate::rules::{Fired, Rules, Seen, namespace};
use crate::{Clock, Fields};

/// The subscriber name of the runner's position in the log.
pub const POSITION: &str = "triggers";
/// Events read per page.
const PAGE: usize = 1000;
/// Pages applied between two stores of the state (while catching up; a caught-up runner
/// stores at once). A subject touched on several pages is written once, and a crash repeats
/// at most this many pages, whose derived events are then duplicates.
const FLUSH_PAGES: usize = 10;

/// How far the runner is: every event up to `offset` applied, and every timer due at `now`
/// fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The last offset applied.
    pub offset: Offset,
    /// The clock time up to which due timers have fired.
    pub now: Timestamp,
}

/// The running trigger rules.
pub struct Triggers {
    stop: watch::Sender<bool>,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<()>,
}

impl Triggers {
    /// Loads the rules' stored state and starts the runner (nothing runs without rules).
    /// A new runner starts at the log's head: rules see events appended from then on.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        head: Arc<Head>,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let mut rules = Rules::new(&config.triggers);
        let emits: Vec<String> = config
            .triggers
            .iter()
            .filter(|t| t.sequence.is_some() || t.absence.is_some() || t.threshold.is_some())
            .map(|t| t.emit.clone())
            .collect();
        let now = clock.now();
        for index in 0..rules.len() {
            let name = rules.name(index).to_owned();
            for (subject, value) in store.list(&namespace(&name), now, usize::MAX).await? {
                rules.load(&name, &subject, &value);
            }
        }
        let cursor = match store.load_offset(POSITION).await? {
            Some(offset) => offset,
            None => {
                let head = store.head().await?;
                store.commit_offset(POSITION, head).await?;
                head
            }
        };
        if !rules.is_empty() {
            info!(rules = rules.len(), pending_timers = rules.pending_timers(), after = %cursor, "trigger rules running");
        }
        let (stop, stopping) = watch::channel(false);
        let (progress_tx, progress) = watch::channel(Progress {
            offset: cursor,
            now: Timestamp::UNIX_EPOCH,
        });
        let runner = Runner {
            rules,
            emits,
            store,
            head,
            clock,
            stop: stopping,
            progress: progress_tx,
        };
        let task = tokio::spawn(async move {
            if runner.rules.is_empty() {
                return;
            }
            if let Err(error) = runner.run(cursor).await {
                warn!(%error, "trigger rules stopped: the store failed; restart wireline to resume");
            }
        });
        Ok(Self {
            stop,
            progress,
            task,
        })
    }

    /// Progress, for tests and status pages.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Stops the runner after the page it is on; its state and position are stored.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Runner {
    rules: Rules,
    emits: Vec<String>,
    store: Arc<dyn Store>,
    head: Arc<Head>,
    clock: Clock,
    stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
}

impl Runner {
    async fn run(mut self, mut cursor: Offset) -> Result<(), StoreError> {
        let mut head = self.head.watch();
        // A manual clock's every move is looked at (tests wait on `progress.now`).
        let mut ticks = self.clock.ticks();
        let mut fired = Vec::new();
        // Pages applied since the state was last stored with its position.
        let mut unflushed = 0;
        while !*self.stop.borrow() {
            let page = self.store.read(cursor, PAGE).await?;
            if let Some(last) = page.last() {
                let last = last.offset;
                for stored in &page {
                    let Ok(fields) = serde_json::from_str::<Fields<'_>>(&stored.body) else {
                        continue;
                    };
                    let Some(subject) = fields.subject.as_deref() else {
                        continue;
                    };
                    self.rules.apply(
                        &Seen {
                            offset: stored.offset,
                            id: &fields.id,
                            ty: &stored.ty,
                            subject,
                            time: stored.time,
                        },
                        &mut fired,
                    );
                }
                self.emit(&mut fired).await?;
                cursor = last;
                unflushed += 1;
                if unflushed >= FLUSH_PAGES {
                    self.flush(cursor).await?;
                    unflushed = 0;
                }
                continue;
            }
            if unflushed > 0 {
                self.flush(cursor).await?;
                unflushed = 0;
            }
            // Caught up: now the clock may fire timers.
            let now = self.clock.now();
            self.rules.due(now, &mut fired);
            if !fired.is_empty() {
                self.emit(&mut fired).await?;
                self.flush(cursor).await?;
                continue; // the derived events are in the log: read them too
            }
            self.progress.send_replace(Progress {
                offset: cursor,
                now,
            });
            let deadline = self.rules.next_deadline();
            let clock = self.clock.clone();
            tokio::select! {
                _ = head.changed() => {}
                _ = self.stop.changed() => {}
                _ = async {
                    match ticks.as_mut() {
                        Some(ticks) => ticks.changed().await,
                        None => std::future::pending().await,
                    }
                } => {}
                () = async move {
                    match deadline {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        if unflushed > 0 {
            self.flush(cursor).await?;
        }
        Ok(())
    }

    /// Stores the rules' changed state together with the position it reflects. Never one
    /// without the other: state ahead of its position would apply events twice on restart.
    async fn flush(&mut self, cursor: Offset) -> Result<(), StoreError> {
        metrics::gauge!("wireline_triggers_pending_timers").set(self.rules.pending_timers() as f64);
        metrics::gauge!("wireline_triggers_position").set(cursor.0 as f64);
        self.store
            .write_batch(self.rules.changes(), Some((POSITION.to_owned(), cursor)))
            .await
    }

    /// Appends the derived events of `fired` (emptying it), all at once: the store's group
    /// commit makes them one transaction instead of one fsync each.
    async fn emit(&mut self, fired: &mut Vec<Fired>) -> Result<(), StoreError> {
        let derived: Vec<(String, String, Fired)> = fired
            .drain(..)
            .map(|fire| {
                let rule = self.rules.name(fire.rule).to_owned();
                let emit = self.emits[fire.rule].clone();
                (rule, emit, fire)
            })
            .collect();
        let appends = derived.iter().map(|(rule, emit, fire)| {
            let (dedupe, event) = derived_event(rule, emit, fire);
            let store = Arc::clone(&self.store);
            async move { store.append(&dedupe, &event).await }
        });
        let appended = futures_util::future::try_join_all(appends).await?;
        for ((rule, emit, fire), appended) in derived.iter().zip(appended) {
            if !appended.duplicate {
                self.head.bump(appended.offset);
                metrics::counter!("wireline_triggers_fired_total", "rule" => rule.clone())
                    .increment(1);
                debug!(rule, subject = %fire.subject, emit, offset = %appended.offset, "trigger fired");
            }
        }
        Ok(())
    }
}

/// The derived event of a firing, and its dedupe id.
pub fn derived_event(rule: &str, emit: &str, fire: &Fired) -> (String, Event) {
    let causes: Vec<serde_json::Value> = fire
        .causes
        .iter()
        .map(
            |mark| serde_json::json!({ "offset": mark.offset, "id": mark.id, "time": mark.time() }),
        )
        .collect();
    let mut event = Event::new(
        format!("trigger-{rule}-{}", fire.causation.offset),
        format!("wireline://triggers/{rule}"),
        emit,
        fire.time,
        serde_json::json!({ "rule": rule, "subject": &*fire.subject, "causes": causes }),
    );
    event.subject = Some(fire.subject.to_string());
    event.extensions.insert(
        "causationid".to_owned(),
        serde_json::Value::String(fire.causation.id.to_string()),
    );
    event.extensions.insert(
        "correlationid".to_owned(),
        serde_json::Value::String(fire.correlation.id.to_string()),
    );
    (format!("trigger:{rule}:{}", fire.causation.offset), event)
}
