//! Polling against emulated providers in their real shapes: Stripe's newest-first events list
//! (`has_more`, `starting_after`, `created[gte]`) and a GitHub-style feed (ETag,
//! `X-Poll-Interval`, `Link` pages), with scripted failures.

mod props;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use wireline_config::{Env, Loaded, load_str};
use wireline_core::Offset;
use wireline_direct::Direct;
use wireline_poll::sync::{PageRef, Source};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};

#[derive(Default)]
struct Provider {
    /// (id, created, type), oldest first.
    events: Mutex<Vec<(String, i64, String)>>,
    /// Statuses to answer the next list calls with instead of the list.
    failures: Mutex<VecDeque<u16>>,
    /// The query of every list call.
    calls: Mutex<Vec<BTreeMap<String, String>>>,
}

impl Provider {
    fn add(&self, id: &str, created: i64, ty: &str) {
        self.events
            .lock()
            .expect("lock")
            .push((id.to_owned(), created, ty.to_owned()));
    }
}

/// `GET /v1/events` as Stripe answers it: newest first, `limit`, `starting_after` (older than
/// that id), `created[gte]`, `has_more`; the bearer key must be the service's.
async fn stripe_events(
    State(provider): State<Arc<Provider>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    provider.calls.lock().expect("lock").push(query.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk_poll_key") {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    if let Some(status) = provider.failures.lock().expect("lock").pop_front() {
        let mut response = (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(json!({"error": {"type": "api_error"}})),
        )
            .into_response();
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", "1".parse().expect("value"));
        }
        return response;
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let gte: i64 = query
        .get("created[gte]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN);
    let mut newest_first: Vec<(String, i64, String)> =
        provider.events.lock().expect("lock").clone();
    // Newest first; ties by insertion order, newest inserted first (as Stripe's ids sort).
    newest_first.reverse();
    newest_first.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut listed: Vec<_> = newest_first.into_iter().filter(|e| e.1 >= gte).collect();
    if let Some(after) = query.get("starting_after") {
        let Some(position) = listed.iter().position(|e| &e.0 == after) else {
            return (StatusCode::BAD_REQUEST, "{}").into_response();
        };
        listed.drain(..=position);
    }
    let has_more = listed.len() > limit;
    listed.truncate(limit);
    let data: Vec<Value> = listed
        .iter()
        .map(|(id, created, ty)| json!({"id": id, "object": "event", "created": created, "type": ty, "data": {"object": {}}}))
        .collect();
    axum::Json(json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": data}))
        .into_response()
}

async fn start(provider: &Arc<Provider>) -> String {
    let app = Router::new()
        .route("/v1/events", get(stripe_events))
        .with_state(Arc::clone(provider));
    crate::serve(app).await
}

struct World {
    direct: Direct,
    store: Arc<dyn Store>,
    sqlite: SqliteStore,
    loaded: Loaded,
}

fn world(dir: &Path, base_url: &str, poll: &str) -> World {
    let text = format!(
        "[services.stripe]\nbase_url = \"{base_url}\"\nauth = {{ bearer = \"${{env:STRIPE_KEY}}\" }}\nretry = {{ attempts = 1 }}\n[services.stripe.poll]\n{poll}\n"
    );
    let vars = BTreeMap::from([("STRIPE_KEY".to_owned(), "sk_poll_key".to_owned())]);
    let loaded = load_str(&text, &dir.join("wireline.toml"), &Env::from_map(vars))
        .unwrap_or_else(|f| panic!("{f:#?}"));
    let sqlite = SqliteStore::open(&dir.join("w.db")).expect("store");
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let direct = Direct::new(&loaded.config, dir, Arc::clone(&store)).expect("direct");
    World {
        direct,
        store,
        sqlite,
        loaded,
    }
}

impl World {
    fn source(&self) -> Source {
        let service = &self.loaded.config.services["stripe"];
        Source {
            service: "stripe".into(),
            name: None,
            spec: service.poll.as_ref().expect("poll").spec().expect("spec"),
            base_url: url::Url::parse(&service.base_url).expect("url"),
            subjects: wireline_webhook::Subjects::new(&self.loaded.config),
        }
    }

    /// Ids of the polled events in the log, in log order.
    async fn logged(&self) -> Vec<String> {
        self.sqlite
            .read(Offset::START, 100_000)
            .await
            .expect("read")
            .into_iter()
            .filter(|e| e.ty.starts_with("stripe."))
            .map(|e| e.event().expect("event").id)
            .collect()
    }
}

fn assert_each_once(logged: &[String], expected: usize) {
    let distinct: std::collections::BTreeSet<_> = logged.iter().collect();
    assert_eq!(distinct.len(), logged.len(), "an event was stored twice");
    assert_eq!(logged.len(), expected);
}

#[tokio::test]
async fn a_full_sync_then_increments_each_event_once() {
    let provider = Arc::new(Provider::default());
    for n in 0..250 {
        provider.add(
            &format!("evt_{n:03}"),
            1_700_000_000 + n,
            "charge.succeeded",
        );
    }
    let url = start(&provider).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path(), &url, "preset = \"stripe-events\"");
    let source = w.source();
    let outcome = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert_eq!(
        (outcome.pages, outcome.new, outcome.finished),
        (3, 250, true)
    );
    assert_each_once(&w.logged().await, 250);
    let checkpoint = source
        .checkpoint(w.store.as_ref())
        .await
        .expect("checkpoint");
    assert_eq!(
        checkpoint.watermark,
        Some(1_700_000_249),
        "the newest item's own time"
    );

    // New events, and a late one with an old timestamp inside the overlap window.
    provider.add("evt_late", 1_700_000_100, "charge.refunded");
    for n in 250..255 {
        provider.add(
            &format!("evt_{n:03}"),
            1_700_000_000 + n,
            "charge.succeeded",
        );
    }
    let outcome = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert_eq!(outcome.new, 6, "the five new ones and the late one");
    assert!(
        outcome.duplicates > 0,
        "the overlap is read again and dropped by id"
    );
    assert_each_once(&w.logged().await, 256);
    let calls = provider.calls.lock().expect("lock").clone();
    assert_eq!(
        calls
            .last()
            .and_then(|q| q.get("created[gte]"))
            .map(String::as_str),
        Some("1699999949"),
        "the watermark minus the 5-minute overlap"
    );
    let event = w.sqlite.read(Offset::START, 1).await.expect("read")[0]
        .event()
        .expect("event");
    assert_eq!(
        (event.ty.as_str(), event.source.as_str()),
        ("stripe.charge.succeeded", "wireline://poll/stripe")
    );
}

#[tokio::test]
async fn a_sync_cut_short_resumes_from_its_last_page() {
    let provider = Arc::new(Provider::default());
    for n in 0..250 {
        provider.add(
            &format!("evt_{n:03}"),
            1_700_000_000 + n,
            "charge.succeeded",
        );
    }
    let url = start(&provider).await;
    // One page per poll (max_pages = 1), a "crash" (a new process on the same database) after
    // the first, a 500 on the next call, then success.
    let dir = tempfile::tempdir().expect("dir");
    let poll = "preset = \"stripe-events\"\nmax_pages = 1";
    {
        let w = world(dir.path(), &url, poll);
        let outcome = w
            .source()
            .poll(&w.direct, &w.store, None)
            .await
            .expect("page 1");
        assert_eq!(
            (outcome.pages, outcome.new, outcome.finished),
            (1, 100, false)
        );
        let checkpoint = w
            .source()
            .checkpoint(w.store.as_ref())
            .await
            .expect("checkpoint");
        assert_eq!(
            checkpoint.run.expect("in progress").next,
            PageRef::Cursor("evt_150".into())
        );
        w.sqlite.close().await.expect("close");
    }
    let w = world(dir.path(), &url, poll);
    provider.calls.lock().expect("lock").clear();
    provider.failures.lock().expect("lock").push_back(500);
    let failed = w.source().poll(&w.direct, &w.store, None).await;
    assert!(failed.is_err(), "the 500 ends this poll");
    let resumed = w
        .source()
        .poll(&w.direct, &w.store, None)
        .await
        .expect("page 2");
    assert_eq!((resumed.new, resumed.finished), (100, false));
    let last = w
        .source()
        .poll(&w.direct, &w.store, None)
        .await
        .expect("page 3");
    assert_eq!((last.new, last.finished), (50, true));
    let calls = provider.calls.lock().expect("lock").clone();
    let cursors: Vec<Option<&str>> = calls
        .iter()
        .map(|q| q.get("starting_after").map(String::as_str))
        .collect();
    assert_eq!(
        cursors,
        [Some("evt_150"), Some("evt_150"), Some("evt_050")],
        "after the restart and the failure the sync goes on from its last page, never from the top"
    );
    assert_each_once(&w.logged().await, 250);
}

#[tokio::test]
async fn items_sharing_a_timestamp_across_a_page_boundary_are_neither_missed_nor_doubled() {
    let provider = Arc::new(Provider::default());
    for n in 0..150 {
        provider.add(&format!("evt_{n:03}"), 1_700_000_000, "invoice.paid");
    }
    let url = start(&provider).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(
        dir.path(),
        &url,
        "preset = \"stripe-events\"\noverlap = \"0s\"",
    );
    let source = w.source();
    assert_eq!(
        source
            .poll(&w.direct, &w.store, None)
            .await
            .expect("poll")
            .new,
        150
    );
    // One more in the same second, after the sync: created[gte] (not gt) still finds it.
    provider.add("evt_150", 1_700_000_000, "invoice.paid");
    let outcome = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert_eq!((outcome.new, outcome.duplicates), (1, 150));
    assert_each_once(&w.logged().await, 151);
}

#[tokio::test]
async fn a_webhook_and_a_poll_of_the_same_event_store_it_once() {
    let provider = Arc::new(Provider::default());
    provider.add("evt_both", 1_700_000_000, "payment_intent.succeeded");
    provider.add("evt_poll_only", 1_700_000_001, "payment_intent.succeeded");
    let url = start(&provider).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path(), &url, "preset = \"stripe-events\"");
    // The webhook path saw evt_both first (same dedupe id as the poll's).
    let mut event = wireline_core::Event::new(
        "evt_both",
        "wireline://hooks/stripe",
        "stripe.payment_intent.succeeded",
        jiff::Timestamp::now(),
        json!({}),
    );
    event.datacontenttype = Some("application/json".into());
    w.store
        .append(&wireline_webhook::dedupe_id("stripe", "evt_both"), &event)
        .await
        .expect("webhook append");
    let outcome = w
        .source()
        .poll(&w.direct, &w.store, None)
        .await
        .expect("poll");
    assert_eq!((outcome.new, outcome.duplicates), (1, 1));
    let stored = w.sqlite.read(Offset::START, 10).await.expect("read");
    let sources: Vec<String> = stored
        .iter()
        .filter(|e| e.ty.starts_with("stripe."))
        .map(|e| e.event().expect("event").source)
        .collect();
    assert_eq!(
        sources,
        ["wireline://hooks/stripe", "wireline://poll/stripe"],
        "each path's first sighting is kept"
    );
}

/// A GitHub-style feed: newest first, 2 per page via `Link: rel="next"`, an `ETag` per
/// content, `X-Poll-Interval: 60`; `If-None-Match` with the current ETag gets a bare 304.
async fn github_events(
    State(provider): State<Arc<Provider>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    provider.calls.lock().expect("lock").push(query.clone());
    let events = provider.events.lock().expect("lock").clone();
    let etag = format!("\"v{}\"", events.len());
    if !query.contains_key("page")
        && headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str())
    {
        return (
            StatusCode::NOT_MODIFIED,
            [("x-poll-interval", "60"), ("etag", etag.as_str())],
        )
            .into_response();
    }
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let newest_first: Vec<_> = events.iter().rev().collect();
    let chunk: Vec<Value> = newest_first
        .iter()
        .skip((page - 1) * 2)
        .take(2)
        .map(|(id, created, ty)| {
            let at = jiff::Timestamp::from_second(*created)
                .expect("time")
                .to_string();
            json!({"id": id, "type": ty, "created_at": at})
        })
        .collect();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut response = axum::Json(chunk).into_response();
    let out = response.headers_mut();
    out.insert("etag", etag.parse().expect("etag"));
    out.insert("x-poll-interval", "60".parse().expect("value"));
    let next_host = if provider.failures.lock().expect("lock").front() == Some(&666) {
        "evil.example".to_owned()
    } else {
        host
    };
    if page * 2 < newest_first.len() {
        let link = format!(
            "<http://{next_host}/repos/o/r/events?page={}>; rel=\"next\", <http://{next_host}/repos/o/r/events?page=9>; rel=\"last\"",
            page + 1
        );
        out.insert("link", link.parse().expect("link"));
    }
    response
}

async fn start_github(provider: &Arc<Provider>) -> String {
    let app = Router::new()
        .route("/repos/o/r/events", get(github_events))
        .with_state(Arc::clone(provider));
    crate::serve(app).await
}

#[tokio::test]
async fn link_pages_etag_304_and_poll_interval() {
    let provider = Arc::new(Provider::default());
    for n in 0..5 {
        provider.add(&format!("{}", 9000 + n), 1_700_000_000 + n, "IssuesEvent");
    }
    let url = start_github(&provider).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(
        dir.path(),
        &url,
        "preset = \"github-events\"\npath = \"/repos/o/r/events\"",
    );
    let source = w.source();
    let outcome = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert_eq!(
        (outcome.pages, outcome.new, outcome.finished),
        (3, 5, true),
        "three Link pages"
    );
    assert_eq!(outcome.poll_interval, Some(60));
    let event = w.sqlite.read(Offset::START, 1).await.expect("read")[0]
        .event()
        .expect("event");
    assert_eq!(
        event.ty, "stripe.IssuesEvent",
        "SERVICE.TYPE (this service is named stripe here)"
    );
    assert_eq!(
        event.time.as_second(),
        1_700_000_004,
        "the item's own time, RFC 3339 parsed"
    );
    let again = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert!(
        again.not_modified,
        "If-None-Match with the stored ETag: 304"
    );
    assert_eq!((again.pages, again.new), (1, 0));
    let checkpoint = source
        .checkpoint(w.store.as_ref())
        .await
        .expect("checkpoint");
    assert!(checkpoint.not_before.is_some(), "X-Poll-Interval is kept");

    // A next link to another host is refused: the credential never leaves base_url.
    provider.add("9005", 1_700_000_005, "PushEvent");
    provider.failures.lock().expect("lock").push_back(666);
    let refused = source
        .poll(&w.direct, &w.store, None)
        .await
        .expect_err("refused");
    assert_eq!(refused.kind, wireline_core::ProblemKind::ForbiddenTarget);
    assert!(
        refused.detail.contains("leaves its base_url"),
        "{}",
        refused.detail
    );
}

fn stripe_signature(secret: &str, body: &str, t: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hybrid_stores_every_event_once_and_reports_what_the_webhooks_missed() {
    const EVENTS: i64 = 200;
    let provider = Arc::new(Provider::default());
    let now = jiff::Timestamp::now().as_second();
    for n in 0..EVENTS {
        provider.add(&format!("evt_{n:03}"), now - 600 + n, "charge.succeeded");
    }
    let url = start(&provider).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(
        dir.path(),
        &url,
        "preset = \"stripe-events\"\nreconcile = true\n[services.stripe.webhook]\nscheme = \"stripe\"\nsecret = \"${env:STRIPE_KEY}\"",
    );
    let ingest =
        wireline_webhook::Ingest::new(&w.loaded.config, Arc::clone(&w.store)).expect("ingest");
    // The emulator's webhooks: every 20th dropped, every 25th (offset by one) sent twice,
    // all in a shuffled order.
    let mut sends = Vec::new();
    let (mut dropped, mut doubled) = (0, 0);
    for n in 0..EVENTS {
        if n % 20 == 0 {
            dropped += 1;
            continue;
        }
        sends.push(n);
        if n % 25 == 1 {
            doubled += 1;
            sends.push(n);
        }
    }
    use rand::seq::SliceRandom;
    sends.shuffle(&mut rand::rng());
    for n in sends {
        let body = json!({"id": format!("evt_{n:03}"), "object": "event", "created": now - 600 + n, "type": "charge.succeeded", "data": {"object": {}}}).to_string();
        let mut headers = HeaderMap::new();
        headers.insert(
            "stripe-signature",
            stripe_signature("sk_poll_key", &body, now)
                .parse()
                .expect("header"),
        );
        ingest
            .receive(
                "stripe",
                &headers,
                bytes::Bytes::from(body),
                jiff::Timestamp::now(),
            )
            .await
            .expect("webhook stored");
    }
    // The reconciling poll, with list calls failing now and then.
    provider
        .failures
        .lock()
        .expect("lock")
        .extend([500, 429, 500]);
    let source = w.source();
    let mut finished = false;
    for _ in 0..20 {
        if let Ok(outcome) = source.poll(&w.direct, &w.store, None).await
            && outcome.finished
        {
            finished = true;
            break;
        }
    }
    assert!(finished, "the poll got through the failures");
    assert_each_once(&w.logged().await, EVENTS as usize);

    let report = wireline_poll::report::capture_report(w.store.as_ref(), "stripe", None, None)
        .await
        .expect("report");
    assert_eq!(report.total, EVENTS as u64);
    assert_eq!(
        report.webhook_missed, dropped,
        "exactly what the emulator dropped"
    );
    assert_eq!(report.first_by_poll, dropped);
    assert_eq!(report.first_by_webhook, EVENTS as u64 - dropped);
    assert_eq!(
        report.webhook_duplicates, doubled,
        "exactly what the emulator doubled"
    );
    assert_eq!(report.webhook_capture_rate, Some(0.95));
    assert!(report.webhook_lag_ms.is_some() && report.poll_lag_ms.is_some());
}

#[tokio::test]
async fn each_source_has_its_own_endpoint_and_checkpoint() {
    let app = Router::new().route(
        "/inbox/{owner}",
        get(|axum::extract::Path(owner): axum::extract::Path<String>| async move {
            axum::Json(json!([{"id": format!("{owner}-1"), "at": 1_700_000_000}, {"id": format!("{owner}-2"), "at": 1_700_000_001}]))
        }),
    );
    let url = crate::serve(app).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(
        dir.path(),
        &url,
        "path = \"/inbox/{source}\"\ntime = \"at\"\nsources = [\"ann\", \"bob\"]",
    );
    let base = w.source();
    for owner in ["ann", "bob"] {
        let source = Source {
            name: Some(owner.to_owned()),
            spec: base.spec.for_source(owner),
            ..w.source()
        };
        assert_eq!(
            source
                .poll(&w.direct, &w.store, None)
                .await
                .expect("poll")
                .new,
            2
        );
        let checkpoint = source
            .checkpoint(w.store.as_ref())
            .await
            .expect("checkpoint");
        assert_eq!(checkpoint.watermark, Some(1_700_000_001), "{owner}");
        assert_eq!(source.checkpoint_name(), format!("poll:stripe:{owner}"));
    }
    assert_each_once(&w.logged().await, 4);
}

/// A generic list paged two ways: `?page=N` with `has_more`, and a `next` URL in the body.
async fn paged(Query(query): Query<BTreeMap<String, String>>, uri: axum::http::Uri) -> Response {
    let items: Vec<Value> = (1..=5)
        .map(|n| json!({"id": n, "at": 1_700_000_000 + n}))
        .collect();
    if uri.path() == "/numbered" {
        let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let chunk: Vec<Value> = items
            .iter()
            .skip((page.max(1) - 1) * 2)
            .take(2)
            .cloned()
            .collect();
        return axum::Json(json!({"items": chunk, "more": page * 2 < 5})).into_response();
    }
    if uri.path() == "/limited" {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "30")], "{}").into_response();
    }
    let offset: usize = query
        .get("offset")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let chunk: Vec<Value> = items.iter().skip(offset).take(2).cloned().collect();
    let next = (offset + 2 < 5).then(|| format!("/linked?offset={}", offset + 2));
    axum::Json(json!({"data": {"items": chunk}, "next": next})).into_response()
}

#[tokio::test]
async fn page_numbers_next_urls_and_retry_after() {
    let app = Router::new()
        .route("/numbered", get(paged))
        .route("/linked", get(paged))
        .route("/limited", get(paged))
        .route("/grouped", get(paged));
    let url = crate::serve(app).await;
    let cases = [
        (
            "path = \"/numbered\"\nitems = \"items\"\nnext = \"page:page\"\nhas_more = \"more\"",
            3,
        ),
        (
            "path = \"/linked\"\nitems = \"data.items\"\nnext = \"body:next\"",
            3,
        ),
    ];
    for (poll, pages) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let w = world(dir.path(), &url, &format!("{poll}\ntime = \"at\""));
        let outcome = w
            .source()
            .poll(&w.direct, &w.store, None)
            .await
            .expect("poll");
        assert_eq!(
            (outcome.pages, outcome.new, outcome.finished),
            (pages, 5, true),
            "{poll}"
        );
        assert_each_once(&w.logged().await, 5);
    }
    let dir = tempfile::tempdir().expect("dir");
    let w = world(dir.path(), &url, "path = \"/limited\"");
    let limited = w
        .source()
        .poll(&w.direct, &w.store, None)
        .await
        .expect_err("429");
    assert_eq!(
        limited.retry_after,
        Some(30),
        "the next poll waits for Retry-After"
    );
}

/// An oldest-first list paged by `after=<id>` (ids ascending), two per page.
async fn ascending(
    State(provider): State<Arc<Provider>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    provider.calls.lock().expect("lock").push(query.clone());
    let events = provider.events.lock().expect("lock").clone();
    let start = match query.get("after") {
        Some(after) => events
            .iter()
            .position(|e| &e.0 == after)
            .map_or(0, |p| p + 1),
        None => 0,
    };
    let chunk: Vec<Value> = events
        .iter()
        .skip(start)
        .take(2)
        .map(|e| json!({"id": e.0}))
        .collect();
    axum::Json(json!({"items": chunk, "has_more": start + 2 < events.len()})).into_response()
}

#[tokio::test]
async fn an_id_cursor_continues_after_the_last_item_ever_read() {
    let provider = Arc::new(Provider::default());
    for n in 0..3 {
        provider.add(&format!("m{n}"), 0, "message");
    }
    let app = Router::new()
        .route("/messages", get(ascending))
        .with_state(Arc::clone(&provider));
    let url = crate::serve(app).await;
    let dir = tempfile::tempdir().expect("dir");
    let w = world(
        dir.path(),
        &url,
        "path = \"/messages\"\nitems = \"items\"\nnext = \"cursor:after\"\nhas_more = \"has_more\"\nid_cursor = true",
    );
    let source = w.source();
    assert_eq!(
        source
            .poll(&w.direct, &w.store, None)
            .await
            .expect("poll")
            .new,
        3
    );
    provider.add("m3", 0, "message");
    provider.calls.lock().expect("lock").clear();
    let outcome = source.poll(&w.direct, &w.store, None).await.expect("poll");
    assert_eq!(
        (outcome.new, outcome.duplicates),
        (1, 0),
        "only what came after m2"
    );
    let calls = provider.calls.lock().expect("lock").clone();
    assert_eq!(calls[0].get("after").map(String::as_str), Some("m2"));
    assert_each_once(&w.logged().await, 4);
}

/// Serves `app` on a free loopback port until the test ends; returns `http://ADDRESS`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
