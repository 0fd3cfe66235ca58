//! The SendGrid emulator: `POST /v3/mail/send` (202, `X-Message-Id`), SendGrid's validation
//! errors, and `X-RateLimit-*` headers (600 per minute).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as With;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::{Shared, json, lock, now_secs};

const PER_MINUTE: u64 = 600;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new().route("/v3/mail/send", post(send))
}

fn problem(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    json(
        status,
        HeaderMap::new(),
        json!({"errors": [{"field": field, "message": message, "help": "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"}]}),
    )
}

async fn send(With(shared): With<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key.starts_with("SG."));
    if !authorized {
        return problem(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let (used, reset) = {
        let mut crm = lock(&shared.crm);
        let minute = now_secs() / 60;
        if crm.sendgrid_minute != minute {
            crm.sendgrid_minute = minute;
            crm.sendgrid_used = 0;
        }
        crm.sendgrid_used += 1;
        (crm.sendgrid_used, (minute + 1) * 60)
    };
    let mut response = if used > PER_MINUTE {
        problem(StatusCode::TOO_MANY_REQUESTS, None, "too many requests")
    } else {
        match validate(&body) {
            Err(response) => response,
            Ok(()) => {
                let mut response = StatusCode::ACCEPTED.into_response();
                if let Ok(id) = HeaderValue::from_str(&shared.id("", 22)) {
                    response.headers_mut().insert("x-message-id", id);
                }
                response
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(PER_MINUTE));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(PER_MINUTE.saturating_sub(used)),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    response
}

fn validate(body: &[u8]) -> Result<(), Response> {
    let Ok(mail) = serde_json::from_slice::<Value>(body) else {
        return Err(problem(StatusCode::BAD_REQUEST, None, "Bad Request"));
    };
    let personalizations = mail["personalizations"]
        .as_array()
        .filter(|p| !p.is_empty());
    let Some(personalizations) = personalizations else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some("personalizations"),
            "The personalizations field is required and must have at least one personalization.",
        ));
    };
    if personalizations
        .iter()
        .any(|p| p["to"].as_array().is_none_or(Vec::is_empty))
    {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some("personalizations.0.to"),
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
        ));
    }
    if mail["from"]["email"]
        .as_str()
        .is_none_or(|e| !e.contains('@'))
    {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some("from.email"),
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.  e.g. {\"email\" : \"example@example.com\"}  or {\"email\" : \"example@example.com\", \"name\" : \"Example Recipient\"}.",
        ));
    }
    let templated = mail["template_id"].is_string();
    if !templated
        && mail["subject"].as_str().is_none_or(str::is_empty)
        && personalizations.iter().all(|p| p["subject"].is_null())
    {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some("subject"),
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        ));
    }
    if !templated && mail["content"].as_array().is_none_or(Vec::is_empty) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some("content"),
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
        ));
    }
    Ok(())
}
