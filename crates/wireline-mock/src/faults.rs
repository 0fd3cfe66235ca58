//! The fault layer in front of every emulator: counts each request, then maybe delays it,
//! answers it with an error or a 429, cuts its connection, or never answers it, as the
//! faults for its emulator and path say, drawing from the seeded generator.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::{Kind, Shared, lock};

/// How long a "timeout" fault holds a request before giving up on it (longer than any
/// sensible client timeout).
const HANG: Duration = Duration::from_secs(300);

/// Wraps an emulator's (or a stub service's, `kind` `None`) router in its fault layer.
pub(crate) fn layer(
    name: String,
    kind: Option<Kind>,
    shared: Arc<Shared>,
    router: Router,
) -> Router {
    router.layer(middleware::from_fn_with_state(
        (Arc::<str>::from(name), kind, shared),
        inject,
    ))
}

async fn inject(
    State((name, kind, shared)): State<(Arc<str>, Option<Kind>, Arc<Shared>)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    {
        let mut counts = lock(&shared.counts);
        *counts
            .entry(name.to_string())
            .or_default()
            .entry(format!("{} {path}", request.method()))
            .or_default() += 1;
    }
    let Some(faults) = shared.faults_for(&name, &path, false) else {
        return next.run(request).await;
    };
    if let Some([low, high]) = faults.latency {
        let (low, high) = (low.get().as_micros() as u64, high.get().as_micros() as u64);
        let wait = shared.pick(low..high.max(low + 1));
        tokio::time::sleep(Duration::from_micros(wait)).await;
    }
    if shared.chance(faults.timeout_rate) {
        tokio::time::sleep(HANG).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    if shared.chance(faults.reset_rate) {
        // A body that fails at once: the server aborts the connection mid-response, which
        // the client sees as a reset / incomplete message.
        let failing = futures_util::stream::once(async {
            Err::<bytes::Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected connection reset",
            ))
        });
        let mut response = Response::new(Body::from_stream(failing));
        *response.status_mut() = StatusCode::OK;
        return response;
    }
    if shared.chance(faults.rate_limit_rate) {
        let seconds = faults.retry_after.get().as_secs().max(1);
        let mut response = rate_limited(kind);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    if faults.fail_next > 0 || shared.chance(faults.error_rate) {
        let codes = if faults.error_codes.is_empty() {
            vec![500, 502, 503]
        } else {
            faults.error_codes.clone()
        };
        let code = if faults.fail_next > 0 {
            faults.error_codes.first().copied().unwrap_or(503)
        } else {
            codes[shared.pick(0..codes.len() as u64) as usize]
        };
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return server_error(kind, status);
    }
    next.run(request).await
}

/// A 429 in the provider's own shape.
fn rate_limited(kind: Option<Kind>) -> Response {
    let Some(kind) = kind else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({"error": "rate limited (injected)"})),
        )
            .into_response();
    };
    let body = match kind {
        Kind::Stripe => {
            serde_json::json!({"error": {"message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.", "type": "invalid_request_error", "code": "rate_limit"}})
        }
        Kind::Slack => serde_json::json!({"ok": false, "error": "ratelimited"}),
        Kind::Github => {
            serde_json::json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"})
        }
        Kind::Shopify => {
            serde_json::json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."})
        }
        Kind::Sendgrid => {
            serde_json::json!({"errors": [{"field": null, "message": "too many requests"}]})
        }
        Kind::Hubspot => {
            serde_json::json!({"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"})
        }
        Kind::Salesforce => {
            serde_json::json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}])
        }
    };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if kind == Kind::Stripe {
        response
            .headers_mut()
            .insert("stripe-should-retry", HeaderValue::from_static("true"));
    }
    response
}

/// A 5xx in the provider's own shape.
fn server_error(kind: Option<Kind>, status: StatusCode) -> Response {
    let body = match kind {
        Some(Kind::Stripe) => {
            serde_json::json!({"error": {"message": "An unknown error occurred", "type": "api_error"}})
        }
        Some(Kind::Slack) => serde_json::json!({"ok": false, "error": "internal_error"}),
        _ => serde_json::json!({"message": status.canonical_reason().unwrap_or("Server Error")}),
    };
    (status, axum::Json(body)).into_response()
}
