//! `wireline events list|tail`: the log as a person reads it, from the store the server uses.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use wireline_core::{Offset, TypeGlob};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, EventQuery, Store, StoredEvent};

use crate::cli::{EventFilter, EventsAction};

/// How often `tail` looks for new events.
const TAIL_EVERY: Duration = Duration::from_millis(250);

pub fn run(action: EventsAction) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match action {
            EventsAction::List {
                filter,
                after,
                limit,
            } => list(&filter, Offset(after), limit).await,
            EventsAction::Tail { filter, lines } => tail(&filter, lines).await,
        }
    })
}

fn time(flag: &str, text: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    text.map(|t| {
        t.parse::<Timestamp>().with_context(|| {
            format!("--{flag} {t:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z")
        })
    })
    .transpose()
}

fn query(filter: &EventFilter, after: Offset, limit: usize) -> anyhow::Result<EventQuery> {
    Ok(EventQuery {
        types: filter
            .types
            .as_deref()
            .map(|glob| {
                glob.parse::<TypeGlob>()
                    .map_err(|e| anyhow::anyhow!("--type {glob:?}: {e}"))
            })
            .transpose()?,
        since: time("since", filter.since.as_deref())?,
        until: time("until", filter.until.as_deref())?,
        subject: filter.subject.clone(),
        source: filter.source.clone(),
        ..EventQuery::after(after, limit)
    })
}

fn open(filter: &EventFilter) -> anyhow::Result<SqliteStore> {
    let loaded = super::load_config(&filter.config.config)?;
    Ok(SqliteStore::open(&loaded.storage_path())?)
}

fn print(stored: &StoredEvent, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let event: serde_json::Value = serde_json::from_str(&stored.body)?;
        writeln!(
            out,
            "{}",
            serde_json::json!({"offset": stored.offset, "event": event})
        )?;
        return Ok(());
    }
    let event = stored.event()?;
    writeln!(
        out,
        "{:>8}  {}  {:<40} {:<28} {}  {}",
        stored.offset,
        event.time.strftime("%Y-%m-%d %H:%M:%S"),
        event.ty,
        event.subject.as_deref().unwrap_or("-"),
        event.id,
        event.source
    )?;
    Ok(())
}

async fn list(filter: &EventFilter, after: Offset, limit: usize) -> anyhow::Result<()> {
    let store = open(filter)?;
    let events = store.query(&query(filter, after, limit)?).await;
    store.close().await?;
    for stored in events? {
        print(&stored, filter.json)?;
    }
    Ok(())
}

async fn tail(filter: &EventFilter, lines: usize) -> anyhow::Result<()> {
    let store = open(filter)?;
    // The last `lines` matches: walk the matches from the start, keeping the newest.
    let mut recent = std::collections::VecDeque::with_capacity(lines + 1);
    let mut cursor = Offset::START;
    loop {
        let page = store.query(&query(filter, cursor, 1000)?).await?;
        let Some(last) = page.last() else { break };
        cursor = last.offset;
        for stored in page {
            recent.push_back(stored);
            if recent.len() > lines {
                recent.pop_front();
            }
        }
    }
    for stored in &recent {
        print(stored, filter.json)?;
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(TAIL_EVERY) => {}
        }
        // New matches after the last one shown (the filters run in the store).
        let fresh = store.query(&query(filter, cursor, 1000)?).await?;
        for stored in &fresh {
            print(stored, filter.json)?;
        }
        if let Some(last) = fresh.last() {
            cursor = last.offset;
        }
    }
    store.close().await?;
    Ok(())
}
