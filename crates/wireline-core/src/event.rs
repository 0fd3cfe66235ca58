//! The event envelope: CloudEvents 1.0 in its JSON format.
//!
//! Every pattern (webhooks, polls, producers, derived triggers, audit records) appends this one
//! envelope to the one log, so subscribers see a single shape. Wireline writes its own struct
//! rather than use the `cloudevents-sdk` crate: the JSON format is small, and the SDK's
//! transport bindings and builder would add weight for nothing we need.
//!
//! Deviation from the spec, on purpose: `time` is required here. The log is queried by time
//! range, so an event without a time gets the moment it was received before it is stored.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The position of an event in the log: dense, increasing, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// Before the first event: reading "after `Offset::START`" reads from the beginning.
    pub const START: Offset = Offset(0);
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The only CloudEvents version Wireline reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// A CloudEvents 1.0 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `"1.0"`.
    pub specversion: String,
    /// The producer's id for the event (the provider's event id where there is one). Together
    /// with `source` it identifies the event; Wireline de-duplicates on it.
    pub id: String,
    /// Where the event came from, e.g. `wireline://services/stripe`.
    pub source: String,
    /// `{service}.{provider event type}`, e.g. `stripe.payment_intent.succeeded`.
    #[serde(rename = "type")]
    pub ty: String,
    /// What the event is about (a customer id, an order id), for timelines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the event happened.
    pub time: Timestamp,
    /// The media type of `data`, usually `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// CloudEvents extension attributes (lower-case alphanumeric names).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// A JSON event with the required attributes set.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
        time: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time,
            datacontenttype: Some("application/json".to_owned()),
            data: Some(data),
            extensions: BTreeMap::new(),
        }
    }
}

/// The longest `id`, `source`, `type` or `subject` Wireline accepts, in bytes. They travel in
/// headers (`webhook-id`), index entries and URLs; 256 bytes is far more than any provider
/// uses and small enough for every receiver's header limits.
pub const MAX_ATTRIBUTE: usize = 256;

/// Extension attributes that only Wireline sets: `wl*` (the producing agent, redaction and
/// encryption markers, the hash chain) and the derivation links of trigger rules. A producer's
/// own values for them are dropped ([`Event::strip_reserved`]), so nobody can forge the audit
/// trail.
pub fn is_reserved_extension(name: &str) -> bool {
    name.starts_with("wl") || name == "causationid" || name == "correlationid"
}

/// Why a CloudEvent was refused. The text names the attribute and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON.
    #[error(
        "the body is not JSON ({0}); send one CloudEvent in structured mode (application/cloudevents+json)"
    )]
    NotJson(String),
    /// The body is JSON, but not one object.
    #[error("the body must be one CloudEvent, a JSON object")]
    NotObject,
    /// A required attribute is absent.
    #[error("`{0}` is required (CloudEvents 1.0)")]
    Missing(&'static str),
    /// An attribute breaks a rule.
    #[error("`{attribute}` {why}")]
    Invalid {
        /// The attribute.
        attribute: String,
        /// The rule it breaks and the fix.
        why: String,
    },
}

impl EnvelopeError {
    fn invalid(attribute: &str, why: impl Into<String>) -> Self {
        Self::Invalid {
            attribute: attribute.to_owned(),
            why: why.into(),
        }
    }
}

/// Checks `id`, `source`, `type` and `subject` against Wireline's bounds: at most
/// [`MAX_ATTRIBUTE`] bytes, no control characters (so nothing can split a header or a log
/// line), `id` visible ASCII, `type` only the characters a subscription pattern can name
/// (letters, digits, `.`, `_`, `-`, `:`; never the pattern's `*`).
pub fn check_attribute(attribute: &str, value: &str) -> Result<(), EnvelopeError> {
    if value.trim().is_empty() {
        return Err(EnvelopeError::invalid(
            attribute,
            "must be a non-empty string",
        ));
    }
    if value.len() > MAX_ATTRIBUTE {
        return Err(EnvelopeError::invalid(
            attribute,
            format!(
                "is {} bytes long; at most {MAX_ATTRIBUTE} are accepted (use a shorter value, and put long text in `data`)",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(EnvelopeError::invalid(
            attribute,
            "contains a control character (CR, LF, tab, ...); use printable characters only",
        ));
    }
    match attribute {
        "id" if !value.bytes().all(|b| b.is_ascii_graphic()) => Err(EnvelopeError::invalid(
            attribute,
            "must be visible ASCII without spaces (it becomes a header value); use letters, digits and punctuation",
        )),
        "type"
            if !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')) =>
        {
            Err(EnvelopeError::invalid(
                attribute,
                "may hold only letters, digits, '.', '_', '-' and ':' (subscriptions match types with patterns, and '*' is the pattern's wildcard)",
            ))
        }
        _ => Ok(()),
    }
}

/// Parses one CloudEvent in structured JSON mode, as producers send it to `POST /v1/events`:
/// the required attributes present and bounded ([`check_attribute`]), `specversion` `1.0`,
/// extension names as the spec says (lower-case letters and digits), and `time` set to `now`
/// when absent.
pub fn parse_structured(body: &[u8], now: Timestamp) -> Result<Event, EnvelopeError> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_slice(body).map_err(|error| EnvelopeError::NotJson(error.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(EnvelopeError::NotObject);
    };
    for name in ["specversion", "id", "source", "type"] {
        match fields.get(name) {
            Some(Value::String(text)) => check_attribute(name, text)?,
            Some(_) => return Err(EnvelopeError::invalid(name, "must be a string")),
            None => return Err(EnvelopeError::Missing(name)),
        }
    }
    if fields.get("specversion").and_then(Value::as_str) != Some(SPEC_VERSION) {
        return Err(EnvelopeError::invalid(
            "specversion",
            format!("must be \"{SPEC_VERSION}\""),
        ));
    }
    match fields.get("subject") {
        None | Some(Value::Null) => {}
        Some(Value::String(subject)) => check_attribute("subject", subject)?,
        Some(_) => return Err(EnvelopeError::invalid("subject", "must be a string")),
    }
    const SPEC: [&str; 10] = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    ];
    let bad_name = |name: &&String| {
        !SPEC.contains(&name.as_str())
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    };
    if let Some(name) = fields.keys().find(bad_name) {
        return Err(EnvelopeError::invalid(
            &name.chars().take(64).collect::<String>(),
            "is not a valid extension attribute name: CloudEvents allows lower-case letters and digits only",
        ));
    }
    if !fields.contains_key("time") {
        fields.insert("time".to_owned(), serde_json::json!(now));
    }
    serde_json::from_value(Value::Object(fields)).map_err(|error| {
        EnvelopeError::invalid("event", format!("does not fit CloudEvents 1.0: {error}"))
    })
}

impl Event {
    /// Drops the extension attributes only Wireline may set ([`is_reserved_extension`]).
    pub fn strip_reserved(&mut self) {
        self.extensions
            .retain(|name, _| !is_reserved_extension(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_events_are_bounded_and_named_right() {
        let now: Timestamp = "2026-12-04T10:00:00Z".parse().expect("time");
        let event = |fields: &str| {
            format!(r#"{{"specversion":"1.0","id":"e1","source":"app","type":"app.x"{fields}}}"#)
        };
        let parsed = parse_structured(
            event(r#","subject":"cus_1","traceparent":"00-x""#).as_bytes(),
            now,
        )
        .expect("a plain event parses");
        assert_eq!(
            (parsed.time, parsed.subject.as_deref()),
            (now, Some("cus_1"))
        );
        let long = "x".repeat(MAX_ATTRIBUTE + 1);
        let refused = [
            (br#"[1]"#.to_vec(), "a JSON object"),
            (b"not json".to_vec(), "not JSON"),
            (
                br#"{"id":"e1","source":"a","type":"t"}"#.to_vec(),
                "`specversion` is required",
            ),
            (
                event("").replace(r#""1.0""#, r#""0.3""#).into_bytes(),
                "`specversion` must be \"1.0\"",
            ),
            (
                event("")
                    .replace(r#""e1""#, &format!("\"{long}\""))
                    .into_bytes(),
                "`id` is 257 bytes long",
            ),
            (
                event("").replace(r#""e1""#, r#""a\r\nb""#).into_bytes(),
                "`id` contains a control character",
            ),
            (
                event("").replace(r#""e1""#, r#""a b""#).into_bytes(),
                "`id` must be visible ASCII",
            ),
            (
                event("").replace(r#""app.x""#, r#""app.*""#).into_bytes(),
                "`type` may hold only",
            ),
            (
                event("").replace(r#""app""#, r#""  ""#).into_bytes(),
                "`source` must be a non-empty string",
            ),
            (
                event(&format!(r#","subject":"{long}""#)).into_bytes(),
                "`subject` is 257 bytes long",
            ),
            (
                event(r#","subject":7"#).into_bytes(),
                "`subject` must be a string",
            ),
            (
                event(r#","Trace_Parent":"x""#).into_bytes(),
                "`Trace_Parent` is not a valid extension",
            ),
        ];
        for (body, expected) in refused {
            let error = parse_structured(&body, now)
                .expect_err("refused")
                .to_string();
            assert!(
                error.contains(expected),
                "{error} should contain {expected}"
            );
        }
    }

    #[test]
    fn reserved_extensions_are_stripped() {
        let now: Timestamp = "2026-12-04T10:00:00Z".parse().expect("time");
        let mut event = parse_structured(
            br#"{"specversion":"1.0","id":"e1","source":"app","type":"app.x","wlagent":"admin","wlencrypted":"x","causationid":"c","correlationid":"c","mine":"kept"}"#,
            now,
        )
        .expect("parses");
        event.strip_reserved();
        assert_eq!(event.extensions.keys().collect::<Vec<_>>(), ["mine"]);
    }

    #[test]
    fn serializes_as_cloudevents_json() {
        let time: Timestamp = "2026-11-01T12:00:00Z".parse().expect("valid time");
        let mut event = Event::new(
            "evt_1",
            "wireline://services/stripe",
            "stripe.payment_intent.succeeded",
            time,
            serde_json::json!({"amount": 2000}),
        );
        event
            .extensions
            .insert("wirelineservice".into(), "stripe".into());
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0",
                "id": "evt_1",
                "source": "wireline://services/stripe",
                "type": "stripe.payment_intent.succeeded",
                "time": "2026-11-01T12:00:00Z",
                "datacontenttype": "application/json",
                "data": {"amount": 2000},
                "wirelineservice": "stripe",
            })
        );
        let back: Event = serde_json::from_value(json).expect("parses");
        assert_eq!(back, event);
    }
}
