//! The one mapping from errors to HTTP responses for this server: `application/problem+json`
//! (RFC 9457) with a stable `type`, a human `detail`, and `retry_after` where waiting helps.
//!
//! Handlers return [`ApiError`]; bare error statuses produced by layers (body limit, routing)
//! are rewritten here too, so no client ever sees another error format. Internal detail goes to
//! the log, never into `detail`.

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use wireline_core::{Problem, ProblemKind, Size};

/// A problem as a handler's error.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self.0)
    }
}

/// The store failed under a request: 503 with `Retry-After: 1`. `what` says what could not
/// be done, `fix` what the client should do.
pub fn store_unavailable(what: &str, error: impl std::fmt::Display, fix: &str) -> ApiError {
    ApiError(
        Problem::new(
            ProblemKind::StoreUnavailable,
            format!("{what} ({error}); {fix}"),
        )
        .with_retry_after(1),
    )
}

fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(seconds) = problem.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError(Problem::new(
        ProblemKind::NotFound,
        format!("no route for {}; see the routes in README.md", uri.path()),
    ))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(Problem::new(
        ProblemKind::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    ))
}

/// Marks a response relayed from an upstream service: its error statuses are the service's
/// answer and pass through unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Relayed;

/// The kind of problem an error response becomes when Wireline produced it without a problem
/// body; `None` when it goes out as it is (no error, already a problem, or relayed). Metrics
/// count the rewritten status with it.
pub fn bare_error_kind(response: &Response) -> Option<ProblemKind> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_problem(response)
        || response.extensions().get::<Relayed>().is_some()
    {
        return None;
    }
    Some(match status {
        StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::BodyTooLarge,
        StatusCode::NOT_FOUND => ProblemKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
        StatusCode::UNAUTHORIZED => ProblemKind::Unauthorized,
        StatusCode::FORBIDDEN => ProblemKind::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ProblemKind::RateLimited,
        status if status.is_client_error() => ProblemKind::BadRequest,
        _ => ProblemKind::Internal,
    })
}

/// Middleware: an error status without a problem body, produced by Wireline itself, becomes a
/// problem.
pub async fn bare_errors_to_problems(
    State(body_limit): State<Size>,
    response: Response,
) -> Response {
    let Some(kind) = bare_error_kind(&response) else {
        return response;
    };
    let status = response.status();
    let detail = match kind {
        ProblemKind::BodyTooLarge => format!(
            "the request body is larger than {body_limit} ([server] body_limit); send less, or raise the limit"
        ),
        ProblemKind::NotFound => "not found".to_owned(),
        ProblemKind::MethodNotAllowed => "method not allowed here".to_owned(),
        ProblemKind::Unauthorized => "send Authorization: Bearer <agent token>".to_owned(),
        ProblemKind::Forbidden => "the agent's scopes do not allow this".to_owned(),
        ProblemKind::RateLimited => "too many requests; slow down".to_owned(),
        ProblemKind::BadRequest => {
            format!("the request was refused ({status}); check its method, headers and body")
        }
        _ => "internal error; the server log has the details".to_owned(),
    };
    let problem = Problem::new(kind, detail);
    let mut rewritten = problem_response(&problem);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The refused body was never read, so this connection cannot carry another request:
        // say so, or a pooling client reuses it and its next request fails mid-flight.
        rewritten
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    rewritten
}

/// For `CatchPanicLayer`: the panic message goes to the log, the client gets a 500 problem.
pub fn panic_to_problem(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(error = message, "a request handler panicked");
    problem_response(&Problem::new(
        ProblemKind::Internal,
        "internal error; the server log has the details",
    ))
}
