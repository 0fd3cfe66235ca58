//! Official SDKs work unchanged through the proxy: the Stripe Python SDK (stripe==16.1.0,
//! installed into the target folder if the machine lacks it) against a Stripe-shaped upstream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::{Server, text};

const STRIPE_SDK: &str = "stripe==16.1.0";
const SERVICE_KEY: &str = "sk_upstream_fake_0001";

/// A folder on PYTHONPATH where `check` (Python) succeeds: none needed if the machine has the
/// package, else `spec` installed once with pip into the target folder.
pub fn python_package(spec: &str, check: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("python-{spec}"));
    let importable = |path: &Path| {
        Command::new("python3")
            .args(["-c", check])
            .env("PYTHONPATH", path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable(&folder) {
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&folder)
            .arg(spec)
            .status()
            .expect("python3 -m pip runs");
        assert!(installed.success(), "pip install {spec} failed");
        assert!(importable(&folder), "{check} fails after installing {spec}");
    }
    folder
}

fn stripe_sdk_path() -> PathBuf {
    python_package(
        STRIPE_SDK,
        "import stripe; assert stripe.VERSION == '16.1.0'",
    )
}

#[derive(Default)]
struct Stripe {
    customers: Mutex<BTreeMap<String, serde_json::Value>>,
    creates: Mutex<u32>,
}

fn stripe_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": {"type": "invalid_request_error", "code": code, "message": message}}))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {SERVICE_KEY}"))
}

async fn create(State(stripe): State<Arc<Stripe>>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&headers) {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "api_key_invalid",
            "Invalid API Key provided",
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut creates = stripe.creates.lock().expect("lock");
    *creates += 1;
    let id = format!("cus_{:04}", *creates);
    let mut metadata = serde_json::Map::new();
    let mut email = serde_json::Value::Null;
    for (key, value) in form {
        if key == "email" {
            email = value.into();
        } else if let Some(inner) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            metadata.insert(inner.to_owned(), value.into());
        }
    }
    let customer = serde_json::json!({"id": id, "object": "customer", "email": email, "metadata": metadata, "livemode": false});
    stripe
        .customers
        .lock()
        .expect("lock")
        .insert(id, customer.clone());
    axum::Json(customer).into_response()
}

async fn retrieve(
    State(stripe): State<Arc<Stripe>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "api_key_invalid",
            "Invalid API Key provided",
        );
    }
    match stripe.customers.lock().expect("lock").get(&id) {
        Some(customer) => axum::Json(customer.clone()).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "resource_missing",
            &format!("No such customer: '{id}'"),
        ),
    }
}

#[tokio::test]
async fn the_official_stripe_sdk_works_unchanged_through_the_proxy() {
    let sdk = tokio::task::spawn_blocking(stripe_sdk_path)
        .await
        .expect("sdk path");
    let stripe = Arc::new(Stripe::default());
    let app = Router::new()
        .route("/v1/customers", post(create))
        .route("/v1/customers/{id}", get(retrieve))
        .with_state(Arc::clone(&stripe));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("wireline.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[agents.billing-bot]\ntoken = \"${{env:BOT}}\"\nscopes = [\"stripe:read\", \"stripe:write\"]\n\
             [services.stripe]\nbase_url = \"http://{upstream}\"\nauth = {{ bearer = \"${{env:STRIPE_KEY}}\" }}\n"
        ),
    )
    .expect("write config");
    let server = Server::start(
        &config,
        &[
            ("BOT", "agent-token-for-billing-bot"),
            ("STRIPE_KEY", SERVICE_KEY),
        ],
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/stripe_sdk.py");
    let proxy = server.url("/proxy/stripe");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("PYTHONPATH", sdk)
            .env("AGENT_TOKEN", "agent-token-for-billing-bot")
            .env("WIRELINE_PROXY", proxy)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(seen["created"], "cus_0001");
    assert_eq!(
        seen["again"], "cus_0001",
        "the SDK's idempotency key replayed the first create"
    );
    assert_eq!(seen["fetched_email"], "jo@example.com");
    assert_eq!(seen["metadata"]["order"], "7");
    assert_eq!(
        seen["missing"],
        serde_json::json!({"status": 404, "code": "resource_missing"}),
        "Stripe's errors pass through"
    );
    assert_eq!(
        *stripe.creates.lock().expect("lock"),
        1,
        "one customer created upstream"
    );
    drop(server);
}

/// `wireline mock`, as a user starts it: returns the child and the emulators' base address.
pub fn start_mock(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = crate::wireline()
        .args(["mock", "--port", "0"])
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wireline mock starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("read");
    let address = first
        .strip_prefix("wireline emulators on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

#[tokio::test]
async fn the_official_stripe_sdk_works_against_the_emulator() {
    let sdk = tokio::task::spawn_blocking(stripe_sdk_path)
        .await
        .expect("sdk path");
    let (mut mock, address) = start_mock(&["--service", "stripe"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/stripe_emulator.py");
    let base = format!("{address}/stripe");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("PYTHONPATH", sdk)
            .env("STRIPE_EMULATOR", base)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("joined");
    let _ = mock.kill();
    let _ = mock.wait();
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(seen["customer"].as_str().expect("id").starts_with("cus_"));
    assert_eq!(seen["metadata"], serde_json::json!({"plan": "pro"}));
    assert_eq!(seen["fetched"], "ada@example.com");
    assert_eq!(seen["updated_name"], "Ada Lovelace");
    assert_eq!(seen["idempotent_same_id"], true);
    assert_eq!(seen["created_status"], "requires_payment_method");
    assert_eq!(seen["confirmed_status"], "succeeded");
    assert_eq!(seen["retrieved_status"], "succeeded");
    assert_eq!(seen["charge_paid"], true);
    assert_eq!(
        seen["declined"],
        serde_json::json!({"code": "card_declined", "decline_code": "generic_decline", "status": 402})
    );
    assert_eq!(seen["mismatch"], 400);
    assert_eq!(
        seen["missing"],
        serde_json::json!({"status": 404, "code": "resource_missing"})
    );
    assert_eq!(
        seen["refund"],
        serde_json::json!({"status": "succeeded", "amount": 500})
    );
    assert_eq!(seen["charge_refunded"], 500);
    assert_eq!(seen["charges_listed"], 2);
    let types: Vec<&str> = seen["event_types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| t.as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "charge.refunded",
            "refund.created",
            "payment_intent.payment_failed",
            "charge.failed",
            "payment_intent.created",
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created",
            "customer.updated",
            "customer.created"
        ],
        "every event, newest first, across the SDK's pages"
    );
}
