//! The Direct API against an in-process upstream on loopback: credentials, scopes, targets,
//! operations, idempotency, fallbacks, breaker, audit.

mod oauth;
mod props;
mod tls;
mod upstream;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};
use upstream::{Mock, Reply};
use wireline_config::{Env, load_str};
use wireline_core::{Offset, ProblemKind};
use wireline_direct::{Caller, Direct, OperationRequest, ProxyRequest};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};

const AGENT_TOKEN: &str = "agent-token-1b2c3d";
const OTHER_TOKEN: &str = "other-token-9z8y7x";
const SERVICE_KEY: &str = "service-key-5e6f7a";
const OWN_KEY: &str = "own-key-of-the-bot-42";

struct World {
    direct: Direct,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl World {
    /// Every event in the log once the recorder has stored all it was given (it stops).
    async fn recorded(&self) -> Vec<wireline_store::StoredEvent> {
        self.direct.shutdown().await;
        self.store.read(Offset::START, 100_000).await.expect("read")
    }
}

/// A config with `[agents.bot]` (scopes given) and `[agents.reader]`, plus `services`.
fn world(services: &str, bot_scopes: &str, bot_extra: &str) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        r#"
[agents.bot]
token = "${{env:AGENT_TOKEN}}"
scopes = {bot_scopes}
{bot_extra}
[agents.reader]
token = "${{env:OTHER_TOKEN}}"
scopes = ["events:read"]
{services}
"#
    );
    let vars: BTreeMap<String, String> = [
        ("AGENT_TOKEN", AGENT_TOKEN),
        ("OTHER_TOKEN", OTHER_TOKEN),
        ("SERVICE_KEY", SERVICE_KEY),
        ("OWN_KEY", OWN_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let loaded = load_str(
        &text,
        &dir.path().join("wireline.toml"),
        &Env::from_map(vars),
    )
    .unwrap_or_else(|f| panic!("{f:#?}\n{text}"));
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let direct = Direct::new(
        &loaded.config,
        Path::new(dir.path()),
        Arc::new(store.clone()),
    )
    .expect("direct");
    World {
        direct,
        store,
        _dir: dir,
    }
}

fn service(name: &str, mock: &Mock, extra: &str) -> String {
    format!(
        "[services.{name}]\nbase_url = \"{}/v1\"\nauth = {{ bearer = \"${{env:SERVICE_KEY}}\" }}\n{extra}\n",
        mock.url()
    )
}

fn bot() -> Caller {
    Caller::Agent("bot".into())
}

fn proxy(service: &str, method: Method, path_and_query: &str, body: &str) -> ProxyRequest {
    let (path, query) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q.to_owned())));
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {AGENT_TOKEN}")).expect("header"),
    );
    headers.insert("x-custom", HeaderValue::from_static("kept"));
    ProxyRequest {
        caller: bot(),
        service: service.into(),
        raw_path: path.into(),
        raw_query: query,
        method,
        headers,
        body: Bytes::from(body.to_owned()),
    }
}

fn header<'a>(reply: &'a http::Response<Bytes>, name: &str) -> Option<&'a str> {
    reply.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_agent_token_is_swapped_for_the_service_credential() {
    let mock = Mock::start().await;
    let w = world(
        &service("svc", &mock, ""),
        r#"["svc:read", "svc:write"]"#,
        "",
    );
    let reply = w
        .direct
        .proxy(proxy("svc", Method::POST, "customers?expand=x", "name=Jo"))
        .await
        .expect("reply");
    assert_eq!(reply.status(), 200);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(
        (
            request.method.as_str(),
            request.path.as_str(),
            request.query.as_deref()
        ),
        ("POST", "/v1/customers", Some("expand=x"))
    );
    assert_eq!(
        request.header("authorization").as_deref(),
        Some(format!("Bearer {SERVICE_KEY}").as_str())
    );
    assert_eq!(
        request.header("x-custom").as_deref(),
        Some("kept"),
        "other headers pass through"
    );
    assert_eq!(request.body, "name=Jo");
    let everything = format!("{request:?}");
    assert!(
        !everything.contains(AGENT_TOKEN),
        "the agent's token never goes upstream"
    );
}

#[tokio::test]
async fn every_auth_method_and_an_agents_own_key() {
    let mock = Mock::start().await;
    let services = format!(
        "[services.basic]\nbase_url = \"{0}\"\nauth = {{ basic = {{ username = \"api\", password = \"${{env:SERVICE_KEY}}\" }} }}\n\
         [services.hdr]\nbase_url = \"{0}\"\nauth = {{ header = \"X-Api-Key\", value = \"${{env:SERVICE_KEY}}\" }}\n\
         [services.qry]\nbase_url = \"{0}\"\nauth = {{ query = \"api_key\", value = \"${{env:SERVICE_KEY}}\" }}\n\
         [services.svc]\nbase_url = \"{0}\"\nauth = {{ bearer = \"${{env:SERVICE_KEY}}\" }}\n",
        mock.url()
    );
    let w = world(
        &services,
        r#"["basic:read", "hdr:read", "qry:read", "svc:read"]"#,
        "credentials.svc = { bearer = \"${env:OWN_KEY}\" }",
    );
    for name in ["basic", "hdr", "qry", "svc"] {
        assert_eq!(
            w.direct
                .proxy(proxy(name, Method::GET, "ping?a=1", ""))
                .await
                .expect("reply")
                .status(),
            200
        );
    }
    let seen = mock.requests();
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Basic YXBpOnNlcnZpY2Uta2V5LTVlNmY3YQ==")
    );
    assert_eq!(seen[1].header("x-api-key").as_deref(), Some(SERVICE_KEY));
    assert_eq!(
        seen[2].query.as_deref(),
        Some(format!("a=1&api_key={SERVICE_KEY}").as_str())
    );
    assert_eq!(
        seen[3].header("authorization").as_deref(),
        Some(format!("Bearer {OWN_KEY}").as_str()),
        "the bot's own key"
    );
}

#[tokio::test]
async fn missing_tokens_and_scopes_are_refused_before_anything_leaves() {
    let mock = Mock::start().await;
    let w = world(&service("svc", &mock, ""), r#"["svc:read"]"#, "");
    assert!(w.direct.authenticate(None).is_err());
    assert_eq!(
        w.direct
            .authenticate(Some("Bearer wrong"))
            .map_err(|p| p.kind),
        Err(ProblemKind::Unauthorized)
    );
    assert_eq!(
        w.direct
            .authenticate(Some(&format!("Bearer {AGENT_TOKEN}"))),
        Ok(bot())
    );
    assert_eq!(
        w.direct
            .authenticate(Some(&format!("bearer {OTHER_TOKEN}"))),
        Ok(Caller::Agent("reader".into()))
    );
    let refused = w
        .direct
        .proxy(proxy("svc", Method::POST, "charges", "{}"))
        .await
        .expect_err("no write scope");
    assert_eq!(refused.kind, ProblemKind::Forbidden);
    assert!(refused.detail.contains("svc:write"), "{}", refused.detail);
    let unknown = w
        .direct
        .proxy(proxy("nope", Method::GET, "x", ""))
        .await
        .expect_err("unknown");
    assert_eq!(
        (unknown.kind, unknown.status),
        (ProblemKind::UnknownService, 404)
    );
    assert!(mock.requests().is_empty(), "the upstream was never called");
}

#[tokio::test]
async fn paths_cannot_leave_the_base_url_and_redirects_are_not_followed() {
    let mock = Mock::start().await;
    let w = world(&service("svc", &mock, ""), r#"["svc:read"]"#, "");
    for bad in [
        "../admin",
        "%2e%2e/admin",
        "a%2fb",
        "%252e%252e/x",
        "/evil.example/x",
        "http://evil.example/x",
    ] {
        let refused = w
            .direct
            .proxy(proxy("svc", Method::GET, bad, ""))
            .await
            .expect_err(bad);
        assert_eq!(
            (refused.kind, refused.status),
            (ProblemKind::ForbiddenTarget, 400),
            "{bad}"
        );
    }
    assert!(mock.requests().is_empty());
    mock.script([Reply::status(302).header("location", "http://127.0.0.2:1/steal")]);
    let reply = w
        .direct
        .proxy(proxy("svc", Method::GET, "moved", ""))
        .await
        .expect("reply");
    assert_eq!(reply.status(), 302, "the redirect goes back to the agent");
    assert_eq!(mock.requests().len(), 1, "and is not followed");
}

#[tokio::test]
async fn named_operations_render_params_and_name_bad_ones() {
    let mock = Mock::start().await;
    let ops = r#"
[services.svc.operations.get_customer]
method = "GET"
path = "/customers/{id}"
[services.svc.operations.refund]
method = "POST"
path = "/refunds"
body = "form"
"#;
    let w = world(
        &service("svc", &mock, ops),
        r#"["svc:get_customer", "svc:refund"]"#,
        "",
    );
    let call = |operation: &str, params: Value| OperationRequest {
        caller: bot(),
        service: "svc".into(),
        operation: operation.into(),
        params,
        idempotency_key: None,
    };
    let reply = w
        .direct
        .operation(call(
            "get_customer",
            json!({"id": "cus_1", "expand": "sources"}),
        ))
        .await
        .expect("reply");
    assert_eq!(reply.status(), 200);
    let reply = w
        .direct
        .operation(call(
            "refund",
            json!({"payment_intent": "pi_1", "amount": 500}),
        ))
        .await
        .expect("reply");
    assert_eq!(reply.status(), 200);
    let seen = mock.requests();
    assert_eq!(
        (seen[0].path.as_str(), seen[0].query.as_deref()),
        ("/v1/customers/cus_1", Some("expand=sources"))
    );
    assert_eq!(
        (seen[1].path.as_str(), seen[1].body.as_str()),
        ("/v1/refunds", "amount=500&payment_intent=pi_1")
    );
    assert_eq!(
        seen[1].header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        seen[1]
            .header("idempotency-key")
            .is_some_and(|k| k.starts_with("wl_")),
        "a derived key for a non-idempotent operation"
    );

    // The same refund again is the same intent: replayed, not sent.
    let again = w
        .direct
        .operation(call(
            "refund",
            json!({"payment_intent": "pi_1", "amount": 500}),
        ))
        .await
        .expect("reply");
    assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
    assert_eq!(mock.requests().len(), 2);

    let missing = w
        .direct
        .operation(call("get_customer", json!({})))
        .await
        .expect_err("missing param");
    assert_eq!(missing.status, 400);
    assert!(
        missing.detail.contains("missing parameter `id`"),
        "{}",
        missing.detail
    );
    let unknown = w
        .direct
        .operation(call("delete_everything", json!({})))
        .await
        .expect_err("unknown op");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.detail.contains("get_customer, refund"),
        "{}",
        unknown.detail
    );
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_another_body() {
    let mock = Mock::start().await;
    let w = world(&service("svc", &mock, ""), r#"["svc:write"]"#, "");
    let keyed = |body: &str| {
        let mut request = proxy("svc", Method::POST, "payment_intents", body);
        request
            .headers
            .insert("idempotency-key", HeaderValue::from_static("order-7"));
        request
    };
    let first = w.direct.proxy(keyed("amount=100")).await.expect("reply");
    let second = w.direct.proxy(keyed("amount=100")).await.expect("reply");
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    assert_eq!(first.body(), second.body());
    assert_eq!(header(&second, "idempotent-replayed"), Some("true"));
    assert_eq!(header(&first, "idempotent-replayed"), None);
    assert_eq!(mock.requests().len(), 1, "one upstream call");
    assert_eq!(
        mock.requests()[0].header("idempotency-key").as_deref(),
        Some("order-7"),
        "passed to the provider"
    );
    let other = w
        .direct
        .proxy(keyed("amount=999"))
        .await
        .expect_err("mismatch");
    assert_eq!(
        (other.kind, other.status),
        (ProblemKind::IdempotencyMismatch, 422)
    );
}

#[tokio::test]
async fn a_failing_service_falls_back_to_an_alternate_then_stale_then_static() {
    let primary = Mock::start().await;
    let alternate = Mock::start().await;
    let config = format!(
        "{}{}{}",
        service(
            "primary",
            &primary,
            "fallback = [\"alternate\"]\nretry = { attempts = 1 }\n"
        ),
        service("alternate", &alternate, ""),
        service(
            "cached",
            &primary,
            "stale_for = \"15m\"\nretry = { attempts = 1 }\nfallback_response = { status = 200, body = { partial = true } }\n"
        ),
    );
    let w = world(&config, r#"["primary:read", "cached:read"]"#, "");
    primary.script([Reply::status(503)]);
    let reply = w
        .direct
        .proxy(proxy("primary", Method::GET, "status", ""))
        .await
        .expect("reply");
    assert_eq!(
        (reply.status().as_u16(), header(&reply, "wireline-fallback")),
        (200, Some("service=alternate"))
    );
    assert_eq!(alternate.requests().len(), 1);

    // Stale: a good read first, then the service fails.
    primary.script([
        Reply::json(200, json!({"id": "cus_1", "fresh": true})),
        Reply::status(502),
    ]);
    let fresh = w
        .direct
        .proxy(proxy("cached", Method::GET, "customers/cus_1", ""))
        .await
        .expect("reply");
    assert_eq!(header(&fresh, "wireline-fallback"), None);
    let stale = w
        .direct
        .proxy(proxy("cached", Method::GET, "customers/cus_1", ""))
        .await
        .expect("reply");
    assert!(
        header(&stale, "wireline-fallback").is_some_and(|v| v.starts_with("stale; age=")),
        "{:?}",
        stale.headers()
    );
    assert_eq!(stale.body(), fresh.body());
    // Another read has nothing stale: the static response.
    primary.script([Reply::status(502)]);
    let partial = w
        .direct
        .proxy(proxy("cached", Method::GET, "customers/cus_2", ""))
        .await
        .expect("reply");
    assert_eq!(header(&partial, "wireline-fallback"), Some("static"));
    assert_eq!(
        serde_json::from_slice::<Value>(partial.body()).expect("json"),
        json!({"partial": true})
    );
}

#[tokio::test]
async fn an_unreachable_service_opens_the_breaker_with_clear_problems() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = format!(
        "[services.down]\nbase_url = \"http://127.0.0.1:{closed_port}\"\nretry = {{ attempts = 1 }}\ncircuit_breaker = {{ failures = 2, open_for = \"60s\" }}\n"
    );
    let w = world(&config, r#"["down:read"]"#, "");
    for _ in 0..2 {
        let problem = w
            .direct
            .proxy(proxy("down", Method::GET, "x", ""))
            .await
            .expect_err("down");
        assert_eq!(
            (problem.kind, problem.status),
            (ProblemKind::UpstreamUnreachable, 502)
        );
        assert!(
            problem.detail.contains("not sent, so retrying is safe"),
            "{}",
            problem.detail
        );
    }
    let open = w
        .direct
        .proxy(proxy("down", Method::GET, "x", ""))
        .await
        .expect_err("open");
    assert_eq!((open.kind, open.status), (ProblemKind::CircuitOpen, 503));
    assert!(
        open.retry_after.is_some_and(|s| s > 0 && s <= 60),
        "{open:?}"
    );
    let events = w.recorded().await;
    let count = |ty: &str| events.iter().filter(|e| e.ty == ty).count();
    assert_eq!(
        count("wireline.alert.call_failed"),
        2,
        "each failure with no fallback left alerts"
    );
    assert_eq!(
        count("wireline.alert.breaker_opened"),
        1,
        "the breaker opening alerts once"
    );
    assert_eq!(count("wireline.direct.breaker"), 1);
    assert_eq!(count("wireline.direct.call"), 3);
}

#[tokio::test]
async fn a_slow_service_times_out_with_504() {
    let mock = Mock::start().await;
    let w = world(
        &service(
            "svc",
            &mock,
            "timeout = \"100ms\"\nretry = { attempts = 1 }\n",
        ),
        r#"["svc:read"]"#,
        "",
    );
    mock.script([Reply::status(200).delay_ms(2_000)]);
    let problem = w
        .direct
        .proxy(proxy("svc", Method::GET, "slow", ""))
        .await
        .expect_err("timeout");
    assert_eq!(
        (problem.kind, problem.status),
        (ProblemKind::UpstreamTimeout, 504)
    );
}

#[tokio::test]
async fn a_reply_in_chunks_arrives_whole_and_one_above_max_response_is_refused() {
    let mock = Mock::start().await;
    let w = world(
        &service(
            "svc",
            &mock,
            "max_response = \"24B\"\nretry = { attempts = 1 }\n",
        ),
        r#"["svc:read"]"#,
        "",
    );
    // 24 bytes in three chunks (exactly the limit); 25 in four; 25 in one.
    mock.script([
        Reply::chunked(&["{\"a\":", "\"hello\",", "\"b\":\"1234\"}"]),
        Reply::chunked(&["{\"a\":", "\"hello\",", "\"b\":", "\"12345\"}"]),
        Reply::json(200, serde_json::json!({"a": "hello", "b": "12345"})),
    ]);
    let reply = w
        .direct
        .proxy(proxy("svc", Method::GET, "small", ""))
        .await
        .expect("a reply of exactly max_response");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body().as_ref(), br#"{"a":"hello","b":"1234"}"#);
    for path in ["chunks", "whole"] {
        let problem = w
            .direct
            .proxy(proxy("svc", Method::GET, path, ""))
            .await
            .expect_err("a reply above max_response");
        assert_eq!(problem.status, 502, "{path}: {problem:?}");
        assert!(
            problem.detail.contains("max_response (24 bytes)"),
            "{path}: the problem names the limit and its setting: {problem:?}"
        );
    }
}

#[tokio::test]
async fn every_call_is_an_audit_event() {
    let mock = Mock::start().await;
    let w = world(&service("svc", &mock, ""), r#"["svc:read"]"#, "");
    w.direct
        .proxy(proxy("svc", Method::GET, "customers/cus_1", ""))
        .await
        .expect("reply");
    let events = w.recorded().await;
    let call = events
        .iter()
        .find(|e| e.ty == "wireline.direct.call")
        .expect("an audit event");
    let data = call.event().expect("event").data.expect("data");
    assert_eq!(data["agent"], "bot");
    assert_eq!(data["service"], "svc");
    assert_eq!(data["method"], "GET");
    assert_eq!(data["path"], "/v1/customers/cus_1");
    assert_eq!(data["status"], 200);
    assert_eq!(data["attempts"], 1);
    assert_eq!(data["breaker"], "closed");
    assert!(!call.body.contains(SERVICE_KEY) && !call.body.contains(AGENT_TOKEN));
    w.store.close().await.expect("close");
}

#[tokio::test]
async fn rate_limits_queue_refuse_and_alert_once_at_80_percent() {
    let mock = Mock::start().await;
    let alerts = Mock::start().await;
    let config = format!(
        "{}[alerts]\nurl = \"{}/alerts\"\n",
        service(
            "svc",
            &mock,
            "rate_limit = [\"5/s\", \"1000/day\"]\nheadroom = 0.0\nqueue_wait = \"0s\"\n"
        ),
        alerts.url()
    );
    let w = world(&config, r#"["svc:read"]"#, "");
    for _ in 0..5 {
        assert_eq!(
            w.direct
                .proxy(proxy("svc", Method::GET, "x", ""))
                .await
                .expect("reply")
                .status(),
            200
        );
    }
    let refused = w
        .direct
        .proxy(proxy("svc", Method::GET, "x", ""))
        .await
        .expect_err("over the limit");
    assert_eq!(
        (refused.kind, refused.status),
        (ProblemKind::RateLimited, 429)
    );
    assert_eq!(
        refused.retry_after,
        Some(1),
        "one emission interval of 5/s, rounded up"
    );
    assert_eq!(mock.requests().len(), 5, "the refused call never left");
    let events = w.recorded().await;
    let alerts_stored: Vec<_> = events
        .iter()
        .filter(|e| e.ty == "wireline.alert.rate_limit_usage")
        .collect();
    assert_eq!(alerts_stored.len(), 1, "one alert, with hysteresis");
    let data = alerts_stored[0].event().expect("event").data.expect("data");
    assert_eq!(
        (data["window"].as_str(), data["ratio"].as_f64()),
        (Some("5/s"), Some(0.8))
    );
    let posted = alerts.requests();
    assert_eq!(posted.len(), 1, "the alert was posted to [alerts] url");
    assert!(posted[0].body.contains("wireline.alert.rate_limit_usage"));
    assert_eq!(
        posted[0].header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );
}

#[tokio::test]
async fn https_upstreams_are_verified_and_a_ca_file_trusts_a_private_ca() {
    let https = tls::start().await;
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca_dir.path().join("sandbox-ca.pem");
    std::fs::write(&ca_path, &https.ca_pem).expect("write CA");
    let base = format!("https://localhost:{}/v1", https.port);
    let services = format!(
        "[services.trusted]\nbase_url = \"{base}\"\nauth = {{ bearer = \"${{env:SERVICE_KEY}}\" }}\nca_file = \"{}\"\n\
         [services.untrusted]\nbase_url = \"{base}\"\nauth = {{ bearer = \"${{env:SERVICE_KEY}}\" }}\nretry = {{ attempts = 1 }}\n",
        ca_path.display()
    );
    let w = world(&services, r#"["trusted:read", "untrusted:read"]"#, "");

    let reply = w
        .direct
        .proxy(proxy("trusted", Method::GET, "customers", ""))
        .await
        .expect("the CA in ca_file is trusted");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body().as_ref(), b"{\"secure\":true}");
    let seen = https.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].tls,
        Some(rustls::ProtocolVersion::TLSv1_3),
        "TLS 1.3 is preferred"
    );
    assert_eq!(seen[0].http, http::Version::HTTP_2, "HTTP/2 where offered");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {SERVICE_KEY}").as_str())
    );

    let refused = w
        .direct
        .proxy(proxy("untrusted", Method::GET, "customers", ""))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert_eq!(refused.kind, ProblemKind::UpstreamUnreachable);
    assert!(
        refused.detail.contains("certificate") && refused.detail.contains("ca_file"),
        "names the cause and the fix: {}",
        refused.detail
    );
    assert_eq!(
        https.seen.lock().expect("lock").len(),
        1,
        "nothing was sent over the unverified connection"
    );
}

#[tokio::test]
async fn min_tls_13_refuses_a_tls_12_only_upstream_and_the_floor_takes_it() {
    let https = tls::start_with(true).await;
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_path, &https.ca_pem).expect("write CA");
    let base = format!("https://localhost:{}/v1", https.port);
    let services = format!(
        "[services.floor]\nbase_url = \"{base}\"\nca_file = \"{ca}\"\nretry = {{ attempts = 1 }}\n\
         [services.strict]\nbase_url = \"{base}\"\nca_file = \"{ca}\"\nmin_tls = \"1.3\"\nretry = {{ attempts = 1 }}\n",
        ca = ca_path.display()
    );
    let w = world(&services, r#"["floor:read", "strict:read"]"#, "");
    let reply = w
        .direct
        .proxy(proxy("floor", Method::GET, "x", ""))
        .await
        .expect("TLS 1.2 meets the floor");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        https.seen.lock().expect("lock")[0].tls,
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let refused = w
        .direct
        .proxy(proxy("strict", Method::GET, "x", ""))
        .await
        .expect_err("min_tls = 1.3 refuses a TLS 1.2 server");
    assert_eq!(refused.kind, ProblemKind::UpstreamUnreachable);
    assert!(refused.detail.contains("min_tls"), "{}", refused.detail);
    assert_eq!(https.seen.lock().expect("lock").len(), 1, "nothing sent");
}

#[tokio::test]
async fn a_call_rate_spike_raises_one_anomaly_alert_and_throttles_the_agent() {
    let mock = Mock::start().await;
    let config = format!(
        "{}[security.anomaly]\nwindow = \"500ms\"\nbaseline = \"1s\"\nmin_calls = 15\nfactor = 5.0\nthrottle = true\n",
        service("svc", &mock, "")
    );
    let w = world(&config, r#"["svc:read"]"#, "");
    // A steady baseline: one call every 100 ms for 1.6 s (about 5 per window).
    for _ in 0..16 {
        w.direct
            .proxy(proxy("svc", Method::GET, "x", ""))
            .await
            .expect("steady");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A burst: 40 calls at once, several times the baseline (even on a loaded machine).
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(
            match w.direct.proxy(proxy("svc", Method::GET, "x", "")).await {
                Ok(reply) => reply.status().as_u16(),
                Err(problem) => {
                    assert!(problem.detail.contains("throttled"), "{}", problem.detail);
                    problem.status
                }
            },
        );
    }
    assert!(
        statuses.contains(&429),
        "the spiking agent is throttled: {statuses:?}"
    );
    assert!(
        statuses.iter().take(10).all(|s| *s == 200),
        "not before the spike: {statuses:?}"
    );
    let events = w.recorded().await;
    let anomalies: Vec<_> = events
        .iter()
        .filter(|e| e.ty == "wireline.alert.anomaly")
        .collect();
    let keys: Vec<String> = anomalies
        .iter()
        .map(|e| {
            e.event().expect("event").data.expect("data")["key"]
                .as_str()
                .expect("key")
                .to_owned()
        })
        .collect();
    assert!(keys.contains(&"agent:bot".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"credential:svc:service".to_owned()),
        "the credential is watched too: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| *k == "agent:bot").count(),
        1,
        "one alert per spike"
    );
}

/// Header values that are not UTF-8 (obs-text, as old servers send in `Content-Disposition`
/// or custom headers) reach the agent byte for byte, also when replayed under a key.
#[tokio::test]
async fn response_headers_that_are_not_utf8_are_relayed_as_bytes() {
    let mock = Mock::start().await;
    let w = world(
        &service("acme", &mock, ""),
        r#"["acme:read", "acme:write"]"#,
        "",
    );
    let raw: &[u8] = b"attachment; filename=\"caf\xe9.pdf\"";
    mock.script([
        Reply::status(201).raw_header("content-disposition", raw),
        Reply::status(201).raw_header("content-disposition", raw),
    ]);
    let reply = w
        .direct
        .proxy(proxy("acme", Method::GET, "files/1", ""))
        .await
        .expect("reply");
    assert_eq!(
        reply
            .headers()
            .get("content-disposition")
            .map(HeaderValue::as_bytes),
        Some(raw)
    );
    let mut keyed = proxy("acme", Method::POST, "files", "{}");
    keyed
        .headers
        .insert("idempotency-key", HeaderValue::from_static("file-1"));
    let first = w.direct.proxy(keyed).await.expect("reply");
    let mut again = proxy("acme", Method::POST, "files", "{}");
    again
        .headers
        .insert("idempotency-key", HeaderValue::from_static("file-1"));
    let replayed = w.direct.proxy(again).await.expect("replay");
    assert_eq!(header(&replayed, "idempotent-replayed"), Some("true"));
    for reply in [&first, &replayed] {
        assert_eq!(
            reply
                .headers()
                .get("content-disposition")
                .map(HeaderValue::as_bytes),
            Some(raw)
        );
    }
}

/// "20/s" holds as the upstream counts it: 30 agents calling as fast as they can never put
/// more than 20 requests into any second at the upstream (a token bucket sized to the rate
/// let 39 through in the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_in_every_window_as_the_upstream_counts() {
    let mock = Mock::start().await;
    let w = Arc::new(world(
        &service(
            "acme",
            &mock,
            "rate_limit = \"20/s\"\nqueue_wait = \"10s\"\n",
        ),
        r#"["acme:read"]"#,
        "",
    ));
    let calls = (0..40).map(|n| {
        let w = Arc::clone(&w);
        tokio::spawn(async move {
            w.direct
                .proxy(proxy("acme", Method::GET, &format!("things/{n}"), ""))
                .await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.expect("joined").expect("reply").status(), 200);
    }
    let mut arrivals: Vec<std::time::Instant> = mock.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 40);
    let most = (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|t| t.duration_since(arrivals[i]) < std::time::Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most <= 20,
        "{most} requests reached the upstream within one second"
    );
}

fn oauth_service(world: &oauth::OAuthWorld, grant: &str, extra: &str) -> String {
    format!(
        "[services.crm]\nbase_url = \"{url}/v1\"\nretry = {{ attempts = 1 }}\nauth = {{ oauth2 = {{ token_url = \"{url}/oauth/token\", client_id = \"wireline-app\", client_secret = \"${{env:SERVICE_KEY}}\", grant = \"{grant}\"{extra} }} }}\n\
         [services.crm.operations.read_contact]\nmethod = \"GET\"\npath = \"/contacts/{{id}}\"\nscopes = [\"crm.objects.contacts.read\"]\n\
         [services.crm.operations.write_note]\nmethod = \"POST\"\npath = \"/notes\"\nscopes = [\"crm.objects.notes.write\", \"crm.objects.contacts.read\"]\n",
        url = world.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_fetched_once_for_a_hundred_concurrent_calls_and_cached() {
    let oauth = oauth::start(3600, "unused").await;
    let w = Arc::new(world(
        &oauth_service(&oauth, "client_credentials", ""),
        r#"["crm:read"]"#,
        "",
    ));
    let calls = (0..100).map(|_| {
        let w = Arc::clone(&w);
        tokio::spawn(async move {
            w.direct
                .proxy(proxy("crm", Method::GET, "contacts/1", ""))
                .await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.expect("joined").expect("reply").status(), 200);
    }
    let requests = oauth.issuer.requests.lock().expect("lock").clone();
    assert_eq!(
        requests.len(),
        1,
        "single flight: one refresh for 100 waiting calls"
    );
    let (grant, scope, client) = &requests[0];
    assert_eq!(grant, "client_credentials");
    assert_eq!(
        scope, "crm.objects.contacts.read crm.objects.notes.write",
        "the union of what the operations need"
    );
    assert!(
        client.starts_with("Basic "),
        "client authentication by HTTP Basic"
    );
    w.direct
        .proxy(proxy("crm", Method::GET, "contacts/2", ""))
        .await
        .expect("cached");
    assert_eq!(
        oauth.issuer.requests.lock().expect("lock").len(),
        1,
        "cached until near expiry"
    );
}

/// Tokens that live a few seconds (inside the old fixed 60 s margin) still serve every
/// concurrent caller: one token request for 30 calls, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_serve_every_concurrent_caller_and_a_401_forces_one_refresh() {
    let oauth = oauth::start(5, "unused").await;
    let w = Arc::new(world(
        &oauth_service(&oauth, "client_credentials", ""),
        r#"["crm:read"]"#,
        "",
    ));
    let calls = (0..30).map(|n| {
        let w = Arc::clone(&w);
        tokio::spawn(async move {
            w.direct
                .proxy(proxy("crm", Method::GET, &format!("contacts/{n}"), ""))
                .await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.expect("joined").expect("reply").status(), 200);
    }
    assert_eq!(
        oauth.issuer.requests.lock().expect("lock").len(),
        1,
        "one 5 s token for 30 concurrent calls"
    );
    // The provider revokes the token it issued: the next call gets 401, refreshes once, and
    // succeeds with the new token.
    oauth.issuer.valid.lock().expect("lock").clear();
    let reply = w
        .direct
        .proxy(proxy("crm", Method::GET, "contacts/1", ""))
        .await
        .expect("second");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        header(&reply, "wireline-attempts"),
        Some("1"),
        "one attempt"
    );
    assert_eq!(oauth.issuer.requests.lock().expect("lock").len(), 2);
    let calls = oauth.issuer.calls.lock().expect("lock").clone();
    assert_eq!(
        calls.len(),
        32,
        "30 calls, the refused one, then the retry: {calls:?}"
    );
    assert_ne!(calls[30], calls[31]);
}

/// A POST refused with 401 is sent again with a new token inside the same attempt: it is
/// one execution for its idempotency key, so the agent gets the real answer, an identical
/// call replays that answer, and a 401 is never stored under a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_with_401_gets_a_new_token_and_its_key_never_holds_the_401() {
    let oauth = oauth::start(3600, "unused").await;
    let w = world(
        &oauth_service(&oauth, "client_credentials", ""),
        r#"["crm:write"]"#,
        "",
    );
    let note = |text: &str| OperationRequest {
        caller: bot(),
        service: "crm".into(),
        operation: "write_note".into(),
        params: json!({ "text": text }),
        idempotency_key: None,
    };
    assert_eq!(
        w.direct
            .operation(note("first"))
            .await
            .expect("reply")
            .status(),
        200
    );
    oauth.issuer.valid.lock().expect("lock").clear();
    let reply = w.direct.operation(note("second")).await.expect("reply");
    assert_eq!(reply.status(), 200, "refreshed and sent again, not the 401");
    assert_eq!(header(&reply, "idempotent-replayed"), None);
    let again = w.direct.operation(note("second")).await.expect("reply");
    assert_eq!(
        (
            again.status().as_u16(),
            header(&again, "idempotent-replayed")
        ),
        (200, Some("true")),
        "the identical call replays the 200"
    );
    assert_eq!(oauth.issuer.calls.lock().expect("lock").len(), 3);
    // No new token to be had: the credential is the problem, and the key stays free.
    oauth.issuer.valid.lock().expect("lock").clear();
    *oauth.issuer.revoked.lock().expect("lock") = true;
    let refused = w
        .direct
        .operation(note("third"))
        .await
        .expect_err("no token");
    assert_eq!(refused.kind, ProblemKind::CredentialExpired);
    *oauth.issuer.revoked.lock().expect("lock") = false;
    let fixed = w.direct.operation(note("third")).await.expect("reply");
    assert_eq!(
        (
            fixed.status().as_u16(),
            header(&fixed, "idempotent-replayed")
        ),
        (200, None),
        "once the credential is fixed the same call goes through: no 401 was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_replace_the_old_one_and_a_revoked_grant_fails_fast_with_an_alert() {
    let oauth = oauth::start(30, OTHER_TOKEN).await;
    let w = world(
        &oauth_service(
            &oauth,
            "refresh_token",
            ", refresh_token = \"${env:OTHER_TOKEN}\"",
        ),
        r#"["crm:read"]"#,
        "",
    );
    // Each refresh rotates the refresh token; only the newest is accepted by the server.
    // After the first call, the provider drops the access tokens it issued, so every call
    // gets a 401 and refreshes.
    for round in 0..3 {
        if round > 0 {
            oauth.issuer.valid.lock().expect("lock").clear();
        }
        assert_eq!(
            w.direct
                .proxy(proxy("crm", Method::GET, "contacts/1", ""))
                .await
                .expect("reply")
                .status(),
            200
        );
    }
    let grants: Vec<String> = oauth
        .issuer
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(grants, ["refresh_token", "refresh_token", "refresh_token"]);
    *oauth.issuer.revoked.lock().expect("lock") = true;
    oauth.issuer.valid.lock().expect("lock").clear();
    let started = std::time::Instant::now();
    let refused = w
        .direct
        .proxy(proxy("crm", Method::GET, "contacts/1", ""))
        .await
        .expect_err("no token, no call");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "fails fast, no hang"
    );
    assert_eq!(refused.kind, ProblemKind::CredentialExpired);
    assert_eq!(refused.status, 503);
    assert!(
        refused.detail.contains("invalid_grant")
            && refused.detail.contains("[services.crm.auth.oauth2]"),
        "{}",
        refused.detail
    );
    let events = w.recorded().await;
    let types: Vec<&str> = events.iter().map(|e| e.ty.as_str()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "wireline.oauth.refreshed")
            .count(),
        3,
        "{types:?}"
    );
    assert!(
        types.contains(&"wireline.alert.credential_expired"),
        "{types:?}"
    );
    for event in &events {
        assert!(
            !event.body.contains("at-")
                && !event.body.contains("rt-")
                && !event.body.contains(OTHER_TOKEN),
            "no token in {}",
            event.body
        );
    }
    assert!(!refused.detail.contains("rt-") && !refused.detail.contains(SERVICE_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_its_own_oauth_app_gets_tokens_of_its_own() {
    use base64::Engine;
    let oauth = oauth::start(3600, "unused").await;
    let own_app = format!(
        "credentials.crm = {{ oauth2 = {{ token_url = \"{}/oauth/token\", client_id = \"bot-app\", client_secret = \"${{env:OWN_KEY}}\", scopes = [\"crm.objects.contacts.read\"] }} }}",
        oauth.url
    );
    let w = world(
        &oauth_service(&oauth, "client_credentials", ""),
        r#"["crm:read"]"#,
        &own_app,
    );
    // The bot calls with its own app's token; the operator with the service's.
    for _ in 0..2 {
        let reply = w
            .direct
            .proxy(proxy("crm", Method::GET, "contacts/1", ""))
            .await
            .expect("bot's call");
        assert_eq!(reply.status(), 200);
    }
    let reply = w
        .direct
        .operation(OperationRequest {
            caller: Caller::Operator,
            service: "crm".into(),
            operation: "read_contact".into(),
            params: json!({"id": "7"}),
            idempotency_key: None,
        })
        .await
        .expect("operator's call");
    assert_eq!(reply.status(), 200);
    let basic = |client: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"))
        )
    };
    let requests = oauth.issuer.requests.lock().expect("lock").clone();
    let clients: Vec<&str> = requests.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        clients,
        [
            basic("bot-app", OWN_KEY).as_str(),
            basic("wireline-app", SERVICE_KEY).as_str()
        ],
        "one token each, from each app, cached for the bot's second call"
    );
    assert_eq!(
        requests[0].1, "crm.objects.contacts.read",
        "the bot's own scopes"
    );
    let calls = oauth.issuer.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0], calls[1], "the bot's cached token");
    assert_ne!(
        calls[0], calls[2],
        "the operator never uses the bot's token"
    );
    // The refresh audit says whose token it was (never the token).
    let events = w.recorded().await;
    let refreshed: Vec<Value> = events
        .iter()
        .filter(|e| e.ty == "wireline.oauth.refreshed")
        .map(|e| e.event().expect("event").data.expect("data"))
        .collect();
    let agents: Vec<&Value> = refreshed.iter().map(|d| &d["agent"]).collect();
    assert_eq!(agents, [&json!("bot"), &Value::Null]);
    assert!(events.iter().all(|e| !e.body.contains(&calls[0])));
}
