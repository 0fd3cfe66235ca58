//! Signature schemes, one file each. Every scheme verifies over the exact raw body bytes and
//! compares in constant time (`Mac::verify_slice`); a refusal says which check failed, never
//! what the expected signature was.

mod github;
mod hmac_generic;
mod shopify;
mod slack;
mod standard;
mod stripe;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use wireline_config::model::{HmacWebhook, WebhookScheme};

pub use hmac_generic::Generic;
pub use standard::{key as standard_key, sign as standard_sign};

/// What a verified request says about itself, where the scheme defines it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The provider's event id (the dedupe key), if the scheme carries it outside the body.
    pub id: Option<String>,
    /// The provider's event type, if the scheme carries it outside the body.
    pub event_type: Option<String>,
}

/// Why a request was refused. The text is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header the scheme needs is absent.
    #[error("the {0} header is missing")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("the {header} header is malformed ({why})")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong with it.
        why: String,
    },
    /// No signature in the request matches the body with any configured secret.
    #[error(
        "no signature matches the body with the configured secret(s); check the secret, and that nothing re-encodes the body on its way"
    )]
    Mismatch,
    /// The signed timestamp is outside the tolerance.
    #[error(
        "the signed timestamp is {age} s from now, outside the tolerance of {tolerance} s (a replayed request, or a clock that is off)"
    )]
    Stale {
        /// Seconds between the timestamp and now (either direction).
        age: i64,
        /// The tolerance in seconds.
        tolerance: i64,
    },
}

impl Refusal {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::Malformed { .. } => "malformed",
            Self::Mismatch => "mismatch",
            Self::Stale { .. } => "stale",
        }
    }
}

/// The secrets a service's webhooks may be signed with: the current one, and during a rotation
/// the next. Never printed.
pub struct Keys(Vec<Vec<u8>>);

impl Keys {
    /// From the secret strings as configured.
    pub fn new(secrets: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Self(secrets.into_iter().collect())
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} redacted)", self.0.len())
    }
}

/// One incoming request, as the schemes see it.
pub struct Incoming<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The exact raw body.
    pub body: &'a [u8],
    /// Now, in unix seconds.
    pub now: i64,
    /// Tolerance for signed timestamps, in seconds.
    pub tolerance: i64,
}

impl Incoming<'_> {
    /// A header's value as text; `Malformed` if it is not visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Result<Option<&str>, Refusal> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(|v| Some(v.trim()))
                .map_err(|_| Refusal::Malformed {
                    header: name.to_owned(),
                    why: "not printable ASCII".to_owned(),
                }),
        }
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.header(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refusal::MissingHeader(name.to_owned()))
    }

    /// Refuses a timestamp further than the tolerance from now, in either direction.
    pub(crate) fn fresh(&self, header: &str, timestamp: &str) -> Result<(), Refusal> {
        let signed: i64 = timestamp.parse().map_err(|_| Refusal::Malformed {
            header: header.to_owned(),
            why: "the timestamp is not unix seconds".to_owned(),
        })?;
        let age = (self.now - signed).abs();
        if age > self.tolerance {
            return Err(Refusal::Stale {
                age,
                tolerance: self.tolerance,
            });
        }
        Ok(())
    }

    /// The value of a header the scheme identifies events with, if present.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.header(name).ok().flatten().map(str::to_owned)
    }
}

/// A configured scheme, ready to verify.
#[derive(Debug)]
pub enum Scheme {
    /// `Stripe-Signature`.
    Stripe,
    /// `X-Hub-Signature-256`.
    Github,
    /// `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// `X-Slack-Signature`.
    Slack,
    /// Standard Webhooks.
    Standard,
    /// The configured generic HMAC.
    Hmac(Generic),
}

impl Scheme {
    /// The scheme as configured (`hmac` must come with its settings; config validation
    /// guarantees it).
    pub fn new(scheme: WebhookScheme, hmac: Option<&HmacWebhook>) -> Result<Self, String> {
        Ok(match scheme {
            WebhookScheme::Stripe => Self::Stripe,
            WebhookScheme::Github => Self::Github,
            WebhookScheme::Shopify => Self::Shopify,
            WebhookScheme::Slack => Self::Slack,
            WebhookScheme::Standard => Self::Standard,
            WebhookScheme::Hmac => Self::Hmac(Generic::new(
                hmac.ok_or("scheme \"hmac\" needs [webhook.hmac] settings")?,
            )),
        })
    }

    /// Verifies `incoming` with any of `keys`.
    pub fn verify(&self, keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
        match self {
            Self::Stripe => stripe::verify(keys, incoming),
            Self::Github => github::verify(keys, incoming),
            Self::Shopify => shopify::verify(keys, incoming),
            Self::Slack => slack::verify(keys, incoming),
            Self::Standard => standard::verify(keys, incoming),
            Self::Hmac(generic) => generic.verify(keys, incoming),
        }
    }

    /// Where the provider's event id and type are in a JSON body, for schemes that put them
    /// there (RFC 6901 pointers).
    pub fn body_fields(&self) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            Self::Stripe => (Some("/id"), Some("/type")),
            Self::Slack => (Some("/event_id"), Some("/event/type")),
            Self::Standard => (None, Some("/type")),
            _ => (None, None),
        }
    }
}

/// True if some key's HMAC-SHA256 over `parts` equals one of `candidates` (constant time).
pub(crate) fn any_sha256(keys: &Keys, parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    keys.iter().any(|key| {
        candidates.iter().any(|candidate| {
            let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
                return false;
            };
            for part in parts {
                mac.update(part);
            }
            mac.verify_slice(candidate).is_ok()
        })
    })
}

/// Decodes hex, or says which header was malformed.
pub(crate) fn unhex(header: &str, value: &str) -> Result<Vec<u8>, Refusal> {
    hex::decode(value).map_err(|_| Refusal::Malformed {
        header: header.to_owned(),
        why: "the signature is not hexadecimal".to_owned(),
    })
}

/// Decodes standard base64, or says which header was malformed.
pub(crate) fn unbase64(header: &str, value: &str) -> Result<Vec<u8>, Refusal> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| Refusal::Malformed {
            header: header.to_owned(),
            why: "the signature is not base64".to_owned(),
        })
}
