//! `POST /hooks/{service}`: verify, normalise, store durably, then answer.
//!
//! The order is the contract: nothing is acknowledged before it is durable (the append
//! returns after its group commit), and nothing slower than the append runs inline
//! (providers give 3–10 s). Duplicates are caught by the store's unique dedupe id, not by a
//! check-then-insert, so two concurrent deliveries of one event store it once.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wireline_config::model::Config;
use wireline_core::json::text as scalar;
use wireline_core::{Event, Offset, Problem, ProblemKind};
use wireline_store::Store;

use crate::delivery::Head;
use crate::schemes::{Incoming, Keys, Refusal, Scheme};

/// Where a field comes from.
#[derive(Debug, Clone)]
enum Field {
    Header(String),
    Json(String),
}

impl Field {
    fn parse(text: &str) -> Option<Self> {
        if let Some(name) = text.strip_prefix("header:") {
            Some(Self::Header(name.trim().to_owned()))
        } else {
            text.strip_prefix("json:").map(|p| Self::Json(p.to_owned()))
        }
    }

    fn read(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        match self {
            Self::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned()),
            Self::Json(pointer) => json.and_then(|j| j.pointer(pointer)).and_then(scalar),
        }
        .filter(|v| !v.is_empty())
    }
}

struct Hook {
    /// The service also polls to reconcile (hybrid): duplicates are recorded for the report.
    reconciled: bool,
    scheme: Scheme,
    keys: Keys,
    tolerance: i64,
    id: Option<Field>,
    event_type: Option<Field>,
}

/// What happened to a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Stored (or already stored: `duplicate`), at `offset`.
    Stored {
        /// The event's offset in the log.
        offset: Offset,
        /// True if this event id was stored before; nothing new was written.
        duplicate: bool,
        /// The event's CloudEvents id.
        id: String,
        /// The event's type.
        event_type: String,
    },
    /// A Slack `url_verification`: answer with this challenge; nothing is stored.
    Challenge(String),
}

/// The receiving side of every configured webhook.
pub struct Ingest {
    hooks: BTreeMap<String, Hook>,
    subjects: crate::Subjects,
    store: Arc<dyn Store>,
    head: Option<Arc<Head>>,
}

impl Ingest {
    /// One hook per `[services.NAME.webhook]`; secrets must be resolved.
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Result<Self, String> {
        let mut hooks = BTreeMap::new();
        for (name, service) in &config.services {
            let Some(webhook) = &service.webhook else {
                continue;
            };
            let mut keys = Vec::new();
            for secret in std::iter::once(&webhook.secret).chain(webhook.next_secret.as_ref()) {
                let value = secret
                    .value()
                    .ok_or_else(|| format!("services.{name}.webhook: a secret was not resolved"))?;
                let text = value.expose_secret();
                keys.push(match webhook.scheme {
                    wireline_config::model::WebhookScheme::Standard => {
                        crate::schemes::standard_key(text).ok_or_else(|| {
                            format!("services.{name}.webhook.secret is not a Standard Webhooks secret (whsec_ followed by base64); copy it again from the provider")
                        })?
                    }
                    _ => text.as_bytes().to_vec(),
                });
            }
            hooks.insert(
                name.clone(),
                Hook {
                    reconciled: service.poll.as_ref().is_some_and(|poll| poll.reconcile),
                    scheme: Scheme::new(webhook.scheme, webhook.hmac.as_ref())?,
                    keys: Keys::new(keys),
                    tolerance: i64::try_from(webhook.tolerance.get().as_secs()).unwrap_or(i64::MAX),
                    id: webhook.id.as_deref().and_then(Field::parse),
                    event_type: webhook.event_type.as_deref().and_then(Field::parse),
                },
            );
        }
        Ok(Self {
            hooks,
            subjects: crate::Subjects::new(config),
            store,
            head: None,
        })
    }

    /// Bumps `head` after every append, so deliveries and streams wake at once.
    pub fn with_head(mut self, head: Arc<Head>) -> Self {
        self.head = Some(head);
        self
    }

    /// True if `service` has a webhook configured.
    pub fn has(&self, service: &str) -> bool {
        self.hooks.contains_key(service)
    }

    /// Verifies, normalises and durably stores one delivery.
    pub async fn receive(
        &self,
        service: &str,
        headers: &HeaderMap,
        body: Bytes,
        now: Timestamp,
    ) -> Result<Received, Problem> {
        let Some(hook) = self.hooks.get(service) else {
            return Err(Problem::new(
                ProblemKind::UnknownService,
                format!(
                    "no webhook is configured for \"{service}\"; add [services.{service}.webhook] or fix the URL"
                ),
            ));
        };
        let incoming = Incoming {
            headers,
            body: &body,
            now: now.as_second(),
            tolerance: hook.tolerance,
        };
        let verified = hook.scheme.verify(&hook.keys, &incoming).map_err(|refusal| {
            metrics::counter!("wireline_webhook_refused_total", "service" => service.to_owned(), "reason" => refusal.reason()).increment(1);
            refused(service, &refusal)
        })?;

        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let (body_id, body_type) = hook.scheme.body_fields();
        if json.is_none() && (is_json(headers) || matches!(hook.scheme, Scheme::Stripe)) {
            return Err(Problem::new(
                ProblemKind::BadRequest,
                format!(
                    "the {service} webhook body is not valid JSON although its Content-Type says so"
                ),
            ));
        }
        if let (Scheme::Slack, Some(json)) = (&hook.scheme, &json)
            && json.get("type").and_then(Value::as_str) == Some("url_verification")
        {
            let challenge = json.get("challenge").and_then(scalar).unwrap_or_default();
            return Ok(Received::Challenge(challenge));
        }

        let provider_id = hook
            .id
            .as_ref()
            .and_then(|f| f.read(headers, json.as_ref()))
            .or(verified.id)
            .or_else(|| body_id.and_then(|p| json.as_ref()?.pointer(p).and_then(scalar)));
        let provider_type = hook
            .event_type
            .as_ref()
            .and_then(|f| f.read(headers, json.as_ref()))
            .or(verified.event_type)
            .or_else(|| body_type.and_then(|p| json.as_ref()?.pointer(p).and_then(scalar)))
            .unwrap_or_else(|| "event".to_owned());
        // Without a provider id, the body's hash is the id: a resent identical body is a
        // duplicate, which is what a retry of it is.
        let id =
            provider_id.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
        let event_type = format!("{service}.{provider_type}");
        let subject = self.subjects.subject(&event_type, json.as_ref());
        let (event, serialized) = normalise(
            service,
            &id,
            &event_type,
            subject,
            headers,
            &body,
            json.is_some(),
            now,
        )
        .map_err(|error| {
            Problem::new(
                ProblemKind::Internal,
                format!("the event could not be serialized ({error})"),
            )
        })?;

        let appended = self
            .store
            .append_json(&crate::dedupe_id(service, &id), &event, serialized)
            .await
            .map_err(|error| {
                metrics::counter!("wireline_webhook_received_total", "service" => service.to_owned(), "outcome" => "store_unavailable").increment(1);
                Problem::new(
                    ProblemKind::StoreUnavailable,
                    format!("the event was not stored ({error}), so it is not acknowledged; the provider will retry"),
                )
                .with_retry_after(5)
            })?;
        if let Some(head) = &self.head {
            head.bump(appended.offset);
        }
        if appended.duplicate && hook.reconciled {
            // Not on the acknowledgement's critical path for new events; a failure here only
            // costs the capture report a count.
            if let Err(error) = crate::sightings::record_duplicate(
                self.store.as_ref(),
                service,
                &id,
                appended.offset,
                now,
            )
            .await
            {
                tracing::warn!(%error, service, "duplicate webhook not recorded for the capture report");
            }
        }
        let outcome = if appended.duplicate {
            "duplicate"
        } else {
            "stored"
        };
        metrics::counter!("wireline_webhook_received_total", "service" => service.to_owned(), "outcome" => outcome).increment(1);
        Ok(Received::Stored {
            offset: appended.offset,
            duplicate: appended.duplicate,
            id,
            event_type,
        })
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().ends_with("json"))
        })
}

fn refused(service: &str, refusal: &Refusal) -> Problem {
    Problem::new(
        ProblemKind::BadSignature,
        format!("the {service} webhook was refused and not stored: {refusal}"),
    )
}

/// The CloudEvent, serialized. A JSON body becomes `data` byte for byte (spliced into the
/// envelope, never re-serialized), so the stored event keeps exactly what was signed and a
/// signature can be re-checked from it later. Any other body becomes `data` as a string
/// (UTF-8), with the exact bytes also in the `wlrawbody64` extension when they are not UTF-8.
#[allow(clippy::too_many_arguments)] // the parts of one event, each used once
fn normalise(
    service: &str,
    id: &str,
    event_type: &str,
    subject: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
    is_json: bool,
    now: Timestamp,
) -> Result<(Event, String), serde_json::Error> {
    let text = std::str::from_utf8(body).ok();
    let mut event = Event::new(
        id,
        format!("wireline://hooks/{service}"),
        event_type,
        now,
        Value::Null,
    );
    event.subject = subject;
    event.datacontenttype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| is_json.then(|| "application/json".to_owned()));
    if let (true, Some(raw)) = (is_json, text) {
        event.data = None;
        let envelope = serde_json::to_string(&event)?;
        // The envelope is a JSON object: put `data` before its closing brace.
        let mut serialized = String::with_capacity(envelope.len() + raw.len() + 8);
        serialized.push_str(&envelope[..envelope.len() - 1]);
        serialized.push_str(",\"data\":");
        serialized.push_str(raw);
        serialized.push('}');
        return Ok((event, serialized));
    }
    event.data = Some(text.map_or(Value::Null, |t| Value::String(t.to_owned())));
    if text.is_none() {
        event.extensions.insert(
            "wlrawbody64".to_owned(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
        );
    }
    let serialized = serde_json::to_string(&event)?;
    Ok((event, serialized))
}
