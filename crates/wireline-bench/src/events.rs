//! `wireline-bench events`: the event-sourced pattern.
//!
//! - Replay to a pull consumer: a log of `--events` events (about 450 bytes each) is read
//!   from offset 0 to the head through `GET /v1/events?after=N&limit=1000` of the release
//!   binary by one client that parses every page; once without commits, once committing the
//!   consumer's offset after every page (`?consumer=` + `POST .../commit`). Baseline in the
//!   same run: the embedded log read in-process, pages of 1000 (`EventLog::read`).
//! - Trigger evaluation: 100 rules (34 absence, 33 sequence, 33 threshold) over a log of
//!   `--events` events about 5,000 subjects, 2 ms apart; the trigger runner walks it from offset 0 to
//!   the head (parse, evaluate, append what fires, store the state with its position every 10
//!   pages). Baselines in the same run: the same walk with no rule work (read + parse
//!   only), and the rules alone in memory (no IO).
//! - Pending absence timers: one absence rule fed one million first events with distinct
//!   subjects; resident memory before and after, per timer; then the time to store them and to
//!   load them back (what a restart does).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use wireline_config::model::Config;
use wireline_core::{Event, Offset};
use wireline_events::rules::{Rules, Seen};
use wireline_events::runner::POSITION;
use wireline_events::{Clock, Triggers};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, StateStore, Store};
use wireline_webhook::delivery::Head;

use crate::print_table;
use crate::proxy::{TOKEN, binary, spawn};

fn t0() -> jiff::Timestamp {
    "2026-11-01T00:00:00Z".parse().expect("time")
}

/// Fills `store` with `events` events from `make`, 128 producers at a time.
async fn fill(
    store: &SqliteStore,
    events: usize,
    make: impl Fn(usize) -> Event + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let make = Arc::new(make);
    let producers = 128;
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let (store, make) = (store.clone(), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            for n in (producer..events).step_by(producers) {
                let event = make(n);
                store.append(&format!("bench:{n}"), &event).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn replay_event(n: usize) -> Event {
    let mut event = Event::new(
        format!("evt_{n:09}"),
        "wireline://hooks/shop",
        "shop.order.created",
        t0() + jiff::SignedDuration::from_millis(n as i64),
        serde_json::json!({"id": format!("ord_{n}"), "customer": format!("cus_{}", n % 100_000), "total": 4200, "currency": "eur", "items": [{"sku": "sku_123", "qty": 2, "price": 2100}], "note": "x".repeat(150)}),
    );
    event.subject = Some(format!("cus_{}", n % 100_000));
    event
}

/// Reads the whole log through the pull API; returns events per second.
async fn pull_all(address: &str, head: u64, commit: bool) -> anyhow::Result<f64> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<serde::de::IgnoredAny>,
        next_after: u64,
    }
    let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let (mut after, mut count) = (0u64, 0usize);
    while after < head {
        let url = if commit {
            format!("http://{address}/v1/events?consumer=bench&limit=1000")
        } else {
            format!("http://{address}/v1/events?after={after}&limit=1000")
        };
        let response = client.get(url).bearer_auth(TOKEN).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "pull answered {}",
            response.status()
        );
        let page: Page = serde_json::from_slice(&response.bytes().await?)?;
        count += page.events.len();
        after = page.next_after;
        if commit {
            let response = client
                .post(format!("http://{address}/v1/consumers/bench/commit"))
                .bearer_auth(TOKEN)
                .body(format!("{{\"offset\":{after}}}"))
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == 200,
                "commit answered {}",
                response.status()
            );
        }
    }
    anyhow::ensure!(count as u64 == head, "read {count} of {head} events");
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn in_process_read(store: &SqliteStore) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (mut after, mut count) = (Offset::START, 0usize);
    loop {
        let page = store.read(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.offset;
        count += page.len();
        std::hint::black_box(&page);
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn replay(
    runs: usize,
    events: usize,
) -> anyhow::Result<Vec<(String, Vec<f64>, &'static str)>> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("state"))?;
    let path = dir.path().join("state/w.db");
    let store = SqliteStore::open(&path)?;
    eprintln!("filling the log with {events} events ...");
    fill(&store, events, replay_event).await?;
    let head = store.head().await?.0;
    let (mut embedded, mut pulled, mut committed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        embedded.push(in_process_read(&store).await?);
    }
    store.close().await?;
    let config = dir.path().join("wireline.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"state/w.db\"\n[agents.bench]\ntoken = \"${env:BENCH_TOKEN}\"\nscopes = [\"events:read\"]\n[[subscriptions]]\nagent = \"bench\"\nevents = [\"shop.*\"]\n",
    )?;
    let wireline = spawn(&binary()?, &config, None)?;
    for _ in 0..runs {
        pulled.push(pull_all(&wireline.address, head, false).await?);
        committed.push(pull_all(&wireline.address, head, true).await?);
        // The next committed run starts from 0 again.
        let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
        client
            .post(format!(
                "http://{}/v1/consumers/bench/commit",
                wireline.address
            ))
            .bearer_auth(TOKEN)
            .body("{\"offset\":0}")
            .send()
            .await?;
    }
    drop(wireline);
    Ok(vec![
        (
            format!("baseline: embedded log read in-process, {head} events"),
            embedded,
            "events/s",
        ),
        (
            format!("replay to a pull consumer over HTTP, {head} events"),
            pulled,
            "events/s",
        ),
        (
            "  the same, committing the consumer's offset every page".to_owned(),
            committed,
            "events/s",
        ),
    ])
}

const RULES: usize = 100;
const SUBJECTS: usize = 5_000;

fn rules_config() -> anyhow::Result<Config> {
    let mut toml = String::from("[services.app]\nbase_url = \"https://app.example.com\"\n");
    for i in 0..RULES {
        let body = match i % 3 {
            0 => format!(
                "absence = {{ first = \"app.k{i}.start\", missing = \"app.k{i}.end\", within = \"1h\" }}"
            ),
            1 => format!(
                "sequence = {{ first = \"app.k{i}.start\", then = \"app.k{i}.end\", within = \"10m\" }}"
            ),
            _ => {
                format!("threshold = {{ event = \"app.k{i}.start\", count = 3, within = \"30m\" }}")
            }
        };
        toml.push_str(&format!(
            "[[triggers]]\nname = \"r{i}\"\nemit = \"derived.r{i}\"\n{body}\n"
        ));
    }
    toml::from_str(&toml).context("the rules")
}

/// Event `n` of the trigger workload: types spread over the 100 rules' inputs plus 20 %
/// types no rule reads, subjects over 100,000, one second apart.
fn rule_event(n: usize) -> Event {
    // A cheap deterministic scramble, so types and subjects do not move in lockstep.
    let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let rule = h % 125;
    let ty = if rule >= RULES as u64 {
        "app.noise.seen".to_owned()
    } else if (h >> 8).is_multiple_of(3) {
        format!("app.k{rule}.end")
    } else {
        format!("app.k{rule}.start")
    };
    let mut event = Event::new(
        format!("evt_{n:09}"),
        "wireline://hooks/app",
        ty,
        t0() + jiff::SignedDuration::from_millis(n as i64 * 2),
        serde_json::json!({"n": n}),
    );
    event.subject = Some(format!("user_{}", (h >> 16) % SUBJECTS as u64));
    event
}

async fn triggers(
    runs: usize,
    events: usize,
) -> anyhow::Result<Vec<(String, Vec<f64>, &'static str)>> {
    let config = rules_config()?;
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("w.db"))?;
    eprintln!("filling the log with {events} events ...");
    fill(&store, events, rule_event).await?;
    let head = store.head().await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let (mut walked, mut runner, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let mut fired_total = 0usize;
    for run in 0..runs {
        // Baseline: the walk alone (read, parse the fields rules need).
        let started = Instant::now();
        let mut after = Offset::START;
        let mut count = 0usize;
        loop {
            let page = store.read(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.offset;
            for stored in &page {
                let value: serde_json::Value = serde_json::from_str(&stored.body)?;
                std::hint::black_box(value.get("subject"));
                count += 1;
            }
        }
        walked.push(count as f64 / started.elapsed().as_secs_f64());

        // The rules alone, in memory.
        let parsed: Vec<(Offset, String, String, String, jiff::Timestamp)> = {
            let mut all = Vec::with_capacity(events);
            let mut after = Offset::START;
            loop {
                let page = store.read(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.offset;
                for stored in page.into_iter().filter(|e| e.offset <= head) {
                    let event = stored.event()?;
                    all.push((
                        stored.offset,
                        event.id,
                        stored.ty,
                        event.subject.unwrap_or_default(),
                        stored.time,
                    ));
                }
            }
            all
        };
        let mut rules = Rules::new(&config.triggers);
        let mut fired = Vec::new();
        let started = Instant::now();
        for (offset, id, ty, subject, time) in &parsed {
            rules.apply(
                &Seen {
                    offset: *offset,
                    id,
                    ty,
                    subject,
                    time: *time,
                },
                &mut fired,
            );
        }
        memory.push(parsed.len() as f64 / started.elapsed().as_secs_f64());
        if run == 0 {
            fired_total = fired.len();
        }
        drop(parsed);

        // The runner from offset 0: a fresh position and no stored rule state.
        for i in 0..RULES {
            let namespace = wireline_events::rules::namespace(&format!("r{i}"));
            loop {
                let keys = store
                    .list(&namespace, jiff::Timestamp::UNIX_EPOCH, 10_000)
                    .await?;
                if keys.is_empty() {
                    break;
                }
                let deletes = keys
                    .into_iter()
                    .map(|(key, _)| wireline_store::Change::Delete {
                        namespace: namespace.clone(),
                        key,
                    })
                    .collect();
                store.write_batch(deletes, None).await?;
            }
        }
        store.commit_offset(POSITION, Offset::START).await?;
        let now = store.head().await?;
        let started = Instant::now();
        let triggers = Triggers::start(
            &config,
            Arc::clone(&shared),
            Head::new(now),
            Clock::Manual(wireline_events::ManualClock::new(t0())),
        )
        .await?;
        let mut progress = triggers.progress();
        let reached = progress
            .wait_for(|p| p.offset >= head)
            .await
            .map(|p| p.offset);
        let elapsed = started.elapsed();
        triggers.shutdown().await;
        reached.map_err(|_| anyhow::anyhow!("the runner stopped"))?;
        runner.push(head.0 as f64 / elapsed.as_secs_f64());
    }
    store.close().await?;
    Ok(vec![
        (
            format!(
                "baseline: walk the log, parse each event, no rules ({} events)",
                head.0
            ),
            walked,
            "events/s",
        ),
        (
            format!(
                "trigger runner, {RULES} rules, from offset 0 to the head (state stored with the position every 10 pages; {fired_total} derived events)"
            ),
            runner,
            "events/s",
        ),
        (
            format!("  the {RULES} rules alone, in memory"),
            memory,
            "events/s",
        ),
    ])
}

fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}

async fn timers(
    runs: usize,
    count: usize,
) -> anyhow::Result<Vec<(String, Vec<f64>, &'static str)>> {
    let config: Config = toml::from_str(
        "[[triggers]]\nname = \"no-login\"\nemit = \"user.no_login_7d\"\nabsence = { first = \"user.signup\", missing = \"user.first_login\", within = \"7d\" }\n",
    )?;
    let (mut per_timer, mut total, mut stored, mut loaded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let before = resident_bytes()?;
        let mut rules = Rules::new(&config.triggers);
        let mut fired = Vec::new();
        for n in 0..count {
            let (id, subject) = (format!("evt_{n:09}"), format!("user_{n:09}"));
            rules.apply(
                &Seen {
                    offset: Offset(n as u64 + 1),
                    id: &id,
                    ty: "user.signup",
                    subject: &subject,
                    time: t0() + jiff::SignedDuration::from_secs(n as i64),
                },
                &mut fired,
            );
        }
        anyhow::ensure!(rules.pending_timers() == count, "every signup waits");
        // Memory once, in the first run: later runs reuse what the allocator kept.
        if per_timer.is_empty() {
            let grown = resident_bytes()?.saturating_sub(before) as f64;
            per_timer.push(grown / count as f64);
            total.push(grown / (1024.0 * 1024.0));
        }

        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("w.db"))?;
        let started = Instant::now();
        let changes = rules.changes();
        drop(rules);
        for chunk in changes.chunks(10_000) {
            store.write_batch(chunk.to_vec(), None).await?;
        }
        stored.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut back = Rules::new(&config.triggers);
        for (subject, value) in store.list("trigger:no-login", t0(), usize::MAX).await? {
            back.load("no-login", &subject, &value);
        }
        anyhow::ensure!(back.pending_timers() == count, "every timer loads back");
        loaded.push(started.elapsed().as_secs_f64());
        drop(back);
        store.close().await?;
    }
    Ok(vec![
        (
            format!("{count} pending absence timers: resident memory"),
            total,
            "MiB",
        ),
        (
            "  per timer (baseline: its subject and id are 24 bytes of text)".to_owned(),
            per_timer,
            "bytes",
        ),
        ("  storing them (batches of 10,000)".to_owned(), stored, "s"),
        (
            "  loading them back, as a restart does".to_owned(),
            loaded,
            "s",
        ),
    ])
}

/// Runs the three parts and prints one table.
pub(crate) async fn run(runs: usize, events: usize, timer_count: usize) -> anyhow::Result<()> {
    let mut rows = replay(runs, events).await?;
    rows.extend(triggers(runs, events).await?);
    rows.extend(timers(runs, timer_count).await?);
    print_table(runs, rows);
    Ok(())
}
