//! The emulators over real HTTP: the providers' documented shapes, headers and errors,
//! webhook signatures, and seeded faults.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use wireline_config::model::Faults;
use wireline_mock::{Kind, Mock, Options, Running, Target};

type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on loopback; returns its URL and what it received.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .fallback(
            |axum::extract::State(received): axum::extract::State<Received>,
             headers: HeaderMap,
             body: axum::body::Bytes| async move {
                received.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            },
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// `kind`'s webhooks, signed with `secret`, sent to `url`.
fn hooks_to(kind: Kind, url: String, secret: &str) -> BTreeMap<Kind, Target> {
    BTreeMap::from([(
        kind,
        Target {
            url,
            secret: secret.into(),
        },
    )])
}

async fn start(options: Options) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Mock::new(options).serve(listener).unwrap()
}

fn client() -> reqwest::Client {
    wireline_direct::client::build(None).unwrap()
}

async fn wait_for(received: &Received, count: usize) -> Vec<(HeaderMap, Vec<u8>)> {
    for _ in 0..500 {
        if received.lock().unwrap().len() >= count {
            return received.lock().unwrap().clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "expected {count} webhooks, got {}",
        received.lock().unwrap().len()
    );
}

fn hmac(secret: &str, message: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Stripe's form encoding.
fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k.as_ref(), v.as_ref());
    }
    form.finish()
}

const STRIPE_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_payments_refunds_events_and_signed_webhooks() {
    let (hook_url, received) = receiver().await;
    let secret = "whsec_test_emulator_secret";
    let mock = start(Options {
        services: vec![Kind::Stripe],
        webhooks: hooks_to(Kind::Stripe, hook_url, secret),
        ..Options::default()
    })
    .await;
    let base = mock.url(Kind::Stripe);
    let http = client();
    let post = |path: &str, form: &[(&str, &str)]| {
        http.post(format!("{base}{path}"))
            .bearer_auth(STRIPE_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
    };
    let unauthenticated = http
        .get(format!("{base}/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let body: Value = unauthenticated.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let customer: Value = post(
        "/v1/customers",
        &[("email", "ada@example.com"), ("metadata[plan]", "pro")],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(customer["id"].as_str().unwrap().starts_with("cus_"));
    assert_eq!(customer["metadata"]["plan"], "pro");
    let missing = post("/v1/payment_intents", &[("currency", "eur")])
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert!(
        missing.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "parameter_missing");
    assert_eq!(body["error"]["param"], "amount");

    let intent: Value = post(
        "/v1/payment_intents",
        &[
            ("amount", "2000"),
            ("currency", "eur"),
            ("customer", customer["id"].as_str().unwrap()),
        ],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(intent["status"], "requires_payment_method");
    let id = intent["id"].as_str().unwrap();
    let confirmed: Value = post(
        &format!("/v1/payment_intents/{id}/confirm"),
        &[("payment_method", "pm_card_visa")],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(confirmed["status"], "succeeded");
    assert_eq!(confirmed["amount_received"], 2000);
    let again = post(&format!("/v1/payment_intents/{id}/confirm"), &[])
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        400,
        "a succeeded intent cannot be confirmed again"
    );

    let declined_intent: Value = post(
        "/v1/payment_intents",
        &[("amount", "500"), ("currency", "eur")],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let declined = post(
        &format!(
            "/v1/payment_intents/{}/confirm",
            declined_intent["id"].as_str().unwrap()
        ),
        &[("payment_method", "pm_card_chargeDeclined")],
    )
    .await
    .unwrap();
    assert_eq!(declined.status(), 402);
    let body: Value = declined.json().await.unwrap();
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(body["error"]["decline_code"], "generic_decline");

    let refund: Value = post("/v1/refunds", &[("payment_intent", id), ("amount", "500")])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refund["status"], "succeeded");
    let too_much = post("/v1/refunds", &[("payment_intent", id), ("amount", "5000")])
        .await
        .unwrap();
    assert_eq!(too_much.status(), 400);
    let charge: Value = http
        .get(format!(
            "{base}/v1/charges/{}",
            confirmed["latest_charge"].as_str().unwrap()
        ))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(charge["amount_refunded"], 500);
    assert_eq!(charge["refunded"], false);

    // The events feed: newest first, paged with has_more / starting_after.
    let first: Value = http
        .get(format!("{base}/v1/events?limit=3"))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["object"], "list");
    assert_eq!(first["has_more"], true);
    assert_eq!(first["data"][0]["type"], "charge.refunded");
    let last_id = first["data"][2]["id"].as_str().unwrap();
    let rest: Value = http
        .get(format!(
            "{base}/v1/events?limit=100&starting_after={last_id}"
        ))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["has_more"], false);
    let all: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        all,
        [
            "charge.refunded",
            "refund.created",
            "payment_intent.payment_failed",
            "charge.failed",
            "payment_intent.created",
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created",
            "customer.created"
        ]
    );

    // Every event went out as a webhook signed the way Stripe documents.
    let hooks = wait_for(&received, all.len()).await;
    for (headers, body) in &hooks {
        let signature = headers["stripe-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        assert_eq!(hex::encode(hmac(secret, &signed)), v1);
    }
    let first_hook: Value = serde_json::from_slice(&hooks[0].1).unwrap();
    assert_eq!(first_hook["type"], "customer.created");
    assert_eq!(first_hook["object"], "event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_idempotency_replays_refuses_mismatches_and_conflicts_in_flight() {
    let mock = start(Options {
        services: vec![Kind::Stripe],
        ..Options::default()
    })
    .await;
    let base = mock.url(Kind::Stripe);
    let http = client();
    let create = |key: &str, amount: &str| {
        http.post(format!("{base}/v1/payment_intents"))
            .bearer_auth(STRIPE_KEY)
            .header("idempotency-key", key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("amount", amount), ("currency", "usd")]))
            .send()
    };
    let first = create("k1", "1000").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let replay = create("k1", "1000").await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(
        replay["id"], first["id"],
        "the stored response, not a second intent"
    );
    let mismatch = create("k1", "2000").await.unwrap();
    assert_eq!(mismatch.status(), 400);
    let body: Value = mismatch.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
    let listed: Value = http
        .get(format!("{base}/v1/payment_intents"))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // A slow request is in flight: the same key meanwhile gets 409.
    mock.mock.set_faults(
        "stripe:/v1/payment_intents",
        Some(Faults {
            latency: Some(["300ms".parse().unwrap(), "301ms".parse().unwrap()]),
            ..Faults::default()
        }),
    );
    let slow = tokio::spawn(create("k2", "1000"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let conflict = create("k2", "1000").await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);

    // A 5xx (the request never executed) is not stored: a retry executes.
    mock.mock.set_faults(
        "stripe:/v1/payment_intents",
        Some(Faults {
            error_rate: 1.0,
            error_codes: vec![503],
            ..Faults::default()
        }),
    );
    assert_eq!(create("k3", "1000").await.unwrap().status(), 503);
    mock.mock.set_faults("stripe:/v1/payment_intents", None);
    let retried = create("k3", "1000").await.unwrap();
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_seeded_so_a_run_replays_exactly() {
    let faults = Faults {
        error_rate: 0.3,
        rate_limit_rate: 0.2,
        ..Faults::default()
    };
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let mock = start(Options {
            services: vec![Kind::Sendgrid],
            seed: 42,
            faults: BTreeMap::from([("sendgrid".to_owned(), faults.clone())]),
            ..Options::default()
        })
        .await;
        let http = client();
        let mut statuses = Vec::new();
        for _ in 0..60 {
            let response = http
                .post(format!("{}/v3/mail/send", mock.url(Kind::Sendgrid)))
                .bearer_auth("SG.test")
                .json(&json!({"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "b@example.com"}, "subject": "hi", "content": [{"type": "text/plain", "value": "hi"}]}))
                .send()
                .await
                .unwrap();
            if response.status() == 429 {
                assert_eq!(response.headers()["retry-after"], "1");
            }
            statuses.push(response.status().as_u16());
        }
        assert_eq!(mock.mock.requests()["sendgrid"]["POST /v3/mail/send"], 60);
        outcomes.push(statuses);
    }
    assert_eq!(outcomes[0], outcomes[1], "same seed, same faults");
    let errors = outcomes[0].iter().filter(|s| **s >= 500).count();
    let limited = outcomes[0].iter().filter(|s| **s == 429).count();
    assert!(
        (5..=35).contains(&errors) && (3..=25).contains(&limited),
        "{:?}",
        outcomes[0]
    );
    assert!(outcomes[0].contains(&202));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_limits_each_channel_to_one_message_a_second_and_signs_callbacks() {
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![Kind::Slack],
        webhooks: hooks_to(Kind::Slack, hook_url, "slack-signing"),
        ..Options::default()
    })
    .await;
    let http = client();
    let post = |channel: &str| {
        http.post(format!("{}/api/chat.postMessage", mock.url(Kind::Slack)))
            .bearer_auth("xoxb-test")
            .json(&json!({"channel": channel, "text": "deploy finished"}))
            .send()
    };
    let first: Value = post("#ops").await.unwrap().json().await.unwrap();
    assert_eq!(first["ok"], true);
    let burst = post("#ops").await.unwrap();
    assert_eq!(burst.status(), 429);
    assert_eq!(burst.headers()["retry-after"], "1");
    let other: Value = post("#sales").await.unwrap().json().await.unwrap();
    assert_eq!(other["ok"], true, "the limit is per channel");
    let unauthenticated: Value = http
        .post(format!("{}/api/chat.postMessage", mock.url(Kind::Slack)))
        .json(&json!({"channel": "#ops", "text": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unauthenticated["error"], "not_authed");
    let hooks = wait_for(&received, 2).await;
    let (headers, body) = &hooks[0];
    let ts = headers["x-slack-request-timestamp"].to_str().unwrap();
    let mut signed = format!("v0:{ts}:").into_bytes();
    signed.extend_from_slice(body);
    assert_eq!(
        headers["x-slack-signature"].to_str().unwrap(),
        format!("v0={}", hex::encode(hmac("slack-signing", &signed)))
    );
    let callback: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(callback["type"], "event_callback");
    assert_eq!(callback["event"]["text"], "deploy finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_issues_etag_rate_limit_headers_and_signed_deliveries() {
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![Kind::Github],
        webhooks: hooks_to(Kind::Github, hook_url, "gh-secret"),
        ..Options::default()
    })
    .await;
    let base = mock.url(Kind::Github);
    let http = client();
    let issue = http
        .post(format!("{base}/repos/acme/app/issues"))
        .bearer_auth("ghp_test")
        .json(&json!({"title": "Checkout fails", "labels": ["bug"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(issue.status(), 201);
    assert_eq!(issue.headers()["x-ratelimit-limit"], "5000");
    assert_eq!(issue.headers()["x-ratelimit-remaining"], "4999");
    let issue: Value = issue.json().await.unwrap();
    assert_eq!(issue["number"], 1);
    let comment = http
        .post(format!("{base}/repos/acme/app/issues/1/comments"))
        .bearer_auth("ghp_test")
        .json(&json!({"body": "Looking"}))
        .send()
        .await
        .unwrap();
    assert_eq!(comment.status(), 201);
    let events = http
        .get(format!("{base}/repos/acme/app/events"))
        .bearer_auth("ghp_test")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["x-poll-interval"], "60");
    let etag = events.headers()["etag"].to_str().unwrap().to_owned();
    let listed: Value = events.json().await.unwrap();
    assert_eq!(listed[0]["type"], "IssueCommentEvent");
    let unchanged = http
        .get(format!("{base}/repos/acme/app/events"))
        .bearer_auth("ghp_test")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(
        unchanged.headers()["x-ratelimit-remaining"],
        "4997",
        "a 304 costs nothing"
    );
    assert_eq!(
        http.get(format!("{base}/repos/acme/app/issues/9"))
            .bearer_auth("ghp_test")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{base}/repos/acme/app/issues"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let hooks = wait_for(&received, 2).await;
    let kinds: Vec<&str> = hooks
        .iter()
        .map(|(h, _)| h["x-github-event"].to_str().unwrap())
        .collect();
    assert_eq!(kinds, ["issues", "issue_comment"]);
    for (headers, body) in &hooks {
        assert_eq!(
            headers["x-hub-signature-256"].to_str().unwrap(),
            format!("sha256={}", hex::encode(hmac("gh-secret", body)))
        );
        assert_eq!(headers["x-github-delivery"].to_str().unwrap().len(), 36);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_sendgrid_hubspot_and_salesforce_answer_in_their_shapes() {
    use base64::Engine;
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![
            Kind::Shopify,
            Kind::Sendgrid,
            Kind::Hubspot,
            Kind::Salesforce,
        ],
        webhooks: hooks_to(Kind::Shopify, hook_url, "shpss_test"),
        daily_quota: 3,
        ..Options::default()
    })
    .await;
    let http = client();
    let order = http
        .post(format!("{}/admin/api/2024-01/orders.json", mock.url(Kind::Shopify)))
        .header("x-shopify-access-token", "shpat_test")
        .json(&json!({"order": {"email": "ada@example.com", "line_items": [{"title": "Mug", "price": "12.50", "quantity": 2}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);
    assert_eq!(order.headers()["x-shopify-shop-api-call-limit"], "1/40");
    let order: Value = order.json().await.unwrap();
    assert_eq!(order["order"]["total_price"], "25.00");
    let hooks = wait_for(&received, 1).await;
    let (headers, body) = &hooks[0];
    assert_eq!(headers["x-shopify-topic"], "orders/create");
    assert_eq!(
        headers["x-shopify-hmac-sha256"].to_str().unwrap(),
        base64::engine::general_purpose::STANDARD.encode(hmac("shpss_test", body))
    );

    let mail = http.post(format!("{}/v3/mail/send", mock.url(Kind::Sendgrid))).bearer_auth("SG.key").json(&json!({"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "b@example.com"}, "subject": "Hi", "content": [{"type": "text/plain", "value": "Hello"}]})).send().await.unwrap();
    assert_eq!(mail.status(), 202);
    assert_eq!(mail.headers()["x-ratelimit-limit"], "600");
    let invalid = http.post(format!("{}/v3/mail/send", mock.url(Kind::Sendgrid))).bearer_auth("SG.key").json(&json!({"personalizations": [{"to": [{"email": "a@example.com"}]}], "subject": "Hi", "content": [{"type": "text/plain", "value": "x"}]})).send().await.unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "from.email");

    let hubspot = |email: &str| {
        http.post(format!(
            "{}/crm/v3/objects/contacts",
            mock.url(Kind::Hubspot)
        ))
        .bearer_auth("pat-test")
        .json(&json!({"properties": {"email": email}}))
        .send()
    };
    let created = hubspot("a@example.com").await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-hubspot-ratelimit-daily"], "3");
    assert_eq!(
        created.headers()["x-hubspot-ratelimit-daily-remaining"],
        "2"
    );
    assert_eq!(hubspot("a@example.com").await.unwrap().status(), 409);
    hubspot("b@example.com").await.unwrap();
    let over = hubspot("c@example.com").await.unwrap();
    assert_eq!(over.status(), 429);
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["policyName"], "DAILY");

    let salesforce = |body: Value| {
        http.post(format!(
            "{}/services/data/v59.0/sobjects/Contact",
            mock.url(Kind::Salesforce)
        ))
        .bearer_auth("00Dtest")
        .json(&body)
        .send()
    };
    let created = salesforce(json!({"LastName": "Lovelace"})).await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["sforce-limit-info"], "api-usage=1/3");
    let missing = salesforce(json!({"FirstName": "Ada"})).await.unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    salesforce(json!({"LastName": "B"})).await.unwrap();
    let over = salesforce(json!({"LastName": "C"})).await.unwrap();
    assert_eq!(over.status(), 403);
    let body: Value = over.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_faults_drop_and_duplicate_and_the_admin_reports_them() {
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![Kind::Stripe],
        webhooks: hooks_to(Kind::Stripe, hook_url, "whsec_x"),
        faults: BTreeMap::from([(
            "stripe".to_owned(),
            Faults {
                webhook_drop_rate: 0.3,
                webhook_duplicate_rate: 0.3,
                ..Faults::default()
            },
        )]),
        seed: 7,
        ..Options::default()
    })
    .await;
    let http = client();
    for n in 0..40 {
        http.post(format!("{}/v1/customers", mock.url(Kind::Stripe)))
            .bearer_auth(STRIPE_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("email", format!("u{n}@example.com"))]))
            .send()
            .await
            .unwrap();
    }
    let stats: Value = loop {
        let stats: Value = http
            .get(format!("http://{}/__admin/webhooks", mock.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = &stats["stripe"];
        if s["produced"] == 40
            && s["delivered"].as_u64().unwrap()
                == 40 - s["dropped"].as_u64().unwrap() + s["duplicated"].as_u64().unwrap()
        {
            break stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let s = &stats["stripe"];
    assert!(
        s["dropped"].as_u64().unwrap() > 0 && s["duplicated"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert_eq!(
        received.lock().unwrap().len() as u64,
        s["delivered"].as_u64().unwrap()
    );
    // Faults change at runtime through the admin endpoint.
    let set = http
        .put(format!("http://{}/__admin/faults/stripe", mock.address))
        .json(&json!({"rate_limit_rate": 1.0, "retry_after": "7s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let limited = http
        .get(format!("{}/v1/customers", mock.url(Kind::Stripe)))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(limited.headers()["stripe-should-retry"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_faults_fail_exactly_the_next_requests_and_drop_exactly_the_next_webhooks() {
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![Kind::Stripe],
        webhooks: hooks_to(Kind::Stripe, hook_url, "whsec_x"),
        faults: BTreeMap::from([(
            "stripe".to_owned(),
            Faults {
                fail_next: 2,
                webhook_drop_next: 1,
                ..Faults::default()
            },
        )]),
        ..Options::default()
    })
    .await;
    let http = client();
    let mut statuses = Vec::new();
    for n in 0..4 {
        let response = http
            .post(format!("{}/v1/customers", mock.url(Kind::Stripe)))
            .bearer_auth(STRIPE_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("email", format!("u{n}@example.com"))]))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 200, 200]);
    let hooks = wait_for(&received, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "the first of two webhooks was dropped"
    );
    let body: Value = serde_json::from_slice(&hooks[0].1).unwrap();
    assert_eq!(body["data"]["object"]["email"], "u3@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_services_read_wiremock_mappings_with_templates_scenarios_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ledger");
    std::fs::create_dir_all(root.join("mappings")).unwrap();
    std::fs::create_dir_all(root.join("__files")).unwrap();
    std::fs::write(
        root.join("__files/report.csv"),
        "day,total\n2026-11-29,42\n",
    )
    .unwrap();
    std::fs::write(
        root.join("mappings/ledger.json"),
        json!({"mappings": [
            {"request": {"method": "GET", "urlPathPattern": "/accounts/[0-9]+"},
             "response": {"status": 200, "jsonBody": {"id": "{{request.pathSegments.[1]}}", "currency": "{{request.query.currency}}"}, "transformers": ["response-template"]}},
            {"request": {"method": "POST", "url": "/transfers", "bodyPatterns": [{"equalToJson": {"amount": 100}, "ignoreExtraElements": true}]},
             "response": {"status": 201, "body": "{\"transfer\": \"{{jsonPath request.body '$.reference'}}\"}", "headers": {"Content-Type": "application/json"}, "transformers": ["response-template"]}},
            {"scenarioName": "flaky", "requiredScenarioState": "Started", "newScenarioState": "recovered",
             "request": {"method": "GET", "urlPath": "/status"}, "response": {"status": 503}},
            {"scenarioName": "flaky", "requiredScenarioState": "recovered",
             "request": {"method": "GET", "urlPath": "/status"}, "response": {"status": 200, "body": "up"}},
            {"priority": 1, "request": {"method": "GET", "urlPath": "/secure", "headers": {"Authorization": {"matches": "Bearer .+"}}}, "response": {"status": 200, "body": "welcome"}},
            {"priority": 9, "request": {"method": "ANY", "urlPath": "/secure"}, "response": {"status": 401}},
            {"request": {"method": "GET", "urlPath": "/report", "queryParameters": {"day": {"equalTo": "2026-11-29"}}}, "response": {"status": 200, "bodyFileName": "report.csv"}}
        ]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        root.join("mappings/ping.toml"),
        "[request]\nmethod = \"GET\"\nurlPath = \"/ping\"\n[response]\nstatus = 200\nbody = \"pong\"\n",
    )
    .unwrap();
    let stubs = wireline_mock::stubs::load(&root).unwrap();
    let mock = start(Options {
        services: vec![Kind::Sendgrid],
        stubs: BTreeMap::from([("ledger".to_owned(), stubs)]),
        ..Options::default()
    })
    .await;
    let base = format!("http://{}/ledger", mock.address);
    let http = client();
    let account: Value = http
        .get(format!("{base}/accounts/42?currency=eur"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account, json!({"id": "42", "currency": "eur"}));
    let transfer = http
        .post(format!("{base}/transfers"))
        .json(&json!({"amount": 100, "reference": "inv-7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(transfer.status(), 201);
    assert_eq!(
        transfer.json::<Value>().await.unwrap(),
        json!({"transfer": "inv-7"})
    );
    let wrong = http
        .post(format!("{base}/transfers"))
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("no stub matched POST /transfers")
    );
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..1).map(|_| http.get(format!("{base}/status")).send()))
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
    assert_eq!(statuses, [503]);
    assert_eq!(
        http.get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the scenario moved on"
    );
    http.post(format!("http://{}/__admin/scenarios/reset", mock.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "reset to Started"
    );
    assert_eq!(
        http.get(format!("{base}/secure"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/secure"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/report?day=2026-11-29"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "day,total\n2026-11-29,42\n"
    );
    assert_eq!(
        http.get(format!("{base}/ping"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "pong"
    );
    // Faults apply to stub services by name.
    mock.mock.set_faults(
        "ledger",
        Some(Faults {
            fail_next: 1,
            error_codes: vec![502],
            ..Faults::default()
        }),
    );
    assert_eq!(
        http.get(format!("{base}/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        http.get(format!("{base}/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(mock.mock.requests()["ledger"]["GET /ping"], 3);
    // A typo in a mapping is an error naming the file and the key.
    std::fs::write(
        root.join("mappings/bad.json"),
        r#"{"request": {"urll": "/x"}, "response": {"status": 200}}"#,
    )
    .unwrap();
    let error = wireline_mock::stubs::load(&root).unwrap_err();
    assert!(
        error.contains("bad.json") && error.contains("urll"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_timeouts_resets_and_reordered_webhooks() {
    let (hook_url, received) = receiver().await;
    let mock = start(Options {
        services: vec![Kind::Stripe, Kind::Sendgrid],
        webhooks: hooks_to(Kind::Stripe, hook_url, "whsec_x"),
        ..Options::default()
    })
    .await;
    let http = client();
    let mail = || {
        http.post(format!("{}/v3/mail/send", mock.url(Kind::Sendgrid)))
            .bearer_auth("SG.k")
            .json(&json!({"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "b@example.com"}, "subject": "s", "content": [{"type": "text/plain", "value": "v"}]}))
    };
    mock.mock.set_faults(
        "sendgrid",
        Some(Faults {
            latency: Some(["150ms".parse().unwrap(), "160ms".parse().unwrap()]),
            ..Faults::default()
        }),
    );
    let started = std::time::Instant::now();
    assert_eq!(mail().send().await.unwrap().status(), 202);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "delayed"
    );
    mock.mock.set_faults(
        "sendgrid",
        Some(Faults {
            timeout_rate: 1.0,
            ..Faults::default()
        }),
    );
    let timed_out = mail()
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    mock.mock.set_faults(
        "sendgrid",
        Some(Faults {
            reset_rate: 1.0,
            ..Faults::default()
        }),
    );
    let cut = async { mail().send().await?.bytes().await }.await;
    assert!(
        cut.is_err(),
        "the connection is cut before the answer is complete"
    );
    mock.mock.set_faults("sendgrid", None);
    assert_eq!(mail().send().await.unwrap().status(), 202);

    // Reordering: the first webhook is held back and goes out after the second.
    mock.mock.set_faults(
        "stripe",
        Some(Faults {
            webhook_reorder_rate: 1.0,
            ..Faults::default()
        }),
    );
    for email in ["first@example.com", "second@example.com"] {
        http.post(format!("{}/v1/customers", mock.url(Kind::Stripe)))
            .bearer_auth(STRIPE_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("email", email)]))
            .send()
            .await
            .unwrap();
    }
    let hooks = wait_for(&received, 2).await;
    let order: Vec<String> = hooks
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["data"]["object"]["email"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(order, ["second@example.com", "first@example.com"]);
    assert_eq!(mock.mock.webhook_stats()["stripe"].reordered, 1);
}
