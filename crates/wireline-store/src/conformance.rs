//! The behaviour every store backend must show, written once.
//!
//! Each check takes a fresh, empty store. A backend's test file invokes
//! [`store_conformance!`](crate::store_conformance) with an expression that makes one, and gets
//! one `#[tokio::test]` per check:
//!
//! ```text
//! wireline_store::store_conformance!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
//!     (store, dir) // the second value is kept alive for the test's duration
//! });
//! ```
//!
//! The checks panic with a message naming the broken promise; they are test code.
#![allow(clippy::unwrap_used, missing_docs)]

use jiff::{Timestamp, ToSpan};
use wireline_core::{Event, Offset};

use crate::{EventQuery, IdempotencyClaim, Store};

/// A fixed point in time, so checks never depend on the clock.
pub fn t0() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

/// An event of type `ty` at `t0() + minutes`.
pub fn event(id: &str, ty: &str, minutes: i64) -> Event {
    Event::new(
        id,
        "wireline://conformance",
        ty,
        t0() + minutes.minutes(),
        serde_json::json!({ "id": id }),
    )
}

fn ids(events: &[crate::StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|stored| stored.event().unwrap().id)
        .collect()
}

pub async fn append_assigns_increasing_offsets(store: &impl Store) {
    assert_eq!(
        store.head().await.unwrap(),
        Offset::START,
        "a new log is empty"
    );
    let mut last = Offset::START;
    for n in 0..5 {
        let appended = store
            .append(&format!("d{n}"), &event(&format!("e{n}"), "t.a", n))
            .await
            .unwrap();
        assert!(!appended.duplicate);
        assert!(
            appended.offset > last,
            "offsets increase: {:?} after {last:?}",
            appended.offset
        );
        last = appended.offset;
    }
    assert_eq!(store.head().await.unwrap(), last);
}

pub async fn duplicate_append_stores_nothing_and_returns_original_offset(store: &impl Store) {
    let first = store
        .append("evt_1", &event("evt_1", "t.a", 0))
        .await
        .unwrap();
    let mut changed = event("evt_1", "t.changed", 5);
    changed.data = Some(serde_json::json!({"different": true}));
    let second = store.append("evt_1", &changed).await.unwrap();
    assert!(second.duplicate, "same dedupe id is a duplicate");
    assert_eq!(
        second.offset, first.offset,
        "a duplicate reports the original offset"
    );
    let all = store.read(Offset::START, 10).await.unwrap();
    assert_eq!(all.len(), 1, "the duplicate stored nothing");
    assert_eq!(all[0].ty, "t.a", "the original is kept as it was");
}

pub async fn batch_appends_keep_order_and_skip_duplicates(store: &impl Store) {
    let first = store.append("d0", &event("e0", "t.a", 0)).await.unwrap();
    let batch: Vec<_> = ["d1", "d0", "d2", "d1"]
        .iter()
        .enumerate()
        .map(|(n, dedupe)| {
            crate::NewEvent::new(*dedupe, event(&format!("b{n}"), "t.b", 1 + n as i64)).unwrap()
        })
        .collect();
    let appended = store.append_many(&batch).await.unwrap();
    let duplicates: Vec<bool> = appended.iter().map(|a| a.duplicate).collect();
    assert_eq!(
        duplicates,
        [false, true, false, true],
        "a dedupe id stored before, or earlier in the batch, is a duplicate"
    );
    assert_eq!(
        appended[1].offset, first.offset,
        "a duplicate reports the original"
    );
    assert_eq!(appended[3].offset, appended[0].offset);
    assert!(first.offset < appended[0].offset && appended[0].offset < appended[2].offset);
    let stored = store.read(Offset::START, 10).await.unwrap();
    assert_eq!(
        ids(&stored),
        ["e0", "b0", "b2"],
        "stored once each, in order"
    );
    assert_eq!(store.head().await.unwrap(), appended[2].offset);
    assert!(store.append_many(&[]).await.unwrap().is_empty());
}

pub async fn concurrent_appends_are_all_stored_once(store: &(impl Store + Clone + 'static)) {
    let mut tasks = Vec::new();
    for producer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for n in 0..25 {
                let id = format!("p{producer}-{n}");
                // Every producer also re-sends producer 0's ids: they must dedupe across tasks.
                offsets.push(store.append(&id, &event(&id, "t.load", n)).await.unwrap());
                let shared = format!("p0-{n}");
                offsets.push(
                    store
                        .append(&shared, &event(&shared, "t.load", n))
                        .await
                        .unwrap(),
                );
            }
            offsets
        }));
    }
    let mut fresh = Vec::new();
    for task in tasks {
        fresh.extend(
            task.await
                .unwrap()
                .into_iter()
                .filter(|a| !a.duplicate)
                .map(|a| a.offset),
        );
    }
    fresh.sort();
    fresh.dedup();
    let stored = store.read(Offset::START, 10_000).await.unwrap();
    assert_eq!(
        stored.len(),
        16 * 25,
        "every distinct id stored exactly once"
    );
    assert_eq!(
        fresh,
        stored.iter().map(|s| s.offset).collect::<Vec<_>>(),
        "acknowledged offsets are the stored ones"
    );
    let dense: Vec<Offset> = (1..=stored.len() as u64).map(Offset).collect();
    assert_eq!(fresh, dense, "offsets are dense: duplicates use up none");
}

pub async fn serialized_events_are_stored_byte_for_byte(store: &impl Store) {
    let mut envelope = event("raw", "t.raw", 0);
    envelope.data = None;
    let text = serde_json::to_string(&envelope).unwrap();
    let raw = "{ \"b\": 1,  \"a\": [2, 3] }";
    let body = format!("{},\"data\":{raw}}}", &text[..text.len() - 1]);
    let appended = store
        .append_json("raw", &envelope, body.clone())
        .await
        .unwrap();
    let stored = store.read(Offset::START, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].offset, appended.offset);
    assert_eq!(
        stored[0].body, body,
        "exactly as given, spacing and key order kept"
    );
    assert_eq!(stored[0].ty, "t.raw");
    assert_eq!(stored[0].event().unwrap().data.unwrap()["a"][1], 3);
    assert!(
        store
            .append_json("raw", &envelope, body)
            .await
            .unwrap()
            .duplicate
    );
}

pub async fn read_pages_from_an_offset(store: &impl Store) {
    for n in 0..10 {
        store
            .append(&format!("d{n}"), &event(&format!("e{n}"), "t.a", n))
            .await
            .unwrap();
    }
    let first = store.read(Offset::START, 4).await.unwrap();
    assert_eq!(ids(&first), ["e0", "e1", "e2", "e3"]);
    let next = store.read(first[3].offset, 4).await.unwrap();
    assert_eq!(ids(&next), ["e4", "e5", "e6", "e7"]);
    let rest = store.read(next[3].offset, 100).await.unwrap();
    assert_eq!(ids(&rest), ["e8", "e9"]);
    assert!(
        store.read(rest[1].offset, 100).await.unwrap().is_empty(),
        "nothing after the head"
    );
}

pub async fn stored_event_round_trips(store: &impl Store) {
    let mut original = event("evt_rt", "stripe.payment_intent.succeeded", 3);
    original.subject = Some("cus_123".into());
    original
        .extensions
        .insert("wirelineservice".into(), "stripe".into());
    store.append("evt_rt", &original).await.unwrap();
    let stored = store.read(Offset::START, 1).await.unwrap();
    assert_eq!(stored[0].event().unwrap(), original);
    assert_eq!(stored[0].ty, original.ty);
    assert_eq!(stored[0].time, original.time);
}

pub async fn query_filters_by_type_glob_and_time_range(store: &impl Store) {
    let rows = [
        ("a", "stripe.payment_intent.succeeded", 0),
        ("b", "stripe.charge.failed", 10),
        ("c", "stripe.payment_intent.failed", 20),
        ("d", "github.issues.opened", 30),
        ("e", "stripe.payment_intent.created", 40),
    ];
    for (id, ty, minutes) in rows {
        store.append(id, &event(id, ty, minutes)).await.unwrap();
    }
    let query = |types: Option<&str>, since: Option<i64>, until: Option<i64>| EventQuery {
        after: Offset::START,
        types: types.map(|t| t.parse().unwrap()),
        since: since.map(|m| t0() + m.minutes()),
        until: until.map(|m| t0() + m.minutes()),
        subject: None,
        source: None,
        limit: 100,
    };
    let run = |q: EventQuery| async move { ids(&store.query(&q).await.unwrap()) };
    assert_eq!(
        run(query(Some("stripe.payment_intent.*"), None, None)).await,
        ["a", "c", "e"]
    );
    assert_eq!(run(query(Some("*.failed"), None, None)).await, ["b", "c"]);
    assert_eq!(
        run(query(None, Some(10), Some(30))).await,
        ["b", "c"],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        run(query(Some("stripe.*"), Some(15), None)).await,
        ["c", "e"]
    );
    assert_eq!(
        run(query(Some("slack.*"), None, None)).await,
        Vec::<String>::new()
    );
    let mut limited = query(Some("stripe.*"), None, None);
    limited.limit = 2;
    assert_eq!(run(limited).await, ["a", "b"]);
}

pub async fn query_filters_by_subject_and_source(store: &impl Store) {
    for (id, subject, source) in [
        ("a", Some("cus_1"), "wireline://hooks/stripe"),
        ("b", Some("cus_2"), "wireline://hooks/stripe"),
        ("c", Some("cus_1"), "wireline://poll/stripe"),
        ("d", None, "wireline://hooks/stripe"),
    ] {
        let mut event = event(id, "stripe.charge.succeeded", 0);
        event.subject = subject.map(str::to_owned);
        event.source = source.to_owned();
        store.append(id, &event).await.unwrap();
    }
    let query = |subject: Option<&str>, source: Option<&str>| EventQuery {
        subject: subject.map(str::to_owned),
        source: source.map(str::to_owned),
        ..EventQuery::after(Offset::START, 100)
    };
    let run = |q: EventQuery| async move { ids(&store.query(&q).await.unwrap()) };
    assert_eq!(
        run(query(Some("cus_1"), None)).await,
        ["a", "c"],
        "a subject's timeline"
    );
    assert_eq!(
        run(query(Some("cus_1"), Some("wireline://hooks/stripe"))).await,
        ["a"]
    );
    assert_eq!(
        run(query(None, Some("wireline://hooks/stripe"))).await,
        ["a", "b", "d"]
    );
    let stored = store.query(&query(Some("cus_2"), None)).await.unwrap();
    assert_eq!(stored[0].event().unwrap().subject.as_deref(), Some("cus_2"));
}

pub async fn subscriber_offsets_commit_and_load(store: &impl Store) {
    assert_eq!(store.load_offset("billing-bot").await.unwrap(), None);
    store.commit_offset("billing-bot", Offset(7)).await.unwrap();
    store.commit_offset("other", Offset(2)).await.unwrap();
    assert_eq!(
        store.load_offset("billing-bot").await.unwrap(),
        Some(Offset(7))
    );
    store.commit_offset("billing-bot", Offset(3)).await.unwrap();
    assert_eq!(
        store.load_offset("billing-bot").await.unwrap(),
        Some(Offset(3)),
        "a replay may rewind"
    );
    assert_eq!(store.load_offset("other").await.unwrap(), Some(Offset(2)));
}

pub async fn idempotency_claims_follow_stripe_semantics(store: &impl Store) {
    let now = t0();
    let ttl = now + 24.hours();
    let claim = |key: &'static str, fingerprint: &'static [u8], at: Timestamp| async move {
        store
            .idempotency_claim("stripe", key, fingerprint, at, at + 24.hours())
            .await
            .unwrap()
    };
    assert_eq!(claim("k1", b"body-a", now).await, IdempotencyClaim::Claimed);
    assert_eq!(
        claim("k1", b"body-a", now).await,
        IdempotencyClaim::InFlight
    );
    assert_eq!(
        claim("k1", b"body-b", now).await,
        IdempotencyClaim::Mismatch
    );
    store
        .idempotency_complete("stripe", "k1", b"{\"id\":\"pi_1\"}")
        .await
        .unwrap();
    assert_eq!(
        claim("k1", b"body-a", now).await,
        IdempotencyClaim::Completed(b"{\"id\":\"pi_1\"}".to_vec())
    );
    assert_eq!(
        claim("k1", b"body-b", now).await,
        IdempotencyClaim::Mismatch
    );
    assert_eq!(
        store
            .idempotency_claim("other-scope", "k1", b"body-b", now, ttl)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed,
        "keys are per scope"
    );
    // A released claim can be taken again; a completed one cannot be released.
    assert_eq!(claim("k2", b"x", now).await, IdempotencyClaim::Claimed);
    store.idempotency_release("stripe", "k2").await.unwrap();
    assert_eq!(claim("k2", b"x", now).await, IdempotencyClaim::Claimed);
    store.idempotency_release("stripe", "k1").await.unwrap();
    assert!(matches!(
        claim("k1", b"body-a", now).await,
        IdempotencyClaim::Completed(_)
    ));
    // After the TTL the key is free again, even for another body.
    let later = now + 25.hours();
    assert_eq!(
        claim("k1", b"body-b", later).await,
        IdempotencyClaim::Claimed
    );
}

pub async fn cursors_save_and_load(store: &impl Store) {
    assert_eq!(store.load_cursor("stripe/events").await.unwrap(), None);
    store.save_cursor("stripe/events", "evt_100").await.unwrap();
    store.save_cursor("stripe/events", "evt_200").await.unwrap();
    assert_eq!(
        store.load_cursor("stripe/events").await.unwrap().as_deref(),
        Some("evt_200")
    );
}

pub async fn keyed_state_expires_and_purges(store: &impl Store) {
    let now = t0();
    store
        .put("breaker", "stripe", b"open", Some(now + 60.seconds()))
        .await
        .unwrap();
    store.put("limiter", "stripe", b"42", None).await.unwrap();
    assert_eq!(
        store
            .get("breaker", "stripe", now)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"open"[..])
    );
    assert_eq!(
        store
            .get("breaker", "stripe", now + 61.seconds())
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .get("limiter", "stripe", now + 24_000.hours())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"42"[..])
    );
    store
        .put("breaker", "stripe", b"closed", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .get("breaker", "stripe", now + 61.seconds())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"closed"[..]),
        "put replaces value and expiry"
    );
    store
        .idempotency_claim("s", "old", b"f", now, now + 1.hours())
        .await
        .unwrap();
    store
        .put("tmp", "x", b"1", Some(now + 1.hours()))
        .await
        .unwrap();
    store.put("dead", "b", b"2", None).await.unwrap();
    store.put("dead", "a", b"1", None).await.unwrap();
    store
        .put("dead", "c", b"3", Some(now + 1.seconds()))
        .await
        .unwrap();
    store.put("other", "z", b"9", None).await.unwrap();
    let listed = store.list("dead", now, 10).await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
            ("c".to_owned(), b"3".to_vec())
        ],
        "one namespace, in key order"
    );
    assert_eq!(store.list("dead", now, 1).await.unwrap().len(), 1);
    assert_eq!(
        store
            .list("dead", now + 2.seconds(), 10)
            .await
            .unwrap()
            .len(),
        2,
        "expired values are not listed"
    );
    assert_eq!(store.purge_expired(now + 2.hours()).await.unwrap(), 3);
    assert!(store.delete("limiter", "stripe").await.unwrap());
    assert!(!store.delete("limiter", "stripe").await.unwrap());
}

pub async fn batches_apply_changes_and_offset_together(store: &impl Store) {
    use crate::Change;
    store.put("rule", "gone", b"x", None).await.unwrap();
    store
        .write_batch(
            vec![
                Change::Put {
                    namespace: "rule".into(),
                    key: "a".into(),
                    value: b"1".to_vec(),
                    expires: None,
                },
                Change::Put {
                    namespace: "rule".into(),
                    key: "a".into(),
                    value: b"2".to_vec(),
                    expires: None,
                },
                Change::Delete {
                    namespace: "rule".into(),
                    key: "gone".into(),
                },
                Change::Put {
                    namespace: "rule".into(),
                    key: "b".into(),
                    value: b"3".to_vec(),
                    expires: Some(t0() + 1.hours()),
                },
            ],
            Some(("rule".into(), Offset(7))),
        )
        .await
        .unwrap();
    assert_eq!(
        store.list("rule", t0(), 10).await.unwrap(),
        vec![("a".into(), b"2".to_vec()), ("b".into(), b"3".to_vec())],
        "later changes in a batch win; deletes apply"
    );
    assert_eq!(store.load_offset("rule").await.unwrap(), Some(Offset(7)));
    assert_eq!(
        store
            .list("rule", t0() + 2.hours(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store.write_batch(Vec::new(), None).await.unwrap();
}

pub async fn retention_deletes_or_redacts_old_events(store: &impl Store) {
    use crate::Expiry;
    use wireline_core::TypeGlob;
    let mut card = event("c1", "stripe.charge.succeeded", 0);
    card.subject = Some("cus_1".into());
    card.data = Some(serde_json::json!({"card": "4242"}));
    store.append("c1", &card).await.unwrap();
    store
        .append("c2", &event("c2", "stripe.charge.succeeded", 120))
        .await
        .unwrap();
    store
        .append("l1", &event("l1", "app.log", 0))
        .await
        .unwrap();
    store
        .append("l2", &event("l2", "app.log", 1))
        .await
        .unwrap();
    let charges: TypeGlob = "stripe.charge.*".parse().unwrap();
    let logs: TypeGlob = "app.*".parse().unwrap();
    let cutoff = t0() + 60.minutes();
    assert_eq!(
        store
            .expire(&charges, cutoff, Expiry::DropData, 100)
            .await
            .unwrap(),
        1,
        "only the charge older than the cutoff"
    );
    assert_eq!(
        store
            .expire(&charges, cutoff, Expiry::DropData, 100)
            .await
            .unwrap(),
        0,
        "redacting twice changes nothing"
    );
    let first = store.read(Offset::START, 1).await.unwrap().remove(0);
    let redacted = first.event().unwrap();
    assert_eq!(redacted.id, "c1");
    assert_eq!(
        redacted.subject.as_deref(),
        Some("cus_1"),
        "the envelope stays"
    );
    assert_eq!(redacted.data, None, "the payload is gone");
    assert!(!first.body.contains("4242"));
    assert!(redacted.extensions.contains_key("wlredacted"));
    assert!(
        store.append("c1", &card).await.unwrap().duplicate,
        "the dedupe id outlives the payload"
    );
    assert_eq!(
        store
            .expire(&logs, t0() + 1.hours(), Expiry::Delete, 100)
            .await
            .unwrap(),
        1,
        "the newest event of the log is never deleted"
    );
    let left: Vec<String> = ids(&store.read(Offset::START, 10).await.unwrap());
    assert_eq!(left, ["c1", "c2", "l2"]);
    assert_eq!(store.head().await.unwrap(), Offset(4));
}

pub async fn close_flushes_and_refuses_writes(store: &impl Store) {
    store
        .append("before", &event("before", "t.a", 0))
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.close().await.unwrap();
    let after = store.append("after", &event("after", "t.a", 0)).await;
    assert!(after.is_err(), "a closed store refuses writes");
    assert!(store.ping().await.is_err(), "a closed store is not ready");
}

/// One `#[tokio::test]` per conformance check, for a backend made by `$make`, an async block
/// returning `(store, guard)`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            append_assigns_increasing_offsets,
            duplicate_append_stores_nothing_and_returns_original_offset,
            batch_appends_keep_order_and_skip_duplicates,
            concurrent_appends_are_all_stored_once,
            read_pages_from_an_offset,
            serialized_events_are_stored_byte_for_byte,
            stored_event_round_trips,
            query_filters_by_type_glob_and_time_range,
            query_filters_by_subject_and_source,
            subscriber_offsets_commit_and_load,
            idempotency_claims_follow_stripe_semantics,
            cursors_save_and_load,
            keyed_state_expires_and_purges,
            batches_apply_changes_and_offset_together,
            retention_deletes_or_redacts_old_events,
            close_flushes_and_refuses_writes,
        );
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make.await;
                $crate::conformance::$check(&store).await;
            }
        )*
    };
}
