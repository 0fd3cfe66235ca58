//! The typed model of `wireline.toml`.
//!
//! Strict on purpose: every table denies unknown keys (a typo is an error, not a silently
//! ignored setting), every value with a unit carries it (`"30s"`, `"100/s"`, `"1MiB"`), and
//! every field's doc comment is what `wireline schema` and `docs/configuration.md` show.
//! Sections that later features fill in (webhook, poll, operations, triggers, environments)
//! already have their place and their key names; keys are added beside them, never renamed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wireline_core::{Duration, Rate, Size, TypeGlob};

use crate::secret::Secret;

/// A Wireline configuration: the server, its storage, the agents that call it, the services it
/// connects them to, and how events reach the agents.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "wireline.toml")]
pub struct Config {
    /// The HTTP listener.
    #[serde(default)]
    pub server: Server,
    /// Where events and state are stored.
    #[serde(default)]
    pub storage: Storage,
    /// The agents that may call Wireline, by name (lower-case letters, digits, `-`, `_`).
    #[serde(default)]
    pub agents: BTreeMap<String, Agent>,
    /// The services Wireline connects agents to, by name (`stripe`, `slack`, ...).
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Which agent receives which events, by push (a signed POST to `url`) or pull.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Rules that derive new events from patterns in the log.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// State rebuilt from the log, by name: the latest per subject.
    #[serde(default)]
    pub projections: BTreeMap<String, Projection>,
    /// Environment profiles (`dev`, `staging`, `prod`) with their own guards.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// Where alerts for a human go.
    #[serde(default)]
    pub alerts: Alerts,
    /// How events are indexed, encrypted and kept, and how the audit trail writes them.
    #[serde(default)]
    pub events: EventsConfig,
    /// The built-in service emulators (`wireline mock`, `wireline demo`, `wireline test`).
    #[serde(default)]
    pub mock: MockConfig,
    /// Encryption at rest.
    #[serde(default)]
    pub security: Security,
    /// The cost model's parameters for `wireline plan` (defaults are typical market prices).
    #[serde(default)]
    pub plan: PlanParams,
    /// Credential metadata by reference name (the variable of `${env:NAME}`, or the path of
    /// `${file:PATH}`): when it was created, how often it must rotate.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyMeta>,
    /// The environment applied at load (`--env`), if any. Not a key of the file.
    #[serde(skip)]
    #[schemars(skip)]
    pub active_environment: Option<String>,
}

/// `[keys.NAME]`: a credential's lifecycle.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyMeta {
    /// The day it was issued, e.g. `"2026-09-01"`.
    #[schemars(with = "String")]
    pub created: jiff::civil::Date,
    /// How long it may live before it must be rotated (default `"90d"`).
    #[serde(default = "default_rotate_every")]
    pub rotate_every: Duration,
    /// Who owns it (a team, a person), for the reminder.
    #[serde(default)]
    pub owner: Option<String>,
}

fn default_rotate_every() -> Duration {
    Duration::from_secs(90 * 86_400)
}

/// `[security]`: encryption at rest. With a key, idempotency responses and the payloads of
/// sensitive events (`[services.NAME] sensitive = true`, `[events] sensitive`) are stored
/// encrypted (AES-256-GCM); they are decrypted only when read through Wireline (deliveries,
/// pulls, replays, the CLI with the key).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// The key (32 bytes as 64 hex digits or base64), as a secret reference, e.g.
    /// `"${env:WIRELINE_ENCRYPTION_KEY}"` (make one with `openssl rand -hex 32`).
    #[serde(default)]
    pub encryption_key: Option<Secret>,
    /// The id stored with every ciphertext, so keys can rotate (default `k1`).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Earlier keys by id, still accepted for reading what they sealed: `{ k1 = "${env:OLD}" }`.
    #[serde(default)]
    pub previous_keys: BTreeMap<String, Secret>,
    /// Call-rate anomalies per agent and per credential.
    #[serde(default)]
    pub anomaly: Anomaly,
}

/// `[security.anomaly]`: a spike in an agent's (or a credential's) call rate against its
/// rolling baseline raises a `wireline.alert.anomaly` event, and optionally throttles the agent.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// Watch call rates at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How many times the baseline rate is a spike.
    #[serde(default = "default_anomaly_factor")]
    pub factor: f64,
    /// The window whose calls are compared.
    #[serde(default = "default_anomaly_window")]
    pub window: Duration,
    /// How far back the baseline reaches (no alert before one whole baseline was seen).
    #[serde(default = "default_anomaly_baseline")]
    pub baseline: Duration,
    /// Fewer calls than this in a window are never a spike.
    #[serde(default = "default_anomaly_min_calls")]
    pub min_calls: u64,
    /// Refuse a spiking agent's calls (429) until its rate is back under twice the baseline.
    #[serde(default)]
    pub throttle: bool,
}

impl Default for Anomaly {
    fn default() -> Self {
        Self {
            enabled: true,
            factor: default_anomaly_factor(),
            window: default_anomaly_window(),
            baseline: default_anomaly_baseline(),
            min_calls: default_anomaly_min_calls(),
            throttle: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_anomaly_factor() -> f64 {
    5.0
}
fn default_anomaly_window() -> Duration {
    Duration::from_secs(300)
}
fn default_anomaly_baseline() -> Duration {
    Duration::from_secs(3600)
}
fn default_anomaly_min_calls() -> u64 {
    100
}

/// `[mock]`: the built-in emulators of Stripe, Slack, GitHub, Shopify, SendGrid, HubSpot and
/// Salesforce, on one loopback listener, each under its own prefix (`/stripe`, `/slack`, ...).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Address and port of the emulators.
    #[serde(default = "default_mock_listen")]
    pub listen: SocketAddr,
    /// Which emulators run (default: all): `stripe`, `slack`, `github`, `shopify`,
    /// `sendgrid`, `hubspot`, `salesforce`.
    #[serde(default)]
    pub services: Vec<String>,
    /// Seed of every random choice (ids, faults), so a failing run can be replayed exactly.
    #[serde(default)]
    pub seed: u64,
    /// Where each emulator sends its signed webhooks, by emulator name.
    #[serde(default)]
    pub webhooks: BTreeMap<String, MockWebhook>,
    /// Stub services by name, served under `/NAME`: a WireMock mapping file or a folder of
    /// them (`.json`, or the same keys in `.toml`; `bodyFileName`s under `__files`), relative
    /// to this file, e.g. `{ ledger = "stubs/ledger" }`.
    #[serde(default)]
    pub stubs: BTreeMap<String, PathBuf>,
    /// Faults by emulator (`stripe`) or by emulator and path prefix
    /// (`"stripe:/v1/payment_intents"`; the longest matching prefix wins).
    #[serde(default)]
    pub faults: BTreeMap<String, Faults>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: default_mock_listen(),
            services: Vec::new(),
            seed: 0,
            webhooks: BTreeMap::new(),
            stubs: BTreeMap::new(),
            faults: BTreeMap::new(),
        }
    }
}

fn default_mock_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7490))
}

/// `[mock.webhooks.NAME]`: where an emulator sends its webhooks, signed the provider's way.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockWebhook {
    /// The endpoint, e.g. `http://127.0.0.1:7480/hooks/stripe`.
    pub url: String,
    /// The signing secret, as a secret reference (the same one Wireline verifies with).
    pub secret: Secret,
}

/// Faults an emulator injects. Every probability is between 0.0 and 1.0; each request (or
/// webhook) draws from the seeded generator.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Share of requests answered with an error status from `error_codes`.
    #[serde(default)]
    pub error_rate: f64,
    /// The error statuses drawn from (default 500, 502, 503).
    #[serde(default)]
    pub error_codes: Vec<u16>,
    /// Added latency, uniformly between the two durations, e.g. `["20ms", "200ms"]`.
    #[serde(default)]
    pub latency: Option<[Duration; 2]>,
    /// Share of requests never answered (the client's timeout fires).
    #[serde(default)]
    pub timeout_rate: f64,
    /// Share of requests whose connection is cut before a response is complete.
    #[serde(default)]
    pub reset_rate: f64,
    /// Share of requests answered 429 with `Retry-After` (a storm: set it to 1.0 for a while
    /// through the admin endpoint).
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// The `Retry-After` of those 429s.
    #[serde(default = "default_fault_retry_after")]
    pub retry_after: Duration,
    /// Share of webhooks never sent.
    #[serde(default)]
    pub webhook_drop_rate: f64,
    /// Share of webhooks sent twice.
    #[serde(default)]
    pub webhook_duplicate_rate: f64,
    /// Share of webhooks held back and sent after the next one (out of order).
    #[serde(default)]
    pub webhook_reorder_rate: f64,
    /// Delay before each webhook is sent.
    #[serde(default)]
    pub webhook_delay: Option<Duration>,
    /// Answer exactly the next N requests with the first of `error_codes` (default 503), then
    /// behave: a deterministic outage for scenarios and the demo.
    #[serde(default)]
    pub fail_next: u32,
    /// Drop exactly the next N webhooks.
    #[serde(default)]
    pub webhook_drop_next: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_codes: Vec::new(),
            latency: None,
            timeout_rate: 0.0,
            reset_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after: default_fault_retry_after(),
            webhook_drop_rate: 0.0,
            webhook_duplicate_rate: 0.0,
            webhook_reorder_rate: 0.0,
            webhook_delay: None,
            fail_next: 0,
            webhook_drop_next: 0,
        }
    }
}

fn default_fault_retry_after() -> Duration {
    Duration::from_secs(1)
}

/// `[events]`: how events are indexed, encrypted and kept, and how the audit trail writes them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Where an event's subject (a customer, an order: what `GET /v1/subjects/{subject}/events`
    /// groups by) is in its data, per type pattern: `{ "stripe.*" = "data.object.customer" }`
    /// (dotted paths into `data`). An event that carries a CloudEvents `subject` keeps it; the
    /// first matching pattern wins.
    #[serde(default)]
    pub subjects: BTreeMap<String, String>,
    /// Event types whose payload is stored encrypted (needs `[security] encryption_key`), e.g.
    /// `["app.user.*", "hubspot.contact.*"]`.
    #[serde(default)]
    pub sensitive: Vec<TypeGlob>,
    /// Single fields stored encrypted, per type pattern, as dotted paths from the event's
    /// root: `{ "hubspot.contact.*" = ["data.properties.email", "data.properties.phone"] }`
    /// (needs `[security] encryption_key`). The rest of the payload stays readable in the
    /// store; such events are re-serialized, so their payload is not byte for byte as received.
    #[serde(default)]
    pub sensitive_paths: BTreeMap<String, Vec<String>>,
    /// Retention per type pattern (checked hourly by `wireline run`, and by
    /// `wireline events expire`): `{ "stripe.charge.*" = { payload = "30d", keep = "400d" } }`.
    /// Patterns that overlap all apply (the shortest period wins).
    #[serde(default)]
    pub retention: BTreeMap<String, Retention>,
    /// How long the audit trail gathers events (one per Direct API call, proxied or a named
    /// operation, plus alerts and breaker changes) before it writes them to the log in one
    /// durable commit. A call's event lands about this long after its reply (plus a commit or
    /// two); a crash loses roughly the events of this last stretch, while a clean stop writes
    /// everything at once. Shorter is a more complete trail after a crash; longer costs less
    /// per call under load (a commit covers more calls). `"0s"` writes each batch as soon as
    /// the one before it is stored. Counted in whole milliseconds; at most `"10s"`.
    #[serde(default = "default_audit_flush")]
    pub audit_flush: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            subjects: BTreeMap::new(),
            sensitive: Vec::new(),
            sensitive_paths: BTreeMap::new(),
            retention: BTreeMap::new(),
            audit_flush: default_audit_flush(),
        }
    }
}

/// 50 ms: at a few thousand calls a second a commit covers a few hundred calls; at Wireline's
/// top speed on one core, about a thousand. Access-log pipelines buffer far longer (Envoy
/// flushes its access log every second), but an audit trail should lose little in a crash.
fn default_audit_flush() -> Duration {
    Duration::from_millis(50)
}

/// `[server]`: the one listener for hooks, proxy, agent API, health and metrics.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address and port to listen on. Keep it on loopback unless a proxy with TLS is in front.
    #[serde(default = "default_listen")]
    #[schemars(with = "String", example = "127.0.0.1:7480")]
    pub listen: SocketAddr,
    /// Largest request body accepted; larger requests get 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: Size,
    /// How long a shutdown waits for in-flight requests before it stops anyway.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// Serve HTTPS (TLS 1.2 or 1.3) with this certificate, for deployments without a proxy
    /// in front: `tls = { cert = "certs/wireline.pem", key = "certs/wireline-key.pem" }`
    /// (PEM, relative to this file; the chain in `cert`, leaf first).
    #[serde(default)]
    pub tls: Option<ServerTls>,
}

/// `[server] tls`: the listener's certificate and key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}
fn default_body_limit() -> Size {
    Size::from_bytes(1 << 20)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit: default_body_limit(),
            shutdown_grace: default_shutdown_grace(),
            tls: None,
        }
    }
}

/// `[storage]`: the embedded store for the event log and state.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// SQLite database file, relative to the config file's folder. Created if missing.
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("wireline.db")
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: default_storage_path(),
        }
    }
}

/// `[agents.NAME]`: one agent's credential to Wireline and what it may do.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// The agent's own bearer token to Wireline, as a secret reference.
    pub token: Secret,
    /// A second token accepted alongside `token` while the agent switches to it (zero-downtime
    /// rotation; `wireline keys rotate` walks through it).
    #[serde(default)]
    pub next_token: Option<Secret>,
    /// What the agent may do: `SERVICE:read` (GET/HEAD), `SERVICE:write` (other methods),
    /// `SERVICE:OPERATION` (one named operation), `events:read`, `events:write`, `events:write:PREFIX` (only event types starting with PREFIX).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// What the agent is for, for the architecture document.
    #[serde(default)]
    pub description: Option<String>,
    /// The agent's own upstream credential per service (`credentials.stripe = { bearer =
    /// "${env:BOT_STRIPE_KEY}" }`, or an OAuth 2.0 app of its own: `credentials.crm = { oauth2
    /// = { ... } }`, with tokens of its own); where absent, the service's `auth` is used.
    #[serde(default)]
    pub credentials: BTreeMap<String, Auth>,
}

/// `[alerts]`: where alerts for a human go, besides the event log.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// A URL that receives each alert event as a JSON POST (e.g. a chat webhook), retried
    /// three times. A URL that carries a token (a Slack incoming webhook) is a secret: write
    /// it as a reference, `"${env:ALERTS_WEBHOOK_URL}"`.
    #[serde(default)]
    pub url: Option<AlertUrl>,
    /// Send Slack-compatible JSON (`{"text": "..."}`, for a Slack incoming webhook or any
    /// chat that takes it) instead of the CloudEvent.
    #[serde(default)]
    pub slack: bool,
}

/// `[alerts] url`: a plain URL, or a secret reference for a URL that carries a token.
#[derive(Clone)]
pub enum AlertUrl {
    /// The URL as written.
    Plain(String),
    /// A URL kept as a secret (printed as its reference).
    Secret(Secret),
}

impl AlertUrl {
    /// The URL to POST to (`None` for an unresolved secret).
    pub fn value(&self) -> Option<String> {
        use secrecy::ExposeSecret;
        match self {
            Self::Plain(url) => Some(url.clone()),
            Self::Secret(secret) => secret.value().map(|v| v.expose_secret().to_owned()),
        }
    }
}

impl std::fmt::Debug for AlertUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(url) => write!(f, "{url:?}"),
            Self::Secret(secret) => write!(f, "{secret:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for AlertUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match crate::secret::parse_reference(&text) {
            Some(source) => Self::Secret(Secret::from_source(source)),
            None => Self::Plain(text),
        })
    }
}

impl Serialize for AlertUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Plain(url) => serializer.serialize_str(url),
            Self::Secret(secret) => serializer.serialize_str(&secret.source().to_string()),
        }
    }
}

impl JsonSchema for AlertUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AlertUrl".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A URL, or a secret reference (\"${env:NAME}\") for a URL that carries a token.",
        })
    }
}

/// `[services.NAME]`: one upstream service, how to authenticate to it, and its policies.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The service's API root; the only host agents can reach through this service. `https://`,
    /// or `http://` on loopback (mocks, tests).
    pub base_url: String,
    /// What the service is, for the architecture document.
    #[serde(default)]
    pub description: Option<String>,
    /// A critical flow (payments, orders): the advisor wants the hybrid pattern, a fallback and
    /// alert routing for it.
    #[serde(default)]
    pub critical: bool,
    /// Data classes it handles, for the plan's inventory: `["payment", "pii", "health"]`.
    #[serde(default)]
    pub data: Vec<String>,
    /// Expected volume of calls and events, e.g. `"10000/month"` (for the cost estimate).
    #[serde(default)]
    pub volume: Option<Rate>,
    /// What agents read there (defaults to the GET operations), for the plan.
    #[serde(default)]
    pub reads: Vec<String>,
    /// What agents write there (defaults to the other operations), for the plan.
    #[serde(default)]
    pub writes: Vec<String>,
    /// Whether the provider offers webhooks (default: a webhook is configured). `false` tells
    /// the advisor polling is the only way to hear about changes.
    #[serde(default)]
    pub webhooks: Option<bool>,
    /// The provider's prices, for the cost estimate.
    #[serde(default)]
    pub cost: ServiceCost,
    /// How Wireline authenticates to the service. Leave out for services without auth.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Deadline for one attempt of an outbound call.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The provider's rate limit, all agents together: one window (`"100/s"`) or several
    /// (`["100/s", "100000/day"]`).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Each agent's own limit on this service, same form as `rate_limit`.
    #[serde(default)]
    pub agent_rate_limit: Option<RateLimit>,
    /// At most this many calls back to back in the shortest `rate_limit` window, the rest
    /// spaced evenly over it. Unset: a whole window's worth may go at once. Either way no
    /// window ever holds more than its limit (a window limit means at most N calls in any
    /// window of that length, as providers count).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Share of the rate limit kept unused (0.1 keeps 10 % for other clients and skew).
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Longest a call waits for a rate-limit permit before it is refused with 429.
    #[serde(default = "default_queue_wait")]
    pub queue_wait: Duration,
    /// Largest response body accepted from the service.
    #[serde(default = "default_max_response")]
    pub max_response: Size,
    /// An extra CA certificate file (PEM) trusted for this service, e.g. a sandbox's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Its events carry sensitive data (cards, emails, health fields): their payloads are
    /// stored encrypted (needs `[security] encryption_key`).
    #[serde(default)]
    pub sensitive: bool,
    /// The lowest TLS version accepted from this service: `"1.2"` (the floor, the default)
    /// or `"1.3"`. It cannot be lowered.
    #[serde(default)]
    pub min_tls: MinTls,
    /// Idempotency keys: how long records live and the provider's header for the key.
    #[serde(default)]
    pub idempotency: Idempotency,
    /// Alternate services to try, in order, when this one fails (`["ses"]`).
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Serve the last good response for the same read, up to this old, when the service fails.
    #[serde(default)]
    pub stale_for: Option<Duration>,
    /// A static response to give when everything else failed.
    #[serde(default)]
    pub fallback_response: Option<StaticResponse>,
    /// How failed calls are retried.
    #[serde(default)]
    pub retry: Retry,
    /// When to stop calling a failing service for a while.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Events the service pushes to `POST /hooks/NAME`.
    #[serde(default)]
    pub webhook: Option<Webhook>,
    /// Scheduled, cursor-based pulling of the service's changes.
    #[serde(default)]
    pub poll: Option<Poll>,
    /// Named operations agents can invoke (`POST /v1/operations/NAME/OP`).
    #[serde(default)]
    pub operations: BTreeMap<String, Operation>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_headroom() -> f64 {
    0.1
}
fn default_queue_wait() -> Duration {
    Duration::from_secs(2)
}
fn default_max_response() -> Size {
    Size::from_bytes(10 << 20)
}

/// One rate-limit window or several.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct RateLimit(
    /// The windows.
    #[schemars(with = "RateLimitSchema")]
    pub Vec<Rate>,
);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RateLimitSchema {
    One(Rate),
    Several(Vec<Rate>),
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Several(Vec<String>),
        }
        let form = Form::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "write a rate (\"100/s\") or a list of rates ([\"100/s\", \"100000/day\"])",
            )
        })?;
        let texts = match form {
            Form::One(text) => vec![text],
            Form::Several(texts) if texts.is_empty() => {
                return Err(serde::de::Error::custom(
                    "the list of rates is empty; write at least one, e.g. [\"100/s\"]",
                ));
            }
            Form::Several(texts) => texts,
        };
        texts
            .iter()
            .map(|text| text.parse::<Rate>().map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(RateLimit)
    }
}

/// `[plan]`: the cost model's prices and hours, all overridable.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PlanParams {
    /// Dollars per engineering hour.
    pub hourly_rate: f64,
    /// Running Wireline: compute per month (one small VM and its disk), dollars.
    pub compute_monthly: f64,
    /// Setting Wireline up, hours (once).
    pub wireline_setup_hours: f64,
    /// Keeping Wireline running, hours per month.
    pub wireline_maintenance_hours: f64,
    /// A low-code integration platform's monthly price band, dollars.
    pub low_code_monthly: [f64; 2],
    /// Setting a low-code platform up, hours.
    pub low_code_setup_hours: f64,
    /// Keeping it running, hours per month.
    pub low_code_maintenance_hours: f64,
    /// An enterprise iPaaS's monthly price band, dollars.
    pub enterprise_monthly: [f64; 2],
    /// Setting an iPaaS up, hours.
    pub enterprise_setup_hours: f64,
    /// Keeping it running, hours per month.
    pub enterprise_maintenance_hours: f64,
}

impl Default for PlanParams {
    fn default() -> Self {
        Self {
            hourly_rate: 100.0,
            compute_monthly: 20.0,
            wireline_setup_hours: 16.0,
            wireline_maintenance_hours: 4.0,
            low_code_monthly: [20.0, 99.0],
            low_code_setup_hours: 8.0,
            low_code_maintenance_hours: 6.0,
            enterprise_monthly: [500.0, 2000.0],
            enterprise_setup_hours: 40.0,
            enterprise_maintenance_hours: 4.0,
        }
    }
}

/// `[services.NAME] cost`: what the provider charges.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCost {
    /// Dollars per API call (polls included).
    #[serde(default)]
    pub per_call: f64,
    /// A fixed monthly fee in dollars.
    #[serde(default)]
    pub monthly: f64,
}

/// The lowest TLS version accepted for outbound calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub enum MinTls {
    /// TLS 1.2 (and 1.3).
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

impl<'de> Deserialize<'de> for MinTls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim() {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            "1.0" | "1.1" | "1" => Err(serde::de::Error::custom(format!(
                "TLS {text} is below the floor: TLS 1.2 is the minimum and cannot be lowered; write \"1.2\" or \"1.3\""
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "unknown TLS version {text:?}; write \"1.2\" or \"1.3\""
            ))),
        }
    }
}

/// `[services.NAME.idempotency]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    /// How long a key's record (and its stored response) lives.
    #[serde(default = "default_idempotency_ttl")]
    pub ttl: Duration,
    /// The provider's header for the key (Stripe: `Idempotency-Key`); `""` sends none.
    #[serde(default = "default_idempotency_header")]
    pub header: String,
}

fn default_idempotency_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_idempotency_header() -> String {
    "Idempotency-Key".to_owned()
}

impl Default for Idempotency {
    fn default() -> Self {
        Self {
            ttl: default_idempotency_ttl(),
            header: default_idempotency_header(),
        }
    }
}

/// A fixed response for the last fallback.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticResponse {
    /// HTTP status.
    #[serde(default = "default_static_status")]
    pub status: u16,
    /// The JSON body.
    #[serde(default)]
    pub body: serde_json::Value,
}

fn default_static_status() -> u16 {
    200
}

/// How Wireline authenticates to a service; exactly one of `bearer`, `basic`, `header` with
/// `value`, `query` with `value`, or `oauth2`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(try_from = "AuthFields")]
#[schemars(with = "AuthFields")]
pub enum Auth {
    /// `Authorization: Bearer <secret>`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic(BasicAuth),
    /// A custom header carrying the secret.
    Header {
        /// The header name, e.g. `X-Api-Key`.
        name: String,
        /// The header value.
        value: Secret,
    },
    /// A query parameter carrying the secret.
    Query {
        /// The parameter name, e.g. `api_key`.
        name: String,
        /// The parameter value.
        value: Secret,
    },
    /// OAuth 2.0 toward the service.
    OAuth2(OAuth2),
}

/// The keys of an `auth = { ... }` table, as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFields {
    /// A bearer token: `auth = { bearer = "${env:STRIPE_SECRET_KEY}" }`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// Basic authentication: `auth = { basic = { username = "api", password = "${env:...}" } }`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// A header name; with `value`: `auth = { header = "X-Api-Key", value = "${env:...}" }`.
    #[serde(default)]
    pub header: Option<String>,
    /// A query parameter name; with `value`: `auth = { query = "api_key", value = "${env:...}" }`.
    #[serde(default)]
    pub query: Option<String>,
    /// The secret for `header` or `query`.
    #[serde(default)]
    pub value: Option<Secret>,
    /// OAuth 2.0: `auth = { oauth2 = { token_url = ..., client_id = ..., client_secret = ... } }`.
    #[serde(default)]
    pub oauth2: Option<OAuth2>,
}

impl TryFrom<AuthFields> for Auth {
    type Error = String;

    fn try_from(fields: AuthFields) -> Result<Self, Self::Error> {
        const HOW: &str = "write exactly one of { bearer = ... }, { basic = { username, password } }, { header = NAME, value = ... }, { query = NAME, value = ... }, { oauth2 = { ... } }";
        let AuthFields {
            bearer,
            basic,
            header,
            query,
            value,
            oauth2,
        } = fields;
        match (bearer, basic, header, query, value, oauth2) {
            (Some(secret), None, None, None, None, None) => Ok(Self::Bearer(secret)),
            (None, Some(basic), None, None, None, None) => Ok(Self::Basic(basic)),
            (None, None, Some(name), None, Some(value), None) => Ok(Self::Header { name, value }),
            (None, None, None, Some(name), Some(value), None) => Ok(Self::Query { name, value }),
            (None, None, Some(_), None, None, None) | (None, None, None, Some(_), None, None) => {
                Err(format!(
                    "`header` and `query` need a `value` with the secret; {HOW}"
                ))
            }
            (None, None, None, None, None, Some(oauth2)) => Ok(Self::OAuth2(oauth2)),
            (None, None, None, None, None, None) => Err(format!("auth is empty; {HOW}")),
            _ => Err(format!("auth mixes several methods; {HOW}")),
        }
    }
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name (not secret).
    pub username: String,
    /// The password, as a secret reference.
    pub password: Secret,
}

/// OAuth 2.0 toward an upstream service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The provider's token endpoint.
    pub token_url: String,
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret, as a secret reference.
    pub client_secret: Secret,
    /// Scopes to request; keep them to what the operations need.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How tokens are obtained.
    #[serde(default)]
    pub grant: Grant,
    /// The refresh token, for `grant = "refresh_token"`.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
}

/// The OAuth 2.0 grant Wireline uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Client credentials: the client id and secret buy a token.
    #[default]
    ClientCredentials,
    /// A refresh token buys access tokens (and maybe a new refresh token).
    RefreshToken,
}

/// Retry policy for failed calls. Only idempotent requests, or requests with an idempotency key,
/// are retried.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Most attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first backoff cap; each further cap doubles (1s, 2s, 4s, 8s), with full jitter.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// No single wait is longer than this, `Retry-After` included.
    #[serde(default = "default_max_wait")]
    pub max_wait: Duration,
    /// One deadline over all attempts and waits.
    #[serde(default = "default_deadline")]
    pub deadline: Duration,
    /// Retries allowed as a share of recent requests (0.2 = 20 %), so an outage never
    /// multiplies load.
    #[serde(default = "default_budget")]
    pub budget: f64,
    /// Retries allowed regardless of traffic, so a quiet service can still retry.
    #[serde(default = "default_budget_floor")]
    pub budget_floor: Rate,
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_deadline() -> Duration {
    Duration::from_secs(60)
}
fn default_budget() -> f64 {
    0.2
}
fn default_budget_floor() -> Rate {
    Rate {
        count: 1,
        per: Duration::from_secs(1),
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_wait: default_max_wait(),
            deadline: default_deadline(),
            budget: default_budget(),
            budget_floor: default_budget_floor(),
        }
    }
}

/// Circuit breaker: after `failures` consecutive failures (connection errors, timeouts, 5xx;
/// never 4xx or 429) calls are refused at once for `open_for`, then one probe decides.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the breaker stays open before one probe is let through.
    #[serde(default = "default_open_for")]
    pub open_for: Duration,
}

fn default_failures() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(60)
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            open_for: default_open_for(),
        }
    }
}

/// `[services.NAME.webhook]`: how pushes from the service are verified.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The provider's signature scheme.
    pub scheme: WebhookScheme,
    /// The signing secret, as a secret reference.
    pub secret: Secret,
    /// A second secret accepted alongside `secret` while the provider rotates to it; remove
    /// it (or make it `secret`) once the rotation is done.
    #[serde(default)]
    pub next_secret: Option<Secret>,
    /// How old (or how far ahead) a signed timestamp may be before the delivery is refused as
    /// a replay.
    #[serde(default = "default_tolerance")]
    pub tolerance: Duration,
    /// Where the provider's event id comes from, if not the scheme's usual place:
    /// `header:NAME` or `json:/pointer` (RFC 6901, e.g. `json:/event/id`). It is the dedupe
    /// key: a second delivery with the same id is acknowledged and stored once.
    #[serde(default)]
    pub id: Option<String>,
    /// Where the provider's event type comes from, if not the scheme's usual place:
    /// `header:NAME` or `json:/pointer`. The stored type is `SERVICE.PROVIDER_TYPE`.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// The generic scheme's settings (required with `scheme = "hmac"`).
    #[serde(default)]
    pub hmac: Option<HmacWebhook>,
}

/// `[services.NAME.webhook.hmac]`: a generic HMAC signature in a header.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacWebhook {
    /// The header carrying the signature, e.g. `X-Acme-Signature`.
    pub header: String,
    /// The hash.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// How the signature is written.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// What is signed: `{body}` (the raw body), `{timestamp}` (the value of
    /// `timestamp_header`) and `{header:NAME}` placeholders around literal text, e.g.
    /// `"{timestamp}.{body}"`.
    #[serde(default = "default_signed")]
    pub signed: String,
    /// A header with the signed unix timestamp (seconds); checked against `tolerance`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

fn default_signed() -> String {
    "{body}".to_owned()
}

/// HMAC hash functions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA1 (older providers only).
    Sha1,
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hexadecimal.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

/// Webhook signature schemes Wireline verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookScheme {
    /// `Stripe-Signature` (timestamped HMAC-SHA256).
    Stripe,
    /// `X-Hub-Signature-256` (HMAC-SHA256).
    Github,
    /// `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256).
    Shopify,
    /// `X-Slack-Signature` (v0, timestamped HMAC-SHA256).
    Slack,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    /// A generic HMAC signature in a header, configured in `[services.NAME.webhook.hmac]`.
    Hmac,
}

/// `[services.NAME.poll]`: scheduled, checkpointed pulling of a list endpoint. A `preset`
/// fills in every field for a known source; fields set here override it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    /// A built-in recipe: `stripe-events` (`GET /v1/events`, newest first, `has_more` and
    /// `starting_after`, `created[gte]`), `github-events` (ETag, `X-Poll-Interval`, `Link`
    /// pages), or `json-list` (a generic JSON list; set `path` and the fields).
    #[serde(default)]
    pub preset: Option<PollPreset>,
    /// How often to poll (with up to 10 % jitter). The default is 15 minutes with
    /// `reconcile`, else 1 minute.
    #[serde(default)]
    pub every: Option<Duration>,
    /// With a webhook configured: poll to catch what the webhooks missed (the hybrid pattern).
    #[serde(default)]
    pub reconcile: bool,
    /// The list endpoint's path below `base_url`, e.g. `/v1/events`.
    #[serde(default)]
    pub path: Option<String>,
    /// Fixed query parameters, e.g. `{ limit = "100" }`.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Where the items are in the JSON body: a dotted path to a list (`data`,
    /// `results.items`), `""` when the body is the list itself, or a path ending in `.*` for
    /// every member of an object or list there (`results.*`; lists among them are joined).
    #[serde(default)]
    pub items: Option<String>,
    /// The item field holding its id (dotted path). The id is the dedupe key, shared with the
    /// service's webhooks: an event seen by both paths is stored once.
    #[serde(default)]
    pub id: Option<String>,
    /// The item field holding its time (unix seconds or RFC 3339): the watermark is taken from
    /// the items themselves, never from the clock.
    #[serde(default)]
    pub time: Option<String>,
    /// The item field holding its type; the stored type is `SERVICE.TYPE` (`SERVICE.item`
    /// without one).
    #[serde(default, rename = "type")]
    pub item_type: Option<String>,
    /// The query parameter that asks for items at or after the watermark, e.g.
    /// `created[gte]` (Stripe) or `since`.
    #[serde(default)]
    pub since_param: Option<String>,
    /// How the watermark is written in `since_param`.
    #[serde(default)]
    pub since_format: Option<TimeFormat>,
    /// How far behind the watermark each poll reads again, for items that arrive late or
    /// share a timestamp; re-read items are dropped by their ids.
    #[serde(default)]
    pub overlap: Option<Duration>,
    /// How to get the next page: `cursor:PARAM` (PARAM = the last item's id, e.g.
    /// `cursor:starting_after`), `link` (the `Link: rel="next"` header), `body:FIELD` (a next
    /// URL in the body, dotted path), `page:PARAM` (page numbers from 1), or `none`.
    #[serde(default)]
    pub next: Option<String>,
    /// A boolean body field saying whether more pages follow (e.g. `has_more`); without it,
    /// `cursor` and `page` pagination stop at an empty page.
    #[serde(default)]
    pub has_more: Option<String>,
    /// At most this many pages per poll; the rest waits for the next poll (the position is
    /// kept).
    #[serde(default)]
    pub max_pages: Option<u32>,
    /// Incremental by id instead of time: for an oldest-first list paged with
    /// `next = "cursor:PARAM"` (`starting_after`, `after`, `since_id` style), each poll
    /// continues after the last item ever read, so no timestamps are needed.
    #[serde(default)]
    pub id_cursor: bool,
    /// Poll the same endpoint once per entry (inboxes, accounts, repositories): `{source}` in
    /// `path` and in `query` values is replaced by each. Each source has its own schedule and
    /// checkpoint. Leave out for one source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Alert when a source's watermark has not moved for this many intervals in a row
    /// (a source gone quiet, or stuck); leave out for sources that are often idle.
    #[serde(default)]
    pub stall_alert: Option<u32>,
    /// With `reconcile`: raise an alert event when the webhooks missed more than this share
    /// of the last 24 hours' events (0.01 = 1 %).
    #[serde(default = "default_miss_alert")]
    pub miss_alert: f64,
}

fn default_miss_alert() -> f64 {
    0.01
}

/// Built-in poll recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PollPreset {
    /// Stripe's `GET /v1/events`.
    StripeEvents,
    /// GitHub's `GET /events` style feeds (set `path`, e.g. `/repos/OWNER/REPO/events`).
    GithubEvents,
    /// A generic JSON list (set `path` and the fields).
    JsonList,
}

/// How a time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Unix seconds.
    Unix,
    /// RFC 3339, e.g. `2026-11-29T12:00:00Z`.
    Rfc3339,
}

/// `[services.NAME.operations.OP]`: a named call agents can make.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The HTTP method.
    pub method: Method,
    /// The path below `base_url`, with `{param}` placeholders, e.g. `/v1/customers/{id}`.
    pub path: String,
    /// What the operation does, for agents choosing a tool.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether repeating the call is harmless; defaults to true for GET, HEAD, PUT and DELETE.
    #[serde(default)]
    pub idempotent: Option<bool>,
    /// The OAuth 2.0 scopes the operation needs; a service's token asks for the union of
    /// its operations' scopes (and `check` warns about requested scopes none needs).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How parameters not in the path are sent with POST, PUT and PATCH: a JSON body, or a
    /// form body (Stripe). GET, HEAD and DELETE send them in the query.
    #[serde(default)]
    pub body: BodyFormat,
}

/// How a named operation encodes its body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// HTTP methods for named operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// `[[subscriptions]]`: events an agent receives.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// A stable name: the delivery position and dead letters are kept under it, so renaming
    /// it starts over. Defaults to `AGENT-N` (N counting the agent's subscriptions from 1 in
    /// file order).
    #[serde(default)]
    pub name: Option<String>,
    /// The agent (a key of `[agents]`).
    pub agent: String,
    /// Event type patterns, e.g. `["stripe.payment_intent.*"]`.
    pub events: Vec<TypeGlob>,
    /// Where to push events (signed with Standard Webhooks headers). Leave out for pull only.
    #[serde(default)]
    pub url: Option<String>,
    /// The Standard Webhooks signing secret for pushes (`whsec_...`), as a secret reference.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long one push may take before it counts as failed.
    #[serde(default = "default_push_timeout")]
    pub timeout: Duration,
    /// Where a new subscription starts: `now` (events appended from its first start on) or
    /// `beginning` (the whole log). Only the first start counts; after that its position is
    /// kept.
    #[serde(default)]
    pub start: SubscriptionStart,
    /// At most this many pushes to the endpoint, e.g. `"50/s"`; deliveries wait their turn.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Waits before each delivery attempt: the first is normally `0s` (at once); each later
    /// one gets up to 10 % jitter. When the list is used up the delivery is dead-lettered.
    #[serde(default = "default_schedule")]
    pub schedule: Vec<Duration>,
}

impl Config {
    /// Each subscription with its effective name (see [`Subscription::name`]).
    pub fn named_subscriptions(&self) -> Vec<(String, &Subscription)> {
        let mut counts = BTreeMap::<&str, usize>::new();
        self.subscriptions
            .iter()
            .map(|subscription| {
                let n = counts.entry(subscription.agent.as_str()).or_default();
                *n += 1;
                let name = subscription
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{n}", subscription.agent));
                (name, subscription)
            })
            .collect()
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStart {
    /// With events appended after its first start.
    #[default]
    Now,
    /// With the first event in the log.
    Beginning,
}

fn default_push_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_schedule() -> Vec<Duration> {
    [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// `[[triggers]]`: a rule that derives a new event from patterns in the log. Give it exactly
/// one of `sequence`, `absence` or `threshold`. Events are matched per subject (the
/// CloudEvents `subject`, or the one `[events] subjects` finds); events without one are not
/// seen by rules. The derived event is appended to the log like any other, with source
/// `wireline://triggers/NAME`, the same subject, `causationid` (the event that completed the
/// pattern) and `correlationid` (the one that started it).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The rule's name, unique (lower-case letters, digits, `-`, `_`).
    pub name: String,
    /// The type of the event the rule emits, e.g. `user.no_login_7d`.
    pub emit: String,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// `first` then `then` for the same subject within `within`, e.g. `user.signup` then
    /// `payment.succeeded` within `"1h"`: emits when `then` arrives in time, once per `first`.
    #[serde(default)]
    pub sequence: Option<SequenceRule>,
    /// `first` not followed by `missing` for the same subject within `within`, e.g.
    /// `user.signup` without `user.first_login` within `"7d"`: emits when the time is up
    /// (durable timer: a restart does not lose it); `missing` in time cancels it.
    #[serde(default)]
    pub absence: Option<AbsenceRule>,
    /// `count` events of a type for one subject within a sliding window, e.g. 3
    /// `payment.failed` within `"24h"`: emits at the `count`-th, then counts afresh.
    #[serde(default)]
    pub threshold: Option<ThresholdRule>,
}

/// `sequence = { first, then, within }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceRule {
    /// The event type (pattern) that starts the sequence.
    pub first: TypeGlob,
    /// The event type (pattern) that completes it.
    pub then: TypeGlob,
    /// How long after `first` (by the events' `time`) `then` may come.
    pub within: Duration,
}

/// `absence = { first, missing, within }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbsenceRule {
    /// The event type (pattern) that starts the wait.
    pub first: TypeGlob,
    /// The event type (pattern) whose arrival cancels it.
    pub missing: TypeGlob,
    /// How long to wait after `first`'s `time`.
    pub within: Duration,
}

/// `threshold = { event, count, within }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// The event type (pattern) counted.
    pub event: TypeGlob,
    /// How many within the window fire the rule (2 or more).
    pub count: u32,
    /// The sliding window, by the events' `time`.
    pub within: Duration,
}

/// `[projections.NAME]`: state rebuilt from the log. For every subject of the matching events:
/// how many events, the first and last time, and per type the count and the last event's id,
/// offset and time. Kept up to date as events arrive; `wireline projections rebuild NAME`
/// drops it and replays the log from offset 0 into the same state.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Projection {
    /// Event type patterns the projection follows, e.g. `["stripe.customer.*", "app.user.*"]`.
    pub events: Vec<TypeGlob>,
    /// What the projection is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[events.retention."TYPE-PATTERN"]`: how long events of matching types are kept.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Delete events older than this (by their `time`), e.g. `"400d"`. Leave out to keep them.
    #[serde(default)]
    pub keep: Option<Duration>,
    /// Drop the payload (`data`) of events older than this, keeping the envelope (id, type,
    /// source, subject, time, producer and causation attributes) for the audit trail, e.g.
    /// `"30d"` for card or health data.
    #[serde(default)]
    pub payload: Option<Duration>,
}

/// `[environments.NAME]`: a profile (dev, staging, prod) chosen with `--env NAME` (or
/// `WIRELINE_ENV`): each service's base URL and credentials for that environment. Guards:
/// live keys (`sk_live_`, `rk_live_`, `pk_live_`) are refused outside a `production`
/// environment, test keys (`sk_test_`, ...) inside one, a production environment refuses
/// `http://` upstreams, and two environments may not share a credential.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Whether this is production (live keys are refused anywhere else).
    #[serde(default)]
    pub production: bool,
    /// What the environment is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Start the built-in emulators (`[mock]`) with the server (for a dev environment whose
    /// services point at them).
    #[serde(default)]
    pub mock: bool,
    /// Per service (a key of `[services]`), what differs in this environment.
    #[serde(default)]
    pub services: BTreeMap<String, EnvironmentService>,
}

/// `[environments.NAME.services.SERVICE]`: a service's settings in one environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentService {
    /// The base URL here, e.g. the emulator's `http://127.0.0.1:7490/stripe` in dev.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The credential here (same forms as `[services.NAME] auth`).
    #[serde(default)]
    pub auth: Option<Auth>,
    /// The webhook signing secret here.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
}

impl Config {
    /// Applies environment `name`'s overrides to `[services]` (after its secrets were
    /// resolved) and records it as the active one.
    pub fn apply_environment(&mut self, name: &str) {
        let Some(environment) = self.environments.get(name).cloned() else {
            return;
        };
        for (service_name, overrides) in environment.services {
            let Some(service) = self.services.get_mut(&service_name) else {
                continue;
            };
            if let Some(base_url) = overrides.base_url {
                service.base_url = base_url;
            }
            if let Some(auth) = overrides.auth {
                service.auth = Some(auth);
            }
            if let (Some(secret), Some(webhook)) = (overrides.webhook_secret, &mut service.webhook)
            {
                webhook.secret = secret;
            }
        }
        self.active_environment = Some(name.to_owned());
    }
}

impl Config {
    /// Every secret in the config with its key path, for resolution and audit (no
    /// environment selected: the environments' own secrets are left out).
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        self.secrets_for(None)
    }

    /// Every secret the config uses in environment `environment`: the base ones it does not
    /// override, and its own (the other environments' are never resolved: a dev machine
    /// need not hold production keys).
    pub fn secrets_for(&mut self, environment: Option<&str>) -> Vec<(String, &mut Secret)> {
        let overridden: BTreeMap<String, (bool, bool)> = environment
            .and_then(|name| self.environments.get(name))
            .map(|env| {
                env.services
                    .iter()
                    .map(|(name, o)| (name.clone(), (o.auth.is_some(), o.webhook_secret.is_some())))
                    .collect()
            })
            .unwrap_or_default();
        let mut found = Vec::new();
        for (name, agent) in &mut self.agents {
            found.push((format!("agents.{name}.token"), &mut agent.token));
            if let Some(next) = &mut agent.next_token {
                found.push((format!("agents.{name}.next_token"), next));
            }
            for (service, auth) in &mut agent.credentials {
                auth_secrets(
                    format!("agents.{name}.credentials.{service}"),
                    auth,
                    &mut found,
                );
            }
        }
        for (name, service) in &mut self.services {
            let (auth_overridden, secret_overridden) =
                overridden.get(name).copied().unwrap_or_default();
            if let Some(auth) = &mut service.auth
                && !auth_overridden
            {
                auth_secrets(format!("services.{name}.auth"), auth, &mut found);
            }
            if let Some(webhook) = &mut service.webhook {
                if !secret_overridden {
                    found.push((
                        format!("services.{name}.webhook.secret"),
                        &mut webhook.secret,
                    ));
                }
                if let Some(next) = &mut webhook.next_secret {
                    found.push((format!("services.{name}.webhook.next_secret"), next));
                }
            }
        }
        if let Some(name) = environment
            && let Some(env) = self.environments.get_mut(name)
        {
            for (service, overrides) in &mut env.services {
                let at = format!("environments.{name}.services.{service}");
                if let Some(auth) = &mut overrides.auth {
                    auth_secrets(format!("{at}.auth"), auth, &mut found);
                }
                if let Some(secret) = &mut overrides.webhook_secret {
                    found.push((format!("{at}.webhook_secret"), secret));
                }
            }
        }
        for (index, subscription) in self.subscriptions.iter_mut().enumerate() {
            if let Some(secret) = &mut subscription.secret {
                found.push((format!("subscriptions[{index}].secret"), secret));
            }
        }
        if let Some(AlertUrl::Secret(secret)) = &mut self.alerts.url {
            found.push(("alerts.url".to_owned(), secret));
        }
        if let Some(key) = &mut self.security.encryption_key {
            found.push(("security.encryption_key".to_owned(), key));
        }
        for (id, key) in &mut self.security.previous_keys {
            found.push((format!("security.previous_keys.{id}"), key));
        }
        for (name, webhook) in &mut self.mock.webhooks {
            found.push((format!("mock.webhooks.{name}.secret"), &mut webhook.secret));
        }
        found
    }
}

/// The secrets of an `auth` (for comparisons inside this crate).
pub(crate) fn collect_auth_secrets<'a>(auth: &'a mut Auth, found: &mut Vec<&'a mut Secret>) {
    let mut located = Vec::new();
    auth_secrets(String::new(), auth, &mut located);
    found.extend(located.into_iter().map(|(_, secret)| secret));
}

fn auth_secrets<'a>(at: String, auth: &'a mut Auth, found: &mut Vec<(String, &'a mut Secret)>) {
    match auth {
        Auth::Bearer(secret) => found.push((format!("{at}.bearer"), secret)),
        Auth::Basic(basic) => found.push((format!("{at}.basic.password"), &mut basic.password)),
        Auth::Header { value, .. } | Auth::Query { value, .. } => {
            found.push((format!("{at}.value"), value))
        }
        Auth::OAuth2(oauth2) => {
            found.push((
                format!("{at}.oauth2.client_secret"),
                &mut oauth2.client_secret,
            ));
            if let Some(refresh) = &mut oauth2.refresh_token {
                found.push((format!("{at}.oauth2.refresh_token"), refresh));
            }
        }
    }
}
