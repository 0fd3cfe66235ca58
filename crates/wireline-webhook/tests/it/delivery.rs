//! Push delivery against a receiver on loopback: order, signatures, the durable schedule,
//! dead letters and re-drive, and resuming after a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use wireline_config::{Env, Loaded, load_str};
use wireline_core::{Event, Offset};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};
use wireline_webhook::delivery::{self, Deliveries, Head};
use wireline_webhook::schemes::{Incoming, Keys, Scheme, standard_key};

const PUSH_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[derive(Default)]
struct Receiver {
    /// (webhook-id, event type) of each request, accepted or not.
    seen: Mutex<Vec<(String, String)>>,
    /// Statuses to answer with, in turn; 200 once used up.
    script: Mutex<Vec<u16>>,
    /// Requests whose signature did not verify.
    forged: Mutex<u32>,
    arrived: tokio::sync::Notify,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let verified = Scheme::Standard.verify(
        &Keys::new([standard_key(PUSH_SECRET).expect("key")]),
        &Incoming {
            headers: &headers,
            body: &body,
            now: Timestamp::now().as_second(),
            tolerance: 300,
        },
    );
    if verified.is_err() {
        *receiver.forged.lock().expect("lock") += 1;
    }
    let event: Event = serde_json::from_slice(&body).expect("a CloudEvent");
    let id = headers["webhook-id"].to_str().expect("id").to_owned();
    assert_eq!(id, event.id, "webhook-id is the event id");
    receiver.seen.lock().expect("lock").push((id, event.ty));
    let status = {
        let mut script = receiver.script.lock().expect("lock");
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    receiver.arrived.notify_waiters();
    StatusCode::from_u16(status).expect("status")
}

async fn receiver(script: &[u16]) -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver {
        script: Mutex::new(script.to_vec()),
        ..Receiver::default()
    });
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&receiver));
    let url = format!("{}/hook", crate::serve(app).await);
    (receiver, url)
}

fn config(dir: &std::path::Path, url: &str, schedule: &str) -> Loaded {
    config_with(dir, url, schedule, "")
}

fn config_with(dir: &std::path::Path, url: &str, schedule: &str, extra: &str) -> Loaded {
    let text = format!(
        r#"
{extra}
[agents.bot]
token = "${{env:BOT_TOKEN}}"
scopes = []
[[subscriptions]]
name = "bot-payments"
agent = "bot"
events = ["stripe.payment_intent.*"]
url = "{url}"
secret = "${{env:PUSH_SECRET}}"
schedule = {schedule}
"#
    );
    let vars: BTreeMap<String, String> =
        [("BOT_TOKEN", "bot-token-1"), ("PUSH_SECRET", PUSH_SECRET)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    load_str(&text, &dir.join("wireline.toml"), &Env::from_map(vars))
        .unwrap_or_else(|f| panic!("{f:#?}"))
}

async fn append(store: &SqliteStore, head: &Head, id: &str, ty: &str) -> Offset {
    let event = Event::new(
        id,
        "wireline://hooks/stripe",
        ty,
        Timestamp::now(),
        serde_json::json!({}),
    );
    let appended = store.append(id, &event).await.expect("append");
    head.bump(appended.offset);
    appended.offset
}

/// Waits (bounded) until the receiver has seen `n` requests.
async fn until_seen(receiver: &Receiver, n: usize) -> Vec<(String, String)> {
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let notified = receiver.arrived.notified();
            let seen = receiver.seen.lock().expect("lock").clone();
            if seen.len() >= n {
                return seen;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "expected {n} requests, saw {:?}",
            receiver.seen.lock().expect("lock")
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_events_are_pushed_signed_in_order_after_retries() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    append(
        &store,
        &Head::new(Offset::START),
        "evt_before",
        "stripe.payment_intent.created",
    )
    .await;
    // The first attempt of the first event fails twice (500, then 429), then succeeds.
    let (receiver, url) = receiver(&[500, 429]).await;
    let loaded = config(dir.path(), &url, r#"["0s", "20ms", "20ms"]"#);
    let head = Head::new(store.head().await.expect("head"));
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("start");
    append(&store, &head, "evt_1", "stripe.payment_intent.succeeded").await;
    append(&store, &head, "evt_other", "github.issues").await;
    append(&store, &head, "evt_2", "stripe.payment_intent.canceled").await;
    let seen = until_seen(&receiver, 4).await;
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["evt_1", "evt_1", "evt_1", "evt_2"],
        "in log order, retried with the same webhook-id, only matching types, nothing from before the subscription existed"
    );
    assert_eq!(
        *receiver.forged.lock().expect("lock"),
        0,
        "every push verifies as Standard Webhooks"
    );
    deliveries.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deliveries_are_dead_lettered_alerted_and_can_be_redriven() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    // evt_1 fails all three attempts; evt_gone gets 410 once and is not retried.
    let (receiver, url) = receiver(&[503, 503, 503, 410]).await;
    let (inbox, alerts_url) = alert_receiver().await;
    let loaded = config_with(
        dir.path(),
        &url,
        r#"["0s", "10ms", "10ms"]"#,
        &format!("[alerts]\nurl = \"{alerts_url}\""),
    );
    let head = Head::new(Offset::START);
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("start");
    append(&store, &head, "evt_1", "stripe.payment_intent.succeeded").await;
    append(&store, &head, "evt_gone", "stripe.payment_intent.created").await;
    append(&store, &head, "evt_3", "stripe.payment_intent.created").await;
    let seen = until_seen(&receiver, 5).await;
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["evt_1", "evt_1", "evt_1", "evt_gone", "evt_3"],
        "a dead letter does not block the rest"
    );
    deliveries.shutdown().await;

    let dead = delivery::dead_letters(&store, Some("bot-payments"))
        .await
        .expect("list");
    let dead: Vec<(&str, u32)> = dead
        .iter()
        .map(|d| (d.event_id.as_str(), d.attempts))
        .collect();
    assert_eq!(dead, [("evt_1", 3), ("evt_gone", 1)]);
    let alerts = store.read(Offset::START, 100).await.expect("read");
    assert_eq!(
        alerts
            .iter()
            .filter(|e| e.ty == "wireline.alert.delivery_exhausted")
            .count(),
        2,
        "one alert per exhausted delivery"
    );

    let posted = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let notified = inbox.1.notified();
            if inbox.0.lock().expect("lock").len() >= 2 {
                return inbox.0.lock().expect("lock").clone();
            }
            notified.await;
        }
    })
    .await
    .expect("both alerts posted to [alerts] url");
    assert!(
        posted
            .iter()
            .all(|ty| ty == "wireline.alert.delivery_exhausted"),
        "{posted:?}"
    );

    // Re-drive evt_1 only; a restarted subscription sends it (the endpoint is healthy now)
    // and does not resend what it had already finished.
    let offset = delivery::dead_letters(&store, None).await.expect("list")[0].offset;
    assert_eq!(
        delivery::redrive(&store, "bot-payments", Some(offset))
            .await
            .expect("redrive"),
        1
    );
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("restart");
    let seen = until_seen(&receiver, 6).await;
    assert_eq!(seen[5].0, "evt_1");
    append(&store, &head, "evt_4", "stripe.payment_intent.created").await;
    let seen = until_seen(&receiver, 7).await;
    assert_eq!(
        seen[6].0, "evt_4",
        "nothing already delivered was sent again"
    );
    deliveries.shutdown().await;
    let dead = delivery::dead_letters(&store, None).await.expect("list");
    assert_eq!(
        dead.len(),
        1,
        "the re-driven letter is gone, the 410 one stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_resumes_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let (receiver, url) = receiver(&[500]).await;
    // The retry waits 200 ms: the process "stops" inside that wait.
    let loaded = config(dir.path(), &url, r#"["0s", "200ms", "200ms"]"#);
    let head = Head::new(Offset::START);
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("start");
    append(&store, &head, "evt_1", "stripe.payment_intent.succeeded").await;
    until_seen(&receiver, 1).await;
    deliveries.shutdown().await;
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("restart");
    let seen = until_seen(&receiver, 2).await;
    assert_eq!(seen[1].0, "evt_1", "the retry happens after the restart");
    deliveries.shutdown().await;
    assert!(
        delivery::dead_letters(&store, None)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_holds_up_only_its_own_subscription() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let (down, down_url) = receiver(&[503; 100]).await;
    let (up, up_url) = receiver(&[]).await;
    let text = format!(
        r#"
[agents.bot]
token = "${{env:BOT_TOKEN}}"
scopes = []
[[subscriptions]]
agent = "bot"
events = ["stripe.*"]
url = "{down_url}"
secret = "${{env:PUSH_SECRET}}"
[[subscriptions]]
agent = "bot"
events = ["stripe.*"]
url = "{up_url}"
secret = "${{env:PUSH_SECRET}}"
"#
    );
    let vars: BTreeMap<String, String> =
        [("BOT_TOKEN", "bot-token-1"), ("PUSH_SECRET", PUSH_SECRET)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let loaded = load_str(
        &text,
        &dir.path().join("wireline.toml"),
        &Env::from_map(vars),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let head = Head::new(Offset::START);
    let deliveries = Deliveries::start(&loaded.config, Arc::clone(&shared), &head)
        .await
        .expect("start");
    for n in 0..5 {
        append(
            &store,
            &head,
            &format!("evt_{n}"),
            "stripe.charge.succeeded",
        )
        .await;
    }
    let seen = until_seen(&up, 5).await;
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["evt_0", "evt_1", "evt_2", "evt_3", "evt_4"]);
    let failing = until_seen(&down, 1).await;
    assert_eq!(
        failing.len(),
        1,
        "the failing endpoint is waiting out its 5 s retry of evt_0: {failing:?}"
    );
    deliveries.shutdown().await;
}

type Alerts = Arc<(Mutex<Vec<String>>, tokio::sync::Notify)>;

/// An `[alerts] url` endpoint recording the type of each alert posted.
async fn alert_receiver() -> (Alerts, String) {
    let alerts: Alerts = Arc::default();
    let app = Router::new()
        .fallback(
            |State(alerts): State<Alerts>, body: axum::body::Bytes| async move {
                let event: Event = serde_json::from_slice(&body).expect("a CloudEvent");
                alerts.0.lock().expect("lock").push(event.ty);
                alerts.1.notify_waiters();
                "ok"
            },
        )
        .with_state(Arc::clone(&alerts));
    let url = format!("{}/alerts", crate::serve(app).await);
    (alerts, url)
}
