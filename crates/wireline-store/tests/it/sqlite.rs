//! SQLite-specific behaviour.

use std::path::Path;
use std::process::Command;

use wireline_core::Offset;
use wireline_store::conformance::event;
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};

#[track_caller]
fn check_open_error(path: &Path, fragments: &[&str]) {
    let error = match SqliteStore::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(error) => error.to_string(),
    };
    for fragment in fragments {
        assert!(
            error.contains(fragment),
            "expected {fragment:?} in: {error}"
        );
    }
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn unusable_paths_are_explained() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("write");
    check_open_error(
        &dir.path().join("missing/wireline.db"),
        &["does not exist", "create the folder"],
    );
    check_open_error(
        &file.join("wireline.db"),
        &["does not exist", "change [storage] path"],
    );
    check_open_error(dir.path(), &["is a folder"]);
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("write");
    check_open_error(&garbage, &["not a SQLite database", "new file"]);
}

#[tokio::test]
async fn reopening_keeps_events_and_continues_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("w.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .append("a", &event("a", "t.a", 0))
        .await
        .expect("append");
    store.close().await.expect("close");
    let store = SqliteStore::open(&path).expect("reopen");
    let b = store
        .append("b", &event("b", "t.a", 1))
        .await
        .expect("append");
    assert_eq!(b.offset, Offset(2));
    assert!(
        store
            .append("a", &event("a", "t.a", 0))
            .await
            .expect("append")
            .duplicate
    );
}

#[tokio::test]
async fn a_database_from_a_newer_wireline_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("w.db");
    SqliteStore::open(&path)
        .expect("open")
        .close()
        .await
        .expect("close");
    set_user_version(&path, 999);
    check_open_error(&path, &["schema version 999", "upgrade wireline"]);
}

/// Sets SQLite's `user_version` by hand: it is the big-endian u32 at byte 60 of the header.
fn set_user_version(path: &Path, version: u32) {
    let mut bytes = std::fs::read(path).expect("read db");
    bytes[60..64].copy_from_slice(&version.to_be_bytes());
    std::fs::write(path, bytes).expect("write db");
}

/// The child half of the crash test: append until killed, printing each acknowledged offset.
#[tokio::test]
async fn crash_child_appends_until_killed() {
    let Ok(path) = std::env::var("WIRELINE_CRASH_CHILD_DB") else {
        return; // only runs as the child of `acknowledged_appends_survive_a_kill_9`
    };
    let store = SqliteStore::open(Path::new(&path)).expect("open");
    let mut tasks = Vec::new();
    for producer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let id = format!("p{producer}-{n}");
                let appended = store
                    .append(&id, &event(&id, "t.crash", 0))
                    .await
                    .expect("append");
                println!("ACK {id} {}", appended.offset);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[test]
fn acknowledged_appends_survive_a_kill_9() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "sqlite::crash_child_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WIRELINE_CRASH_CHILD_DB", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("ACK ") {
            acknowledged.push(rest.to_owned());
            if acknowledged.len() == 2000 {
                child.kill().expect("kill -9"); // SIGKILL: no flush, no shutdown
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acknowledged.len(), 2000, "the child acknowledged appends");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).expect("reopen after crash");
        let stored = store.read(Offset::START, 1_000_000).await.expect("read");
        let stored: std::collections::HashMap<String, Offset> = stored
            .iter()
            .map(|s| (s.event().expect("event").id, s.offset))
            .collect();
        for ack in &acknowledged {
            let (id, offset) = ack.split_once(' ').expect("id offset");
            assert_eq!(
                stored.get(id).map(|o| o.to_string()).as_deref(),
                Some(offset),
                "acknowledged {id} lost"
            );
        }
        store.ping().await.expect("ready");
    });
}
