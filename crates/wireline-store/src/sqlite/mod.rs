//! The embedded backend: SQLite in WAL mode, one writer thread with group commit, a small pool
//! of reader connections.
//!
//! Durability: `synchronous = FULL`. In WAL mode every COMMIT fsyncs the WAL, so a batch a
//! caller was told about survives a process crash *and* a power cut (given a disk that honours
//! fsync). `NORMAL` would be faster but could lose the last commits on a power cut; that
//! contradicts "a crash never loses what was acknowledged", so we pay for FULL and win the
//! throughput back with group commit (see `writer.rs`). What a power cut can lose: writes whose
//! callers were not yet answered, which is what their callers must assume anyway.
//!
//! Reads run on blocking threads with their own connections; WAL lets them proceed while the
//! writer commits, and a read that starts after a commit sees it.

mod migrations;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use wireline_core::{Event, Offset, TypeGlob};

use crate::{
    Appended, Change, EventLog, EventQuery, Expiry, IdempotencyClaim, NewEvent, StateStore, Store,
    StoreError, StoredEvent,
};
pub use writer::WriterStats;
use writer::{Command, Job, Responder};

/// Queued writes before callers wait (back-pressure).
const QUEUE: usize = 16 * 1024;
/// How long a connection waits on a lock before failing (only checkpoints and readers contend).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone; all clones share the writer and the readers.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    readers: Mutex<Vec<Connection>>,
    stats: Arc<WriterStats>,
}

fn open_error(path: &Path, cause: impl ToString, fix: &'static str) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        cause: cause.to_string(),
        fix,
    }
}

const FIX_WRITABLE: &str = "choose a writable [storage] path, or fix the folder's permissions";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts the writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if !folder.is_dir() {
            return Err(open_error(
                path,
                format!("folder {} does not exist", folder.display()),
                "create the folder, or change [storage] path",
            ));
        }
        if path.is_dir() {
            return Err(open_error(
                path,
                "it is a folder",
                "point [storage] path at a file",
            ));
        }
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| open_error(path, error, FIX_WRITABLE))?;
        configure(&connection).map_err(|error| classify_open(path, error))?;
        migrations::migrate(&mut connection).map_err(|cause| {
            open_error(
                path,
                cause,
                "restore a backup or point [storage] path at a new file",
            )
        })?;

        let (commands, receiver) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let writer_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("wireline-store-writer".to_owned())
            .spawn(move || writer::run(connection, receiver, &writer_stats))
            .map_err(|error| open_error(path, error, "the system is out of threads; retry"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                commands,
                readers: Mutex::new(Vec::new()),
                stats,
            }),
        })
    }

    /// The writer's counters (how many transactions, how many jobs in them).
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Runs `work` inside the writer's next transaction and returns its result once committed.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = work(connection);
            let respond: Responder = Box::new(move |commit| {
                let _ = reply.send(match commit {
                    Ok(()) => result,
                    Err(cause) => Err(StoreError::Database(format!("commit failed: {cause}"))),
                });
            });
            respond
        });
        self.inner
            .commands
            .send(Command::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer
            .await
            .map_err(|_| StoreError::Database("the write was not committed".to_owned()))?
    }

    /// Runs `work` on a reader connection on a blocking thread.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let connection = match pooled {
                Some(connection) => connection,
                None => open_reader(&inner.path)?,
            };
            let result = work(&connection);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Database(format!("read task failed: {error}")))?
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode returns a row; pragma_update_and_check reads it.
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}"
        )));
    }
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoint every ~40 MB of WAL instead of SQLite's default ~4 MB: pages rewritten by
    // many batches (index leaves) are copied into the database once, not ten times. The WAL
    // is truncated at close.
    connection.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    // Statement journals (for ON CONFLICT) stay in memory.
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn classify_open(path: &Path, error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => open_error(
            path,
            "the file is not a SQLite database",
            "point [storage] path at a new file, or restore the right one",
        ),
        Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::CannotOpen) => {
            open_error(path, error, FIX_WRITABLE)
        }
        _ => open_error(path, error, FIX_WRITABLE),
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Readers map the database instead of copying pages through read(2).
    connection.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    Ok(connection)
}

fn micros(time: Timestamp) -> i64 {
    time.as_microsecond()
}

fn from_micros(micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(micros).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn offset(seq: i64) -> Offset {
    Offset(u64::try_from(seq).unwrap_or_default())
}

fn seq(offset: Offset) -> i64 {
    i64::try_from(offset.0).unwrap_or(i64::MAX)
}

/// An event's row, made on the caller's task so the writer thread only runs SQL.
struct Row {
    dedupe_id: String,
    ty: String,
    source: String,
    subject: Option<String>,
    time: i64,
    body: String,
}

impl Row {
    fn new(dedupe_id: String, event: &Event, body: String) -> Self {
        Self {
            dedupe_id,
            ty: event.ty.clone(),
            source: event.source.clone(),
            subject: event.subject.clone(),
            time: micros(event.time),
            body,
        }
    }
}

/// Ends the savepoint `name` a multi-statement job opened: released when `outcome` is a
/// success, else rolled back to, so the failed job leaves nothing in the group's transaction.
/// A release that fails is rolled back too; the job's own error wins over a rollback's.
fn settle_savepoint<T>(
    connection: &Connection,
    name: &str,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    let outcome = outcome.and_then(|value| {
        connection.execute_batch(&format!("RELEASE {name}"))?;
        Ok(value)
    });
    if outcome.is_err()
        && let Err(error) = connection.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))
    {
        tracing::error!(%error, "a failed storage job could not be rolled back; its writes may commit with the group");
    }
    outcome
}

/// The events inserted in one store job, through one prepared statement: looking it up in
/// the statement cache (a hash of its text) per event cost more than binding it.
struct Inserter<'c> {
    connection: &'c Connection,
    insert: rusqlite::CachedStatement<'c>,
    /// The job's time (one reading serves a batch).
    recorded: i64,
}

impl<'c> Inserter<'c> {
    fn new(connection: &'c Connection) -> Result<Self, StoreError> {
        // ON CONFLICT DO NOTHING consumes no offset (seq is max + 1, see migrations.rs), so
        // offsets stay dense: lag = head - committed offset.
        let insert = connection.prepare_cached(
            "INSERT INTO events (dedupe_id, type, source, subject, time_us, recorded_us, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (dedupe_id) DO NOTHING",
        )?;
        Ok(Self {
            connection,
            insert,
            recorded: micros(Timestamp::now()),
        })
    }

    /// Inserts one event unless its dedupe id is stored (writer thread only).
    fn insert(&mut self, row: &Row) -> Result<Appended, StoreError> {
        let changed = self.insert.execute(params![
            row.dedupe_id,
            row.ty,
            row.source,
            row.subject,
            row.time,
            self.recorded,
            row.body
        ])?;
        if changed == 1 {
            // Only this thread writes, so the last rowid is this insert's.
            return Ok(Appended {
                offset: offset(self.connection.last_insert_rowid()),
                duplicate: false,
            });
        }
        let existing: i64 = self
            .connection
            .prepare_cached("SELECT seq FROM events WHERE dedupe_id = ?1")?
            .query_row(params![row.dedupe_id], |row| row.get(0))?;
        Ok(Appended {
            offset: offset(existing),
            duplicate: true,
        })
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append_json(
        &self,
        dedupe_id: &str,
        event: &Event,
        body: String,
    ) -> Result<Appended, StoreError> {
        // Serialized on the caller's task, so the writer thread only runs SQL.
        let row = Row::new(dedupe_id.to_owned(), event, body);
        self.write(move |connection| Inserter::new(connection)?.insert(&row))
            .await
    }

    async fn append_many(&self, events: &[NewEvent]) -> Result<Vec<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = events
            .iter()
            .map(|new| Row::new(new.dedupe_id.clone(), &new.event, new.body.clone()))
            .collect();
        self.write(move |connection| {
            // Several statements in one job: a savepoint keeps a failure from leaving some of
            // them in the group's transaction (see the writer's contract).
            connection.execute_batch("SAVEPOINT many")?;
            let inserted = Inserter::new(connection).and_then(|mut inserter| {
                rows.iter()
                    .map(|row| inserter.insert(row))
                    .collect::<Result<Vec<_>, _>>()
            });
            settle_savepoint(connection, "many", inserted)
        })
        .await
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let after = seq(query.after);
        // TypeGlob allows no GLOB metacharacter but `*`, so it is a valid GLOB pattern as is.
        let types = query.types.as_ref().map(|glob| glob.as_str().to_owned());
        let since = query.since.map(micros);
        let until = query.until.map(micros);
        let (subject, source) = (query.subject.clone(), query.source.clone());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, type, time_us, recorded_us, body FROM events
                 WHERE seq > ?1
                   AND (?2 IS NULL OR type GLOB ?2)
                   AND (?3 IS NULL OR time_us >= ?3)
                   AND (?4 IS NULL OR time_us < ?4)
                   AND (?6 IS NULL OR subject = ?6)
                   AND (?7 IS NULL OR source = ?7)
                 ORDER BY seq LIMIT ?5",
            )?;
            let mut rows =
                statement.query(params![after, types, since, until, limit, subject, source])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(StoredEvent {
                    offset: offset(row.get(0)?),
                    ty: row.get(1)?,
                    time: from_micros(row.get(2)?)?,
                    recorded_at: from_micros(row.get(3)?)?,
                    body: row.get(4)?,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn expire(
        &self,
        types: &TypeGlob,
        before: Timestamp,
        what: Expiry,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let types = types.as_str().to_owned();
        let before = micros(before);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let redacted_at = Timestamp::now().to_string();
        self.write(move |connection| {
            // The candidates, oldest first, sparing the newest event of the log.
            let candidates: Vec<(i64, String)> = connection
                .prepare_cached(
                    "SELECT seq, body FROM events
                     WHERE type GLOB ?1 AND time_us < ?2 AND seq < (SELECT MAX(seq) FROM events)
                       AND (?4 = 0 OR instr(body, '\"wlredacted\":') = 0)
                     ORDER BY time_us, seq LIMIT ?3",
                )?
                .query_map(
                    params![types, before, limit, i64::from(what == Expiry::DropData)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?
                .collect::<Result<_, _>>()?;
            let mut changed = 0u64;
            match what {
                Expiry::Delete => {
                    let mut delete =
                        connection.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
                    for (seq, _) in &candidates {
                        changed += delete.execute(params![seq])? as u64;
                    }
                }
                Expiry::DropData => {
                    let mut update =
                        connection.prepare_cached("UPDATE events SET body = ?2 WHERE seq = ?1")?;
                    for (seq, body) in &candidates {
                        let mut value: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_str(body)
                                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                        value.remove("data");
                        value.remove("data_base64");
                        value.remove("wlrawbody64");
                        value.remove("wlencrypted");
                        value.remove("datacontenttype");
                        value.insert(
                            "wlredacted".to_owned(),
                            serde_json::Value::String(redacted_at.clone()),
                        );
                        let body = serde_json::to_string(&value)
                            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                        changed += update.execute(params![seq, body])? as u64;
                    }
                }
            }
            Ok(changed)
        })
        .await
    }

    async fn head(&self) -> Result<Offset, StoreError> {
        self.read(|connection| {
            let seq: i64 =
                connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                    row.get(0)
                })?;
            Ok(offset(seq))
        })
        .await
    }

    async fn commit_offset(&self, subscriber: &str, committed: Offset) -> Result<(), StoreError> {
        let subscriber = subscriber.to_owned();
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "INSERT INTO subscriber_offsets (subscriber, seq, updated_us) VALUES (?1, ?2, ?3)
                     ON CONFLICT (subscriber) DO UPDATE SET seq = excluded.seq, updated_us = excluded.updated_us",
                )?
                .execute(params![subscriber, seq(committed), micros(Timestamp::now())])?;
            Ok(())
        })
        .await
    }

    async fn load_offset(&self, subscriber: &str) -> Result<Option<Offset>, StoreError> {
        let subscriber = subscriber.to_owned();
        self.read(move |connection| {
            let found: Option<i64> = connection
                .prepare_cached("SELECT seq FROM subscriber_offsets WHERE subscriber = ?1")?
                .query_row(params![subscriber], |row| row.get(0))
                .optional()?;
            Ok(found.map(offset))
        })
        .await
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &[u8],
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_vec());
        self.write(move |connection| {
            let existing: Option<(Vec<u8>, Option<Vec<u8>>, i64)> = connection
                .prepare_cached(
                    "SELECT fingerprint, result, expires_us FROM idempotency WHERE scope = ?1 AND key = ?2",
                )?
                .query_row(params![scope, key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?;
            if let Some((stored, result, expires_us)) = existing
                && expires_us > micros(now)
            {
                return Ok(match (stored == fingerprint, result) {
                    (false, _) => IdempotencyClaim::Mismatch,
                    (true, Some(result)) => IdempotencyClaim::Completed(result),
                    (true, None) => IdempotencyClaim::InFlight,
                });
            }
            connection
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency (scope, key, fingerprint, result, expires_us)
                     VALUES (?1, ?2, ?3, NULL, ?4)",
                )?
                .execute(params![scope, key, fingerprint, micros(expires)])?;
            Ok(IdempotencyClaim::Claimed)
        })
        .await
    }

    async fn idempotency_complete(
        &self,
        scope: &str,
        key: &str,
        result: &[u8],
    ) -> Result<(), StoreError> {
        let (scope, key, result) = (scope.to_owned(), key.to_owned(), result.to_vec());
        self.write(move |connection| {
            connection
                .prepare_cached("UPDATE idempotency SET result = ?3 WHERE scope = ?1 AND key = ?2")?
                .execute(params![scope, key, result])?;
            Ok(())
        })
        .await
    }

    async fn idempotency_release(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND result IS NULL",
                )?
                .execute(params![scope, key])?;
            Ok(())
        })
        .await
    }

    async fn save_cursor(&self, name: &str, cursor: &str) -> Result<(), StoreError> {
        let (name, cursor) = (name.to_owned(), cursor.to_owned());
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "INSERT INTO cursors (name, value, updated_us) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_us = excluded.updated_us",
                )?
                .execute(params![name, cursor, micros(Timestamp::now())])?;
            Ok(())
        })
        .await
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.read(move |connection| {
            Ok(connection
                .prepare_cached("SELECT value FROM cursors WHERE name = ?1")?
                .query_row(params![name], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let (namespace, key, value) = (namespace.to_owned(), key.to_owned(), value.to_vec());
        let expires = expires.map(micros);
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "INSERT INTO kv (namespace, key, value, expires_us) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_us = excluded.expires_us",
                )?
                .execute(params![namespace, key, value, expires])?;
            Ok(())
        })
        .await
    }

    async fn get(
        &self,
        namespace: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (namespace, key) = (namespace.to_owned(), key.to_owned());
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2 AND (expires_us IS NULL OR expires_us > ?3)",
                )?
                .query_row(params![namespace, key, micros(now)], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        let (namespace, key) = (namespace.to_owned(), key.to_owned());
        self.write(move |connection| {
            let removed = connection
                .prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")?
                .execute(params![namespace, key])?;
            Ok(removed > 0)
        })
        .await
    }

    async fn list(
        &self,
        namespace: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let namespace = namespace.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT key, value FROM kv WHERE namespace = ?1 AND (expires_us IS NULL OR expires_us > ?2)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![namespace, micros(now), limit], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn write_batch(
        &self,
        changes: Vec<Change>,
        offset: Option<(String, Offset)>,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            // Several statements in one job: a savepoint keeps a failure from leaving half
            // of them in the group's transaction (see the writer's contract).
            connection.execute_batch("SAVEPOINT batch")?;
            let applied = (|| -> Result<(), StoreError> {
                let mut put = connection.prepare_cached(
                    "INSERT INTO kv (namespace, key, value, expires_us) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_us = excluded.expires_us",
                )?;
                let mut delete =
                    connection.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")?;
                for change in &changes {
                    match change {
                        Change::Put {
                            namespace,
                            key,
                            value,
                            expires,
                        } => {
                            put.execute(params![namespace, key, value, expires.map(micros)])?;
                        }
                        Change::Delete { namespace, key } => {
                            delete.execute(params![namespace, key])?;
                        }
                    }
                }
                if let Some((subscriber, committed)) = &offset {
                    connection
                        .prepare_cached(
                            "INSERT INTO subscriber_offsets (subscriber, seq, updated_us) VALUES (?1, ?2, ?3)
                             ON CONFLICT (subscriber) DO UPDATE SET seq = excluded.seq, updated_us = excluded.updated_us",
                        )?
                        .execute(params![subscriber, seq(*committed), micros(Timestamp::now())])?;
                }
                Ok(())
            })();
            settle_savepoint(connection, "batch", applied)
        })
        .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(move |connection| {
            let now = micros(now);
            let idempotency = connection
                .prepare_cached("DELETE FROM idempotency WHERE expires_us <= ?1")?
                .execute(params![now])?;
            let kv = connection
                .prepare_cached("DELETE FROM kv WHERE expires_us IS NOT NULL AND expires_us <= ?1")?
                .execute(params![now])?;
            Ok((idempotency + kv) as u64)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.inner.commands.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Close(reply))
            .await
            .is_err()
        {
            return Ok(()); // already closed
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
