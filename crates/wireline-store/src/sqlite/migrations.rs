//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Append only: a released migration is never edited; a change is a new entry. Each runs in
//! its own transaction together with the version bump, so a crash mid-migration leaves the
//! previous version intact.

use rusqlite::Connection;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: the event log, subscriber offsets, idempotency records, poll cursors, keyed state.
    // `seq` is a plain INTEGER PRIMARY KEY (max + 1), not AUTOINCREMENT: that saves a write
    // to sqlite_sequence per append, and is safe because the log is append-only (retention,
    // when it comes, never deletes the newest event, so an offset is never handed out twice).
    r#"
    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY,
        dedupe_id    TEXT    NOT NULL UNIQUE,
        type         TEXT    NOT NULL,
        source       TEXT    NOT NULL,
        subject      TEXT,
        time_us      INTEGER NOT NULL,
        recorded_us  INTEGER NOT NULL,
        body         TEXT    NOT NULL
    );
    CREATE INDEX events_by_type ON events (type, seq);
    CREATE INDEX events_by_time ON events (time_us, seq);
    CREATE INDEX events_by_subject ON events (subject, seq) WHERE subject IS NOT NULL;

    CREATE TABLE subscriber_offsets (
        subscriber  TEXT    PRIMARY KEY,
        seq         INTEGER NOT NULL,
        updated_us  INTEGER NOT NULL
    );

    CREATE TABLE idempotency (
        scope        TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        fingerprint  BLOB    NOT NULL,
        result       BLOB,
        expires_us   INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    );

    CREATE TABLE cursors (
        name        TEXT    PRIMARY KEY,
        value       TEXT    NOT NULL,
        updated_us  INTEGER NOT NULL
    );

    CREATE TABLE kv (
        namespace   TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        value       BLOB    NOT NULL,
        expires_us  INTEGER,
        PRIMARY KEY (namespace, key)
    );
    "#,
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Applies every migration the database has not seen. Refuses a database from a newer build.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), String> {
    let current: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|error| error.to_string())?;
    if current > LATEST {
        return Err(format!(
            "the database has schema version {current}, newer than this wireline knows ({LATEST}); upgrade wireline"
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let transaction = connection
            .transaction()
            .map_err(|error| error.to_string())?;
        transaction
            .execute_batch(sql)
            .and_then(|()| transaction.pragma_update(None, "user_version", version))
            .and_then(|()| transaction.commit())
            .map_err(|error| format!("migration {version} failed: {error}"))?;
    }
    Ok(())
}
