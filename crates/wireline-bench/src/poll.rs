//! `wireline-bench poll`: the polling pattern at scale.
//!
//! Steady state: the release `wireline` binary with one service polling 10,000 sources every
//! 60 s against a loopback emulator (each source answers a small JSON list); CPU (utime +
//! stime from /proc) and resident memory of the process over two intervals after the first
//! full round, against the same binary idle (no sources) in the same run.
//! Reconciliation: 100,000 Stripe events of which 99,000 arrived by webhook (stored as the
//! webhook path stores them); the time for the reconciling poll to read all 1,000 pages and
//! complete the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::{Value, json};
use wireline_config::{Env, load_str};
use wireline_store::Store;
use wireline_store::sqlite::SqliteStore;

use crate::proxy::{binary, cpu_time, spawn};

/// CPU seconds (user + system) and resident MiB of a process.
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let cpu = cpu_time(pid)?.total().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok((cpu, rss_kib / 1024.0))
}

async fn feed(
    Path(_source): Path<String>,
    State(hits): State<Arc<AtomicU64>>,
) -> axum::Json<Value> {
    hits.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!([{"id": "1", "at": 1_700_000_000}, {"id": "2", "at": 1_700_000_001}]))
}

/// Runs `sources` sources for `measure` after `warm`; returns (CPU share of one core, RSS MiB).
async fn steady(
    sources: usize,
    warm: Duration,
    measure: Duration,
) -> anyhow::Result<(f64, f64, u64)> {
    let hits = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/feed/{source}", get(feed))
        .with_state(Arc::clone(&hits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir()?;
    let mut config = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[agents.bench]\ntoken = \"${env:BENCH_TOKEN}\"\nscopes = []\n",
    );
    if sources > 0 {
        let names: Vec<String> = (0..sources).map(|n| format!("\"s{n}\"")).collect();
        config.push_str(&format!(
            "[services.feeds]\nbase_url = \"http://{address}\"\n[services.feeds.poll]\npath = \"/feed/{{source}}\"\ntime = \"at\"\nevery = \"60s\"\nsources = [{}]\n",
            names.join(", ")
        ));
    }
    let path = dir.path().join("wireline.toml");
    std::fs::write(&path, config)?;
    let wireline = spawn(&binary()?, &path, Some(dir))?;
    let pid = wireline.pid();
    tokio::time::sleep(warm).await;
    let (cpu_before, _) = usage(pid)?;
    let hits_before = hits.load(Ordering::Relaxed);
    tokio::time::sleep(measure).await;
    let (cpu_after, rss) = usage(pid)?;
    let polls = hits.load(Ordering::Relaxed) - hits_before;
    drop(wireline);
    server.abort();
    Ok((
        (cpu_after - cpu_before) / measure.as_secs_f64() * 100.0,
        rss,
        polls,
    ))
}

struct Stripe {
    /// Newest first.
    events: Vec<Value>,
    position: HashMap<String, usize>,
}

async fn stripe_events(
    State(stripe): State<Arc<Stripe>>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let start = query
        .get("starting_after")
        .and_then(|id| stripe.position.get(id))
        .map_or(0, |p| p + 1);
    let end = (start + 100).min(stripe.events.len());
    axum::Json(
        json!({"object": "list", "has_more": end < stripe.events.len(), "data": stripe.events[start..end]}),
    )
}

async fn reconcile(events: usize, missed_every: usize) -> anyhow::Result<(f64, u64)> {
    let now = jiff::Timestamp::now().as_second();
    let ts = move |n: usize| now - (events - n) as i64;
    let mut newest_first: Vec<Value> = (0..events)
        .map(|n| json!({"id": format!("evt_{n:06}"), "object": "event", "created": ts(n), "type": "charge.succeeded", "data": {"object": {"id": format!("ch_{n}")}}}))
        .collect();
    newest_first.reverse();
    let position = newest_first
        .iter()
        .enumerate()
        .map(|(i, e)| (e["id"].as_str().unwrap_or_default().to_owned(), i))
        .collect();
    let stripe = Arc::new(Stripe {
        events: newest_first,
        position,
    });
    let app = Router::new()
        .route("/v1/events", get(stripe_events))
        .with_state(Arc::clone(&stripe));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir()?;
    let text = format!(
        "[services.stripe]\nbase_url = \"http://{address}\"\nauth = {{ bearer = \"${{env:KEY}}\" }}\n[services.stripe.webhook]\nscheme = \"stripe\"\nsecret = \"${{env:KEY}}\"\n[services.stripe.poll]\npreset = \"stripe-events\"\nreconcile = true\nmax_pages = 100000\n"
    );
    let vars = std::collections::BTreeMap::from([("KEY".to_owned(), "whsec_bench".to_owned())]);
    let loaded = load_str(
        &text,
        &dir.path().join("wireline.toml"),
        &Env::from_map(vars),
    )
    .map_err(|findings| anyhow::anyhow!("{findings:?}"))?;
    let sqlite = SqliteStore::open(&dir.path().join("w.db"))?;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    // What the webhooks delivered, stored as the webhook path stores it (concurrently, so
    // group commit keeps the set-up short).
    let mut pending = tokio::task::JoinSet::new();
    for n in (0..events).filter(|n| n % missed_every != 0) {
        let store = Arc::clone(&store);
        pending.spawn(async move {
            let id = format!("evt_{n:06}");
            let event = wireline_core::Event::new(
                id.clone(),
                "wireline://hooks/stripe",
                "stripe.charge.succeeded",
                jiff::Timestamp::from_second(ts(n)).unwrap_or_else(|_| jiff::Timestamp::now()),
                json!({"id": id}),
            );
            store
                .append(&wireline_webhook::dedupe_id("stripe", &id), &event)
                .await
        });
        if pending.len() >= 512 {
            pending.join_next().await.context("task")???;
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    let direct = wireline_direct::Direct::new(&loaded.config, dir.path(), Arc::clone(&store))
        .map_err(anyhow::Error::msg)?;
    let service = &loaded.config.services["stripe"];
    let source = wireline_poll::sync::Source {
        service: "stripe".into(),
        name: None,
        spec: service
            .poll
            .as_ref()
            .context("poll")?
            .spec()
            .map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?,
        base_url: url::Url::parse(&service.base_url)?,
        subjects: wireline_webhook::Subjects::default(),
    };
    let started = Instant::now();
    let outcome = source
        .poll(&direct, &store, None)
        .await
        .map_err(|problem| anyhow::anyhow!("{}", problem.detail))?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(outcome.finished, "the reconciling poll did not finish");
    direct.shutdown().await;
    sqlite.close().await?;
    server.abort();
    Ok((elapsed, outcome.new))
}

pub async fn run(runs: usize, sources: usize) -> anyhow::Result<()> {
    let mut rows: Vec<(String, Vec<f64>, &str)> = Vec::new();
    let (mut idle_cpu, mut idle_rss, mut cpu, mut rss, mut rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let measure = Duration::from_secs(120);
    for _ in 0..runs {
        let (c, r, _) = steady(0, Duration::from_secs(10), Duration::from_secs(30)).await?;
        idle_cpu.push(c);
        idle_rss.push(r);
        let (c, r, polls) = steady(sources, Duration::from_secs(70), measure).await?;
        cpu.push(c);
        rss.push(r);
        rate.push(polls as f64 / measure.as_secs_f64());
    }
    rows.push((
        "idle wireline (no sources): CPU".into(),
        idle_cpu,
        "% of one core",
    ));
    rows.push((
        "idle wireline (no sources): resident memory".into(),
        idle_rss,
        "MiB",
    ));
    rows.push((
        format!("{sources} sources every 60 s: CPU, steady state"),
        cpu,
        "% of one core",
    ));
    rows.push((
        format!("{sources} sources every 60 s: resident memory"),
        rss,
        "MiB",
    ));
    rows.push((
        format!("{sources} sources every 60 s: polls answered"),
        rate,
        "polls/s",
    ));
    let (mut seconds, mut found) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (s, new) = reconcile(100_000, 100).await?;
        seconds.push(s);
        found.push(new as f64);
    }
    rows.push((
        "reconcile 100,000 events, 1 % missed by webhooks: time to a complete log".into(),
        seconds,
        "s",
    ));
    rows.push(("reconcile: events the poll added".into(), found, "events"));
    crate::print_table(runs, rows);
    Ok(())
}
