//! The ingest against a real SQLite store.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;
use wireline_config::{Env, load_str};
use wireline_core::{Offset, ProblemKind};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, Store};
use wireline_webhook::{Ingest, Received};

use super::{BODY, SECRET, headers, signed};

pub struct World {
    pub ingest: Ingest,
    pub store: SqliteStore,
    _dir: tempfile::TempDir,
}

pub fn world(services: &str) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars: BTreeMap<String, String> = [("HOOK_SECRET", SECRET), ("NEXT_SECRET", super::NEXT)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = load_str(
        services,
        &dir.path().join("wireline.toml"),
        &Env::from_map(vars),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    let store = SqliteStore::open(&dir.path().join("w.db")).expect("store");
    let ingest = Ingest::new(&loaded.config, Arc::new(store.clone())).expect("ingest");
    World {
        ingest,
        store,
        _dir: dir,
    }
}

fn service(name: &str, scheme: &str) -> String {
    format!(
        "[services.{name}]\nbase_url = \"https://api.example.com\"\n[services.{name}.webhook]\nscheme = \"{scheme}\"\nsecret = \"${{env:HOOK_SECRET}}\"\n"
    )
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("time")
}

#[tokio::test]
async fn a_stripe_event_is_stored_once_as_a_cloudevent_with_its_raw_body() {
    let w = world(&service("stripe", "stripe"));
    let headers = signed("stripe", SECRET, BODY, super::NOW);
    let first = w
        .ingest
        .receive("stripe", &headers, Bytes::from_static(BODY), at(super::NOW))
        .await
        .expect("stored");
    let Received::Stored {
        offset,
        duplicate,
        id,
        event_type,
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(!duplicate);
    assert_eq!(
        (id.as_str(), event_type.as_str()),
        ("evt_1", "stripe.invoice.paid")
    );
    // The provider retries: same event, acknowledged, stored once — also when concurrent.
    let ingest = Arc::new(w.ingest);
    let mut retries = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (ingest, headers) = (Arc::clone(&ingest), headers.clone());
        retries.spawn(async move {
            ingest
                .receive(
                    "stripe",
                    &headers,
                    Bytes::from_static(BODY),
                    at(super::NOW + 5),
                )
                .await
        });
    }
    while let Some(retry) = retries.join_next().await {
        assert_eq!(
            retry.expect("task").expect("acknowledged"),
            Received::Stored {
                offset,
                duplicate: true,
                id: "evt_1".into(),
                event_type: "stripe.invoice.paid".into()
            }
        );
    }
    let events = w.store.read(Offset::START, 10).await.expect("read");
    assert_eq!(events.len(), 1);
    let event = events[0].event().expect("cloudevent");
    assert_eq!(event.specversion, "1.0");
    assert_eq!(event.source, "wireline://hooks/stripe");
    assert_eq!(event.data.as_ref().expect("data")["type"], "invoice.paid");
    assert!(
        events[0].body.ends_with(&format!(
            ",\"data\":{}}}",
            std::str::from_utf8(BODY).expect("utf8")
        )),
        "data is the signed body byte for byte, for audit: {}",
        events[0].body
    );
}

#[tokio::test]
async fn ids_and_types_come_from_each_providers_place() {
    let w = world(
        &[
            service("gh", "github"),
            service("shop", "shopify"),
            service("sl", "slack"),
            service("std", "standard"),
        ]
        .concat(),
    );
    let now = super::NOW;
    let mut gh = signed("github", SECRET, BODY, now);
    gh.extend(headers(&[
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "d-72d3162e"),
    ]));
    let mut shop = signed("shopify", SECRET, BODY, now);
    shop.extend(headers(&[
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Webhook-Id", "b54557e4"),
    ]));
    let slack_body =
        br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}"#;
    let sl = signed("slack", SECRET, slack_body, now);
    let std_body = br#"{"type":"user.created","data":{}}"#;
    let st = signed("standard", SECRET, std_body, now);
    let cases: [(&str, _, &[u8], &str, &str); 4] = [
        ("gh", gh, BODY, "d-72d3162e", "gh.issues"),
        ("shop", shop, BODY, "b54557e4", "shop.orders.create"),
        ("sl", sl, slack_body, "Ev08MFMKH6", "sl.app_mention"),
        ("std", st, std_body, "msg_1", "std.user.created"),
    ];
    for (service, headers, body, want_id, want_type) in cases {
        let received = w
            .ingest
            .receive(service, &headers, Bytes::copy_from_slice(body), at(now))
            .await
            .unwrap_or_else(|p| panic!("{service}: {p:?}"));
        let Received::Stored { id, event_type, .. } = received else {
            panic!()
        };
        assert_eq!(
            (id.as_str(), event_type.as_str()),
            (want_id, want_type),
            "{service}"
        );
    }
}

#[tokio::test]
async fn configured_id_and_type_and_the_generic_scheme() {
    let config = "[services.acme]\nbase_url = \"https://api.acme.test\"\n[services.acme.webhook]\nscheme = \"hmac\"\nsecret = \"${env:HOOK_SECRET}\"\nid = \"header:X-Acme-Delivery\"\ntype = \"json:/kind\"\nhmac = { header = \"X-Acme-Signature\", prefix = \"sha256=\" }\n";
    let w = world(config);
    let body = br#"{"kind":"shipment.sent"}"#;
    let sig = format!("sha256={}", super::hmac_hex(SECRET.as_bytes(), body));
    let sent = headers(&[("X-Acme-Signature", &sig), ("X-Acme-Delivery", "A-1")]);
    let received = w
        .ingest
        .receive("acme", &sent, Bytes::from_static(body), Timestamp::now())
        .await
        .expect("stored");
    let Received::Stored { id, event_type, .. } = received else {
        panic!()
    };
    assert_eq!(
        (id.as_str(), event_type.as_str()),
        ("A-1", "acme.shipment.sent")
    );
}

#[tokio::test]
async fn refused_requests_are_never_stored_and_say_why() {
    let w = world(&[service("stripe", "stripe"), service("sl", "slack")].concat());
    let now = super::NOW;
    let good = signed("stripe", SECRET, BODY, now);
    let cases = [
        (
            "stripe",
            headers(&[]),
            BODY.to_vec(),
            ProblemKind::BadSignature,
            "Stripe-Signature header is missing",
        ),
        (
            "stripe",
            good.clone(),
            b"{\"id\":\"evt_2\"}".to_vec(),
            ProblemKind::BadSignature,
            "no signature matches",
        ),
        (
            "stripe",
            signed("stripe", SECRET, BODY, now - 3600),
            BODY.to_vec(),
            ProblemKind::BadSignature,
            "outside the tolerance",
        ),
        (
            "nope",
            good.clone(),
            BODY.to_vec(),
            ProblemKind::UnknownService,
            "[services.nope.webhook]",
        ),
    ];
    for (service, headers, body, kind, says) in cases {
        let problem = w
            .ingest
            .receive(service, &headers, Bytes::from(body), at(now))
            .await
            .expect_err("refused");
        assert_eq!(problem.kind, kind);
        assert!(problem.detail.contains(says), "{}", problem.detail);
        assert!(!problem.detail.contains(SECRET));
    }
    // Stripe events are JSON, whatever the Content-Type says.
    let not_json = b"id=evt_9";
    let problem = w
        .ingest
        .receive(
            "stripe",
            &signed("stripe", SECRET, not_json, now),
            Bytes::from_static(not_json),
            at(now),
        )
        .await
        .expect_err("400");
    assert_eq!(problem.kind, ProblemKind::BadRequest);
    // Signed, but not the JSON its Content-Type promises.
    let bad_json = b"{not json";
    let mut h = signed("stripe", SECRET, bad_json, now);
    h.extend(headers(&[("content-type", "application/json")]));
    let problem = w
        .ingest
        .receive("stripe", &h, Bytes::from_static(bad_json), at(now))
        .await
        .expect_err("400");
    assert_eq!(problem.kind, ProblemKind::BadRequest);
    // Slack's url_verification is answered, not stored.
    let challenge = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let received = w
        .ingest
        .receive(
            "sl",
            &signed("slack", SECRET, challenge, now),
            Bytes::from_static(challenge),
            at(now),
        )
        .await
        .expect("answered");
    assert_eq!(
        received,
        Received::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
    );
    assert!(
        w.store
            .read(Offset::START, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn nothing_is_acknowledged_when_the_store_cannot_take_it() {
    let w = world(&service("stripe", "stripe"));
    w.store.close().await.expect("close");
    let problem = w
        .ingest
        .receive(
            "stripe",
            &signed("stripe", SECRET, BODY, super::NOW),
            Bytes::from_static(BODY),
            at(super::NOW),
        )
        .await
        .expect_err("not stored, not acknowledged");
    assert_eq!(
        (problem.kind, problem.status),
        (ProblemKind::StoreUnavailable, 503)
    );
    assert!(problem.retry_after.is_some());
}

#[tokio::test]
async fn subjects_come_from_the_configured_path() {
    let w = world(&format!(
        "[events.subjects]\n\"stripe.invoice.*\" = \"data.object.customer\"\n{}",
        service("stripe", "stripe")
    ));
    let body = br#"{"id":"evt_s","type":"invoice.paid","data":{"object":{"customer":"cus_42"}}}"#;
    w.ingest
        .receive(
            "stripe",
            &signed("stripe", SECRET, body, super::NOW),
            Bytes::from_static(body),
            at(super::NOW),
        )
        .await
        .expect("stored");
    let timeline = w
        .store
        .query(&wireline_store::EventQuery {
            subject: Some("cus_42".into()),
            ..wireline_store::EventQuery::after(Offset::START, 10)
        })
        .await
        .expect("query");
    assert_eq!(timeline.len(), 1, "the customer's timeline has the invoice");
}
