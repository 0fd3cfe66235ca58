//! The server: health, readiness, metrics, problems, limits, shutdown, and no leaked secrets.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Server, run, text, wireline};

pub fn write_config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("wireline.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = \"64KiB\"\nshutdown_grace = \"5s\"\n[storage]\npath = \"state/w.db\"\n{extra}"
    );
    std::fs::create_dir_all(dir.join("state")).expect("mkdir");
    std::fs::write(&path, config).expect("write config");
    path
}

pub fn client() -> reqwest::Client {
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
    // Invented methods share one metric label, so they cannot grow the label set.
    for invented in ["BREW", "WHEN"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).expect("a method");
        let refused = http
            .request(method, server.url("/healthz"))
            .send()
            .await
            .expect("405");
        assert_eq!(refused.status(), 405);
    }

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
        body.contains(
            "wireline_http_requests_total{method=\"OTHER\",route=\"/healthz\",status=\"405\"} 2"
        ),
        "{body}"
    );
    assert!(!body.contains("BREW"), "{body}");
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
        // Standard Webhooks secrets: whsec_ and base64 ("hook-secret-7d2e55c0f1").
        ("TEST_HOOK_SECRET", "whsec_aG9vay1zZWNyZXQtN2QyZTU1YzBmMQ=="),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("subscriber.secret"),
        "whsec_ZmlsZS1zZWNyZXQtMGM4YTNiNmU=\n",
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
retry = { attempts = 1 }
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
    // A forged webhook: the refusal says which check failed, and nothing more.
    let forged = http
        .post(server.url("/hooks/svc"))
        .header("webhook-id", "msg_1")
        .header(
            "webhook-timestamp",
            jiff::Timestamp::now().as_second().to_string(),
        )
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(forged.status(), 401);
    let forged = forged.text().await.expect("problem");
    assert!(forged.contains("bad-signature"), "{forged}");
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0));
    let check = wireline()
        .args(["check", "-c"])
        .arg(&config)
        .envs(SECRETS.iter().copied())
        .output()
        .expect("check");
    let everything = format!(
        "{log}\n{metrics}\n{forged}\n{}{}",
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
        .chain(["whsec_ZmlsZS1zZWNyZXQtMGM4YTNiNmU="])
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

/// An upstream that holds each request until released, and reports when one arrived.
struct HeldUpstream {
    address: std::net::SocketAddr,
    arrived: tokio::sync::mpsc::UnboundedReceiver<String>,
    release: Arc<tokio::sync::Notify>,
}

async fn held_upstream() -> HeldUpstream {
    use axum::extract::State;
    let (tell, arrived) = tokio::sync::mpsc::unbounded_channel::<String>();
    let release = Arc::new(tokio::sync::Notify::new());
    let state = (tell, Arc::clone(&release));
    let app = axum::Router::new()
        .fallback(
            |State((tell, release)): State<(
                tokio::sync::mpsc::UnboundedSender<String>,
                Arc<tokio::sync::Notify>,
            )>,
             uri: axum::http::Uri,
             headers: axum::http::HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tell.send(format!("{} {auth}", uri));
                release.notified().await;
                axum::Json(serde_json::json!({"id": "thing_42", "path": uri.path()}))
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HeldUpstream {
        address,
        arrived,
        release,
    }
}

const DIRECT_CONFIG: &str = r#"
[agents.bot]
token = "${env:BOT_TOKEN}"
scopes = ["svc:read", "svc:get_thing"]
[services.svc]
base_url = "http://UPSTREAM/v1"
auth = { bearer = "${env:SVC_KEY}" }
[services.svc.operations.get_thing]
method = "GET"
path = "/things/{id}"
"#;

#[tokio::test]
async fn an_in_flight_proxied_call_finishes_during_shutdown_and_is_audited() {
    let mut upstream = held_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &DIRECT_CONFIG.replace("UPSTREAM", &upstream.address.to_string()),
    );
    let envs = [
        ("BOT_TOKEN", "bot-token-abc123"),
        ("SVC_KEY", "svc-key-def456"),
    ];
    let mut server = Server::start(&config, &envs);
    let http = client();
    let call = tokio::spawn(
        http.get(server.url("/proxy/svc/things/42?expand=all"))
            .bearer_auth("bot-token-abc123")
            .send(),
    );
    let seen = upstream
        .arrived
        .recv()
        .await
        .expect("the upstream got the request");
    assert_eq!(
        seen, "/v1/things/42?expand=all Bearer svc-key-def456",
        "the service key, not the agent token"
    );
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    server.wait_for_log("shutting down");
    assert!(
        !call.is_finished(),
        "the call is in flight while the server drains"
    );
    upstream.release.notify_one();
    let response = call
        .await
        .expect("task")
        .expect("the in-flight call completes");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json")["id"],
        "thing_42"
    );
    let (code, log) = server.terminate_after_signal();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("svc-key-def456") && !log.contains("bot-token-abc123"),
        "{log}"
    );
    // The drained call's audit event was stored before the store closed.
    let store =
        wireline_store::sqlite::SqliteStore::open(&dir.path().join("state/w.db")).expect("reopen");
    use wireline_store::EventLog;
    let events = store
        .read(wireline_core::Offset::START, 100)
        .await
        .expect("read");
    assert!(
        events
            .iter()
            .any(|e| e.ty == "wireline.direct.call" && e.body.contains("/v1/things/42")),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_proxy_speaks_problem_json_for_agents() {
    let upstream = held_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &DIRECT_CONFIG.replace("UPSTREAM", &upstream.address.to_string()),
    );
    let server = Server::start(
        &config,
        &[
            ("BOT_TOKEN", "bot-token-abc123"),
            ("SVC_KEY", "svc-key-def456"),
        ],
    );
    let http = client();
    let cases = [
        (http.get(server.url("/proxy/svc/x")), 401, "unauthorized"),
        (
            http.get(server.url("/proxy/svc/x")).bearer_auth("nope"),
            401,
            "unauthorized",
        ),
        (
            http.post(server.url("/proxy/svc/x"))
                .bearer_auth("bot-token-abc123"),
            403,
            "forbidden",
        ),
        (
            http.get(server.url("/proxy/nope/x"))
                .bearer_auth("bot-token-abc123"),
            404,
            "unknown-service",
        ),
        (
            http.post(server.url("/v1/operations/svc/get_thing"))
                .bearer_auth("bot-token-abc123")
                .body("{}"),
            400,
            "bad-request",
        ),
        (
            http.post(server.url("/v1/operations/svc/get_thing"))
                .bearer_auth("bot-token-abc123")
                .body("not json"),
            400,
            "bad-request",
        ),
        (
            http.post(server.url("/v1/operations/svc/nope"))
                .bearer_auth("bot-token-abc123")
                .body("{}"),
            404,
            "unknown-service",
        ),
    ];
    for (request, status, slug) in cases {
        let response = request.send().await.expect("response");
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.expect("problem");
        assert_eq!(
            problem["type"],
            format!("https://wireline.dev/problems/{slug}"),
            "{problem}"
        );
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Sent raw: HTTP clients normalise `%2e%2e` away before it leaves, attackers do not.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for path in [
        "/proxy/svc/%2e%2e/admin",
        "/proxy/svc/..%2fadmin",
        "/proxy/svc/a/../../admin",
    ] {
        let mut stream = tokio::net::TcpStream::connect(&server.address)
            .await
            .expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bot-token-abc123\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(response.contains("forbidden-target"), "{path}: {response}");
    }
    drop(server);
}

#[tokio::test]
async fn wireline_call_runs_a_named_operation() {
    let mut upstream = held_upstream().await;
    upstream.release.notify_one(); // answer at once
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &DIRECT_CONFIG.replace("UPSTREAM", &upstream.address.to_string()),
    );
    let config_path = config.clone();
    let output = tokio::task::spawn_blocking(move || {
        wireline()
            .args(["call", "-c"])
            .arg(&config_path)
            .args(["svc", "get_thing", "--param", "id=42"])
            .envs([
                ("BOT_TOKEN", "bot-token-abc123"),
                ("SVC_KEY", "svc-key-def456"),
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let body: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("json body on stdout");
    assert_eq!(body["path"], "/v1/things/42");
    assert_eq!(
        upstream.arrived.recv().await.as_deref(),
        Some("/v1/things/42 Bearer svc-key-def456")
    );
    let missing = wireline()
        .args(["call", "-c"])
        .arg(&config)
        .args(["svc", "get_thing"])
        .envs([("BOT_TOKEN", "x"), ("SVC_KEY", "y")])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("missing parameter `id`"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test]
async fn direct_calls_show_in_the_metrics() {
    let upstream = held_upstream().await;
    upstream.release.notify_one();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &DIRECT_CONFIG
            .replace("UPSTREAM", &upstream.address.to_string())
            .replace(
                "auth = { bearer = \"${env:SVC_KEY}\" }\n",
                "auth = { bearer = \"${env:SVC_KEY}\" }\nrate_limit = \"100/s\"\n",
            ),
    );
    let server = Server::start(
        &config,
        &[
            ("BOT_TOKEN", "bot-token-abc123"),
            ("SVC_KEY", "svc-key-def456"),
        ],
    );
    let http = client();
    let response = http
        .get(server.url("/proxy/svc/things/42"))
        .bearer_auth("bot-token-abc123")
        .send()
        .await
        .expect("proxied");
    assert_eq!(response.status(), 200);
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .to_owned()
    };
    assert!(
        line("wireline_direct_requests_total{").contains("agent=\"bot\"")
            && line("wireline_direct_requests_total{").ends_with(" 1")
    );
    assert!(line("wireline_direct_attempts_total{service=\"svc\"}").ends_with(" 1"));
    assert!(line("wireline_direct_retries_total{service=\"svc\"}").ends_with(" 0"));
    assert!(line("wireline_direct_breaker_state{service=\"svc\"}").ends_with(" 0"));
    assert!(
        line("wireline_direct_request_duration_seconds_count{service=\"svc\"}").ends_with(" 1")
    );
    let usage: f64 = line("wireline_direct_limiter_usage_ratio{")
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a ratio");
    assert!(usage > 0.0 && usage <= 0.02, "one call of 100/s: {usage}");
    assert!(!metrics.contains("bot-token-abc123") && !metrics.contains("svc-key-def456"));
    drop(server);
}

#[tokio::test]
async fn the_listener_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(
            "[server]\n",
            "[server]\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n",
        ),
    )
    .expect("write");
    let server = Server::start(&config, &[]);
    let port = server.address.rsplit(':').next().expect("port").to_owned();
    let trusting =
        wireline_direct::client::build(Some(&dir.path().join("cert.pem"))).expect("client");
    let health = trusting
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("HTTPS works");
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    let strict = wireline_direct::client::build_with(
        Some(&dir.path().join("cert.pem")),
        wireline_config::model::MinTls::Tls13,
    )
    .expect("client");
    assert_eq!(
        strict
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .expect("TLS 1.3")
            .status(),
        200
    );
    assert!(
        client()
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "an untrusted certificate is refused by a verifying client"
    );
    assert!(
        client()
            .get(format!("http://localhost:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "plain HTTP is not served on the TLS port"
    );
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");
}

/// The redaction promise, extended to OAuth: the access token a provider issues and the
/// client secret never reach the log (even at trace), the metrics, an error or the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_never_reach_logs_metrics_errors_or_events() {
    const ACCESS: &str = "oauth-access-token-6b1f0c9d2e";
    const REFRESHED: &str = "oauth-refresh-token-83aa71c4b5";
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"access_token": ACCESS, "token_type": "Bearer", "expires_in": 3600, "refresh_token": REFRESHED}))
            }),
        )
        .fallback(|headers: axum::http::HeaderMap| async move {
            let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {ACCESS}"));
            if ok { (axum::http::StatusCode::OK, "{}") } else { (axum::http::StatusCode::UNAUTHORIZED, "{}") }
        });
    let upstream = crate::serve(app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agents.bot]
token = "${{env:TEST_AGENT_TOKEN}}"
scopes = ["crm:read", "events:read"]
[[subscriptions]]
agent = "bot"
events = ["wireline.*"]
[services.crm]
base_url = "{upstream}"
auth = {{ oauth2 = {{ token_url = "{upstream}/token", client_id = "app", client_secret = "${{env:CRM_CLIENT_SECRET}}" }} }}
"#
        ),
    );
    let envs = [
        ("TEST_AGENT_TOKEN", "agent-token-oauth-1"),
        ("CRM_CLIENT_SECRET", "client-secret-51ff0e2a"),
        ("WIRELINE_LOG", "trace"),
    ];
    let server = Server::start(&config, &envs);
    let http = client();
    let reply = http
        .get(server.url("/proxy/crm/contacts/1"))
        .bearer_auth(envs[0].1)
        .send()
        .await
        .expect("call");
    assert_eq!(reply.status(), 200);
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Audit events land a few milliseconds after the reply.
    let events = crate::eventually("the refresh's audit event", || async {
        let events = http
            .get(server.url("/v1/events?types=wireline.*"))
            .bearer_auth(envs[0].1)
            .send()
            .await
            .expect("pull")
            .text()
            .await
            .expect("text");
        events
            .contains("wireline.oauth.refreshed")
            .then_some(events)
    })
    .await;
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0));
    for secret in [ACCESS, REFRESHED, envs[1].1] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(!events.contains(secret), "{secret} in the events");
    }
}
