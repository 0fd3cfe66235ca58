//! Encryption at rest through the binary: sensitive webhook payloads and sensitive produced
//! events are ciphertext in the database file; agents and the CLI (with the key) read them.

use crate::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_payloads_are_ciphertext_on_disk_and_plaintext_to_agents() {
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        r#"
[security]
encryption_key = "${env:WIRELINE_ENCRYPTION_KEY}"
[agents.crm]
token = "${env:CRM_TOKEN}"
scopes = ["events:read", "events:write:app."]
[[subscriptions]]
agent = "crm"
events = ["stripe.*", "app.*"]
[services.stripe]
base_url = "https://api.stripe.com"
sensitive = true
webhook = { scheme = "stripe", secret = "${env:STRIPE_WEBHOOK_SECRET}" }
[events]
sensitive = ["app.user.*"]
"#,
    );
    let envs = [
        (
            "WIRELINE_ENCRYPTION_KEY",
            "8d1f3c6a0b2e4f5a7c9d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b",
        ),
        ("CRM_TOKEN", "crm-token-1"),
        ("STRIPE_WEBHOOK_SECRET", crate::hooks::STRIPE_WHSEC),
    ];
    let server = Server::start(&config, &envs);
    let http = crate::server::client();
    let body = r#"{"id":"evt_9","object":"event","type":"charge.succeeded","created":1764400000,"data":{"object":{"billing_details":{"email":"grace.hopper@example.com"},"card":"4000056655665556"}}}"#;
    let ingested = http
        .post(server.url("/hooks/stripe"))
        .header("stripe-signature", crate::hooks::stripe_signature(body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(ingested.status(), 200);
    let produced = http
        .post(server.url("/v1/events"))
        .bearer_auth("crm-token-1")
        .json(&serde_json::json!({"specversion": "1.0", "id": "u-1", "source": "crm", "type": "app.user.updated", "subject": "u-1", "data": {"phone": "+1-555-0100-7788"}}))
        .send()
        .await
        .expect("produce");
    assert_eq!(produced.status(), 201);
    let page = http
        .get(server.url("/v1/events"))
        .bearer_auth("crm-token-1")
        .send()
        .await
        .expect("pull")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("grace.hopper@example.com") && page.contains("+1-555-0100-7788"),
        "{page}"
    );
    assert!(
        page.contains(&body[body.find("\"data\"").expect("data") + 7..body.len() - 1]),
        "the signed bytes, exactly: {page}"
    );
    let listed = crate::wireline()
        .args(["events", "list", "--json", "-c"])
        .arg(&config)
        .envs(envs)
        .output()
        .expect("runs");
    assert!(
        crate::text(&listed.stdout).contains("4000056655665556"),
        "the CLI reads with the key"
    );
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("4000056655665556") && !log.contains(envs[0].1));
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("state"))
        .expect("state")
        .flatten()
    {
        raw.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    for plaintext in [
        "grace.hopper@example.com",
        "4000056655665556",
        "+1-555-0100-7788",
    ] {
        assert!(
            !raw.windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "{plaintext} is in the database file"
        );
    }
    // Without the key the CLI refuses instead of showing ciphertext as data.
    let no_key = crate::wireline()
        .args(["events", "list", "-c"])
        .arg(&config)
        .envs([envs[1], envs[2]])
        .output()
        .expect("runs");
    assert_eq!(no_key.status.code(), Some(1));
    assert!(
        crate::text(&no_key.stderr).contains("WIRELINE_ENCRYPTION_KEY"),
        "{}",
        crate::text(&no_key.stderr)
    );
}

/// A payload that looks like Wireline's own sealing marker (`{"wlsealed": ...}`) is data like
/// any other: produced events and webhooks that carry one are stored and read back
/// unchanged, and the events after them on the page still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_shaped_like_sealed_fields_read_back_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        r#"
[security]
encryption_key = "${env:WIRELINE_ENCRYPTION_KEY}"
[agents.crm]
token = "${env:CRM_TOKEN}"
scopes = ["events:read", "events:write:app."]
[[subscriptions]]
agent = "crm"
events = ["stripe.*", "app.*"]
[services.stripe]
base_url = "https://api.stripe.com"
webhook = { scheme = "stripe", secret = "${env:STRIPE_WEBHOOK_SECRET}" }
[events]
sensitive_paths = { "app.user.*" = ["data.phone"] }
"#,
    );
    let envs = [
        (
            "WIRELINE_ENCRYPTION_KEY",
            "8d1f3c6a0b2e4f5a7c9d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b",
        ),
        ("CRM_TOKEN", "crm-token-1"),
        ("STRIPE_WEBHOOK_SECRET", crate::hooks::STRIPE_WHSEC),
    ];
    let server = Server::start(&config, &envs);
    let http = crate::server::client();
    let body = r#"{"id":"evt_m","object":"event","type":"charge.succeeded","created":1764400000,"data":{"object":{"metadata":{"wlsealed":"wl1:k1:AAAA"}}}}"#;
    let ingested = http
        .post(server.url("/hooks/stripe"))
        .header("stripe-signature", crate::hooks::stripe_signature(body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(ingested.status(), 200);
    let shaped = serde_json::json!({"wlsealed": "not ours"});
    for (id, data) in [
        (
            "u-1",
            serde_json::json!({"phone": "+1-555-0100", "note": shaped}),
        ),
        ("u-2", serde_json::json!({"phone": shaped, "other": 1})),
        ("u-3", serde_json::json!({"phone": "+1-555-0199"})),
    ] {
        let produced = http
            .post(server.url("/v1/events"))
            .bearer_auth("crm-token-1")
            .json(&serde_json::json!({"specversion": "1.0", "id": id, "source": "crm", "type": "app.user.updated", "wlencrypted": "forged", "wlsealedpaths": ["data.other"], "data": data}))
            .send()
            .await
            .expect("produce");
        assert_eq!(produced.status(), 201, "{id}");
    }
    let page = http
        .get(server.url("/v1/events"))
        .bearer_auth("crm-token-1")
        .send()
        .await
        .expect("pull");
    assert_eq!(page.status(), 200);
    let page: serde_json::Value = page.json().await.expect("json");
    let events: Vec<&serde_json::Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["event"])
        .collect();
    assert_eq!(events.len(), 4, "{page}");
    assert_eq!(
        events[0]["data"]["data"]["object"]["metadata"],
        serde_json::json!({"wlsealed": "wl1:k1:AAAA"})
    );
    assert_eq!(events[1]["data"]["note"], shaped);
    assert_eq!(events[1]["data"]["phone"], "+1-555-0100");
    assert_eq!(
        events[2]["data"]["phone"], shaped,
        "sealed, and opened back"
    );
    assert_eq!(events[3]["data"]["phone"], "+1-555-0199");
    for event in &events[1..] {
        assert!(
            event.get("wlencrypted").is_none() && event.get("wlsealedpaths").is_none(),
            "a producer's wl* attributes are dropped: {event}"
        );
    }
    drop(server);
}
