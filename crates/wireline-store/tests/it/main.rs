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

/// The same promises through the encryption wrapper (idempotency responses sealed; no event
/// type sensitive, so events stay byte for byte).
mod encrypted_conformance {
    use super::*;

    wireline_store::store_conformance!(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("wireline.db")).expect("open");
        let cipher = std::sync::Arc::new(
            wireline_store::encrypted::Cipher::new("k1", [("k1".to_owned(), vec![7u8; 32])].into())
                .expect("cipher"),
        );
        (
            wireline_store::encrypted::EncryptedStore::new(store, cipher, Vec::new()),
            dir,
        )
    });
}

mod encrypted;
mod sqlite;
