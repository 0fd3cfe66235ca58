//! Emulators of the services agents use most, for tests, demos and the dev environment: each
//! answers in the real service's shapes, status codes, headers and error bodies for a useful
//! core of its API, sends webhooks signed the provider's way, and injects faults from a
//! seeded generator so a failing run replays exactly.
//!
//! One listener serves them all, each under its prefix: `/stripe`, `/slack`, `/github`,
//! `/shopify`, `/sendgrid`, `/hubspot`, `/salesforce` (an SDK's base URL is
//! `http://127.0.0.1:7490/stripe`). `/__admin` sets faults at runtime, sends custom webhooks,
//! and reports what each emulator was asked (`GET /__admin/requests`) and sent.
//!
//! - `faults.rs`: the fault layer every emulator sits behind.
//! - `hooks.rs`: the webhook sender (drop, duplicate, reorder, delay; retries like a provider).
//! - one file per emulator.
#![warn(missing_docs)]
// Emulator helpers return the error `Response` a handler sends as it is; boxing it would only
// add an allocation to every error answer.
#![allow(clippy::result_large_err)]

mod admin;
mod crm;
mod faults;
mod github;
mod hooks;
mod sendgrid;
mod shopify;
mod slack;
mod stripe;
pub mod stubs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wireline_config::model::{Faults, MockConfig};

pub use hooks::WebhookStats;

/// An emulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Stripe: customers, payment intents, charges, refunds, events, idempotency, webhooks.
    Stripe,
    /// Slack: `chat.postMessage` at 1 message/s per channel, signed event callbacks.
    Slack,
    /// GitHub: issues, comments, the events feed with ETag, webhooks.
    Github,
    /// Shopify: orders with `orders/create` webhooks.
    Shopify,
    /// SendGrid: `POST /v3/mail/send`.
    Sendgrid,
    /// HubSpot: contacts, with its rate-limit headers and daily quota.
    Hubspot,
    /// Salesforce: contacts, with `Sforce-Limit-Info` and the daily request limit.
    Salesforce,
}

impl Kind {
    /// Every emulator.
    pub const ALL: [Kind; 7] = [
        Kind::Stripe,
        Kind::Slack,
        Kind::Github,
        Kind::Shopify,
        Kind::Sendgrid,
        Kind::Hubspot,
        Kind::Salesforce,
    ];

    /// Its name, which is also its path prefix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stripe => "stripe",
            Kind::Slack => "slack",
            Kind::Github => "github",
            Kind::Shopify => "shopify",
            Kind::Sendgrid => "sendgrid",
            Kind::Hubspot => "hubspot",
            Kind::Salesforce => "salesforce",
        }
    }

    /// The emulator called `name`.
    pub fn parse(name: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                format!(
                    "no emulator named {name:?}; there are: {}",
                    Kind::ALL.map(Kind::name).join(", ")
                )
            })
    }
}

/// Where an emulator sends its webhooks.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint.
    pub url: String,
    /// The signing secret (a test secret: emulators never see live ones).
    pub secret: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The emulators (empty: all).
    pub services: Vec<Kind>,
    /// The seed of ids and faults.
    pub seed: u64,
    /// Webhook targets per emulator.
    pub webhooks: BTreeMap<Kind, Target>,
    /// Faults by `service` or `service:/path-prefix`.
    pub faults: BTreeMap<String, Faults>,
    /// HubSpot's and Salesforce's daily request quota.
    pub daily_quota: u64,
    /// Stub services by name (served under `/NAME`), from stub files.
    pub stubs: BTreeMap<String, Vec<stubs::Stub>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            seed: 0,
            webhooks: BTreeMap::new(),
            faults: BTreeMap::new(),
            daily_quota: 250_000,
            stubs: BTreeMap::new(),
        }
    }
}

impl Options {
    /// From a loaded `[mock]` section (secrets resolved); stub paths are relative to
    /// `base_dir` (the config's folder).
    pub fn from_config(config: &MockConfig, base_dir: &std::path::Path) -> Result<Self, String> {
        use secrecy::ExposeSecret;
        let services = config
            .services
            .iter()
            .map(|name| Kind::parse(name))
            .collect::<Result<_, _>>()?;
        let mut webhooks = BTreeMap::new();
        for (name, webhook) in &config.webhooks {
            let secret = webhook
                .secret
                .value()
                .ok_or_else(|| format!("mock.webhooks.{name}.secret is not resolved"))?;
            webhooks.insert(
                Kind::parse(name)?,
                Target {
                    url: webhook.url.clone(),
                    secret: secret.expose_secret().to_owned(),
                },
            );
        }
        let mut stubs = BTreeMap::new();
        for (name, path) in &config.stubs {
            stubs.insert(name.clone(), stubs::load(&base_dir.join(path))?);
        }
        for key in config.faults.keys() {
            let name = key.split(':').next().unwrap_or_default();
            if !stubs.contains_key(name) {
                Kind::parse(name)
                    .map_err(|e| format!("mock.faults.{key}: {e} (or a [mock.stubs] name)"))?;
            }
        }
        Ok(Self {
            services,
            seed: config.seed,
            webhooks,
            faults: config.faults.clone(),
            stubs,
            ..Self::default()
        })
    }
}

/// State every emulator shares: the generator, the faults, the counts, the webhook sender.
pub(crate) struct Shared {
    rng: Mutex<StdRng>,
    faults: RwLock<BTreeMap<String, Faults>>,
    counts: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    hooks: hooks::Sender,
    webhooks: RwLock<BTreeMap<Kind, Target>>,
    daily_quota: u64,
    stripe: Mutex<stripe::State>,
    slack: Mutex<slack::State>,
    github: Mutex<github::State>,
    shopify: Mutex<shopify::State>,
    crm: Mutex<crm::State>,
    scenarios: stubs::Scenarios,
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl Shared {
    /// A provider-style id: `prefix` and `len` random alphanumerics (seeded).
    pub(crate) fn id(&self, prefix: &str, len: usize) -> String {
        let mut rng = lock(&self.rng);
        let tail: String = (0..len)
            .map(|_| ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())] as char)
            .collect();
        format!("{prefix}{tail}")
    }

    /// True with probability `p`.
    pub(crate) fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random::<f64>() < p
    }

    /// A number in `range`.
    pub(crate) fn pick(&self, range: std::ops::Range<u64>) -> u64 {
        if range.is_empty() {
            return range.start;
        }
        lock(&self.rng).random_range(range)
    }

    /// Sends a webhook of `kind` (if it has a target), with `headers` from `sign`.
    pub(crate) fn webhook(
        &self,
        kind: Kind,
        body: Vec<u8>,
        sign: impl FnOnce(&str, &[u8]) -> Vec<(String, String)>,
    ) {
        let target = self
            .webhooks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&kind)
            .cloned();
        if let Some(target) = target {
            let headers = sign(&target.secret, &body);
            self.hooks.send(hooks::Outgoing {
                kind,
                url: target.url,
                headers,
                body,
            });
        }
    }

    /// The key of the faults for `kind` at `path`: the longest matching `kind:prefix`, else
    /// `kind`.
    fn faults_key(faults: &BTreeMap<String, Faults>, name: &str, path: &str) -> Option<String> {
        faults
            .keys()
            .filter_map(|key| match key.split_once(':') {
                Some((service, prefix)) if service == name && path.starts_with(prefix) => {
                    Some((prefix.len() + 1, key))
                }
                None if key == name => Some((0, key)),
                _ => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, key)| key.clone())
    }

    /// The faults for emulator or stub service `name` at `path`. The count-based ones (`fail_next`,
    /// `webhook_drop_next`) are used up here: the copy returned has them at most 1, and the
    /// stored one is decremented.
    pub(crate) fn faults_for(&self, name: &str, path: &str, webhook: bool) -> Option<Faults> {
        let mut faults = self
            .faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = Self::faults_key(&faults, name, path)?;
        let stored = faults.get_mut(&key)?;
        let mut copy = stored.clone();
        let counter = if webhook {
            copy.fail_next = 0;
            &mut stored.webhook_drop_next
        } else {
            copy.webhook_drop_next = 0;
            &mut stored.fail_next
        };
        let take = u32::from(*counter > 0);
        *counter -= take;
        if webhook {
            copy.webhook_drop_next = take;
        } else {
            copy.fail_next = take;
        }
        Some(copy)
    }
}

/// Locks a mutex, recovering from a panicked holder (the emulators' state stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the epoch, as providers put in `created`.
pub(crate) fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A JSON response with a status and extra headers.
pub(crate) fn json(status: StatusCode, headers: HeaderMap, body: serde_json::Value) -> Response {
    (status, headers, axum::Json(body)).into_response()
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The emulators, ready to serve.
#[derive(Clone)]
pub struct Mock {
    shared: Arc<Shared>,
    services: Vec<Kind>,
    stubs: Arc<BTreeMap<String, Vec<stubs::Stub>>>,
}

impl Mock {
    /// Emulators with `options`. Needs a tokio runtime (the webhook sender is a task).
    pub fn new(options: Options) -> Self {
        let services = if options.services.is_empty() {
            Kind::ALL.to_vec()
        } else {
            options.services.clone()
        };
        let shared = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(options.seed)),
            faults: RwLock::new(options.faults),
            counts: Mutex::new(BTreeMap::new()),
            hooks: hooks::Sender::start(),
            webhooks: RwLock::new(options.webhooks),
            daily_quota: options.daily_quota,
            stripe: Mutex::new(stripe::State::default()),
            slack: Mutex::new(slack::State::default()),
            github: Mutex::new(github::State::default()),
            shopify: Mutex::new(shopify::State::default()),
            crm: Mutex::new(crm::State::default()),
            scenarios: stubs::Scenarios::default(),
        });
        // The sender draws its faults from the same seeded generator.
        shared.hooks.attach(Arc::downgrade(&shared));
        Self {
            shared,
            services,
            stubs: Arc::new(options.stubs),
        }
    }

    /// The stub services it serves.
    pub fn stub_services(&self) -> Vec<String> {
        self.stubs.keys().cloned().collect()
    }

    /// The emulators it runs.
    pub fn services(&self) -> &[Kind] {
        &self.services
    }

    /// The router: every emulator under its prefix, and `/__admin`.
    pub fn router(&self) -> Router {
        let mut router = Router::new().nest("/__admin", admin::router(Arc::clone(&self.shared)));
        for kind in &self.services {
            let service = match kind {
                Kind::Stripe => stripe::router(),
                Kind::Slack => slack::router(),
                Kind::Github => github::router(&self.shared),
                Kind::Shopify => shopify::router(),
                Kind::Sendgrid => sendgrid::router(),
                Kind::Hubspot => crm::hubspot_router(),
                Kind::Salesforce => crm::salesforce_router(),
            }
            .with_state(Arc::clone(&self.shared));
            let mut service = faults::layer(
                kind.name().to_owned(),
                Some(*kind),
                Arc::clone(&self.shared),
                service,
            );
            if *kind == Kind::Stripe {
                service = stripe::outer(Arc::clone(&self.shared), service);
            }
            router = router.nest(&format!("/{}", kind.name()), service);
        }
        for (name, stubs) in self.stubs.iter() {
            let service = stubs::router(name, stubs.clone(), Arc::clone(&self.shared));
            router = router.nest(
                &format!("/{name}"),
                faults::layer(name.clone(), None, Arc::clone(&self.shared), service),
            );
        }
        router
    }

    /// Sets (or with `None` clears) the faults of `key` (`service` or `service:/prefix`).
    pub fn set_faults(&self, key: &str, faults: Option<Faults>) {
        let mut all = self
            .shared
            .faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match faults {
            Some(faults) => all.insert(key.to_owned(), faults),
            None => all.remove(key),
        };
    }

    /// Requests each emulator received, by `METHOD /path`.
    pub fn requests(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        lock(&self.shared.counts).clone()
    }

    /// What the webhook sender did, per emulator.
    pub fn webhook_stats(&self) -> BTreeMap<String, WebhookStats> {
        self.shared.hooks.stats()
    }

    /// Serves on `listener` until the returned handle is dropped or shut down.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<Running> {
        let address = listener.local_addr()?;
        let app = self.router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Running {
            address,
            mock: self.clone(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Binds `address` and serves.
    pub async fn start(options: Options, address: SocketAddr) -> std::io::Result<Running> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        Self::new(options).serve(listener)
    }
}

/// Running emulators.
pub struct Running {
    /// Where they listen.
    pub address: SocketAddr,
    /// The emulators (faults, counts).
    pub mock: Mock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The base URL of emulator `kind`, e.g. `http://127.0.0.1:7490/stripe`.
    pub fn url(&self, kind: Kind) -> String {
        format!("http://{}/{}", self.address, kind.name())
    }

    /// Stops serving (open connections finish first).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
