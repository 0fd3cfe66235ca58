//! Stripe: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX...]`, HMAC-SHA256 over
//! `{t}.{body}` with the whole `whsec_...` string as the key. Several `v1` entries appear
//! while Stripe rolls a secret; any may match. `v0` (test-mode legacy) entries are ignored.
//! The event id and type are in the body (`id`, `type`).

use super::{Incoming, Keys, Refusal, Verified, any_sha256, unhex};

const HEADER: &str = "Stripe-Signature";

pub(super) fn verify(keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
    let header = incoming.required(HEADER)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signatures.push(unhex(HEADER, value)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| Refusal::Malformed {
        header: HEADER.to_owned(),
        why: "no t= timestamp".to_owned(),
    })?;
    if signatures.is_empty() {
        return Err(Refusal::Malformed {
            header: HEADER.to_owned(),
            why: "no v1= signature".to_owned(),
        });
    }
    if !any_sha256(
        keys,
        &[timestamp.as_bytes(), b".", incoming.body],
        &signatures,
    ) {
        return Err(Refusal::Mismatch);
    }
    incoming.fresh(HEADER, timestamp)?;
    Ok(Verified::default())
}
