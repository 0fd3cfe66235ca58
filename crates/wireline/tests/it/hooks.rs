//! The webhook-driven pattern end to end through the binary: signed webhooks in; the same
//! events out to agents by push (verified with the official Standard Webhooks library from
//! PyPI), pull and Server-Sent Events; shutdown with a stream still open.

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};

use crate::sdk::python_package;
use crate::{Server, text};

pub const STRIPE_WHSEC: &str = "whsec_test_0d5c1e9f2a7b4c3d8e6f";
const PUSH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn stripe_signature(body: &str) -> String {
    let t = jiff::Timestamp::now().as_second();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(STRIPE_WHSEC.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

type Pushes = Arc<(
    Mutex<Vec<(Vec<(String, String)>, String)>>,
    tokio::sync::Notify,
)>;

async fn push_receiver() -> (Pushes, String) {
    let pushes: Pushes = Arc::default();
    let app = Router::new()
        .fallback(
            |State(pushes): State<Pushes>, headers: HeaderMap, body: String| async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                pushes.0.lock().expect("lock").push((headers, body));
                pushes.1.notify_waiters();
                "ok"
            },
        )
        .with_state(Arc::clone(&pushes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/agent/events",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (pushes, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_agents_by_push_pull_and_stream() {
    let (pushes, url) = push_receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        &format!(
            r#"
[agents.billing]
token = "${{env:BILLING_TOKEN}}"
scopes = []
[agents.auditor]
token = "${{env:AUDITOR_TOKEN}}"
scopes = []
[agents.idle]
token = "${{env:IDLE_TOKEN}}"
scopes = []
[services.stripe]
base_url = "https://api.stripe.com"
[services.stripe.webhook]
scheme = "stripe"
secret = "${{env:STRIPE_WHSEC}}"
[[subscriptions]]
agent = "billing"
events = ["stripe.payment_intent.*"]
url = "{url}"
secret = "${{env:PUSH_SECRET}}"
[[subscriptions]]
agent = "auditor"
events = ["stripe.*"]
"#
        ),
    );
    let server = Server::start(
        &config,
        &[
            ("BILLING_TOKEN", "billing-token-1"),
            ("AUDITOR_TOKEN", "auditor-token-2"),
            ("IDLE_TOKEN", "idle-token-3"),
            ("STRIPE_WHSEC", STRIPE_WHSEC),
            ("PUSH_SECRET", PUSH_SECRET),
        ],
    );
    let http = crate::server::client();
    let send = |body: &'static str, signature: String| {
        http.post(server.url("/hooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
    };
    let paid = r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;
    let refund = r#"{"id":"evt_2","object":"event","type":"charge.refunded","data":{"object":{"id":"ch_1"}}}"#;
    for (body, duplicate) in [(paid, false), (refund, false), (paid, true)] {
        let response = send(body, stripe_signature(body)).await.expect("answered");
        assert_eq!(response.status(), 200);
        let ack: serde_json::Value = response.json().await.expect("json");
        assert_eq!(ack["duplicate"], duplicate, "{ack}");
    }
    let forged = send(paid, stripe_signature(refund))
        .await
        .expect("answered");
    assert_eq!(forged.status(), 401);

    // Push: only the billing agent's types, once, verifiable with the official library.
    let pushed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let notified = pushes.1.notified();
            if !pushes.0.lock().expect("lock").is_empty() {
                return pushes.0.lock().expect("lock").clone();
            }
            notified.await;
        }
    })
    .await
    .expect("a push arrived");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    let messages = serde_json::json!(pushed
        .iter()
        .map(|(headers, body)| serde_json::json!({"headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(), "body": body}))
        .collect::<Vec<_>>());
    let library = python_package(
        "standardwebhooks==1.1.0",
        "import standardwebhooks.webhooks",
    );
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
messages = json.load(sys.stdin)
for m in messages:
    event = Webhook(sys.argv[1]).verify(m["body"], m["headers"])
    print(event["id"], event["type"], event["data"]["data"]["object"]["id"])
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, PUSH_SECRET])
        .env("PYTHONPATH", &library)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(messages.to_string().as_bytes())
        .expect("write");
    let verified = child.wait_with_output().expect("ran");
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert_eq!(
        text(&verified.stdout),
        "evt_1 stripe.payment_intent.succeeded pi_1\n"
    );

    // Pull: what each agent's subscriptions allow.
    let pull = |token: &'static str, query: &'static str| {
        http.get(server.url(&format!("/v1/events{query}")))
            .bearer_auth(token)
            .send()
    };
    let ids = |body: serde_json::Value| -> Vec<String> {
        body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event"]["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let all: serde_json::Value = pull("auditor-token-2", "")
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(all.clone()), ["evt_1", "evt_2"]);
    let first_offset = all["events"][0]["offset"].as_u64().expect("offset");
    let refunds: serde_json::Value = pull("auditor-token-2", "?types=stripe.charge.*")
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(refunds), ["evt_2"]);
    let billing: serde_json::Value = pull("billing-token-1", "")
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ids(billing),
        ["evt_1"],
        "an agent reads only its subscriptions' types"
    );
    assert_eq!(pull("idle-token-3", "").await.expect("pull").status(), 403);
    assert_eq!(pull("wrong", "").await.expect("pull").status(), 401);

    // Stream: resumes after Last-Event-ID; stays open across the shutdown signal.
    let mut stream = http
        .get(server.url("/v1/events/stream"))
        .bearer_auth("auditor-token-2")
        .header("last-event-id", first_offset.to_string())
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.chunk())
            .await
            .expect("an event in time")
            .expect("chunk")
            .expect("open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("\"id\":\"evt_2\""), "{received}");
    assert!(!received.contains("\"id\":\"evt_1\""), "{received}");

    // Replay everything to the push subscription: the same event again, with the same id.
    let config_path = config.clone();
    let replayed = tokio::task::spawn_blocking(move || {
        crate::wireline()
            .args([
                "events",
                "replay",
                "--from",
                "2000-01-01T00:00:00Z",
                "--to",
                "billing-1",
                "-c",
            ])
            .arg(&config_path)
            .envs([
                ("BILLING_TOKEN", "billing-token-1"),
                ("AUDITOR_TOKEN", "auditor-token-2"),
                ("IDLE_TOKEN", "idle-token-3"),
                ("STRIPE_WHSEC", STRIPE_WHSEC),
                ("PUSH_SECRET", PUSH_SECRET),
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert!(replayed.status.success(), "{}", text(&replayed.stderr));
    assert!(
        text(&replayed.stdout).contains("replayed offsets"),
        "{}",
        text(&replayed.stdout)
    );
    let pushed = pushes.0.lock().expect("lock").clone();
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    let ids: Vec<String> = pushed
        .iter()
        .map(|(headers, _)| {
            headers
                .iter()
                .find(|(k, _)| k == "webhook-id")
                .expect("id")
                .1
                .clone()
        })
        .collect();
    assert_eq!(ids, ["evt_1", "evt_1"], "replayed with its original id");
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(
        code,
        Some(0),
        "an open stream does not hold up the shutdown: {log}"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_by_cli_and_api() {
    // A receiver that fails until told to recover.
    type Flaky = Arc<(
        std::sync::atomic::AtomicBool,
        Mutex<Vec<String>>,
        tokio::sync::Notify,
    )>;
    let flaky: Flaky = Arc::default();
    let app = Router::new()
        .fallback(
            |State(flaky): State<Flaky>, headers: HeaderMap| async move {
                let id = headers["webhook-id"]
                    .to_str()
                    .unwrap_or_default()
                    .to_owned();
                flaky.1.lock().expect("lock").push(id);
                flaky.2.notify_waiters();
                if flaky.0.load(std::sync::atomic::Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            },
        )
        .with_state(Arc::clone(&flaky));
    let url = format!("{}/in", crate::serve(app).await);
    let seen = |n: usize| {
        let flaky = Arc::clone(&flaky);
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(20), async {
                loop {
                    let notified = flaky.2.notified();
                    if flaky.1.lock().expect("lock").len() >= n {
                        return;
                    }
                    notified.await;
                }
            })
            .await
            .expect("pushes in time");
        }
    };
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        &format!(
            r#"
[agents.billing]
token = "${{env:BILLING_TOKEN}}"
scopes = []
[services.stripe]
base_url = "https://api.stripe.com"
[services.stripe.webhook]
scheme = "stripe"
secret = "${{env:STRIPE_WHSEC}}"
[[subscriptions]]
agent = "billing"
events = ["stripe.*"]
url = "{url}"
secret = "${{env:PUSH_SECRET}}"
schedule = ["0s", "10ms"]
"#
        ),
    );
    let envs = [
        ("BILLING_TOKEN", "billing-token-1"),
        ("STRIPE_WHSEC", STRIPE_WHSEC),
        ("PUSH_SECRET", PUSH_SECRET),
    ];
    let server = Server::start(&config, &envs);
    let http = crate::server::client();
    let body = r#"{"id":"evt_dead","type":"invoice.payment_failed"}"#;
    let response = http
        .post(server.url("/hooks/stripe"))
        .header("stripe-signature", stripe_signature(body))
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 200);
    seen(2).await; // both attempts failed: dead-lettered
    let dead = || async {
        let mut listed: serde_json::Value;
        // The letter is written right after the last failed attempt; ask until it is there.
        loop {
            listed = http
                .get(server.url("/v1/deliveries/dead"))
                .bearer_auth("billing-token-1")
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            if !listed["dead_letters"].as_array().expect("list").is_empty() {
                return listed;
            }
            tokio::task::yield_now().await;
        }
    };
    let listed = tokio::time::timeout(std::time::Duration::from_secs(20), dead())
        .await
        .expect("dead letter listed");
    assert_eq!(listed["dead_letters"][0]["event_id"], "evt_dead");
    assert_eq!(listed["dead_letters"][0]["attempts"], 2);
    assert_eq!(listed["dead_letters"][0]["subscription"], "billing-1");

    let cli = |args: &[&str]| {
        crate::wireline()
            .args(["deliveries"])
            .args(args)
            .arg("-c")
            .arg(&config)
            .envs(envs)
            .output()
            .expect("runs")
    };
    let listed = cli(&["list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("evt_dead"),
        "{}",
        text(&listed.stdout)
    );
    let unknown = cli(&["retry", "nobody-1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("billing-1"),
        "{}",
        text(&unknown.stderr)
    );

    flaky.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let retried = cli(&["retry", "billing-1"]);
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    assert!(
        text(&retried.stdout).contains("queued 1"),
        "{}",
        text(&retried.stdout)
    );
    seen(3).await;
    assert_eq!(
        flaky.1.lock().expect("lock")[2],
        "evt_dead",
        "re-driven with the same webhook-id"
    );
    let not_mine = http
        .post(server.url("/v1/deliveries/someone-else/retry"))
        .bearer_auth("billing-token-1")
        .send()
        .await
        .expect("retry");
    assert_eq!(not_mine.status(), 404);
    let again = http
        .post(server.url("/v1/deliveries/billing-1/retry"))
        .bearer_auth("billing-token-1")
        .send()
        .await
        .expect("retry");
    assert_eq!(again.status(), 202);
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");
}
