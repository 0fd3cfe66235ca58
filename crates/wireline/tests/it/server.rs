//! The server: health, readiness, metrics, problems, limits, shutdown, and no leaked secrets.

use std::path::PathBuf;

use crate::{Server, run, text, wireline};

fn write_config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("wireline.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = \"64KiB\"\nshutdown_grace = \"5s\"\n[storage]\npath = \"state/w.db\"\n{extra}"
    );
    std::fs::create_dir_all(dir.join("state")).expect("mkdir");
    std::fs::write(&path, config).expect("write config");
    path
}

fn client() -> reqwest::Client {
    // Wireline's own outbound client: rustls with its provider, no redirects.
    wireline_direct::client::build(None).expect("client")
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_problems_then_shuts_down_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let server = Server::start(&config, &[]);
    let http = client();

    let health = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.expect("json")["status"],
        "ok"
    );
    let ready = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);

    let missing = http.get(server.url("/nope")).send().await.expect("404");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = missing.json().await.expect("problem json");
    assert_eq!(problem["type"], "https://wireline.dev/problems/not-found");
    assert_eq!(problem["status"], 404);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/nope"))
    );

    let wrong_method = http.post(server.url("/healthz")).send().await.expect("405");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );

    let too_big = http
        .post(server.url("/healthz"))
        .body(vec![b'x'; 65 * 1024])
        .send()
        .await
        .expect("413");
    assert_eq!(too_big.status(), 413);
    assert_eq!(
        too_big.headers()["connection"],
        "close",
        "the unread body makes the connection unusable"
    );
    let problem: serde_json::Value = too_big.json().await.expect("problem json");
    assert_eq!(
        problem["type"],
        "https://wireline.dev/problems/body-too-large"
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("64KiB") && d.contains("body_limit"))
    );

    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let body = metrics.text().await.expect("text");
    assert!(body.contains("wireline_build_info{version="), "{body}");
    assert!(
        body.contains(
            "wireline_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{body}"
    );
    assert!(body.contains("status=\"413\""), "{body}");
    assert!(
        body.contains("wireline_http_request_duration_seconds_bucket"),
        "{body}"
    );

    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("shutting down") && log.contains("\"stopped\""),
        "{log}"
    );
    let wal = dir.path().join("state/w.db-wal");
    let wal_size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_size, 0,
        "the WAL is checkpointed into the database at shutdown"
    );
}

#[test]
fn port_in_use_and_unwritable_storage_are_explained() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wireline.toml");
    std::fs::write(&path, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).expect("write");
    let output = wireline()
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot listen on 127.0.0.1:{port}")) && last.contains("free port"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("not-a-folder"), "x").expect("write");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"not-a-folder/w.db\"\n",
    )
    .expect("write");
    let output = wireline()
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot open storage") && last.contains("[storage] path"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secret_values_never_reach_logs_errors_or_metrics() {
    const SECRETS: [(&str, &str); 3] = [
        ("TEST_AGENT_TOKEN", "agent-token-4f1c9e2b7a"),
        ("TEST_UPSTREAM_KEY", "upstream-key-93bd01aa5c"),
        ("TEST_HOOK_SECRET", "hook-secret-7d2e55c0f1"),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("subscriber.secret"),
        "file-secret-0c8a3b6e\n",
    )
    .expect("write");
    let config = write_config(
        dir.path(),
        r#"
[agents.bot]
token = "${env:TEST_AGENT_TOKEN}"
scopes = ["svc:read", "events:read"]
[services.svc]
base_url = "http://127.0.0.1:9"
auth = { header = "X-Api-Key", value = "${env:TEST_UPSTREAM_KEY}" }
[services.svc.webhook]
scheme = "standard"
secret = "${env:TEST_HOOK_SECRET}"
[[subscriptions]]
agent = "bot"
events = ["svc.*"]
url = "http://127.0.0.1:9/events"
secret = "${file:subscriber.secret}"
"#,
    );
    let mut envs: Vec<(&str, &str)> = SECRETS.to_vec();
    envs.push(("WIRELINE_LOG", "trace"));
    let server = Server::start(&config, &envs);
    let http = client();
    // Failing requests, one carrying a secret the way an agent would.
    let _ = http
        .get(server.url("/proxy/svc/v1/x"))
        .bearer_auth(SECRETS[0].1)
        .send()
        .await;
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let _ = http
        .post(server.url("/hooks/svc"))
        .body(vec![b'x'; 70 * 1024])
        .send()
        .await;
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0));
    let check = wireline()
        .args(["check", "-c"])
        .arg(&config)
        .envs(SECRETS.iter().copied())
        .output()
        .expect("check");
    let everything = format!(
        "{log}\n{metrics}\n{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(
        log.contains("TEST_UPSTREAM_KEY") || log.contains("Secret("),
        "the config was logged at debug: {log}"
    );
    for secret in SECRETS
        .iter()
        .map(|(_, value)| *value)
        .chain(["file-secret-0c8a3b6e"])
    {
        assert!(
            !everything.contains(secret),
            "secret value {secret} leaked:\n{everything}"
        );
    }
}

#[test]
fn the_quickstart_config_passes_check() {
    let quickstart =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let output = run(&["check", "-c", quickstart.to_str().expect("utf-8")]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}
