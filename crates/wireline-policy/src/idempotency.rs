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
    headers: Vec<(String, Value)>,
    body: String,
    at_ms: i64,
}

/// A stored header value: text as it is (what records written before bytes were kept hold
/// too), bytes that are not UTF-8 in base64.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Bytes { base64: String },
}

/// Encodes a response for the store, with the time it was received.
pub fn encode(response: &Response, at: jiff::Timestamp) -> Vec<u8> {
    let stored = Stored {
        status: response.status,
        headers: response
            .headers
            .iter()
            .map(|(name, value)| {
                let value = match value.to_str() {
                    Ok(text) => Value::Text(text.to_owned()),
                    Err(_) => Value::Bytes {
                        base64: STANDARD.encode(value.as_bytes()),
                    },
                };
                (name.as_str().to_owned(), value)
            })
            .collect(),
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
    let mut headers = http::HeaderMap::with_capacity(stored.headers.len());
    for (name, value) in stored.headers {
        let value = match value {
            Value::Text(text) => http::HeaderValue::from_str(&text).ok()?,
            Value::Bytes { base64 } => {
                http::HeaderValue::from_bytes(&STANDARD.decode(base64).ok()?).ok()?
            }
        };
        headers.append(http::HeaderName::from_bytes(name.as_bytes()).ok()?, value);
    }
    Some((
        Response {
            status: stored.status,
            headers,
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
    fn stored_responses_round_trip_with_bytes_that_are_not_text() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        headers.append(
            "x-raw",
            http::HeaderValue::from_bytes(b"caf\xe9").expect("obs-text"),
        );
        headers.append("x-raw", http::HeaderValue::from_static("second"));
        let response = Response {
            status: 201,
            headers,
            body: b"{\"id\":1}".to_vec().into(),
        };
        let at = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let (back, when) = decode(&encode(&response, at)).expect("decodes");
        assert_eq!(back, response);
        assert_eq!(when, at);
        // A record written before header bytes were kept still reads.
        let old =
            br#"{"status":200,"headers":[["content-type","text/plain"]],"body":"aGk=","at_ms":1}"#;
        let (back, _) = decode(old).expect("old format");
        assert_eq!(back.header("content-type"), Some("text/plain"));
    }
}
