//! GitHub: `X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256 over the body. No timestamp is
//! signed, so the delivery id (`X-GitHub-Delivery`, the dedupe key) is the replay defence.
//! The event type is `X-GitHub-Event`.

use super::{Incoming, Keys, Refusal, Verified, any_sha256, unhex};

const HEADER: &str = "X-Hub-Signature-256";

pub(super) fn verify(keys: &Keys, incoming: &Incoming<'_>) -> Result<Verified, Refusal> {
    let header = incoming.required(HEADER)?;
    let signature = header
        .strip_prefix("sha256=")
        .ok_or_else(|| Refusal::Malformed {
            header: HEADER.to_owned(),
            why: "it does not start with sha256=".to_owned(),
        })?;
    if !any_sha256(keys, &[incoming.body], &[unhex(HEADER, signature)?]) {
        return Err(Refusal::Mismatch);
    }
    Ok(Verified {
        id: incoming.text("X-GitHub-Delivery"),
        event_type: incoming.text("X-GitHub-Event"),
    })
}
