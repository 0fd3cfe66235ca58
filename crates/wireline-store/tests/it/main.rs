//! The store conformance suite against SQLite, and SQLite's own promises (durability across a
//! crash, errors when the path is unusable).

use wireline_store::sqlite::SqliteStore;

mod conformance {
    use super::*;

    wireline_store::store_conformance!(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("wireline.db")).expect("open");
        (store, dir)
    });
}

mod sqlite;
