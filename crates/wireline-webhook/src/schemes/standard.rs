//! Standard Webhooks (also Svix, OpenAI, Twilio and others): `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,BASE64 [v1,BASE64 ...]` (space-separated; other
//! versions ignored), HMAC-SHA256 over `{id}.{timestamp}.{body}` with the base64-decoded part
//! after `whsec_` as the key. The `webhook-id` is the dedupe key; the type is the body's `type`.
//!
//! Signing, for deliveries to agents, lives here too, so both directions share one definition.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

use super::{Incoming, Keys, Refusal, Verified, any_sha256, unbase64};

const SIGNATURE: &str = "webhook-signature";

/// The key bytes of a `whsec_...` secret (base64 after the prefix), or `None` if it is not
/// base64.
pub fn key(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

/// The `webhook-signature` value for a message (`v1,BASE64`).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub(super) fn verify(keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
    let id = incoming.required("webhook-id")?;
    let timestamp = incoming.required("webhook-timestamp")?;
    let header = incoming.required(SIGNATURE)?;
    let mut signatures = Vec::new();
    for item in header.split(' ').filter(|item| !item.is_empty()) {
        if let Some(signature) = item.strip_prefix("v1,") {
            signatures.push(unbase64(SIGNATURE, signature)?);
        }
    }
    if signatures.is_empty() {
        return Err(Refusal::Malformed {
            header: SIGNATURE.to_owned(),
            why: "no v1, signature".to_owned(),
        });
    }
    if !any_sha256(
        keys,
        &[
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            incoming.body,
        ],
        &signatures,
    ) {
        return Err(Refusal::Mismatch);
    }
    incoming.fresh("webhook-timestamp", timestamp)?;
    Ok(Verified {
        id: Some(id.to_owned()),
        event_type: None,
    })
}
