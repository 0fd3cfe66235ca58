//! The HTTP server: one listener, the routes, the middleware stack, and graceful shutdown.
//!
//! Routes here are the frame's own (`/healthz`, `/readyz`, `/metrics`); the patterns mount
//! theirs (`/hooks`, `/proxy`, `/v1`) into [`router`] as they arrive.

mod direct;
pub(crate) mod events;
mod hooks;
mod problem;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};
use wireline_config::Loaded;
use wireline_core::{Problem, ProblemKind, Size};
use wireline_direct::Direct;
use wireline_events::{Clock, Projections, Retention, Triggers};
use wireline_poll::Pollers;
use wireline_store::Store;
use wireline_store::sqlite::SqliteStore;
use wireline_webhook::Ingest;
use wireline_webhook::delivery::{Deliveries, Head, Patterns};

use crate::telemetry;
pub use problem::ApiError;

/// What every handler can reach. Every request clones it (axum's `State`), so it is one `Arc`
/// around the parts instead of a dozen.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
    direct: Arc<Direct>,
    hooks: Arc<Ingest>,
    head: Arc<Head>,
    deliveries: Arc<Deliveries>,
    /// Per agent, the event types its subscriptions allow it to read.
    readers: BTreeMap<String, Patterns>,
    /// Per subscription name, the agent it belongs to.
    owners: BTreeMap<String, String>,
    /// Services with a webhook and a reconciling poll (the hybrid pattern).
    reconciled: Vec<String>,
    /// Where subjects are in produced events' data.
    subjects: wireline_webhook::Subjects,
    /// The declared projections.
    projections: std::collections::BTreeSet<String>,
}

/// Opens the store, binds the listener, serves until a shutdown signal, then drains in-flight
/// requests (up to `[server] shutdown_grace`) and closes the store.
pub async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let server_config = loaded.config.server.clone();
    let metrics = telemetry::init_metrics()?;
    // Certificates first: a bad path fails before anything binds or opens.
    let tls_config = match &server_config.tls {
        Some(files) => Some(tls::config(
            &loaded.base_dir.join(&files.cert),
            &loaded.base_dir.join(&files.key),
        )?),
        None => None,
    };
    // Bind before opening the store: a port in use then leaves no database file behind.
    let listener = TcpListener::bind(server_config.listen)
        .await
        .map_err(|error| bind_error(server_config.listen, &error))?;
    // An environment with `mock = true` (dev) brings the emulators its services point at.
    let emulators = match loaded
        .config
        .active_environment
        .as_ref()
        .and_then(|name| loaded.config.environments.get(name))
    {
        Some(environment) if environment.mock => {
            let options =
                wireline_mock::Options::from_config(&loaded.config.mock, &loaded.base_dir)
                    .map_err(anyhow::Error::msg)?;
            let address = loaded.config.mock.listen;
            let running = wireline_mock::Mock::start(options, address)
                .await
                .with_context(|| {
                    format!(
                        "cannot start the emulators on {address}; set [mock] listen to a free port"
                    )
                })?;
            info!(address = %running.address, "emulators listening");
            Some(running)
        }
        _ => None,
    };
    let store_path = loaded.storage_path();
    let store = SqliteStore::open(&store_path)?;
    let address = listener.local_addr()?;
    let shared = match wrap_store(&loaded.config, store.clone()) {
        Ok(shared) => shared,
        Err(error) => {
            let _ = store.close().await;
            return Err(error);
        }
    };
    let direct = match Direct::new(&loaded.config, &loaded.base_dir, Arc::clone(&shared)) {
        Ok(direct) => Arc::new(direct),
        Err(error) => {
            let _ = store.close().await;
            anyhow::bail!("{error}");
        }
    };
    let head = match shared.head().await {
        Ok(offset) => Head::new(offset),
        Err(error) => {
            let _ = store.close().await;
            anyhow::bail!("cannot read the event log: {error}");
        }
    };
    let hooks = match Ingest::new(&loaded.config, Arc::clone(&shared)) {
        Ok(hooks) => Arc::new(hooks.with_head(Arc::clone(&head))),
        Err(error) => {
            let _ = store.close().await;
            anyhow::bail!("{error}");
        }
    };
    let deliveries = match Deliveries::start(&loaded.config, Arc::clone(&shared), &head).await {
        Ok(deliveries) => Arc::new(deliveries),
        Err(error) => {
            let _ = store.close().await;
            anyhow::bail!("{error}");
        }
    };
    let pollers = match Pollers::start(
        &loaded.config,
        Arc::clone(&direct),
        Arc::clone(&shared),
        Arc::clone(&head),
    ) {
        Ok(pollers) => pollers,
        Err(error) => {
            deliveries.shutdown().await;
            let _ = store.close().await;
            anyhow::bail!("{error}");
        }
    };
    let triggers = match Triggers::start(
        &loaded.config,
        Arc::clone(&shared),
        Arc::clone(&head),
        Clock::System,
    )
    .await
    {
        Ok(triggers) => triggers,
        Err(error) => {
            pollers.shutdown().await;
            deliveries.shutdown().await;
            let _ = store.close().await;
            anyhow::bail!("cannot load the trigger rules' state: {error}");
        }
    };
    let projections = Projections::start(&loaded.config.projections, Arc::clone(&shared), &head);
    let retention = Retention::start(&loaded.config.events, Arc::clone(&shared));
    let mut readers = BTreeMap::<String, Vec<wireline_core::TypeGlob>>::new();
    for subscription in &loaded.config.subscriptions {
        readers
            .entry(subscription.agent.clone())
            .or_default()
            .extend(subscription.events.iter().cloned());
    }
    let state = AppState(Arc::new(Shared {
        store: shared,
        metrics,
        direct: Arc::clone(&direct),
        hooks,
        head,
        deliveries: Arc::clone(&deliveries),
        readers: readers
            .into_iter()
            .map(|(agent, globs)| (agent, Patterns::new(globs)))
            .collect(),
        subjects: wireline_webhook::Subjects::new(&loaded.config),
        projections: loaded.config.projections.keys().cloned().collect(),
        reconciled: loaded
            .config
            .services
            .iter()
            .filter(|(_, s)| s.webhook.is_some() && s.poll.as_ref().is_some_and(|p| p.reconcile))
            .map(|(name, _)| name.clone())
            .collect(),
        owners: loaded
            .config
            .named_subscriptions()
            .into_iter()
            .map(|(name, subscription)| (name, subscription.agent.clone()))
            .collect(),
    }));
    let app = router(state, server_config.body_limit);
    info!(%address, tls = tls_config.is_some(), storage = %store_path.display(), environment = loaded.config.active_environment.as_deref().unwrap_or("-"), version = env!("CARGO_PKG_VERSION"), "wireline listening");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = match &tls_config {
        Some(config) => tokio::spawn(tls::serve(listener, app, Arc::clone(config), stopped)),
        None => {
            // No Nagle delay on responses: agents wait on every reply.
            let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
                let _ = stream.set_nodelay(true);
            });
            tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .into_future(),
            )
        }
    };
    tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, "shutting down: no new connections, draining in-flight requests");
        }
        finished = &mut server => {
            retention.shutdown().await;
            projections.shutdown().await;
            triggers.shutdown().await;
            pollers.shutdown().await;
            deliveries.shutdown().await;
            direct.shutdown().await;
            let _ = store.close().await;
            finished.context("the server task failed")?.context("the server stopped")?;
            anyhow::bail!("the server stopped without a shutdown signal");
        }
    }
    // Streams end and delivery tasks stop at their next wait, so the drain below is not held
    // up by long-lived connections.
    deliveries.signal_stop();
    let _ = stop.send(());
    let grace = server_config.shutdown_grace.get();
    match tokio::time::timeout(grace, server).await {
        Ok(finished) => finished
            .context("the server task failed")?
            .context("the server failed while draining")?,
        Err(_) => {
            warn!(grace = %server_config.shutdown_grace, "in-flight requests still running after the grace period; stopping anyway")
        }
    }
    // In-flight requests are done (or timed out): store the audit records they left, then
    // close the store. Derived state (rules, projections) stores its position as it stops.
    retention.shutdown().await;
    projections.shutdown().await;
    triggers.shutdown().await;
    pollers.shutdown().await;
    deliveries.shutdown().await;
    direct.shutdown().await;
    store
        .close()
        .await
        .context("flushing the store at shutdown failed")?;
    if let Some(emulators) = emulators {
        emulators.shutdown().await;
    }
    info!("stopped");
    Ok(())
}

/// The store handle for `config`: with `[security] encryption_key`, the encryption wrapper
/// (sensitive services' and types' payloads, and idempotency responses, sealed).
pub fn wrap_store(
    config: &wireline_config::Config,
    store: SqliteStore,
) -> anyhow::Result<Arc<dyn Store>> {
    use secrecy::ExposeSecret;
    let Some(key) = &config.security.encryption_key else {
        return Ok(Arc::new(store));
    };
    let decode = |name: &str, secret: &wireline_config::Secret| -> anyhow::Result<Vec<u8>> {
        let text = secret
            .value()
            .map(|v| v.expose_secret().trim().to_owned())
            .ok_or_else(|| anyhow::anyhow!("{name} is not resolved"))?;
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            return hex::decode(&text).map_err(|_| anyhow::anyhow!("{name} is not hex"));
        }
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| anyhow::anyhow!("{name} must be 32 bytes as 64 hex digits or base64 (make one with `openssl rand -hex 32`)"))
    };
    let current = config
        .security
        .key_id
        .clone()
        .unwrap_or_else(|| "k1".to_owned());
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(current.clone(), decode("[security] encryption_key", key)?);
    for (id, secret) in &config.security.previous_keys {
        keys.insert(
            id.clone(),
            decode(&format!("[security] previous_keys.{id}"), secret)?,
        );
    }
    let cipher =
        wireline_store::encrypted::Cipher::new(&current, keys).map_err(anyhow::Error::msg)?;
    let mut sensitive = config.events.sensitive.clone();
    for (name, service) in &config.services {
        if service.sensitive
            && let Ok(glob) = format!("{name}.*").parse()
        {
            sensitive.push(glob);
        }
    }
    let paths = config
        .events
        .sensitive_paths
        .iter()
        .filter_map(|(pattern, paths)| Some((pattern.parse().ok()?, paths.clone())))
        .collect();
    Ok(Arc::new(
        wireline_store::encrypted::EncryptedStore::new(store, Arc::new(cipher), sensitive)
            .with_paths(paths),
    ))
}

fn bind_error(address: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    let fix = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "stop the other process, or set [server] listen to a free port"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; use a port above 1024 in [server] listen"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address; use 127.0.0.1 or one of its own addresses in [server] listen"
        }
        _ => "check [server] listen",
    };
    anyhow::anyhow!("cannot listen on {address}: {error}; {fix}")
}

async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                std::future::pending::<()>().await;
            }
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = interrupt => name,
        name = terminate => name,
    }
}

/// The router with its middleware; each comment says why a layer sits where it sits. Router
/// layers run outside-in from the last `.layer` call up; the `ServiceBuilder` ones from the
/// first listed down.
///
/// Metrics need the matched route, known only inside the router, so they and the body limit
/// whose refusals they count are router layers. The others wrap the router once, as one
/// service: as router layers they would wrap every route on its own, and each request would
/// clone a boxed service per layer.
pub fn router(state: AppState, body_limit: Size) -> Router {
    let limit = usize::try_from(body_limit.bytes()).unwrap_or(usize::MAX);
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/proxy/{service}", any(direct::proxy))
        .route("/proxy/{service}/{*path}", any(direct::proxy))
        .route(
            "/v1/operations/{service}/{operation}",
            post(direct::operation),
        )
        .route("/hooks/{service}", post(hooks::ingest))
        .route("/v1/events", get(hooks::pull).post(events::produce))
        .route("/v1/consumers/{name}", get(events::consumer))
        .route("/v1/subjects/{subject}/events", get(events::subject_events))
        .route("/v1/consumers/{name}/commit", post(events::commit))
        .route("/v1/projections/{name}", get(events::projection))
        .route(
            "/v1/projections/{name}/subjects/{subject}",
            get(events::projection_subject),
        )
        .route("/v1/events/stream", get(hooks::stream))
        .route("/v1/deliveries/dead", get(hooks::dead_letters))
        .route("/v1/reconciliation", get(hooks::reconciliation))
        .route(
            "/v1/deliveries/{subscription}/retry",
            post(hooks::retry_dead_letters),
        )
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .with_state(state)
        // Refuse oversized bodies before any handler reads them.
        .layer(RequestBodyLimitLayer::new(limit))
        // Metrics see the route template and the status the client gets (a bare error's as
        // rewritten below, by `problem::bare_error_kind`).
        .layer(middleware::from_fn_with_state(
            Arc::new(HttpMetrics::default()),
            track_metrics,
        ));
    let service = tower::ServiceBuilder::new()
        // Outermost: a panic anywhere inside becomes a 500 problem, not a dropped connection.
        .layer(CatchPanicLayer::custom(problem::panic_to_problem))
        .layer(TraceLayer::new_for_http())
        // Turn every bare error status (413 from the limit, 404, ...) into problem+json, so
        // clients see one error format whatever produced the error.
        .layer(middleware::map_response_with_state(
            body_limit,
            problem::bare_errors_to_problems,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .service(routes);
    Router::new().fallback_service(service)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(serde_json::json!({ "status": "ready" }))),
        Err(error) => {
            warn!(%error, "not ready: storage unreachable");
            Err(ApiError(
                Problem::new(
                    ProblemKind::StoreUnavailable,
                    "the store cannot be reached; retry shortly",
                )
                .with_retry_after(5),
            ))
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// `wireline_http_requests_total` and `wireline_http_request_duration_seconds`, by method,
/// route template (never the raw path: bounded label values) and status.
async fn track_metrics(
    State(cache): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // MatchedPath is an Arc<str>: cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status =
        problem::bare_error_kind(&response).map_or(response.status().as_u16(), ProblemKind::status);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    cache.record(route, method, status, started.elapsed());
    response
}

/// The method as a metric label: the standard ones by name, any other as `OTHER`, so a client
/// inventing methods cannot grow the label set without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The HTTP metrics' handles per route, method and status, registered on first use: building
/// the label strings and looking them up in the registry on every request cost more than the
/// counting itself.
#[derive(Default)]
struct HttpMetrics {
    /// Read on every request, written only when a label set is first seen.
    by_route: std::sync::RwLock<HashMap<String, ByLabel>>,
}

/// A route's handles per method and status.
type ByLabel = HashMap<(&'static str, u16), HttpHandles>;

struct HttpHandles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl HttpHandles {
    fn record(&self, took: std::time::Duration) {
        self.requests.increment(1);
        self.duration.record(took.as_secs_f64());
    }
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, took: std::time::Duration) {
        // A panic elsewhere while a lock was held leaves the map usable: recover it rather
        // than stop counting for the life of the process.
        {
            let by_route = self
                .by_route
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(handles) = by_route
                .get(route)
                .and_then(|by_label| by_label.get(&(method, status)))
            {
                handles.record(took);
                return;
            }
        }
        let mut by_route = self
            .by_route
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_route
            .entry(route.to_owned())
            .or_default()
            .entry((method, status))
            .or_insert_with(|| {
                let labels = [
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                HttpHandles {
                    requests: metrics::counter!("wireline_http_requests_total", &labels),
                    duration: metrics::histogram!(
                        "wireline_http_request_duration_seconds",
                        &labels
                    ),
                }
            })
            .record(took);
    }
}
