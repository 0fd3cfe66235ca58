//! `wireline-bench`: benchmarks of Wireline's hot paths, printed as the Markdown rows that go
//! into BENCHMARKS.md. A benchmark, not a test: CI only builds it.
//!
//! `cargo run --release -p wireline-bench -- store` measures the event log: durable append
//! throughput with 1 and with 64 concurrent producers (1 KiB payloads), append latency
//! percentiles, and sequential read throughput; each against a baseline in the same run (plain
//! rusqlite, one durable transaction per append, which is what group commit replaces). Each
//! figure is the median of `--runs` runs on a fresh database.

// The same allocator as the wireline binary, so the bare proxy baseline is a fair floor.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod events;
mod hooks;
mod mock;
mod null_proxy;
mod poll;
mod proxy;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use wireline_core::{Event, Offset};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};

#[derive(Parser)]
#[command(name = "wireline-bench", about = "Benchmarks of Wireline's hot paths")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The Direct API proxy: overhead against a fast upstream, retries under chaos, breaker
    /// rejections. Needs the release `wireline` binary beside this one
    /// (`cargo build --release --workspace`).
    Proxy {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Requests per run at 64 connections (a quarter of it at 1 connection).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Give the proxy (Wireline, the bare proxy) CPU 1 and the load generator with the
        /// upstream CPU 0, as proxy benchmarks usually do, instead of letting all three share
        /// both CPUs. Needs `taskset` (util-linux) and two CPUs.
        #[arg(long)]
        pin: bool,
    },
    /// Webhooks: verified durable ingest against /healthz at 64 and 256 connections, and push
    /// delivery. Needs the release `wireline` binary (`cargo build --release --workspace`).
    Hooks {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Events (and /healthz requests) per run.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Polling at scale: 10,000 sources' steady-state CPU and memory, and reconciling 100,000
    /// events with 1 % missed. Needs the release `wireline` binary. Takes several minutes.
    Poll {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Sources polled every 60 s.
        #[arg(long, default_value_t = 10_000)]
        sources: usize,
    },
    /// The event-sourced pattern: replay to a pull consumer, trigger evaluation through 100
    /// rules, one million pending absence timers. Needs the release `wireline` binary.
    Events {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Events in the replayed log and in the trigger workload.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Pending absence timers.
        #[arg(long, default_value_t = 1_000_000)]
        timers: usize,
    },
    /// The built-in emulators: GETs per second against a bare handler. Needs the release
    /// `wireline` binary.
    Mock {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Requests per run.
        #[arg(long, default_value_t = 40_000)]
        requests: usize,
    },
    /// (Used by `proxy`.) A bare forwarding proxy, the floor under any proxy's cost.
    #[command(hide = true)]
    NullProxy {
        /// The upstream's address (host:port).
        #[arg(long)]
        upstream: String,
    },
    /// (Used by `proxy`.) The fast upstream in a process of its own, as a real upstream is.
    #[command(hide = true)]
    Upstream,
    /// The event log: append throughput and latency, sequential reads.
    Store {
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Events appended by the 64 producers together, per run.
        #[arg(long, default_value_t = 64_000)]
        events: usize,
        /// Events appended by the single producer, per run.
        #[arg(long, default_value_t = 2_000)]
        single_events: usize,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 1024)]
        payload: usize,
    },
}

/// The runtime every benchmark runs on: two workers, like the machine's two cores.
fn bench_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Prints the Markdown table of BENCHMARKS.md: per row the median of its runs, and every run.
pub(crate) fn print_table(runs: usize, rows: Vec<(String, Vec<f64>, &str)>) {
    println!("| measurement | median of {runs} runs | unit | all runs |");
    println!("| --- | ---: | --- | --- |");
    for (name, values, unit) in rows {
        let all: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        let median = median(values);
        let shown = if median.abs() >= 100.0 {
            format!("{median:.0}")
        } else {
            format!("{median:.2}")
        };
        println!("| {name} | {shown} | {unit} | {} |", all.join(", "));
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Proxy {
            runs,
            requests,
            pin,
        } => bench_runtime()?.block_on(proxy::run(runs, requests, pin)),
        Bench::Poll { runs, sources } => bench_runtime()?.block_on(poll::run(runs, sources)),
        Bench::NullProxy { upstream } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(null_proxy::run(upstream))
        }
        Bench::Upstream => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(proxy::serve_upstream())
        }
        Bench::Hooks { runs, events } => bench_runtime()?.block_on(hooks::run(runs, events)),
        Bench::Mock { runs, requests } => bench_runtime()?.block_on(mock::run(runs, requests)),
        Bench::Events {
            runs,
            events,
            timers,
        } => bench_runtime()?.block_on(events::run(runs, events, timers)),
        Bench::Store {
            runs,
            events,
            single_events,
            payload,
        } => bench_runtime()?.block_on(store(runs, events, single_events, payload)),
    }
}

fn event(n: usize, payload: &str) -> Event {
    Event::new(
        format!("evt_{n}"),
        "wireline://bench",
        "bench.event.created",
        jiff::Timestamp::now(),
        serde_json::json!({ "n": n, "payload": payload }),
    )
}

struct Run {
    per_second: f64,
    latencies: Vec<Duration>,
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// `producers` tasks append `total` events together; every append awaited (durable).
async fn appends(
    store: &SqliteStore,
    producers: usize,
    total: usize,
    payload: &str,
) -> anyhow::Result<Run> {
    let payload: Arc<str> = Arc::from(payload);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let store = store.clone();
        let payload = Arc::clone(&payload);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total / producers);
            for n in (producer..total).step_by(producers) {
                let event = event(n, &payload);
                let begun = Instant::now();
                store.append(&event.id, &event).await?;
                latencies.push(begun.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run {
        per_second: total as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// The baseline: one rusqlite connection, WAL, synchronous=FULL, one transaction per append.
fn baseline_appends(path: &Path, total: usize, payload: &str) -> anyhow::Result<Run> {
    let connection = rusqlite::Connection::open(path)?;
    connection.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, time_us INTEGER NOT NULL, body TEXT NOT NULL)",
    )?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    for n in 0..total {
        let begun = Instant::now();
        let event = event(n, payload);
        let body = serde_json::to_string(&event)?;
        connection.execute(
            "INSERT INTO events (dedupe_id, type, time_us, body) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![event.id, event.ty, event.time.as_microsecond(), body],
        )?;
        latencies.push(begun.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run {
        per_second: total as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// The concurrent baseline: `producers` threads, each with its own connection, one durable
/// transaction per append, SQLite's lock arbitrating (what a store without a single writer
/// does).
fn baseline_concurrent_appends(
    path: &Path,
    producers: usize,
    total: usize,
    payload: &str,
) -> anyhow::Result<f64> {
    {
        let connection = rusqlite::Connection::open(path)?;
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        connection.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, time_us INTEGER NOT NULL, body TEXT NOT NULL)",
        )?;
    }
    let started = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|producer| {
            let path = path.to_path_buf();
            let payload = payload.to_owned();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let connection = rusqlite::Connection::open(&path)?;
                connection.busy_timeout(Duration::from_secs(30))?;
                connection.pragma_update(None, "synchronous", "FULL")?;
                for n in (producer..total).step_by(producers) {
                    let event = event(n, &payload);
                    let body = serde_json::to_string(&event)?;
                    connection.execute(
                        "INSERT INTO events (dedupe_id, type, time_us, body) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![event.id, event.ty, event.time.as_microsecond(), body],
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("baseline thread panicked"))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Reads the whole log in pages of 1000; returns events/s, optionally parsing each event.
async fn sequential_read(store: &SqliteStore, parse: bool) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let mut after = Offset::START;
    let mut count = 0;
    loop {
        let page = store.read(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.offset;
        count += page.len();
        if parse {
            for stored in &page {
                std::hint::black_box(stored.event()?);
            }
        }
    }
    Ok((count as f64 / started.elapsed().as_secs_f64(), count))
}

async fn store(
    runs: usize,
    events: usize,
    single_events: usize,
    payload_size: usize,
) -> anyhow::Result<()> {
    let payload = "x".repeat(payload_size);
    let mut figures: Vec<(&str, Vec<f64>, &str)> = vec![
        (
            "baseline: rusqlite, 1 transaction per append, 1 producer",
            vec![],
            "appends/s",
        ),
        ("SqliteStore append, 1 producer", vec![], "appends/s"),
        (
            "baseline: rusqlite, 1 transaction per append, 64 producers (own connections)",
            vec![],
            "appends/s",
        ),
        ("SqliteStore append, 64 producers", vec![], "appends/s"),
        ("baseline append latency p50, 1 producer", vec![], "ms"),
        ("baseline append latency p99, 1 producer", vec![], "ms"),
        ("SqliteStore append latency p50, 1 producer", vec![], "ms"),
        ("SqliteStore append latency p99, 1 producer", vec![], "ms"),
        ("SqliteStore append latency p50, 64 producers", vec![], "ms"),
        ("SqliteStore append latency p99, 64 producers", vec![], "ms"),
        (
            "SqliteStore mean batch size, 64 producers",
            vec![],
            "appends/commit",
        ),
        (
            "SqliteStore sequential read (raw CloudEvents JSON)",
            vec![],
            "events/s",
        ),
        (
            "SqliteStore sequential read + parse to Event",
            vec![],
            "events/s",
        ),
    ];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let baseline = baseline_appends(&dir.path().join("baseline.db"), single_events, &payload)?;
        let baseline_many = baseline_concurrent_appends(
            &dir.path().join("baseline-many.db"),
            64,
            events / 4,
            &payload,
        )?;

        let single_store = SqliteStore::open(&dir.path().join("single.db")).context("open")?;
        let single = appends(&single_store, 1, single_events, &payload).await?;
        single_store.close().await?;

        let store = SqliteStore::open(&dir.path().join("many.db")).context("open")?;
        let many = appends(&store, 64, events, &payload).await?;
        let stats = store.writer_stats();
        let batches = stats
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        let jobs = stats.jobs.load(std::sync::atomic::Ordering::Relaxed);
        let (raw, count) = sequential_read(&store, false).await?;
        let (parsed, _) = sequential_read(&store, true).await?;
        anyhow::ensure!(count == events, "read {count} of {events} events");
        store.close().await?;

        let values = [
            baseline.per_second,
            single.per_second,
            baseline_many,
            many.per_second,
            ms(percentile(&baseline.latencies, 0.5)),
            ms(percentile(&baseline.latencies, 0.99)),
            ms(percentile(&single.latencies, 0.5)),
            ms(percentile(&single.latencies, 0.99)),
            ms(percentile(&many.latencies, 0.5)),
            ms(percentile(&many.latencies, 0.99)),
            jobs as f64 / batches as f64,
            raw,
            parsed,
        ];
        for (figure, value) in figures.iter_mut().zip(values) {
            figure.1.push(value);
        }
        eprintln!("run {}/{runs} done", run + 1);
    }
    println!("| measurement | median of {runs} runs | unit | all runs |");
    println!("| --- | ---: | --- | --- |");
    for (name, values, unit) in figures {
        let all: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        let median = median(values);
        let shown = if median >= 100.0 {
            format!("{median:.0}")
        } else {
            format!("{median:.2}")
        };
        println!("| {name} | {shown} | {unit} | {} |", all.join(", "));
    }
    Ok(())
}
