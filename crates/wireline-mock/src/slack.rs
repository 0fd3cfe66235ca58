//! The Slack emulator: `chat.postMessage` (and `auth.test`) with Slack's `{"ok": ...}`
//! answers, the 1 message per second per channel limit (429 + `Retry-After`), and signed
//! `event_callback`s (`X-Slack-Signature`) for every message posted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as With;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Kind, Shared, hmac_sha256, json, lock, now_secs};

#[derive(Default)]
pub(crate) struct State {
    /// Channel names to ids.
    channels: HashMap<String, String>,
    /// Per channel, the theoretical arrival time of the next message (GCRA at 1/s).
    next_allowed: HashMap<String, Instant>,
    /// Messages posted, for `ts`.
    posted: u64,
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route("/api/auth.test", post(auth_test))
}

fn slack(body: Value) -> Response {
    json(StatusCode::OK, HeaderMap::new(), body)
}

/// The request's fields, from JSON or a form, and its token (header or `token` field).
fn fields(headers: &HeaderMap, body: &[u8]) -> (HashMap<String, Value>, Option<String>) {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut fields: HashMap<String, Value> = if is_json {
        serde_json::from_slice(body).unwrap_or_default()
    } else {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            fields
                .remove("token")
                .and_then(|t| t.as_str().map(str::to_owned))
        });
    (fields, token.filter(|t| t.starts_with("xox")))
}

async fn auth_test(headers: HeaderMap, body: Bytes) -> Response {
    let (_, token) = fields(&headers, &body);
    if token.is_none() {
        return slack(json!({"ok": false, "error": "not_authed"}));
    }
    slack(
        json!({"ok": true, "url": "https://wireline-demo.slack.com/", "team": "Wireline Demo", "user": "wireline-bot", "team_id": "T0WIRELINE", "user_id": "U0WIRELINE", "bot_id": "B0WIRELINE"}),
    )
}

async fn post_message(
    With(shared): With<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, token) = fields(&headers, &body);
    if token.is_none() {
        return slack(json!({"ok": false, "error": "not_authed"}));
    }
    let Some(channel) = fields
        .get("channel")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        return slack(json!({"ok": false, "error": "channel_not_found"}));
    };
    let text = fields
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if text.is_empty() && !fields.contains_key("blocks") && !fields.contains_key("attachments") {
        return slack(json!({"ok": false, "error": "no_text"}));
    }
    let now = Instant::now();
    let (id, ts) = {
        let mut state = lock(&shared.slack);
        let id = match state.channels.get(channel.trim_start_matches('#')) {
            Some(id) => id.clone(),
            None if channel.starts_with('C') && !channel.starts_with('#') => channel.to_owned(),
            None => {
                let id = shared.id("C0", 9).to_uppercase();
                state
                    .channels
                    .insert(channel.trim_start_matches('#').to_owned(), id.clone());
                id
            }
        };
        // Slack: one message per second per channel, a back-to-back burst gets 429s; like
        // Slack, a message a little early (network jitter, up to 200 ms) is tolerated.
        let interval = std::time::Duration::from_secs(1);
        let tolerance = std::time::Duration::from_millis(200);
        let due = state.next_allowed.get(&id).copied().unwrap_or(now);
        if now + tolerance < due {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return response;
        }
        state
            .next_allowed
            .insert(id.clone(), due.max(now) + interval);
        state.posted += 1;
        (
            id,
            format!("{}.{:06}", now_secs(), state.posted % 1_000_000),
        )
    };
    let message = json!({"type": "message", "subtype": "bot_message", "text": text, "user": "U0WIRELINE", "bot_id": "B0WIRELINE", "ts": ts});
    let callback = json!({
        "token": "verification-token-unused",
        "team_id": "T0WIRELINE",
        "api_app_id": "A0WIRELINE",
        "event": {"type": "message", "channel": id, "user": "U0WIRELINE", "bot_id": "B0WIRELINE", "text": message["text"], "ts": ts, "event_ts": ts, "channel_type": "channel"},
        "type": "event_callback",
        "event_id": shared.id("Ev0", 9).to_uppercase(),
        "event_time": now_secs(),
    });
    send_callback(&shared, &callback);
    slack(json!({"ok": true, "channel": id, "ts": ts, "message": message}))
}

/// Sends an event callback signed like Slack: `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub(crate) fn send_callback(shared: &Shared, callback: &Value) {
    let body = serde_json::to_vec(callback).unwrap_or_default();
    shared.webhook(Kind::Slack, body, |secret, body| {
        let ts = now_secs();
        let mut signed = format!("v0:{ts}:").into_bytes();
        signed.extend_from_slice(body);
        vec![
            ("x-slack-request-timestamp".to_owned(), ts.to_string()),
            (
                "x-slack-signature".to_owned(),
                format!(
                    "v0={}",
                    hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                ),
            ),
        ]
    });
}
