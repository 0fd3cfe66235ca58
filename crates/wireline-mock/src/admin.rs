//! `/__admin`: faults at runtime, what each emulator was asked and sent, custom webhooks.
//!
//! - `PUT /__admin/faults/{key}` with a JSON `Faults` (`key`: `stripe`, or with a path
//!   `stripe:/v1/payment_intents`, slashes as they are), `DELETE /__admin/faults/{key}`,
//!   `GET /__admin/faults`
//! - `GET /__admin/requests`: per emulator, requests by `METHOD /path`
//! - `GET /__admin/webhooks`: per emulator, webhooks produced, delivered, dropped, ...
//! - `POST /__admin/scenarios/reset`: every stub scenario back to `Started` (as in WireMock)
//! - `POST /__admin/slack/events` with an `event` object: sends it as a signed
//!   `event_callback` (an `app_mention`, say).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as With};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use wireline_config::model::Faults;

use crate::{Shared, lock};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/faults", get(list_faults))
        .route("/faults/{*key}", put(set_faults).delete(clear_faults))
        .route("/requests", get(requests))
        .route("/webhooks", get(webhooks))
        .route("/slack/events", post(slack_event))
        .route("/scenarios/reset", post(reset_scenarios))
        .with_state(shared)
}

async fn list_faults(With(shared): With<Arc<Shared>>) -> Response {
    let faults = shared
        .faults
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(faults).into_response()
}

async fn set_faults(
    With(shared): With<Arc<Shared>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not a Faults object: {error}")})),
            )
                .into_response();
        }
    };
    if let Err(error) = crate::Kind::parse(key.split(':').next().unwrap_or_default()) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response();
    }
    shared
        .faults
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(With(shared): With<Arc<Shared>>, Path(key): Path<String>) -> Response {
    shared
        .faults
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&key);
    StatusCode::NO_CONTENT.into_response()
}

async fn reset_scenarios(With(shared): With<Arc<Shared>>) -> Response {
    shared.scenarios.reset();
    StatusCode::OK.into_response()
}

async fn requests(With(shared): With<Arc<Shared>>) -> Response {
    axum::Json(lock(&shared.counts).clone()).into_response()
}

async fn webhooks(With(shared): With<Arc<Shared>>) -> Response {
    axum::Json(shared.hooks.stats()).into_response()
}

async fn slack_event(
    With(shared): With<Arc<Shared>>,
    axum::Json(input): axum::Json<Value>,
) -> Response {
    let Some(event) = input.get("event").filter(|e| e.is_object()) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "send {\"event\": {\"type\": \"app_mention\", ...}}"})),
        )
            .into_response();
    };
    let callback = json!({
        "token": "verification-token-unused",
        "team_id": "T0WIRELINE",
        "api_app_id": "A0WIRELINE",
        "event": event,
        "type": "event_callback",
        "event_id": shared.id("Ev0", 9).to_uppercase(),
        "event_time": crate::now_secs(),
    });
    crate::slack::send_callback(&shared, &callback);
    StatusCode::ACCEPTED.into_response()
}
