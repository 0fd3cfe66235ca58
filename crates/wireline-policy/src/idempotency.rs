//! Idempotency: request fingerprints, derived keys, and the format of stored responses.
//!
//! A key is claimed in the store with the request's fingerprint (Stripe's model): the same key
//! and fingerprint replays the stored response; the same key with another fingerprint is a
//! client bug (422); the same key while the first request runs is a race (409).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::stack::Response;

/// SHA-256 over the parts that make two requests "the same request", length-prefixed so
/// that no two different lists of parts hash alike.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// A key Wireline derives for a non-idempotent named operation the agent sent without one:
/// the same agent calling the same operation with the same parameters is one intent.
pub fn derived_key(agent: &str, service: &str, operation: &str, canonical_params: &[u8]) -> String {
    format!(
        "wl_{}",
        &fingerprint(&[
            agent.as_bytes(),
            service.as_bytes(),
            operation.as_bytes(),
            canonical_params
        ])[..32]
    )
}

#[derive(Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    at_ms: i64,
}

/// Encodes a response for the store, with the time it was received.
pub fn encode(response: &Response, at: jiff::Timestamp) -> Vec<u8> {
    let stored = Stored {
        status: response.status,
        headers: response.headers.clone(),
        body: STANDARD.encode(&response.body),
        at_ms: at.as_millisecond(),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Decodes a stored response and the time it was received.
pub fn decode(bytes: &[u8]) -> Option<(Response, jiff::Timestamp)> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let body = STANDARD.decode(stored.body).ok()?;
    let at = jiff::Timestamp::from_millisecond(stored.at_ms).ok()?;
    Some((
        Response {
            status: stored.status,
            headers: stored.headers,
            body: body.into(),
        },
        at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(
            fingerprint(&[b"POST", b"/v1/x"]),
            fingerprint(&[b"POST", b"/v1/x"])
        );
        assert!(derived_key("bot", "stripe", "refund", b"{}").starts_with("wl_"));
    }

    #[test]
    fn stored_responses_round_trip() {
        let response = Response {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"id\":1}".to_vec().into(),
        };
        let at = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let (back, when) = decode(&encode(&response, at)).expect("decodes");
        assert_eq!(back, response);
        assert_eq!(when, at);
    }
}
