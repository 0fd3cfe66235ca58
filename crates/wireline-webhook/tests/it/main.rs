//! Signature schemes against the providers' published vectors and negative cases, and the
//! ingest: verify, normalise, store once, answer.

mod delivery;
mod ingest;
mod props;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use wireline_config::model::{HmacAlgorithm, HmacWebhook, SignatureEncoding, WebhookScheme};
use wireline_webhook::schemes::{Incoming, Keys, Refusal, Scheme, standard_key, standard_sign};

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

fn scheme(name: &str) -> Scheme {
    let scheme: WebhookScheme =
        serde_json::from_value(Value::String(name.to_owned())).expect("scheme name");
    Scheme::new(scheme, None).expect("built-in scheme")
}

fn keys(scheme: &str, secrets: &[&str]) -> Keys {
    Keys::new(secrets.iter().map(|secret| {
        if scheme == "standard" {
            standard_key(secret).expect("whsec_ base64")
        } else {
            secret.as_bytes().to_vec()
        }
    }))
}

fn verify(
    scheme_name: &str,
    secrets: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<wireline_webhook::schemes::Verified, Refusal> {
    scheme(scheme_name).verify(
        &keys(scheme_name, secrets),
        &Incoming {
            headers,
            body,
            now,
            tolerance: 300,
        },
    )
}

#[test]
fn every_published_and_computed_vector() {
    let file: Value =
        serde_json::from_str(include_str!("../vectors/webhook-signatures.json")).expect("vectors");
    let vectors = file["vectors"].as_array().expect("list");
    let mut schemes = std::collections::BTreeSet::new();
    for vector in vectors {
        let name = vector["scheme"].as_str().expect("scheme");
        schemes.insert(name);
        let pairs: Vec<(String, String)> = vector["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let now = vector["now"].as_i64().unwrap_or(1_700_000_000);
        let result = verify(
            name,
            &[vector["secret"].as_str().expect("secret")],
            &headers(&pairs),
            vector["body"].as_str().expect("body").as_bytes(),
            now,
        );
        assert_eq!(
            result.is_ok(),
            vector["valid"].as_bool().expect("valid"),
            "{name} / {}: {result:?}",
            vector["source"]
        );
    }
    assert_eq!(
        schemes.into_iter().collect::<Vec<_>>(),
        ["github", "shopify", "slack", "standard", "stripe"]
    );
}

pub fn hmac_hex(key: &[u8], content: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(content);
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_b64(key: &[u8], content: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(content);
    STANDARD.encode(mac.finalize().into_bytes())
}

pub const NOW: i64 = 1_800_000_000;
pub const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

/// Headers a provider would send for BODY signed with `secret` at `at`.
pub fn signed(scheme: &str, secret: &str, body: &[u8], at: i64) -> HeaderMap {
    let t = at.to_string();
    match scheme {
        "stripe" => {
            let content = [t.as_bytes(), b".", body].concat();
            headers(&[(
                "Stripe-Signature",
                &format!("t={t},v1={}", hmac_hex(secret.as_bytes(), &content)),
            )])
        }
        "github" => headers(&[(
            "X-Hub-Signature-256",
            &format!("sha256={}", hmac_hex(secret.as_bytes(), body)),
        )]),
        "shopify" => headers(&[("X-Shopify-Hmac-Sha256", &hmac_b64(secret.as_bytes(), body))]),
        "slack" => {
            let content = [b"v0:", t.as_bytes(), b":", body].concat();
            headers(&[
                (
                    "X-Slack-Signature",
                    &format!("v0={}", hmac_hex(secret.as_bytes(), &content)),
                ),
                ("X-Slack-Request-Timestamp", &t),
            ])
        }
        "standard" => {
            let key = standard_key(secret).expect("key");
            headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &t),
                ("webhook-signature", &standard_sign(&key, "msg_1", at, body)),
            ])
        }
        other => panic!("{other}"),
    }
}

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const NEXT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[test]
fn tampered_wrong_secret_stale_missing_and_rotated() {
    for name in ["stripe", "github", "shopify", "slack", "standard"] {
        let good = signed(name, SECRET, BODY, NOW);
        assert!(verify(name, &[SECRET], &good, BODY, NOW).is_ok(), "{name}");
        assert_eq!(
            verify(
                name,
                &[SECRET],
                &good,
                br#"{"id":"evt_1","type":"invoice.paid "}"#,
                NOW
            ),
            Err(Refusal::Mismatch),
            "{name}: tampered body"
        );
        assert_eq!(
            verify(name, &[NEXT], &good, BODY, NOW),
            Err(Refusal::Mismatch),
            "{name}: wrong secret"
        );
        assert!(
            matches!(
                verify(name, &[SECRET], &HeaderMap::new(), BODY, NOW),
                Err(Refusal::MissingHeader(_))
            ),
            "{name}: no headers"
        );
        // During a rotation both secrets verify.
        let rotated = signed(name, NEXT, BODY, NOW);
        assert!(
            verify(name, &[SECRET, NEXT], &rotated, BODY, NOW).is_ok(),
            "{name}"
        );
        assert!(
            verify(name, &[SECRET, NEXT], &good, BODY, NOW).is_ok(),
            "{name}"
        );
        // Timestamped schemes refuse replays either side of the tolerance.
        let old = signed(name, SECRET, BODY, NOW - 301);
        let ahead = signed(name, SECRET, BODY, NOW + 301);
        let at_edge = signed(name, SECRET, BODY, NOW - 300);
        if matches!(name, "stripe" | "slack" | "standard") {
            assert!(
                matches!(
                    verify(name, &[SECRET], &old, BODY, NOW),
                    Err(Refusal::Stale { age: 301, .. })
                ),
                "{name}"
            );
            assert!(
                matches!(
                    verify(name, &[SECRET], &ahead, BODY, NOW),
                    Err(Refusal::Stale { .. })
                ),
                "{name}"
            );
            assert!(
                verify(name, &[SECRET], &at_edge, BODY, NOW).is_ok(),
                "{name}"
            );
        }
    }
}

#[test]
fn refusals_never_show_the_expected_signature() {
    let good = signed("github", SECRET, BODY, NOW);
    let expected = hmac_hex(SECRET.as_bytes(), b"other body");
    let refusal = verify("github", &[SECRET], &good, b"other body", NOW).expect_err("tampered");
    let text = refusal.to_string();
    assert!(
        !text.contains(&expected) && !text.contains(SECRET),
        "{text}"
    );
    let malformed = verify(
        "stripe",
        &[SECRET],
        &headers(&[("Stripe-Signature", "v1=abcd")]),
        BODY,
        NOW,
    )
    .expect_err("no t=");
    assert_eq!(
        malformed.to_string(),
        "the Stripe-Signature header is malformed (no t= timestamp)"
    );
}

#[test]
fn the_generic_scheme_follows_its_settings() {
    let config = |algorithm, encoding, prefix: &str, signed: &str, ts: Option<&str>| HmacWebhook {
        header: "X-Acme-Signature".into(),
        algorithm,
        encoding,
        prefix: prefix.into(),
        signed: signed.into(),
        timestamp_header: ts.map(str::to_owned),
    };
    let secret = "acme-secret";
    let check = |config: HmacWebhook, headers: &HeaderMap| {
        Scheme::new(WebhookScheme::Hmac, Some(&config))
            .expect("scheme")
            .verify(
                &keys("hmac", &[secret]),
                &Incoming {
                    headers,
                    body: BODY,
                    now: NOW,
                    tolerance: 300,
                },
            )
    };
    // sha256, hex, prefix, body only.
    let hex_sig = format!("sha256={}", hmac_hex(secret.as_bytes(), BODY));
    let sha256_hex = config(
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        "sha256=",
        "{body}",
        None,
    );
    assert!(
        check(
            sha256_hex.clone(),
            &headers(&[("X-Acme-Signature", &hex_sig)])
        )
        .is_ok()
    );
    assert!(matches!(
        check(
            sha256_hex,
            &headers(&[("X-Acme-Signature", hex_sig.trim_start_matches("sha256="))])
        ),
        Err(Refusal::Malformed { .. })
    ));
    // sha1, base64, a timestamp and a header in the signed content.
    let t = NOW.to_string();
    let content = [t.as_bytes(), b".", b"del_9", b".", BODY].concat();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&content);
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let sha1_b64 = config(
        HmacAlgorithm::Sha1,
        SignatureEncoding::Base64,
        "",
        "{timestamp}.{header:X-Delivery}.{body}",
        Some("X-Acme-Time"),
    );
    let sent = headers(&[
        ("X-Acme-Signature", &sig),
        ("X-Acme-Time", &t),
        ("X-Delivery", "del_9"),
    ]);
    assert!(check(sha1_b64.clone(), &sent).is_ok());
    let other_delivery = headers(&[
        ("X-Acme-Signature", &sig),
        ("X-Acme-Time", &t),
        ("X-Delivery", "del_8"),
    ]);
    assert_eq!(
        check(sha1_b64.clone(), &other_delivery),
        Err(Refusal::Mismatch)
    );
    let stale_time = (NOW - 1000).to_string();
    let content = [stale_time.as_bytes(), b".", b"del_9", b".", BODY].concat();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&content);
    let stale_sig = STANDARD.encode(mac.finalize().into_bytes());
    let stale = headers(&[
        ("X-Acme-Signature", &stale_sig),
        ("X-Acme-Time", &stale_time),
        ("X-Delivery", "del_9"),
    ]);
    assert!(matches!(
        check(sha1_b64, &stale),
        Err(Refusal::Stale { .. })
    ));
}

/// Serves `app` on a free loopback port until the test ends; returns `http://ADDRESS`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
