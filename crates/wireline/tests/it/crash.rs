//! Crash safety: signed webhooks from concurrent senders, the server killed with SIGKILL
//! mid-stream and restarted, several times. Every acknowledged event is in the log exactly
//! once, and the push subscriber ends up with every one of them (deduped by `webhook-id`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;

use crate::Server;

const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PUSH_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SENDERS: usize = 8;
const ROUNDS: usize = 3;
/// Acknowledged events per round before the kill.
const PER_ROUND: usize = 600;

fn sign(id: &str, body: &str) -> (String, String) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(HOOK_SECRET.trim_start_matches("whsec_"))
        .expect("key");
    let t = jiff::Timestamp::now().as_second().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{t}.{body}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (t, format!("v1,{signature}"))
}

#[derive(Default)]
struct Received {
    ids: Mutex<BTreeSet<String>>,
    total: AtomicUsize,
    arrived: tokio::sync::Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_kill_9_and_reach_the_subscriber() {
    let received = Arc::new(Received::default());
    let app = Router::new()
        .fallback(
            |State(received): State<Arc<Received>>, headers: HeaderMap| async move {
                let id = headers["webhook-id"].to_str().expect("id").to_owned();
                received.ids.lock().expect("lock").insert(id);
                received.total.fetch_add(1, Ordering::Relaxed);
                received.arrived.notify_waiters();
                "ok"
            },
        )
        .with_state(Arc::clone(&received));
    let url = format!("{}/events", crate::serve(app).await);

    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        &format!(
            r#"
[agents.fulfil]
token = "${{env:AGENT_TOKEN}}"
scopes = []
[services.shop]
base_url = "https://shop.example.com"
[services.shop.webhook]
scheme = "standard"
secret = "${{env:HOOK_SECRET}}"
[[subscriptions]]
agent = "fulfil"
events = ["shop.order.*"]
url = "{url}"
secret = "${{env:PUSH_SECRET}}"
schedule = ["0s", "50ms", "100ms", "200ms", "400ms", "800ms", "1s", "1s"]
"#
        ),
    );
    let envs = [
        ("AGENT_TOKEN", "agent-token-crash"),
        ("HOOK_SECRET", HOOK_SECRET),
        ("PUSH_SECRET", PUSH_SECRET),
        ("WIRELINE_LOG", "warn,wireline::server=info"),
    ];
    let next_id = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..ROUNDS {
        let mut server = Server::start(&config, &envs);
        let base = server.url("/hooks/shop");
        let round_acks = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..SENDERS {
            let (base, next_id, acked, round_acks) = (
                base.clone(),
                Arc::clone(&next_id),
                Arc::clone(&acked),
                Arc::clone(&round_acks),
            );
            senders.spawn(async move {
                let http = crate::server::client();
                loop {
                    let id = format!("msg_{}", next_id.fetch_add(1, Ordering::Relaxed));
                    let body = format!(r#"{{"type":"order.created","data":{{"order":"{id}"}}}}"#);
                    let (t, signature) = sign(&id, &body);
                    let sent = http
                        .post(&base)
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", t)
                        .header("webhook-signature", signature)
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => {
                            acked.lock().expect("lock").push(id);
                            round_acks.0.fetch_add(1, Ordering::Relaxed);
                            round_acks.1.notify_waiters();
                        }
                        Ok(response) => panic!("unexpected {}", response.status()),
                        Err(_) => return, // the server is gone
                    }
                }
            });
        }
        loop {
            let notified = round_acks.1.notified();
            if round_acks.0.load(Ordering::Relaxed) >= PER_ROUND {
                break;
            }
            notified.await;
        }
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reaped");
        while senders.join_next().await.is_some() {}
        eprintln!(
            "round {round}: {} acknowledged so far",
            acked.lock().expect("lock").len()
        );
    }

    // One last, clean run: the subscriber catches up on everything acknowledged.
    let server = Server::start(&config, &envs);
    let acked: BTreeSet<String> = acked.lock().expect("lock").iter().cloned().collect();
    assert!(acked.len() >= ROUNDS * PER_ROUND);
    let all_delivered = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let notified = received.arrived.notified();
            if received.ids.lock().expect("lock").is_superset(&acked) {
                return;
            }
            notified.await;
        }
    })
    .await;
    let delivered = received.ids.lock().expect("lock").clone();
    assert!(
        all_delivered.is_ok(),
        "{} acknowledged events never reached the subscriber, e.g. {:?}",
        acked.difference(&delivered).count(),
        acked.difference(&delivered).take(5).collect::<Vec<_>>()
    );
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");

    // The log: every acknowledged event exactly once.
    let store =
        wireline_store::sqlite::SqliteStore::open(&dir.path().join("state/w.db")).expect("reopen");
    use wireline_store::EventLog;
    let mut counts = BTreeMap::<String, usize>::new();
    let mut after = wireline_core::Offset::START;
    loop {
        let page = store.read(after, 1000).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.offset;
        for stored in &page {
            if stored.ty == "shop.order.created" {
                *counts.entry(stored.event().expect("event").id).or_default() += 1;
            }
        }
    }
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} acknowledged but stored {:?} times",
            counts.get(id)
        );
    }
    assert!(counts.values().all(|n| *n == 1), "no event is stored twice");
    eprintln!(
        "{} acknowledged, {} stored (unacknowledged ones may be stored too), {} distinct delivered, {} pushes in all",
        acked.len(),
        counts.len(),
        delivered.len(),
        received.total.load(Ordering::Relaxed)
    );
}
