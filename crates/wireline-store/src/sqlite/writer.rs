//! The single writer: one thread owns the write connection and commits in groups.
//!
//! Callers send jobs over a bounded channel (back-pressure instead of unbounded memory). The
//! thread runs every job that is waiting, and every job that arrives meanwhile, up to
//! [`MAX_BATCH`], in one transaction, commits, and only then answers each caller. So one fsync covers a whole batch, and no caller
//! hears "stored" before its write is durable. Under light load a batch is one job, and latency
//! is one commit; under heavy load batches grow by themselves.
//!
//! A job must leave nothing half-written when it fails: one write statement, or reads followed
//! by one write. Its error goes to its caller alone; the rest of the batch commits.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use crate::StoreError;

/// The most jobs one transaction takes.
pub(crate) const MAX_BATCH: usize = 4096;

/// Called after the batch's commit with its outcome.
pub(crate) type Responder = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A unit of work run inside the batch's transaction.
pub(crate) type Job = Box<dyn FnOnce(&Connection) -> Responder + Send>;

pub(crate) enum Command {
    Job(Job),
    /// Finish what is queued, checkpoint the WAL, stop.
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// Runs the writer loop on the current thread until the channel closes or `Close` arrives.
pub(crate) fn run(
    connection: Connection,
    mut commands: mpsc::Receiver<Command>,
    stats: &WriterStats,
) {
    let mut close = None;
    while close.is_none() {
        let Some(mut command) = commands.blocking_recv() else {
            break;
        };
        // Jobs run as they arrive, inside one open transaction, and the transaction commits
        // when the queue is empty (or full): jobs sent while earlier ones run join the same
        // commit, instead of waiting for the next one.
        let mut responders: Vec<Responder> = Vec::new();
        loop {
            match command {
                Command::Job(job) => {
                    if responders.is_empty()
                        && let Err(error) = connection.execute_batch("BEGIN IMMEDIATE")
                    {
                        // The job never ran. Dropping it drops its reply channel, and its
                        // caller gets a storage error; nothing was written.
                        error!(%error, "storage transaction could not start");
                        drop(job);
                    } else {
                        responders.push(job(&connection));
                    }
                }
                Command::Close(reply) => {
                    close = Some(reply);
                    break;
                }
            }
            if responders.len() >= MAX_BATCH {
                break;
            }
            match commands.try_recv() {
                Ok(next) => command = next,
                Err(_) => break,
            }
        }
        if !responders.is_empty() {
            commit(&connection, responders, stats);
        }
    }
    let result = connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(StoreError::from);
    if let Err(error) = &result {
        error!(%error, "storage checkpoint at close failed");
    }
    drop(connection);
    if let Some(reply) = close {
        let _ = reply.send(result);
    }
    debug!("storage writer stopped");
}

fn commit(connection: &Connection, responders: Vec<Responder>, stats: &WriterStats) {
    let outcome = connection.execute_batch("COMMIT").map_err(|error| {
        let _ = connection.execute_batch("ROLLBACK");
        error.to_string()
    });
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .jobs
        .fetch_add(responders.len() as u64, Ordering::Relaxed);
    for respond in responders {
        respond(outcome.clone());
    }
}

/// Counters of the writer's work: how well group commit is batching.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Jobs committed in them.
    pub jobs: AtomicU64,
}
