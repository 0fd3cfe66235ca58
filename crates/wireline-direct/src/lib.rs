//! The Direct API pattern: agents call services through Wireline.
//!
//! Two ways in, one path through: the transparent proxy ([`Direct::proxy`], `ANY
//! /proxy/{service}/{path}`) and named operations ([`Direct::operation`], `POST
//! /v1/operations/{service}/{op}` and `wireline call`). Both authenticate the agent
//! ([`agents`]), check its scope before anything leaves, build a target that cannot leave the
//! service's `base_url` ([`target`]), swap the agent's token for the upstream credential, and
//! run the attempt through the service's [`PolicyStack`]; then fallbacks, audit events, alerts
//! and metrics ([`record`]).
//!
//! This crate owns the only outbound HTTP client ([`client`]). It returns responses and
//! [`Problem`]s as data; turning a problem into HTTP is the server's job.
#![warn(missing_docs)]

pub mod agents;
pub mod anomaly;
pub mod client;
mod oauth;
pub mod operations;
pub mod providers;
mod record;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;
use wireline_config::Config;
use wireline_config::model::{Auth, Service};
use wireline_core::{Problem, ProblemKind};
use wireline_policy::limiter::LimiterConfig;
use wireline_policy::retry::BudgetConfig;
use wireline_policy::{
    Call, Execution, Failure, FallbackUsed, Outcome, PolicyConfig, PolicyStack, Response,
};
use wireline_store::Store;

pub use agents::Caller;
use client::Outbound;
use record::Recorder;

/// What a call through Wireline answers with.
pub type Reply = http::Response<Bytes>;

/// An agent's request to the transparent proxy.
#[derive(Debug)]
pub struct ProxyRequest {
    /// Who is calling.
    pub caller: Caller,
    /// The service name from the URL.
    pub service: String,
    /// The path below `/proxy/{service}/`, raw (percent-encoded), without a leading `/`.
    pub raw_path: String,
    /// The raw query string.
    pub raw_query: Option<String>,
    /// Method.
    pub method: http::Method,
    /// The agent's headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A named operation call.
#[derive(Debug)]
pub struct OperationRequest {
    /// Who is calling.
    pub caller: Caller,
    /// Service name.
    pub service: String,
    /// Operation name.
    pub operation: String,
    /// JSON object of parameters.
    pub params: Value,
    /// The agent's `Idempotency-Key`, if sent.
    pub idempotency_key: Option<String>,
}

/// One configured service at run time.
struct Runtime {
    name: String,
    config: Service,
    base: Url,
    client: reqwest::Client,
    stack: PolicyStack,
    agent_credentials: BTreeMap<String, Auth>,
    /// The service's OAuth 2.0 tokens, when its `auth` is `oauth2`.
    oauth: Option<Arc<oauth::TokenSource>>,
    /// Per agent whose own credential here is `oauth2`, its own tokens.
    agent_oauth: BTreeMap<String, Arc<oauth::TokenSource>>,
    /// Per agent, its anomaly keys here (`agent:NAME`, `credential:SERVICE:OWNER`), made once
    /// instead of on every call.
    anomaly_keys: BTreeMap<String, [String; 2]>,
}

impl Runtime {
    /// The OAuth tokens a call by `caller` uses here: the agent's own when it has its own
    /// credential (none unless that is `oauth2`), else the service's.
    fn token_source(&self, caller: &Caller) -> Option<&Arc<oauth::TokenSource>> {
        match caller {
            Caller::Agent(name) if self.agent_credentials.contains_key(name) => {
                self.agent_oauth.get(name)
            }
            _ => self.oauth.as_ref(),
        }
    }
}

/// Where a request goes inside a service.
#[derive(Clone)]
enum Target {
    Proxy {
        method: http::Method,
        raw_path: String,
        raw_query: Option<String>,
        headers: HeaderMap,
        body: Bytes,
    },
    Operation {
        name: String,
        params: serde_json::Map<String, Value>,
    },
}

/// The Direct API engine: agents, services with their clients and policy stacks, the recorder.
pub struct Direct {
    agents: agents::Agents,
    services: BTreeMap<String, Arc<Runtime>>,
    recorder: Arc<Recorder>,
    /// Call-rate anomalies (`[security.anomaly]`), `None` when disabled.
    anomaly: Option<std::sync::Mutex<anomaly::Detector>>,
    /// On tokio's clock, so tests with paused time drive the detector deterministically.
    started: tokio::time::Instant,
}

/// Headers never forwarded in either direction (hop-by-hop, framing, credentials).
const DROPPED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
    "idempotency-key",
    "expect",
];

fn policy_config(name: &str, service: &Service) -> PolicyConfig {
    let limit = |windows: &Option<wireline_config::model::RateLimit>| {
        windows.as_ref().map(|windows| LimiterConfig {
            windows: windows.0.clone(),
            headroom: service.headroom,
            max_wait: service.queue_wait.get(),
            burst: service.burst,
        })
    };
    PolicyConfig {
        service: name.to_owned(),
        attempts: service.retry.attempts,
        backoff: service.retry.backoff.get(),
        max_wait: service.retry.max_wait.get(),
        deadline: service.retry.deadline.get(),
        budget: BudgetConfig {
            ratio: service.retry.budget,
            floor_per_second: service.retry.budget_floor.per_second(),
            window: Duration::from_secs(10),
        },
        breaker_failures: service.circuit_breaker.failures,
        open_for: service.circuit_breaker.open_for.get(),
        timeout: service.timeout.get(),
        service_limit: limit(&service.rate_limit),
        agent_limit: limit(&service.agent_rate_limit),
        idempotency_ttl: service.idempotency.ttl.get(),
        stale_for: service.stale_for.map(|d| d.get()),
        static_fallback: service.fallback_response.as_ref().map(|r| Response {
            status: r.status,
            headers: HeaderMap::from_iter([(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )]),
            body: serde_json::to_vec(&r.body).unwrap_or_default().into(),
        }),
    }
}

impl Direct {
    /// Builds the engine from a loaded config (secrets resolved). Must run inside a tokio
    /// runtime (the recorder is a task). The error names the service and the fix.
    pub fn new(config: &Config, base_dir: &Path, store: Arc<dyn Store>) -> Result<Self, String> {
        let alert_client = client::build(None)?;
        let recorder = Arc::new(Recorder::start(
            Arc::clone(&store),
            alert_client,
            config.alerts.url.as_ref().and_then(|url| url.value()),
            config.alerts.slack,
            config.events.audit_flush.get(),
        ));
        let mut services = BTreeMap::new();
        for (name, service) in &config.services {
            let base = Url::parse(&service.base_url)
                .map_err(|error| format!("services.{name}.base_url: {error}"))?;
            let ca_file = service.ca_file.as_ref().map(|path| base_dir.join(path));
            let client = client::build_with(ca_file.as_deref(), service.min_tls)
                .map_err(|error| format!("services.{name}: {error}"))?;
            let sink = Arc::clone(&recorder);
            let service_name = name.clone();
            let stack = PolicyStack::new(
                policy_config(name, service),
                Arc::clone(&store),
                move |signal| {
                    sink.signal(&service_name, signal);
                },
            )
            .with_hints(Arc::new(providers::Known));
            let agent_credentials: BTreeMap<String, Auth> = config
                .agents
                .iter()
                .filter_map(|(agent, a)| {
                    a.credentials
                        .get(name)
                        .map(|auth| (agent.clone(), auth.clone()))
                })
                .collect();
            metrics::gauge!("wireline_direct_breaker_state", "service" => name.clone()).set(0.0);
            let shared = oauth::Shared {
                client: client.clone(),
                store: Arc::clone(&store),
                persist: config.security.encryption_key.is_some(),
                recorder: Arc::clone(&recorder),
            };
            let token_source = |agent: Option<&str>, oauth2| {
                let scopes = oauth::requested_scopes(service, oauth2);
                Arc::new(oauth::TokenSource::new(
                    name, agent, oauth2, scopes, &shared,
                ))
            };
            let oauth = match &service.auth {
                Some(Auth::OAuth2(oauth2)) => Some(token_source(None, oauth2)),
                _ => None,
            };
            // Agents with an OAuth app of their own get their own tokens (never the service's).
            let agent_oauth = agent_credentials
                .iter()
                .filter_map(|(agent, auth)| match auth {
                    Auth::OAuth2(oauth2) => {
                        Some((agent.clone(), token_source(Some(agent), oauth2)))
                    }
                    _ => None,
                })
                .collect();
            services.insert(
                name.clone(),
                Arc::new(Runtime {
                    name: name.clone(),
                    config: service.clone(),
                    base,
                    client,
                    stack,
                    oauth,
                    agent_oauth,
                    anomaly_keys: config
                        .agents
                        .keys()
                        .map(|agent| {
                            let owner = if agent_credentials.contains_key(agent) {
                                agent.as_str()
                            } else {
                                "service"
                            };
                            (
                                agent.clone(),
                                [
                                    format!("agent:{agent}"),
                                    format!("credential:{name}:{owner}"),
                                ],
                            )
                        })
                        .collect(),
                    agent_credentials,
                }),
            );
        }
        let watch = &config.security.anomaly;
        Ok(Self {
            agents: agents::Agents::new(config),
            services,
            recorder,
            anomaly: watch.enabled.then(|| {
                std::sync::Mutex::new(anomaly::Detector::new(anomaly::Thresholds {
                    factor: watch.factor,
                    window: watch.window.get(),
                    baseline: watch.baseline.get(),
                    min_calls: watch.min_calls,
                    throttle: watch.throttle,
                }))
            }),
            started: tokio::time::Instant::now(),
        })
    }

    /// Whether `caller` holds `scope` (e.g. `events:write`); the operator holds every scope.
    pub fn has_scope(&self, caller: &Caller, scope: &str) -> bool {
        self.agents.allows(caller, &[scope.to_owned()])
    }

    /// Whether `caller` may append events of `event_type` (`events:write`, or
    /// `events:write:PREFIX` covering the type).
    pub fn may_produce(&self, caller: &Caller, event_type: &str) -> bool {
        self.agents.may_produce(caller, event_type)
    }

    /// The agent whose bearer token is in `authorization`; 401 otherwise.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Problem> {
        self.agents.authenticate(authorization).ok_or_else(|| {
            Problem::new(
                ProblemKind::Unauthorized,
                match authorization {
                    None => "send the agent's token as `Authorization: Bearer <token>`",
                    Some(_) => "the bearer token matches no configured agent",
                },
            )
        })
    }

    fn runtime(&self, service: &str) -> Result<&Arc<Runtime>, Problem> {
        self.services.get(service).ok_or_else(|| {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            Problem::new(
                ProblemKind::UnknownService,
                format!(
                    "no service named \"{service}\"; configured: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// `ANY /proxy/{service}/{path}`.
    pub async fn proxy(&self, request: ProxyRequest) -> Result<Reply, Problem> {
        let runtime = self.runtime(&request.service)?;
        let read = matches!(
            request.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let scope = format!("{}:{}", runtime.name, if read { "read" } else { "write" });
        if !self
            .agents
            .allows(&request.caller, std::slice::from_ref(&scope))
        {
            return Err(forbidden(&request.caller, &[scope]));
        }
        let idempotent = read || matches!(request.method, http::Method::PUT | http::Method::DELETE);
        let idempotency_key = header_text(&request.headers, "idempotency-key");
        let target = Target::Proxy {
            method: request.method,
            raw_path: request.raw_path,
            raw_query: request.raw_query,
            headers: request.headers,
            body: request.body,
        };
        self.run(
            &request.caller,
            runtime,
            target,
            idempotent,
            idempotency_key,
            None,
        )
        .await
    }

    /// `POST /v1/operations/{service}/{op}` and `wireline call`.
    pub async fn operation(&self, request: OperationRequest) -> Result<Reply, Problem> {
        let runtime = self.runtime(&request.service)?;
        let Some(operation) = runtime.config.operations.get(&request.operation) else {
            let known: Vec<&str> = runtime
                .config
                .operations
                .keys()
                .map(String::as_str)
                .collect();
            return Err(Problem::new(
                ProblemKind::UnknownService,
                format!(
                    "service \"{}\" has no operation \"{}\"; its operations: {}",
                    runtime.name,
                    request.operation,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let method = operations::http_method(operation.method);
        let read = matches!(method, http::Method::GET | http::Method::HEAD);
        let scopes = [
            format!("{}:{}", runtime.name, request.operation),
            format!("{}:{}", runtime.name, if read { "read" } else { "write" }),
        ];
        if !self.agents.allows(&request.caller, &scopes) {
            return Err(forbidden(&request.caller, &scopes));
        }
        let params = match request.params {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            _ => {
                return Err(Problem::new(
                    ProblemKind::BadRequest,
                    "the body must be a JSON object of parameters",
                ));
            }
        };
        let idempotent = operation.idempotent.unwrap_or(matches!(
            method,
            http::Method::GET | http::Method::HEAD | http::Method::PUT | http::Method::DELETE
        ));
        // A non-idempotent operation gets a key even when the agent sent none: the same agent
        // calling it with the same parameters again (a retried tool call) is not done twice.
        let canonical = serde_json::to_vec(&params).unwrap_or_default();
        let idempotency_key = request.idempotency_key.or_else(|| {
            (!idempotent).then(|| {
                wireline_policy::idempotency::derived_key(
                    request.caller.name(),
                    &runtime.name,
                    &request.operation,
                    &canonical,
                )
            })
        });
        let target = Target::Operation {
            name: request.operation.clone(),
            params,
        };
        self.run(
            &request.caller,
            runtime,
            target,
            idempotent,
            idempotency_key,
            Some(request.operation),
        )
        .await
    }

    /// Builds the upstream request for `target` on `runtime`.
    fn outbound(
        &self,
        caller: &Caller,
        runtime: &Runtime,
        target: &Target,
        idempotency_key: Option<&str>,
        oauth_token: Option<&secrecy::SecretString>,
    ) -> Result<Outbound, Problem> {
        let (method, url, mut headers, body) = match target {
            Target::Proxy {
                method,
                raw_path,
                raw_query,
                headers,
                body,
            } => {
                let url = target::target_url(&runtime.base, raw_path, raw_query.as_deref())
                    .map_err(|why| {
                        Problem::new(
                            ProblemKind::ForbiddenTarget,
                            format!("{why}; only paths below {} are reachable", runtime.base),
                        )
                    })?;
                let mut forwarded = HeaderMap::new();
                for (name, value) in headers {
                    let lower = name.as_str();
                    if !DROPPED.contains(&lower) && !lower.starts_with("wireline-") {
                        forwarded.append(name.clone(), value.clone());
                    }
                }
                (method.clone(), url, forwarded, body.clone())
            }
            Target::Operation { name, params } => {
                let operation = runtime.config.operations.get(name).ok_or_else(|| {
                    Problem::new(
                        ProblemKind::UnknownService,
                        format!("service \"{}\" has no operation \"{name}\"", runtime.name),
                    )
                })?;
                let rendered = operations::render(operation, params)
                    .map_err(|why| Problem::new(ProblemKind::BadRequest, why))?;
                let url =
                    target::target_url(&runtime.base, &rendered.path, rendered.query.as_deref())
                        .map_err(|why| {
                            Problem::new(
                                ProblemKind::BadRequest,
                                format!("the parameters make an invalid path: {why}"),
                            )
                        })?;
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::ACCEPT,
                    HeaderValue::from_static("application/json"),
                );
                let body = match rendered.body {
                    Some((content_type, bytes)) => {
                        headers.insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static(content_type),
                        );
                        Bytes::from(bytes)
                    }
                    None => Bytes::new(),
                };
                (
                    operations::http_method(operation.method),
                    url,
                    headers,
                    body,
                )
            }
        };
        let mut url = url;
        let auth = match caller {
            Caller::Agent(name) => runtime
                .agent_credentials
                .get(name)
                .or(runtime.config.auth.as_ref()),
            Caller::Operator | Caller::Poller => runtime.config.auth.as_ref(),
        };
        if let Some(auth) = auth {
            apply_auth(auth, &mut headers, &mut url, &runtime.name, oauth_token)?;
        }
        let provider_header = runtime.config.idempotency.header.trim();
        if let (Some(key), false) = (idempotency_key, provider_header.is_empty())
            && let (Ok(name), Ok(value)) = (
                HeaderName::try_from(provider_header),
                HeaderValue::from_str(key),
            )
        {
            headers.insert(name, value);
        }
        Ok(Outbound {
            method,
            url,
            headers,
            body,
        })
    }

    /// Counts an agent's call for anomaly detection; refuses it while the agent is throttled.
    fn watch_rate(&self, caller: &Caller, runtime: &Runtime) -> Result<(), Problem> {
        let (Some(detector), Caller::Agent(agent)) = (&self.anomaly, caller) else {
            return Ok(());
        };
        let Some(keys) = runtime.anomaly_keys.get(agent) else {
            return Ok(());
        };
        let now = self.started.elapsed();
        let mut detector = detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys {
            if let Some(spike) = detector.observe(key, now) {
                self.recorder.anomaly(agent, &runtime.name, &spike);
            }
        }
        if detector.throttled(&keys[0]) {
            return Err(Problem::new(
                ProblemKind::RateLimited,
                format!("agent {agent} is throttled: its call rate spiked far above its baseline ([security.anomaly]); it is let through again once its rate falls back"),
            )
            .with_retry_after(60));
        }
        Ok(())
    }

    async fn run(
        &self,
        caller: &Caller,
        runtime: &Arc<Runtime>,
        target: Target,
        idempotent: bool,
        idempotency_key: Option<String>,
        operation: Option<String>,
    ) -> Result<Reply, Problem> {
        let started = Instant::now();
        self.watch_rate(caller, runtime)?;
        // The OAuth token: the agent's own app's, or the service's unless the agent has its own key.
        let oauth = runtime.token_source(caller);
        let token = match oauth {
            Some(source) => Some(source.token(None).await?),
            None => None,
        };
        let outbound = self.outbound(
            caller,
            runtime,
            &target,
            idempotency_key.as_deref(),
            token.as_ref().map(|t| &t.0),
        )?;
        let path = outbound.url.path().to_owned();
        // The fingerprint and the stale key cost a hash and a string on every call: only
        // calls with an idempotency key, and services with a stale fallback, use them.
        let call = Call {
            agent: caller.name().to_owned(),
            idempotent,
            fingerprint: if idempotency_key.is_some() {
                wireline_policy::idempotency::fingerprint(&[
                    outbound.method.as_str().as_bytes(),
                    outbound.url.path().as_bytes(),
                    outbound.url.query().unwrap_or_default().as_bytes(),
                    &outbound.body,
                ])
            } else {
                String::new()
            },
            stale_key: (outbound.method == http::Method::GET && runtime.config.stale_for.is_some())
                .then(|| {
                    format!(
                        "{}|{}|{}?{}",
                        runtime.name,
                        caller.name(),
                        path,
                        outbound.url.query().unwrap_or_default()
                    )
                }),
            idempotency_key,
        };
        let refresh = oauth
            .zip(token)
            .map(|(source, token)| oauth::OnRefused::new(source, token));
        let mut execution = execute(runtime, &call, &outbound, refresh.as_ref()).await;
        if let Some(problem) = refresh.and_then(oauth::OnRefused::into_failure) {
            // The upstream refused the token and no new one could be had: the credential is
            // the problem, not the request (the 401 was not stored under the key).
            return Err(problem);
        }
        if execution.wants_fallback() {
            execution = self
                .fallback(caller, runtime, &target, &call, execution)
                .await;
        }
        let latency = started.elapsed();
        let usage = runtime.stack.usage();
        self.recorder.call(
            *caller != Caller::Poller,
            record::CallRecord {
                agent: caller.name(),
                service: &runtime.name,
                operation: operation.as_deref(),
                method: outbound.method.as_str(),
                path: &path,
                execution: &execution,
                latency,
                breaker: runtime.stack.breaker_state(),
                usage: &usage,
            },
        );
        reply(&runtime.name, &runtime.config, execution)
    }

    /// Alternates, then the last good response, then the static response; else an alert.
    async fn fallback(
        &self,
        caller: &Caller,
        runtime: &Arc<Runtime>,
        target: &Target,
        call: &Call,
        failed: Execution,
    ) -> Execution {
        for alternate in &runtime.config.fallback {
            let Some(alternate_runtime) = self.services.get(alternate) else {
                continue;
            };
            let token = match alternate_runtime.token_source(caller) {
                Some(source) => match source.token(None).await {
                    Ok(token) => Some(token.0),
                    Err(_) => continue,
                },
                None => None,
            };
            let Ok(outbound) = self.outbound(
                caller,
                alternate_runtime,
                target,
                call.idempotency_key.as_deref(),
                token.as_ref(),
            ) else {
                continue;
            };
            let mut alternate_call = call.clone();
            alternate_call.stale_key = None;
            let execution = execute(alternate_runtime, &alternate_call, &outbound, None).await;
            if !execution.wants_fallback() && matches!(execution.outcome, Outcome::Response(_)) {
                return Execution {
                    fallback: Some(FallbackUsed::Alternate(alternate.clone())),
                    attempts: failed.attempts + execution.attempts,
                    ..execution
                };
            }
        }
        let local = match runtime.stack.stale(call).await {
            Some(found) => Some(found),
            None => runtime.stack.static_fallback(),
        };
        if let Some((response, used)) = local {
            return Execution {
                outcome: Outcome::Response(response),
                fallback: Some(used),
                ..failed
            };
        }
        // A human hears of calls that failed after everything was tried. Refusals that are
        // back-pressure (rate limit) or already alerted once (the breaker opening) are not
        // repeated per call.
        let refused = matches!(
            failed.outcome,
            Outcome::Failed(Failure::RateLimited { .. } | Failure::BreakerOpen { .. })
        );
        if !refused {
            self.recorder
                .call_failed(caller.name(), &runtime.name, &failed);
        }
        failed
    }

    /// Waits until every audit event and alert recorded so far is stored (for shutdown).
    pub async fn shutdown(&self) {
        self.recorder.shutdown().await;
    }
}

/// Runs `outbound` through the service's stack. With `refresh` (an OAuth token source), an
/// attempt refused with 401 gets a new token and is sent once more inside the same attempt:
/// for the idempotency record, the breaker and the retry budget the refresh is invisible, so
/// a POST never replays the 401 it got before the refresh.
async fn execute(
    runtime: &Arc<Runtime>,
    call: &Call,
    outbound: &Outbound,
    refresh: Option<&oauth::OnRefused<'_>>,
) -> Execution {
    let max_response = runtime.config.max_response.bytes();
    runtime
        .stack
        .execute(call, |_attempt| async move {
            let Some(refresh) = refresh else {
                return client::send(&runtime.client, outbound, max_response).await;
            };
            let mut request = outbound.clone();
            let generation = refresh.authorize(&mut request.headers);
            let response = client::send(&runtime.client, &request, max_response).await?;
            if response.status != 401 || !refresh.renew(generation, &mut request.headers).await {
                return Ok(response);
            }
            client::send(&runtime.client, &request, max_response).await
        })
        .await
}

/// `map[key]`, made by `make` the first time it is asked for. Per-call bookkeeping keyed by
/// names uses it: `entry` would copy the key on every call, this only the first time.
pub(crate) fn slot<'a, V>(
    map: &'a mut HashMap<String, V>,
    key: &str,
    make: impl FnOnce() -> V,
) -> &'a mut V {
    // (`get_mut`, else `entry`, cannot return its borrow: the borrow checker ties the first
    // lookup's borrow to the return.)
    if !map.contains_key(key) {
        map.insert(key.to_owned(), make());
    }
    map.get_mut(key).expect("inserted just above when missing")
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn forbidden(caller: &Caller, scopes: &[String]) -> Problem {
    Problem::new(
        ProblemKind::Forbidden,
        format!(
            "agent \"{}\" lacks the scope for this call; it needs one of: {}",
            caller.name(),
            scopes.join(", ")
        ),
    )
}

fn apply_auth(
    auth: &Auth,
    headers: &mut HeaderMap,
    url: &mut Url,
    service: &str,
    oauth_token: Option<&secrecy::SecretString>,
) -> Result<(), Problem> {
    let missing = || {
        Problem::new(
            ProblemKind::CredentialUnavailable,
            format!("the credential for {service} was not resolved; check `wireline check`"),
        )
    };
    let sensitive = |text: String| {
        HeaderValue::from_str(&text).map(|mut value| {
            value.set_sensitive(true);
            value
        })
    };
    match auth {
        Auth::Bearer(secret) => {
            let token = secret.value().ok_or_else(missing)?;
            let value =
                sensitive(format!("Bearer {}", token.expose_secret())).map_err(|_| missing())?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Auth::Basic(basic) => {
            let password = basic.password.value().ok_or_else(missing)?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                basic.username,
                password.expose_secret()
            ));
            headers.insert(
                http::header::AUTHORIZATION,
                sensitive(format!("Basic {encoded}")).map_err(|_| missing())?,
            );
        }
        Auth::Header { name, value } => {
            let secret = value.value().ok_or_else(missing)?;
            let name = HeaderName::try_from(name.as_str()).map_err(|_| missing())?;
            headers.insert(
                name,
                sensitive(secret.expose_secret().to_owned()).map_err(|_| missing())?,
            );
        }
        Auth::Query { name, value } => {
            let secret = value.value().ok_or_else(missing)?;
            url.query_pairs_mut()
                .append_pair(name, secret.expose_secret());
        }
        Auth::OAuth2(_) => {
            let token = oauth_token.ok_or_else(missing)?;
            headers.insert(
                http::header::AUTHORIZATION,
                oauth::bearer(token).ok_or_else(missing)?,
            );
        }
    }
    Ok(())
}

/// Turns an execution into the agent's reply, or a problem when there is no response.
fn reply(service: &str, config: &Service, execution: Execution) -> Result<Reply, Problem> {
    match execution.outcome {
        Outcome::Response(response) => {
            let mut builder = http::Response::builder().status(response.status);
            if let Some(headers) = builder.headers_mut() {
                // Values go as the upstream sent them, bytes and all (obs-text included).
                for (name, value) in response.headers {
                    if let Some(name) = name
                        && !DROPPED.contains(&name.as_str())
                    {
                        headers.append(name, value);
                    }
                }
                if execution.replayed {
                    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
                }
                if let Some(used) = &execution.fallback {
                    let text = match used {
                        FallbackUsed::Alternate(name) => format!("service={name}"),
                        FallbackUsed::Stale { age } => format!("stale; age={}", age.as_secs()),
                        FallbackUsed::Static => "static".to_owned(),
                    };
                    if let Ok(value) = HeaderValue::from_str(&text) {
                        headers.insert("wireline-fallback", value);
                    }
                }
                headers.insert("wireline-attempts", HeaderValue::from(execution.attempts));
            }
            builder.body(response.body).map_err(|error| {
                Problem::new(
                    ProblemKind::Internal,
                    format!("cannot relay the response: {error}"),
                )
            })
        }
        Outcome::Failed(failure) => Err(failure_problem(service, config, &failure)),
    }
}

fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn failure_problem(service: &str, config: &Service, failure: &Failure) -> Problem {
    match failure {
        Failure::InFlight => Problem::new(
            ProblemKind::IdempotencyInFlight,
            "a request with this Idempotency-Key is still running; retry once it has finished",
        )
        .with_retry_after(1),
        Failure::KeyMismatch => Problem::new(
            ProblemKind::IdempotencyMismatch,
            "this Idempotency-Key was already used with a different request; use a new key for a new request",
        ),
        Failure::RateLimited { retry_after } => Problem::new(
            ProblemKind::RateLimited,
            format!("the rate limit for {service} is used up for now; retry after the given time"),
        )
        .with_retry_after(seconds_up(*retry_after)),
        Failure::BreakerOpen { retry_after } => Problem::new(
            ProblemKind::CircuitOpen,
            format!("calls to {service} are paused after repeated failures; the next probe is allowed in {} s", seconds_up(*retry_after)),
        )
        .with_retry_after(seconds_up(*retry_after)),
        Failure::Unreachable { detail, not_sent } => Problem::new(
            ProblemKind::UpstreamUnreachable,
            format!(
                "could not reach {service} ({detail}); {}",
                if *not_sent { "the request was not sent, so retrying is safe" } else { "the request may have reached the service: retry only with an Idempotency-Key" }
            ),
        ),
        Failure::Timeout => Problem::new(
            ProblemKind::UpstreamTimeout,
            format!("{service} did not answer within {} per attempt; retry only with an Idempotency-Key unless the call is a read", config.timeout),
        ),
        Failure::Store(detail) => Problem::new(ProblemKind::StoreUnavailable, format!("idempotency records are unavailable ({detail}); retry shortly"))
            .with_retry_after(1),
    }
}
