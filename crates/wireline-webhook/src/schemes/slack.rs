//! Slack: `X-Slack-Signature: v0=HEX`, HMAC-SHA256 over `v0:{X-Slack-Request-Timestamp}:{body}`
//! with the signing secret. The event id and type are in the body (`event_id`, `event.type`);
//! the `url_verification` challenge is answered by the ingest, after verification.

use super::{Incoming, Keys, Refusal, Verified, any_sha256, unhex};

const HEADER: &str = "X-Slack-Signature";
const TIMESTAMP: &str = "X-Slack-Request-Timestamp";

pub(super) fn verify(keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
    let header = incoming.required(HEADER)?;
    let timestamp = incoming.required(TIMESTAMP)?;
    let signature = header
        .strip_prefix("v0=")
        .ok_or_else(|| Refusal::Malformed {
            header: HEADER.to_owned(),
            why: "it does not start with v0=".to_owned(),
        })?;
    if !any_sha256(
        keys,
        &[b"v0:", timestamp.as_bytes(), b":", incoming.body],
        &[unhex(HEADER, signature)?],
    ) {
        return Err(Refusal::Mismatch);
    }
    incoming.fresh(TIMESTAMP, timestamp)?;
    Ok(Verified::default())
}
