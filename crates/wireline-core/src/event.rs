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

#[cfg(test)]
mod tests {
    use super::*;

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
