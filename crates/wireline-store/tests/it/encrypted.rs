//! Encryption at rest: the database file holds no sensitive plaintext; readers get the exact
//! bytes back; keys rotate by id; tampering is detected.

use std::collections::BTreeMap;
use std::sync::Arc;

use wireline_core::{Event, Offset};
use wireline_store::encrypted::{Cipher, EncryptedStore};
use wireline_store::sqlite::SqliteStore;
use wireline_store::{EventLog, IdempotencyClaim, StateStore, Store};

fn cipher(current: &str, keys: &[(&str, u8)]) -> Arc<Cipher> {
    let keys: BTreeMap<String, Vec<u8>> = keys
        .iter()
        .map(|(id, byte)| ((*id).to_owned(), vec![*byte; 32]))
        .collect();
    Arc::new(Cipher::new(current, keys).expect("cipher"))
}

/// Every byte of the database and its WAL.
fn raw_files(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        all.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_payloads_and_idempotency_responses_are_ciphertext_on_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = SqliteStore::open(&dir.path().join("w.db")).expect("open");
    let store = EncryptedStore::new(
        sqlite.clone(),
        cipher("k1", &[("k1", 1)]),
        vec!["stripe.*".parse().expect("glob")],
    );
    let raw_data =
        r#"{"object": {"email": "ada.lovelace@example.com",  "card": "4242424242424242"}}"#;
    let mut event = Event::new(
        "evt_1",
        "wireline://hooks/stripe",
        "stripe.charge.succeeded",
        jiff::Timestamp::now(),
        serde_json::Value::Null,
    );
    event.subject = Some("cus_1".into());
    event.data = None;
    let envelope = serde_json::to_string(&event).expect("json");
    let body = format!("{},\"data\":{raw_data}}}", &envelope[..envelope.len() - 1]);
    store
        .append_json("event:stripe:evt_1", &event, body)
        .await
        .expect("append");
    let plain = Event::new(
        "app_1",
        "app",
        "app.note",
        jiff::Timestamp::now(),
        serde_json::json!({"note": "public-note-text"}),
    );
    store.append("app_1", &plain).await.expect("append");
    store
        .idempotency_claim(
            "svc",
            "k",
            b"fp",
            jiff::Timestamp::now(),
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
        )
        .await
        .expect("claim");
    store
        .idempotency_complete(
            "svc",
            "k",
            br#"{"status":200,"body":"secret-response-body"}"#,
        )
        .await
        .expect("complete");

    let read = store.read(Offset::START, 10).await.expect("read");
    assert!(
        read[0].body.contains(&format!("\"data\":{raw_data}")),
        "the payload's exact bytes come back: {}",
        read[0].body
    );
    assert_eq!(
        read[0].event().expect("parses").subject.as_deref(),
        Some("cus_1")
    );
    assert!(read[1].body.contains("public-note-text"));
    assert_eq!(
        store
            .idempotency_claim(
                "svc",
                "k",
                b"fp",
                jiff::Timestamp::now(),
                jiff::Timestamp::now()
            )
            .await
            .expect("claim"),
        IdempotencyClaim::Completed(br#"{"status":200,"body":"secret-response-body"}"#.to_vec())
    );
    // Queries by the envelope still work.
    let by_subject = store
        .query(&wireline_store::EventQuery {
            subject: Some("cus_1".into()),
            ..wireline_store::EventQuery::after(Offset::START, 10)
        })
        .await
        .expect("query");
    assert_eq!(by_subject.len(), 1);
    store.close().await.expect("close");

    let raw = raw_files(dir.path());
    for secret in [
        "ada.lovelace@example.com",
        "4242424242424242",
        "secret-response-body",
    ] {
        assert!(
            !contains(&raw, secret),
            "{secret} is in the database file in plaintext"
        );
    }
    assert!(
        contains(&raw, "public-note-text"),
        "a non-sensitive type is stored as it is"
    );
    assert!(contains(&raw, "cus_1"), "the envelope stays queryable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_by_id_and_tampering_is_detected() {
    let old = cipher("k1", &[("k1", 1)]);
    let sealed = old.seal(b"card 4242").expect("seal");
    assert!(sealed.starts_with("wl1:k1:"));
    let rotated = cipher("k2", &[("k1", 1), ("k2", 2)]);
    assert_eq!(
        rotated.open(&sealed).expect("the old key still opens"),
        b"card 4242"
    );
    assert!(
        rotated.seal(b"x").expect("seal").starts_with("wl1:k2:"),
        "the new key seals"
    );
    let without_old = cipher("k2", &[("k2", 2)]);
    let missing = without_old.open(&sealed).expect_err("k1 is gone");
    assert!(missing.to_string().contains("previous_keys"), "{missing}");
    let mut tampered = sealed.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        old.open(&tampered).is_err(),
        "a changed ciphertext does not open"
    );
    assert_ne!(
        old.seal(b"same").expect("seal"),
        old.seal(b"same").expect("seal"),
        "a fresh nonce each time"
    );
    assert!(
        Cipher::new("k", [("k".to_owned(), vec![0; 16])].into()).is_err(),
        "AES-256 needs 32 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_fields_can_be_sealed_leaving_the_rest_readable() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = SqliteStore::open(&dir.path().join("w.db")).expect("open");
    let store =
        EncryptedStore::new(sqlite, cipher("k1", &[("k1", 3)]), Vec::new()).with_paths(vec![(
            "hubspot.contact.*".parse().expect("glob"),
            vec![
                "data.properties.email".to_owned(),
                "data.properties.phone".to_owned(),
                "data.missing".to_owned(),
            ],
        )]);
    let event = Event::new(
        "c1",
        "wireline://poll/hubspot",
        "hubspot.contact.created",
        jiff::Timestamp::now(),
        serde_json::json!({"properties": {"email": "ada@example.com", "phone": {"mobile": "+44-20-7946-0001"}, "company": "Analytical Engines Ltd"}}),
    );
    store.append("c1", &event).await.expect("append");
    let back = store
        .read(Offset::START, 1)
        .await
        .expect("read")
        .remove(0)
        .event()
        .expect("event");
    assert_eq!(
        back.data, event.data,
        "every sealed field opens to its value"
    );
    store.close().await.expect("close");
    let raw = raw_files(dir.path());
    assert!(!contains(&raw, "ada@example.com") && !contains(&raw, "7946-0001"));
    assert!(
        contains(&raw, "Analytical Engines Ltd"),
        "fields not listed stay readable"
    );
}

/// Values of `sealed:` namespaces (rotated OAuth refresh tokens) are ciphertext in the file,
/// through `put`, `write_batch`, `get` and `list` alike; a value stored before they were
/// sealed still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_namespaces_are_ciphertext_on_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = SqliteStore::open(&dir.path().join("w.db")).expect("open");
    sqlite
        .put("sealed:oauth", "legacy", b"rt-plain-from-before", None)
        .await
        .expect("put");
    let store = EncryptedStore::new(sqlite.clone(), cipher("k1", &[("k1", 4)]), Vec::new());
    store
        .put("sealed:oauth", "crm", b"rt-rotated-secret-1", None)
        .await
        .expect("put");
    store
        .write_batch(
            vec![wireline_store::Change::Put {
                namespace: "sealed:oauth".into(),
                key: "crm:bot".into(),
                value: b"rt-rotated-secret-2".to_vec(),
                expires: None,
            }],
            None,
        )
        .await
        .expect("batch");
    let now = jiff::Timestamp::now();
    assert_eq!(
        store.get("sealed:oauth", "crm", now).await.expect("get"),
        Some(b"rt-rotated-secret-1".to_vec())
    );
    assert_eq!(
        store.get("sealed:oauth", "legacy", now).await.expect("get"),
        Some(b"rt-plain-from-before".to_vec())
    );
    let listed = store.list("sealed:oauth", now, 10).await.expect("list");
    assert_eq!(
        listed,
        [
            ("crm".to_owned(), b"rt-rotated-secret-1".to_vec()),
            ("crm:bot".to_owned(), b"rt-rotated-secret-2".to_vec()),
            ("legacy".to_owned(), b"rt-plain-from-before".to_vec()),
        ]
    );
    store.close().await.expect("close");
    let raw = raw_files(dir.path());
    assert!(
        !contains(&raw, "rt-rotated-secret"),
        "a rotated token in plaintext"
    );
}

/// Only the paths an event lists as sealed are opened: a payload of its own that holds an
/// object shaped like a sealed field reads back unchanged, and a body that claims Wireline's
/// markers at the top is refused at append instead of poisoning later reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_paths_are_opened_and_forged_markers_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = SqliteStore::open(&dir.path().join("w.db")).expect("open");
    let store =
        EncryptedStore::new(sqlite, cipher("k1", &[("k1", 5)]), Vec::new()).with_paths(vec![(
            "app.*".parse().expect("glob"),
            vec!["data.secret".to_owned()],
        )]);
    let data = serde_json::json!({"secret": "s3cr3t", "mine": {"wlsealed": "wl1:k1:bogus"}, "list": [{"wlsealed": "x"}]});
    let event = Event::new("a1", "app", "app.x", jiff::Timestamp::now(), data.clone());
    store.append("a1", &event).await.expect("append");
    let plain = Event::new(
        "a2",
        "other",
        "other.x",
        jiff::Timestamp::now(),
        data.clone(),
    );
    store.append("a2", &plain).await.expect("append");
    let read = store.read(Offset::START, 10).await.expect("read");
    assert_eq!(read.len(), 2);
    for stored in &read {
        assert_eq!(stored.event().expect("event").data, Some(data.clone()));
    }
    let mut forged = Event::new("a3", "app", "other.y", jiff::Timestamp::now(), data);
    forged
        .extensions
        .insert("wlencrypted".into(), serde_json::json!("wl1:k1:AAAA"));
    let refused = store.append("a3", &forged).await.expect_err("refused");
    assert!(refused.to_string().contains("wlencrypted"), "{refused}");
    assert_eq!(store.read(Offset::START, 10).await.expect("read").len(), 2);
}
