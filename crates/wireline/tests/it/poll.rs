//! A polled source through the binary: the scheduler polls a JSON list, the items reach an
//! agent by pull, and a restart does not store them again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_items_reach_agents_once_across_restarts() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/api/tickets",
            get(|State(calls): State<Arc<AtomicUsize>>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({
                    "results": [
                        {"ticket": {"id": 1, "kind": "opened", "at": "2026-11-01T10:00:00Z"}},
                        {"ticket": {"id": 2, "kind": "closed", "at": "2026-11-01T11:00:00Z"}}
                    ]
                }))
            }),
        )
        .with_state(Arc::clone(&calls));
    let url = crate::serve(app).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        &format!(
            r#"
[agents.support]
token = "${{env:SUPPORT_TOKEN}}"
scopes = []
[services.helpdesk]
base_url = "{url}/api"
[services.helpdesk.poll]
preset = "json-list"
every = "1s"
path = "/tickets"
items = "results"
id = "ticket.id"
time = "ticket.at"
type = "ticket.kind"
[[subscriptions]]
agent = "support"
events = ["helpdesk.*"]
"#
        ),
    );
    let envs = [("SUPPORT_TOKEN", "support-token-1")];
    let http = crate::server::client();
    for round in 0..2 {
        let server = Server::start(&config, &envs);
        let before = calls.load(Ordering::SeqCst);
        // Wait (bounded) for this run's first poll.
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while calls.load(Ordering::SeqCst) == before {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the scheduler polled");
        let body: serde_json::Value = loop {
            let body: serde_json::Value = http
                .get(server.url("/v1/events"))
                .bearer_auth("support-token-1")
                .send()
                .await
                .expect("pull")
                .json()
                .await
                .expect("json");
            if body["events"].as_array().is_some_and(|e| e.len() >= 2) {
                break body;
            }
            tokio::task::yield_now().await;
        };
        let seen: Vec<(String, String)> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["event"]["id"].as_str().expect("id").to_owned(),
                    e["event"]["type"].as_str().expect("type").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("1".to_owned(), "helpdesk.opened".to_owned()),
                ("2".to_owned(), "helpdesk.closed".to_owned())
            ],
            "round {round}: each item once, typed from the item"
        );
        let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
            .await
            .expect("joined");
        assert_eq!(code, Some(0), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hybrid_reports_and_alerts_what_the_webhooks_missed() {
    use hmac::{Hmac, Mac};
    let now = jiff::Timestamp::now().as_second();
    let events: Vec<serde_json::Value> = (0..12)
        .map(|n| serde_json::json!({"id": format!("evt_{n:02}"), "object": "event", "created": now - 100 + n, "type": "invoice.paid", "data": {"object": {}}}))
        .collect();
    let listed = events.clone();
    // Stripe's events list, newest first, one page.
    let app = Router::new().route(
        "/v1/events",
        get(move || {
            let mut data = listed.clone();
            data.reverse();
            async move {
                axum::Json(serde_json::json!({"object": "list", "has_more": false, "data": data}))
            }
        }),
    );
    let url = crate::serve(app).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        &format!(
            r#"
[agents.finance]
token = "${{env:FINANCE_TOKEN}}"
scopes = []
[services.stripe]
base_url = "{url}"
auth = {{ bearer = "${{env:STRIPE_KEY}}" }}
[services.stripe.webhook]
scheme = "stripe"
secret = "${{env:STRIPE_WHSEC}}"
[services.stripe.poll]
preset = "stripe-events"
reconcile = true
every = "1s"
[[subscriptions]]
agent = "finance"
events = ["stripe.*", "wireline.alert.*"]
"#
        ),
    );
    let envs = [
        ("FINANCE_TOKEN", "finance-token-1"),
        ("STRIPE_KEY", "sk_upstream_0001"),
        ("STRIPE_WHSEC", "whsec_hybrid_test_secret"),
    ];
    let server = Server::start(&config, &envs);
    let http = crate::server::client();
    // The webhooks: evt_03 and evt_07 never arrive; evt_05 arrives twice.
    for n in [0, 1, 2, 4, 5, 5, 6, 8, 9, 10, 11] {
        let body = events[n].to_string();
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(b"whsec_hybrid_test_secret").expect("key");
        mac.update(format!("{now}.{body}").as_bytes());
        let signature = format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()));
        let response = http
            .post(server.url("/hooks/stripe"))
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .expect("webhook");
        assert_eq!(response.status(), 200);
    }
    // The reconciling poll finds the two missed ones; the alert follows.
    let pulled = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let body: serde_json::Value = http
                .get(server.url("/v1/events"))
                .bearer_auth("finance-token-1")
                .send()
                .await
                .expect("pull")
                .json()
                .await
                .expect("json");
            let events = body["events"].as_array().cloned().unwrap_or_default();
            if events
                .iter()
                .any(|e| e["event"]["type"] == "wireline.alert.webhook_misses")
            {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the poll reconciled and alerted");
    let invoices = pulled
        .iter()
        .filter(|e| e["event"]["type"] == "stripe.invoice.paid")
        .count();
    assert_eq!(invoices, 12, "every event once");

    let report: serde_json::Value = http
        .get(server.url("/v1/reconciliation?service=stripe"))
        .bearer_auth("finance-token-1")
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("json");
    let stripe = &report["reports"][0];
    assert_eq!(
        (
            stripe["total"].as_u64(),
            stripe["webhook_missed"].as_u64(),
            stripe["webhook_duplicates"].as_u64()
        ),
        (Some(12), Some(2), Some(1)),
        "{report}"
    );
    let cli = crate::wireline()
        .args(["reconcile", "report", "-c"])
        .arg(&config)
        .envs(envs)
        .output()
        .expect("runs");
    assert!(cli.status.success(), "{}", crate::text(&cli.stderr));
    let table = crate::text(&cli.stdout);
    assert!(table.contains("missed by webhooks     2"), "{table}");
    assert!(table.contains("webhook capture        83.33 %"), "{table}");
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");
}
