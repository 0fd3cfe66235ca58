//! The Direct API routes: `ANY /proxy/{service}/{path}` and `POST /v1/operations/{service}/{op}`.
//! Thin: authenticate, hand over to `wireline-direct`, render its problems through
//! `problem.rs`.

use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use wireline_core::{Problem, ProblemKind};
use wireline_direct::{OperationRequest, ProxyRequest, Reply};

use super::{ApiError, AppState};

fn relay(reply: Reply) -> Response {
    let mut response = reply.map(Body::from).into_response();
    // The service's own errors (Stripe's 404 body, say) go to the agent as they are.
    response.extensions_mut().insert(super::problem::Relayed);
    response
}

/// The caller whose bearer token is in `headers` (401 without a valid one).
pub(super) fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<wireline_direct::Caller, ApiError> {
    state
        .direct
        .authenticate(authorization(headers))
        .map_err(ApiError)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `ANY /proxy/{service}` and `ANY /proxy/{service}/{*path}`.
pub async fn proxy(State(state): State<AppState>, request: Request) -> Response {
    // Taken apart by hand: the `Method`, `Uri` and `HeaderMap` extractors would each clone.
    let (mut parts, body) = request.into_parts();
    let method = parts.method.clone();
    let uri = std::mem::take(&mut parts.uri);
    let headers = std::mem::take(&mut parts.headers);
    // `Bytes` reads the body limit from the extensions, so they go with it.
    let body = match Bytes::from_request(Request::from_parts(parts, body), &state).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let caller = match caller(&state, &headers) {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    // The path is taken from the raw URI: the router's extractors would percent-decode it,
    // and the target checks must see what the agent sent.
    let rest = uri.path().strip_prefix("/proxy/").unwrap_or_default();
    let (service, raw_path) = rest.split_once('/').unwrap_or((rest, ""));
    // Service names are plain lower-case words: a percent-encoded one matches none (404).
    let service = service.to_owned();
    let request = ProxyRequest {
        caller,
        service,
        raw_path: raw_path.to_owned(),
        raw_query: uri.query().map(str::to_owned),
        method,
        headers,
        body,
    };
    match state.direct.proxy(request).await {
        Ok(reply) => relay(reply),
        Err(problem) => ApiError(problem).into_response(),
    }
}

/// `POST /v1/operations/{service}/{op}` with a JSON object of parameters.
pub async fn operation(
    State(state): State<AppState>,
    Path((service, operation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers)?;
    let params = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError(Problem::new(
                ProblemKind::BadRequest,
                format!("the body is not valid JSON ({error}); send a JSON object of parameters"),
            ))
        })?
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = OperationRequest {
        caller,
        service,
        operation,
        params,
        idempotency_key,
    };
    state
        .direct
        .operation(request)
        .await
        .map(relay)
        .map_err(ApiError)
}
