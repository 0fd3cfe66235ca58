//! Producing to the log and consuming it with a named, committed offset, across a restart.

use crate::Server;
use crate::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_events_are_idempotent_and_consumers_resume_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::server::write_config(
        dir.path(),
        r#"
[agents.shop]
token = "${env:SHOP_TOKEN}"
scopes = ["events:write:order."]
[agents.fulfil]
token = "${env:FULFIL_TOKEN}"
scopes = ["events:read"]
[[subscriptions]]
agent = "fulfil"
events = ["order.*"]
[events.subjects]
"order.*" = "order.id"
"#,
    );
    let envs = [
        ("SHOP_TOKEN", "shop-token-1"),
        ("FULFIL_TOKEN", "fulfil-token-2"),
    ];
    let http = crate::server::client();
    let server = Server::start(&config, &envs);
    let produce = |token: &'static str, body: String| {
        http.post(server.url("/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/cloudevents+json")
            .body(body)
            .send()
    };
    let event = |id: &str| {
        serde_json::json!({"specversion": "1.0", "id": id, "source": "shop/orders", "type": "order.placed", "subject": "ord_1", "data": {"total": 42}}).to_string()
    };
    let first = produce("shop-token-1", event("o-1")).await.expect("append");
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.expect("json");
    let again = produce("shop-token-1", event("o-1")).await.expect("retry");
    assert_eq!(again.status(), 200, "a retried append is idempotent");
    let again: serde_json::Value = again.json().await.expect("json");
    assert_eq!(
        (again["offset"].clone(), again["duplicate"].clone()),
        (first["offset"].clone(), serde_json::json!(true))
    );
    for (body, status, names) in [
        (
            r#"{"specversion":"1.0","id":"x","source":"s"}"#.to_owned(),
            400,
            "`type` is required",
        ),
        (
            r#"{"specversion":"0.3","id":"x","source":"s","type":"t"}"#.to_owned(),
            400,
            "`specversion` must be",
        ),
        ("not json".to_owned(), 400, "not JSON"),
    ] {
        let response = produce("shop-token-1", body).await.expect("answered");
        assert_eq!(response.status(), status);
        let problem = response.text().await.expect("text");
        assert!(problem.contains(names), "{problem}");
    }
    assert_eq!(
        produce("fulfil-token-2", event("o-9"))
            .await
            .expect("answered")
            .status(),
        403
    );
    let other_type = serde_json::json!({"specversion": "1.0", "id": "p-1", "source": "shop/pay", "type": "payment.captured"}).to_string();
    let refused = produce("shop-token-1", other_type).await.expect("answered");
    assert_eq!(
        refused.status(),
        403,
        "events:write:order. covers order.* only"
    );
    assert_eq!(
        produce("shop-token-1", "x".repeat(70 * 1024))
            .await
            .expect("answered")
            .status(),
        413
    );
    produce("shop-token-1", event("o-2")).await.expect("append");

    // The consumer reads, commits the first, and after a restart continues after it.
    let read = |server: &Server| {
        http.get(server.url("/v1/events?consumer=picker"))
            .bearer_auth("fulfil-token-2")
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
    let page: serde_json::Value = read(&server)
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(page.clone()), ["o-1", "o-2"]);
    let committed = http
        .post(server.url("/v1/consumers/picker/commit"))
        .bearer_auth("fulfil-token-2")
        .body(serde_json::json!({"offset": page["events"][0]["offset"]}).to_string())
        .send()
        .await
        .expect("commit");
    assert_eq!(committed.status(), 200);
    let beyond = http
        .post(server.url("/v1/consumers/picker/commit"))
        .bearer_auth("fulfil-token-2")
        .body(r#"{"offset": 999999}"#)
        .send()
        .await
        .expect("commit");
    assert_eq!(beyond.status(), 400);
    // The CLI reads the same log while the server runs.
    let cli = |args: &[&str]| {
        crate::wireline()
            .args(["events"])
            .args(args)
            .arg("-c")
            .arg(&config)
            .envs(envs)
            .output()
            .expect("runs")
    };
    let listed = cli(&["list", "--subject", "ord_1"]);
    assert!(listed.status.success(), "{}", crate::text(&listed.stderr));
    let lines = crate::text(&listed.stdout);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains("order.placed") && lines.contains("o-2"),
        "{lines}"
    );
    let json = cli(&[
        "list",
        "--json",
        "--type",
        "order.*",
        "--source",
        "shop/orders",
    ]);
    let parsed: Vec<serde_json::Value> = crate::text(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0]["event"]["id"], "o-1");
    let bad = cli(&["list", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        crate::text(&bad.stderr).contains("RFC 3339"),
        "{}",
        crate::text(&bad.stderr)
    );
    // tail: the last match, then a new one as it is appended.
    let mut tail = crate::wireline()
        .args(["events", "tail", "-n", "1", "--json", "-c"])
        .arg(&config)
        .envs(envs)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tail");
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(tail.stdout.take().expect("stdout")));
    let (line, mut lines) = tokio::task::spawn_blocking(move || {
        let line = lines.next().expect("a line").expect("read");
        (line, lines)
    })
    .await
    .expect("joined");
    assert!(line.contains("\"o-2\""), "{line}");
    produce("shop-token-1", event("o-3")).await.expect("append");
    let next = tokio::task::spawn_blocking(move || lines.next().expect("a line").expect("read"))
        .await
        .expect("joined");
    assert!(next.contains("\"o-3\""), "{next}");
    let _ = tail.kill();
    let _ = tail.wait();
    let (code, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("joined");
    assert_eq!(code, Some(0), "{log}");

    let server = Server::start(&config, &envs);
    let produce_on = |server: &Server, body: String| {
        let request = http
            .post(server.url("/v1/events"))
            .bearer_auth("shop-token-1")
            .body(body);
        async move { request.send().await.expect("append") }
    };
    let page: serde_json::Value = read(&server)
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(page), ["o-2", "o-3"], "continues where it stopped");
    // A produced event without a subject gets one from [events.subjects].
    let shipped = serde_json::json!({"specversion": "1.0", "id": "s-1", "source": "shop/ship", "type": "order.shipped", "data": {"order": {"id": "ord_7"}}}).to_string();
    assert_eq!(produce_on(&server, shipped).await.status(), 201);
    let timeline: serde_json::Value = http
        .get(server.url("/v1/subjects/ord_7/events"))
        .bearer_auth("fulfil-token-2")
        .send()
        .await
        .expect("timeline")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(timeline), ["s-1"]);
    // The subject's timeline: both orders are about ord_1.
    let timeline: serde_json::Value = http
        .get(server.url("/v1/subjects/ord_1/events"))
        .bearer_auth("fulfil-token-2")
        .send()
        .await
        .expect("timeline")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(timeline), ["o-1", "o-2", "o-3"]);
    let nobody: serde_json::Value = http
        .get(server.url("/v1/subjects/ord_404/events"))
        .bearer_auth("fulfil-token-2")
        .send()
        .await
        .expect("timeline")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(nobody), Vec::<String>::new());
    let state: serde_json::Value = http
        .get(server.url("/v1/consumers/picker"))
        .bearer_auth("fulfil-token-2")
        .send()
        .await
        .expect("consumer")
        .json()
        .await
        .expect("json");
    assert_eq!(state["offset"], first["offset"]);
    // Replay to the pull consumer: it reads everything again from the start.
    let replayed = crate::wireline()
        .args([
            "events",
            "replay",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "consumer:fulfil:picker",
            "-c",
        ])
        .arg(&config)
        .envs(envs)
        .output()
        .expect("runs");
    assert!(
        replayed.status.success(),
        "{}",
        crate::text(&replayed.stderr)
    );
    let page: serde_json::Value = read(&server)
        .await
        .expect("pull")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ids(page),
        ["o-1", "o-2", "o-3", "s-1"],
        "replayed from the first event on"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_projections_replay_by_type_audit_and_retention_end_to_end() {
    use std::sync::{Arc, Mutex};
    // A push receiver that records the types it gets.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(received): axum::extract::State<Arc<Mutex<Vec<String>>>>,
             body: String| async move {
                let event: serde_json::Value = serde_json::from_str(&body).expect("json");
                received
                    .lock()
                    .expect("lock")
                    .push(event["type"].as_str().expect("type").to_owned());
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
[agents.shop]
token = "${{env:SHOP_TOKEN}}"
scopes = ["events:write:app."]
[agents.crm]
token = "${{env:CRM_TOKEN}}"
scopes = ["events:read"]
[[subscriptions]]
agent = "crm"
events = ["app.*", "derived.*"]
[[subscriptions]]
name = "hook"
agent = "crm"
events = ["app.*"]
url = "{url}"
secret = "${{env:PUSH_SECRET}}"
start = "beginning"
[[triggers]]
name = "activated"
emit = "derived.activated"
sequence = {{ first = "app.user.signup", then = "app.payment.succeeded", within = "1h" }}
[projections.customers]
events = ["app.*", "derived.*"]
[events.retention."app.payment.*"]
payload = "30d"
"#
        ),
    );
    let envs = [
        ("SHOP_TOKEN", "shop-token-1"),
        ("CRM_TOKEN", "crm-token-2"),
        ("PUSH_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ];
    let http = crate::server::client();
    let server = Server::start(&config, &envs);
    let produce = |id: &str, ty: &str, time: &str| {
        http.post(server.url("/v1/events"))
            .bearer_auth("shop-token-1")
            .body(serde_json::json!({"specversion": "1.0", "id": id, "source": "shop", "type": ty, "subject": "u1", "time": time, "data": {"card": "4242424242424242"}}).to_string())
            .send()
    };
    let now = jiff::Timestamp::now();
    assert_eq!(
        produce("s1", "app.user.signup", &now.to_string())
            .await
            .expect("ok")
            .status(),
        201
    );
    // A payment 40 days old by its time (a late import): in the rule's window it is not, as
    // it came before the signup; retention will drop its payload.
    let old = (now - jiff::SignedDuration::from_hours(40 * 24)).to_string();
    assert_eq!(
        produce("p0", "app.payment.succeeded", &old)
            .await
            .expect("ok")
            .status(),
        201
    );
    let paid = (now + jiff::SignedDuration::from_mins(5)).to_string();
    assert_eq!(
        produce("p1", "app.payment.succeeded", &paid)
            .await
            .expect("ok")
            .status(),
        201
    );

    // The rule fires once, as an event any reader can pull.
    let pull = |types: &str| {
        http.get(server.url(&format!("/v1/events?types={types}")))
            .bearer_auth("crm-token-2")
            .send()
    };
    let derived = eventually("the derived event", || async {
        let page: serde_json::Value = pull("derived.*").await.ok()?.json().await.ok()?;
        let events = page["events"].as_array()?.clone();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(derived.len(), 1);
    let event = &derived[0]["event"];
    assert_eq!(event["type"], "derived.activated");
    assert_eq!(event["source"], "wireline://triggers/activated");
    assert_eq!(event["subject"], "u1");
    assert_eq!(event["correlationid"], "s1");
    assert_eq!(event["causationid"], "p1");
    let derived_offset = derived[0]["offset"].as_u64().expect("offset");

    // The projection sees all four events of u1.
    // u1's state in the projection once it has seen `count` events.
    let projected = |count: u64| {
        let request = http
            .get(server.url("/v1/projections/customers/subjects/u1"))
            .bearer_auth("crm-token-2");
        eventually("the projection", move || {
            let request = request.try_clone().expect("clonable");
            async move {
                let state: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
                (state["events"] == count).then_some(state)
            }
        })
    };
    let state: serde_json::Value = projected(4).await;
    assert_eq!(state["types"]["app.payment.succeeded"]["count"], 2);
    assert_eq!(state["types"]["derived.activated"]["last_id"], event["id"]);
    let missing = http
        .get(server.url("/v1/projections/nope"))
        .bearer_auth("crm-token-2")
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status(), 404);

    let cli = |args: &[&str]| {
        crate::wireline()
            .args(args)
            .arg("-c")
            .arg(&config)
            .envs(envs)
            .output()
            .expect("runs")
    };
    // Audit: the derived event, who made it, and what caused it.
    let shown = cli(&["events", "show", &derived_offset.to_string()]);
    assert!(shown.status.success(), "{}", crate::text(&shown.stderr));
    let shown = crate::text(&shown.stdout);
    assert!(
        shown.contains("produced by trigger rule activated"),
        "{shown}"
    );
    assert!(shown.contains("produced by agent shop"), "{shown}");
    assert!(shown.contains("caused by offsets 1, 3"), "{shown}");

    // The push subscription got the three app events; a replay of payments only sends those.
    eventually("three pushes", || async {
        (received.lock().expect("lock").len() == 3).then_some(())
    })
    .await;
    let replay = cli(&[
        "events",
        "replay",
        "--from",
        "1",
        "--type",
        "app.payment.*",
        "--to",
        "hook",
    ]);
    assert!(replay.status.success(), "{}", crate::text(&replay.stderr));
    eventually("two more pushes", || async {
        (received.lock().expect("lock").len() >= 5).then_some(())
    })
    .await;
    let got = received.lock().expect("lock").clone();
    assert_eq!(
        got[3..],
        ["app.payment.succeeded", "app.payment.succeeded"],
        "only the type asked for: {got:?}"
    );

    // The same to a pull consumer: only payments up to the head at the replay, then all.
    let replay = cli(&[
        "events",
        "replay",
        "--from",
        "1",
        "--type",
        "app.payment.*",
        "--to",
        "consumer:crm:audit",
    ]);
    assert!(replay.status.success(), "{}", crate::text(&replay.stderr));
    assert_eq!(
        produce("s2", "app.user.signup", &now.to_string())
            .await
            .expect("ok")
            .status(),
        201
    );
    let pulled = |consumer: &'static str| {
        let request = http
            .get(server.url(&format!("/v1/events?consumer={consumer}")))
            .bearer_auth("crm-token-2");
        async move {
            let page: serde_json::Value = request
                .send()
                .await
                .expect("pull")
                .json()
                .await
                .expect("json");
            page
        }
    };
    let page = pulled("audit").await;
    let ids: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["p0", "p1", "s2"],
        "payments of the replayed range, then everything new"
    );

    // Rebuilding the projection from offset 0 gives the same state.
    let state: serde_json::Value = projected(5).await;
    let rebuilt = cli(&["projections", "rebuild", "customers"]);
    assert!(rebuilt.status.success(), "{}", crate::text(&rebuilt.stderr));
    let again: serde_json::Value = http
        .get(server.url("/v1/projections/customers/subjects/u1"))
        .bearer_auth("crm-token-2")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(again, state);

    // Retention: the 40-day-old payment loses its card number, keeps its envelope.
    let expired = cli(&["events", "expire"]);
    assert!(expired.status.success(), "{}", crate::text(&expired.stderr));
    assert!(
        crate::text(&expired.stdout).contains("payloads dropped        1"),
        "{}",
        crate::text(&expired.stdout)
    );
    let listed = cli(&["events", "list", "--json", "--type", "app.payment.*"]);
    let listed = crate::text(&listed.stdout);
    let first: serde_json::Value =
        serde_json::from_str(listed.lines().next().expect("a line")).expect("json");
    assert_eq!(first["event"]["id"], "p0");
    assert!(first["event"].get("data").is_none(), "{first}");
    assert!(first["event"].get("wlredacted").is_some(), "{first}");
    assert_eq!(
        listed.matches("4242424242424242").count(),
        1,
        "the recent one keeps it"
    );
    drop(server);
}
