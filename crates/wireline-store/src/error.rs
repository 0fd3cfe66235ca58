//! Store errors: what went wrong, and whether trying again can help.

use std::path::PathBuf;

use wireline_core::error::{Classify, Origin, Retryable};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened; the message says how to fix it.
    #[error("cannot open storage at {path}: {cause}; {fix}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// What the database said.
        cause: String,
        /// What the user can do.
        fix: &'static str,
    },
    /// The database failed an operation (disk full, IO error, lock timeout).
    #[error("storage error: {0}")]
    Database(String),
    /// A stored value could not be decoded.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The store was closed (the server is shutting down).
    #[error("storage is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Database(error.to_string())
    }
}

impl Classify for StoreError {
    fn origin(&self) -> Origin {
        match self {
            Self::Open { .. } => Origin::Config,
            _ => Origin::Internal,
        }
    }

    fn retryable(&self) -> Retryable {
        match self {
            Self::Database(_) | Self::Closed => Retryable::Yes,
            Self::Open { .. } | Self::Corrupt(_) => Retryable::No,
        }
    }
}
