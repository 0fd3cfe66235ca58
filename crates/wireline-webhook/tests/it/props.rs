//! Property tests (proptest) for Standard Webhooks: what `standard_sign` signs,
//! `Scheme::Standard` verifies (any key, id, body, and a timestamp within the tolerance), and
//! one changed byte of the body, or another id or timestamp, is a mismatch. The `webhook_*`
//! fuzz targets check every scheme on arbitrary and mutated requests.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use wireline_config::model::WebhookScheme;
use wireline_webhook::schemes::{Incoming, Keys, Refusal, Scheme, standard_key, standard_sign};

const NOW: i64 = 1_780_000_000;

fn request(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).expect("id"));
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).expect("signature"),
    );
    headers
}

fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Refusal> {
    let scheme = Scheme::new(WebhookScheme::Standard, None).expect("standard");
    let incoming = Incoming {
        headers,
        body,
        now: NOW,
        tolerance: 300,
    };
    scheme
        .verify(&Keys::new([key.to_vec()]), &incoming)
        .map(|verified| verified.id)
}

proptest! {
    #[test]
    fn what_is_signed_verifies(
        key in prop::collection::vec(any::<u8>(), 1..64),
        id in "msg_[a-zA-Z0-9]{1,24}",
        skew in -300i64..=300,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let timestamp = NOW + skew;
        let signature = standard_sign(&key, &id, timestamp, &body);
        prop_assert_eq!(verify(&key, &request(&id, timestamp, &signature), &body), Ok(Some(id.clone())));
        // The secret as configured reads back as the key.
        prop_assert_eq!(standard_key(&format!("whsec_{}", STANDARD.encode(&key))), Some(key));
    }

    #[test]
    fn anything_else_is_a_mismatch(
        key in prop::collection::vec(any::<u8>(), 1..64),
        id in "msg_[a-zA-Z0-9]{1,24}",
        body in prop::collection::vec(any::<u8>(), 1..512),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        change in 0u8..3,
    ) {
        let signature = standard_sign(&key, &id, NOW, &body);
        let (mut body2, mut id2, mut timestamp2) = (body.clone(), id.clone(), NOW);
        match change {
            0 => body2[at.index(body.len())] ^= 1 << bit,
            1 => id2.push('x'),
            _ => timestamp2 += 1,
        }
        prop_assert_eq!(verify(&key, &request(&id2, timestamp2, &signature), &body2), Err(Refusal::Mismatch));
    }
}
