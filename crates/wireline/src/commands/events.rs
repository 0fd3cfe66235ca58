//! `wireline events list|tail`: the log as a person reads it, from the store the server uses.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use wireline_core::{Offset, TypeGlob};
use wireline_store::{EventQuery, Store, StoredEvent};

use crate::cli::{EventFilter, EventsAction};
use crate::server::events::{CONSUMER_REPLAYS, ConsumerReplay};

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
            EventsAction::Replay {
                config,
                from,
                types,
                to,
                no_wait,
            } => replay(&config.config, &from, types.as_deref(), &to, no_wait).await,
            EventsAction::Show {
                config,
                offset,
                json,
            } => show(&config.config, Offset(offset), json).await,
            EventsAction::Expire { config } => expire(&config.config).await,
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

fn open(filter: &EventFilter) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let loaded = super::load_config(&filter.config.config)?;
    super::open_store(&loaded)
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

/// Where a replay starts: a point in time or an offset.
enum From {
    Time(Timestamp),
    Offset(u64),
}

async fn replay(
    path: &std::path::Path,
    from: &str,
    types: Option<&str>,
    to: &str,
    no_wait: bool,
) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    let from = match from.parse::<u64>() {
        Ok(offset) => From::Offset(offset),
        Err(_) => From::Time(time("from", Some(from))?.context("--from")?),
    };
    let types = types
        .map(|glob| {
            glob.parse::<TypeGlob>()
                .map_err(|e| anyhow::anyhow!("--type {glob:?}: {e}"))
        })
        .transpose()?;
    let store = super::open_store(&loaded)?;
    let result = replay_in(&loaded, store.as_ref(), from, types.as_ref(), to, no_wait).await;
    store.close().await?;
    result
}

async fn replay_in(
    loaded: &wireline_config::Loaded,
    store: &dyn Store,
    from: From,
    types: Option<&TypeGlob>,
    to: &str,
    no_wait: bool,
) -> anyhow::Result<()> {
    // The first event at or after `from`; replay continues after the offset before it.
    let (since, after) = match from {
        From::Time(time) => (Some(time), Offset::START),
        From::Offset(offset) => (None, Offset(offset.saturating_sub(1))),
    };
    let first = store
        .query(&EventQuery {
            since,
            ..EventQuery::after(after, 1)
        })
        .await?;
    let Some(first) = first.first() else {
        println!("no events from there on: nothing to replay");
        return Ok(());
    };
    let after = Offset(first.offset.0 - 1);
    let head = store.head().await?;
    let total = head.0 - after.0;
    if let Some(consumer) = to.strip_prefix("consumer:") {
        let (agent, name) = consumer
            .split_once(':')
            .context("write --to consumer:AGENT:NAME")?;
        anyhow::ensure!(
            loaded.config.agents.contains_key(agent),
            "no agent {agent:?} in the config"
        );
        let key = format!("consumer:{agent}:{name}");
        match types {
            Some(glob) => {
                let filter = ConsumerReplay {
                    types: glob.as_str().to_owned(),
                    until: head,
                };
                store
                    .put(CONSUMER_REPLAYS, &key, &serde_json::to_vec(&filter)?, None)
                    .await?;
            }
            None => {
                store.delete(CONSUMER_REPLAYS, &key).await?;
            }
        }
        store.commit_offset(&key, after).await?;
        println!(
            "consumer {name} of {agent} now reads from offset {} ({total} events up to the head at {head}{}); its next GET /v1/events?consumer={name} starts there",
            first.offset,
            types.map_or_else(String::new, |glob| format!(", only {glob} until then"))
        );
        return Ok(());
    }
    let names: Vec<String> = loaded
        .config
        .named_subscriptions()
        .into_iter()
        .filter(|(_, s)| s.url.is_some())
        .map(|(name, _)| name)
        .collect();
    anyhow::ensure!(
        names.iter().any(|n| n == to),
        "no push subscription named {to:?}; the config has: {} (for a pull consumer write consumer:AGENT:NAME)",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    wireline_webhook::delivery::replay(store, to, after, types).await?;
    println!(
        "replay of offsets {} to {head} ({total} events; those matching its types{} are delivered) queued for {to}",
        first.offset,
        types.map_or_else(String::new, |glob| format!(" and {glob}"))
    );
    if no_wait {
        return Ok(());
    }
    // Progress: the subscription's committed position, as the running server moves it.
    let started = std::time::Instant::now();
    let mut last_shown = None;
    loop {
        let taken = !wireline_webhook::delivery::replay_pending(store, to).await?;
        let position = wireline_webhook::delivery::position(store, to)
            .await?
            .unwrap_or(Offset::START);
        let done = if taken {
            position.0.saturating_sub(after.0).min(total)
        } else {
            0
        };
        if last_shown != Some(done) {
            let width = 30usize;
            let filled = (done as f64 / total.max(1) as f64 * width as f64) as usize;
            eprint!(
                "\r[{}{}] {done}/{total}",
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
            last_shown = Some(done);
        }
        if taken && position.0 >= head.0 {
            break;
        }
        if !taken && started.elapsed() > Duration::from_secs(5) {
            eprintln!();
            anyhow::bail!(
                "no running server picked the replay up within 5 s; it stays queued and runs when `wireline run` starts"
            );
        }
        tokio::time::sleep(TAIL_EVERY).await;
    }
    eprintln!();
    println!(
        "replayed offsets {} to {head} to {to} in {:.1} s (same ids: receivers dedupe what they already had)",
        first.offset,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Who produced an event, from its source and attributes.
fn producer(event: &wireline_core::Event) -> String {
    let source = event.source.as_str();
    if let Some(agent) = event.extensions.get("wlagent").and_then(|v| v.as_str()) {
        return format!("agent {agent} (POST /v1/events)");
    }
    for (prefix, what) in [
        ("wireline://hooks/", "webhook from service"),
        ("wireline://poll/", "poller of service"),
        ("wireline://direct/", "Direct API call to service"),
        ("wireline://triggers/", "trigger rule"),
    ] {
        if let Some(name) = source.strip_prefix(prefix) {
            return format!("{what} {name}");
        }
    }
    format!("source {source}")
}

async fn show(path: &std::path::Path, offset: Offset, json: bool) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    let store = super::open_store(&loaded)?;
    let result = show_in(store.as_ref(), offset, json).await;
    store.close().await?;
    result
}

async fn show_in(store: &dyn Store, offset: Offset, json: bool) -> anyhow::Result<()> {
    let at = |offset: Offset| async move {
        let found = store.read(Offset(offset.0.saturating_sub(1)), 1).await?;
        anyhow::Ok(found.into_iter().find(|e| e.offset == offset))
    };
    let Some(stored) = at(offset).await? else {
        anyhow::bail!("no event at offset {offset} (deleted by retention, or beyond the head)");
    };
    // The chain of causes, breadth first, each event once.
    let mut trail = Vec::new();
    let mut queue = std::collections::VecDeque::from([(stored, 0usize)]);
    let mut seen = std::collections::BTreeSet::new();
    while let Some((stored, depth)) = queue.pop_front() {
        if !seen.insert(stored.offset) || trail.len() >= 50 {
            continue;
        }
        let event = stored.event()?;
        let causes: Vec<u64> = event
            .data
            .as_ref()
            .filter(|_| event.source.starts_with("wireline://triggers/"))
            .and_then(|data| data.get("causes"))
            .and_then(|causes| causes.as_array())
            .map(|causes| {
                causes
                    .iter()
                    .filter_map(|c| c.get("offset")?.as_u64())
                    .collect()
            })
            .unwrap_or_default();
        for cause in &causes {
            if let Some(found) = at(Offset(*cause)).await? {
                queue.push_back((found, depth + 1));
            }
        }
        trail.push((depth, stored.offset, event, causes));
    }
    if json {
        let trail: Vec<serde_json::Value> = trail
            .iter()
            .map(|(depth, offset, event, causes)| {
                serde_json::json!({"depth": depth, "offset": offset, "producer": producer(event), "caused_by": causes, "event": event})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&trail)?);
        return Ok(());
    }
    for (depth, offset, event, causes) in &trail {
        let indent = "  ".repeat(*depth);
        println!(
            "{indent}{offset}  {}  {}  subject {}  id {}",
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.ty,
            event.subject.as_deref().unwrap_or("-"),
            event.id
        );
        println!("{indent}    produced by {}", producer(event));
        if let Some(redacted) = event.extensions.get("wlredacted") {
            println!("{indent}    payload dropped by retention at {redacted}");
        }
        if !causes.is_empty() {
            let list: Vec<String> = causes.iter().map(u64::to_string).collect();
            println!("{indent}    caused by offsets {}", list.join(", "));
        }
    }
    Ok(())
}

async fn expire(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    if loaded.config.events.retention.is_empty() {
        println!("no [events.retention] in the config: nothing to expire");
        return Ok(());
    }
    let store = super::open_store(&loaded)?;
    let report =
        wireline_events::retention::expire(&loaded.config.events, store.as_ref(), Timestamp::now())
            .await;
    store.close().await?;
    for done in report? {
        println!(
            "{:<40} payloads dropped {:>8}  deleted {:>8}",
            done.pattern, done.redacted, done.deleted
        );
    }
    Ok(())
}
