//! The CloudEvents parser of `POST /v1/events` (`wireline_core::event::parse_structured`) on
//! arbitrary bodies. Must not panic. For every accepted event: `specversion` is `1.0`; `id`,
//! `source`, `type` (and `subject`) pass `check_attribute`; a body without `time` gets `now`;
//! every extension name is lower-case letters and digits; and the event written back as JSON
//! parses again to the same attributes.
#![no_main]

use jiff::Timestamp;
use wireline_core::event::{check_attribute, parse_structured};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let now: Timestamp = "2026-12-04T10:00:00Z".parse().expect("time");
    let Ok(event) = parse_structured(data, now) else {
        return;
    };
    assert_eq!(event.specversion, "1.0");
    check_attribute("id", &event.id).expect("id checked");
    check_attribute("source", &event.source).expect("source checked");
    check_attribute("type", &event.ty).expect("type checked");
    if let Some(subject) = &event.subject {
        check_attribute("subject", subject).expect("subject checked");
    }
    let had_time = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("time")))
        .unwrap_or(false);
    if !had_time {
        assert_eq!(event.time, now);
    }
    for name in event.extensions.keys() {
        assert!(
            ["dataschema", "data_base64"].contains(&name.as_str())
                || (!name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
            "extension {name:?} accepted"
        );
    }
    let written = serde_json::to_vec(&event).expect("an event serializes");
    let again = parse_structured(&written, now).expect("a parsed event, written back, parses");
    assert_eq!(
        (
            &again.specversion,
            &again.id,
            &again.source,
            &again.ty,
            &again.subject,
            again.time
        ),
        (
            &event.specversion,
            &event.id,
            &event.source,
            &event.ty,
            &event.subject,
            event.time
        ),
    );
    assert_eq!(again.datacontenttype, event.datacontenttype);
    assert_eq!(
        again.extensions.keys().collect::<Vec<_>>(),
        event.extensions.keys().collect::<Vec<_>>()
    );
});
