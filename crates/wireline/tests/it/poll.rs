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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
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
