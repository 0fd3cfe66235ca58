//! `wireline-bench hooks`: webhook ingest and push delivery through the real binary.
//!
//! Ingest: unique, validly signed Stripe-style events (about 1 KiB) POSTed to
//! `/hooks/stripe`, each answered only once durable, against `GET /healthz` of the same
//! server in the same run, at 64 and 256 connections; each run on a fresh database.
//! Delivery: a second server on the same database with a push subscription that starts at
//! the beginning of the log; pushes per second to a loopback receiver, first to last arrival.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use hmac::{Hmac, Mac};

use crate::proxy::{Wireline, binary, micros, percentile, spawn};

const STRIPE_SECRET: &str = "whsec_bench_5f0e8a1c2b3d4e6f";
const PUSH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Load {
    per_second: f64,
    latencies: Vec<Duration>,
}

/// Pre-signed bodies: the signing is the provider's work, not Wireline's, so it stays out of
/// the timed loop.
fn signed_events(run: usize, count: usize) -> Vec<(String, String)> {
    let t = jiff::Timestamp::now().as_second();
    let padding = "x".repeat(900);
    (0..count)
        .map(|n| {
            let body = format!(
                r#"{{"id":"evt_{run}_{n}","object":"event","type":"payment_intent.succeeded","created":{t},"data":{{"object":{{"id":"pi_{n}","amount":2000,"currency":"usd","description":"{padding}"}}}}}}"#
            );
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).expect("key");
            mac.update(format!("{t}.{body}").as_bytes());
            let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
            (body, signature)
        })
        .collect()
}

async fn drive(
    url: &str,
    connections: usize,
    requests: Vec<Option<(String, String)>>,
) -> anyhow::Result<Load> {
    let total = requests.len();
    let mut shares: Vec<Vec<Option<(String, String)>>> = vec![Vec::new(); connections];
    for (n, request) in requests.into_iter().enumerate() {
        shares[n % connections].push(request);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for share in shares {
        let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for request in share {
                let begun = Instant::now();
                let response = match request {
                    None => client.get(&url).send().await?,
                    Some((body, signature)) => {
                        client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("stripe-signature", signature)
                            .body(body)
                            .send()
                            .await?
                    }
                };
                anyhow::ensure!(response.status() == 200, "answered {}", response.status());
                let _ = response.bytes().await?;
                latencies.push(begun.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Load {
        per_second,
        latencies,
    })
}

fn start(dir: &tempfile::TempDir, subscription: Option<&str>) -> anyhow::Result<Wireline> {
    std::fs::write(dir.path().join("stripe.secret"), STRIPE_SECRET)?;
    std::fs::write(dir.path().join("push.secret"), PUSH_SECRET)?;
    let config = dir.path().join("wireline.toml");
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[agents.bench]\ntoken = \"${env:BENCH_TOKEN}\"\nscopes = []\n\
         [services.stripe]\nbase_url = \"https://api.stripe.com\"\n[services.stripe.webhook]\nscheme = \"stripe\"\nsecret = \"${file:stripe.secret}\"\n",
    );
    if let Some(url) = subscription {
        text.push_str(&format!(
            "[[subscriptions]]\nagent = \"bench\"\nevents = [\"stripe.*\"]\nurl = \"{url}\"\nsecret = \"${{file:push.secret}}\"\nstart = \"beginning\"\n"
        ));
    }
    std::fs::write(&config, text)?;
    spawn(&binary()?, &config, None)
}

/// A receiver counting pushes, with the time of the first and of the `want`-th.
struct Receiver {
    count: AtomicUsize,
    first: std::sync::Mutex<Option<Instant>>,
    done: tokio::sync::Notify,
}

pub async fn run(runs: usize, events: usize) -> anyhow::Result<()> {
    let receiver = Arc::new(Receiver {
        count: AtomicUsize::new(0),
        first: std::sync::Mutex::new(None),
        done: tokio::sync::Notify::new(),
    });
    let app = Router::new()
        .fallback(|State(receiver): State<Arc<Receiver>>| async move {
            if receiver.count.fetch_add(1, Ordering::SeqCst) == 0 {
                *receiver.first.lock().expect("lock") = Some(Instant::now());
            }
            receiver.done.notify_waiters();
            "ok"
        })
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let push_url = format!("http://{}/events", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mut rows: Vec<(String, Vec<f64>, &str)> = Vec::new();
    let mut deliveries = Vec::new();
    for connections in [64usize, 256] {
        let (mut health, mut ingest, mut ratio, mut p50, mut p99) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let dir = tempfile::tempdir()?;
            let wireline = start(&dir, None)?;
            let base = format!("http://{}", wireline.address);
            // Warm up connections and the store.
            drive(&format!("{base}/healthz"), connections, vec![None; 2_000]).await?;
            drive(
                &format!("{base}/hooks/stripe"),
                connections,
                signed_events(1_000 + run, 1_000)
                    .into_iter()
                    .map(Some)
                    .collect(),
            )
            .await?;
            let healthz =
                drive(&format!("{base}/healthz"), connections, vec![None; events]).await?;
            let hooks = drive(
                &format!("{base}/hooks/stripe"),
                connections,
                signed_events(run, events).into_iter().map(Some).collect(),
            )
            .await?;
            health.push(healthz.per_second);
            ingest.push(hooks.per_second);
            ratio.push(hooks.per_second / healthz.per_second * 100.0);
            p50.push(micros(percentile(&hooks.latencies, 0.5)) / 1000.0);
            p99.push(micros(percentile(&hooks.latencies, 0.99)) / 1000.0);
            drop(wireline);

            if connections == 64 {
                // Delivery of everything just ingested (warm-up included), from the log's start.
                let stored = events + 1_000;
                receiver.count.store(0, Ordering::SeqCst);
                *receiver.first.lock().expect("lock") = None;
                let wireline = start(&dir, Some(&push_url))?;
                tokio::time::timeout(Duration::from_secs(600), async {
                    loop {
                        let notified = receiver.done.notified();
                        if receiver.count.load(Ordering::SeqCst) >= stored {
                            return;
                        }
                        notified.await;
                    }
                })
                .await?;
                let first = receiver
                    .first
                    .lock()
                    .expect("lock")
                    .unwrap_or_else(Instant::now);
                deliveries.push(stored as f64 / first.elapsed().as_secs_f64());
                drop(wireline);
            }
        }
        rows.push((
            format!("GET /healthz, {connections} connections"),
            health,
            "requests/s",
        ));
        rows.push((
            format!("POST /hooks/stripe (verified, durable), {connections} connections"),
            ingest,
            "events/s",
        ));
        rows.push((
            format!("ingest as % of /healthz, {connections} connections"),
            ratio,
            "%",
        ));
        rows.push((
            format!("ingest latency p50, {connections} connections"),
            p50,
            "ms",
        ));
        rows.push((
            format!("ingest latency p99, {connections} connections"),
            p99,
            "ms",
        ));
    }
    rows.push((
        "push delivery to a loopback receiver, 1 subscription".into(),
        deliveries,
        "deliveries/s",
    ));

    crate::print_table(runs, rows);
    Ok(())
}
