//! The GitHub emulator: issues and comments of any repository, the repository events feed
//! with `ETag` / `If-None-Match` (a 304 costs no rate limit) and `X-Poll-Interval`,
//! `x-ratelimit-*` headers (5,000 per hour per token), and webhooks with `X-GitHub-Event`,
//! `X-GitHub-Delivery` and `X-Hub-Signature-256`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State as With};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::Digest;

use crate::{Kind, Shared, hmac_sha256, json, lock};

const PER_HOUR: u64 = 5000;

#[derive(Default)]
pub(crate) struct State {
    /// Issues per `owner/repo`, by number.
    issues: BTreeMap<String, BTreeMap<u64, Value>>,
    comments: BTreeMap<String, Vec<Value>>,
    /// The events feed per repository, oldest first.
    events: BTreeMap<String, Vec<Value>>,
    /// Requests per token in the current hour.
    used: HashMap<String, (i64, u64)>,
    next_id: u64,
}

pub(crate) fn router(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}",
            get(get_issue).patch(update_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route("/repos/{owner}/{repo}/events", get(list_events))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(shared),
            rate_limited,
        ))
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn not_found() -> Response {
    json(
        StatusCode::NOT_FOUND,
        HeaderMap::new(),
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

/// Authentication and the hourly rate limit, with `x-ratelimit-*` on every answer.
async fn rate_limited(With(shared): With<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim_start_matches("Bearer ")
                .trim_start_matches("token ")
                .to_owned()
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return json(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let conditional = request.headers().contains_key("if-none-match");
    let hour = jiff::Timestamp::now().as_second() / 3600;
    let used = {
        let mut state = lock(&shared.github);
        let entry = state.used.entry(token).or_insert((hour, 0));
        if entry.0 != hour {
            *entry = (hour, 0);
        }
        if !conditional {
            entry.1 += 1;
        }
        entry.1
    };
    let mut response = if used > PER_HOUR {
        json(
            StatusCode::FORBIDDEN,
            HeaderMap::new(),
            json!({"message": "API rate limit exceeded for user.", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}),
        )
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(PER_HOUR));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(PER_HOUR.saturating_sub(used)),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from((hour + 1) * 3600));
    headers.insert("x-ratelimit-used", HeaderValue::from(used.min(PER_HOUR)));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    headers.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    response
}

fn record(
    shared: &Shared,
    state: &mut State,
    repo: &str,
    event_type: &str,
    hook: &str,
    payload: Value,
) {
    state.next_id += 1;
    let event = json!({
        "id": (1_000_000 + state.next_id).to_string(),
        "type": event_type,
        "actor": {"id": 1, "login": "wireline-bot"},
        "repo": {"id": 1, "name": repo},
        "payload": payload,
        "public": true,
        "created_at": now(),
    });
    state.events.entry(repo.to_owned()).or_default().push(event);
    let mut body = payload;
    body["repository"] = json!({"id": 1, "full_name": repo, "name": repo.split('/').nth(1)});
    body["sender"] = json!({"id": 1, "login": "wireline-bot"});
    let delivery = format!(
        "{}-{}-{}-{}-{}",
        shared.id("", 8),
        shared.id("", 4),
        shared.id("", 4),
        shared.id("", 4),
        shared.id("", 12)
    )
    .to_lowercase();
    let hook = hook.to_owned();
    shared.webhook(
        Kind::Github,
        serde_json::to_vec(&body).unwrap_or_default(),
        move |secret, body| {
            vec![
                ("x-github-event".to_owned(), hook),
                ("x-github-delivery".to_owned(), delivery),
                ("x-github-hook-id".to_owned(), "424242".to_owned()),
                (
                    "user-agent".to_owned(),
                    "GitHub-Hookshot/wireline".to_owned(),
                ),
                (
                    "x-hub-signature-256".to_owned(),
                    format!(
                        "sha256={}",
                        hex::encode(hmac_sha256(secret.as_bytes(), body))
                    ),
                ),
            ]
        },
    );
}

fn issue_json(repo: &str, number: u64, fields: &Value) -> Value {
    let now = now();
    json!({
        "id": 2_000_000 + number,
        "node_id": format!("I_wl{number}"),
        "number": number,
        "title": fields["title"],
        "body": fields.get("body").cloned().unwrap_or(Value::Null),
        "state": "open",
        "user": {"id": 1, "login": "wireline-bot"},
        "labels": fields.get("labels").cloned().unwrap_or_else(|| json!([])).as_array().map(|l| l.iter().map(|name| json!({"name": name})).collect::<Vec<_>>()).unwrap_or_default(),
        "comments": 0,
        "created_at": now,
        "updated_at": now,
        "closed_at": null,
        "url": format!("https://api.github.com/repos/{repo}/issues/{number}"),
        "html_url": format!("https://github.com/{repo}/issues/{number}"),
    })
}

async fn list_issues(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    let state = lock(&shared.github);
    let repo = format!("{owner}/{repo}");
    let issues: Vec<&Value> = state
        .issues
        .get(&repo)
        .map(|i| i.values().rev().filter(|i| i["state"] == "open").collect())
        .unwrap_or_default();
    json(StatusCode::OK, HeaderMap::new(), json!(issues))
}

async fn create_issue(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(fields) = serde_json::from_slice::<Value>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            json!({"message": "Problems parsing JSON"}),
        );
    };
    if fields["title"].as_str().is_none_or(str::is_empty) {
        return json(
            StatusCode::UNPROCESSABLE_ENTITY,
            HeaderMap::new(),
            json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]}),
        );
    }
    let repo = format!("{owner}/{repo}");
    let mut state = lock(&shared.github);
    let number = state.issues.get(&repo).map_or(1, |i| i.len() as u64 + 1);
    let issue = issue_json(&repo, number, &fields);
    state
        .issues
        .entry(repo.clone())
        .or_default()
        .insert(number, issue.clone());
    record(
        &shared,
        &mut state,
        &repo,
        "IssuesEvent",
        "issues",
        json!({"action": "opened", "issue": issue}),
    );
    json(StatusCode::CREATED, HeaderMap::new(), issue)
}

async fn get_issue(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let state = lock(&shared.github);
    match state
        .issues
        .get(&format!("{owner}/{repo}"))
        .and_then(|i| i.get(&number))
    {
        Some(issue) => json(StatusCode::OK, HeaderMap::new(), issue.clone()),
        None => not_found(),
    }
}

async fn update_issue(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let fields: Value = serde_json::from_slice(&body).unwrap_or_default();
    let repo = format!("{owner}/{repo}");
    let mut state = lock(&shared.github);
    let Some(issue) = state.issues.get_mut(&repo).and_then(|i| i.get_mut(&number)) else {
        return not_found();
    };
    for key in ["title", "body", "state"] {
        if let Some(value) = fields.get(key) {
            issue[key] = value.clone();
        }
    }
    issue["updated_at"] = json!(now());
    let closed = issue["state"] == "closed";
    if closed {
        issue["closed_at"] = json!(now());
    }
    let issue = issue.clone();
    let action = if closed { "closed" } else { "edited" };
    record(
        &shared,
        &mut state,
        &repo,
        "IssuesEvent",
        "issues",
        json!({"action": action, "issue": issue}),
    );
    json(StatusCode::OK, HeaderMap::new(), issue)
}

async fn list_comments(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let state = lock(&shared.github);
    let key = format!("{owner}/{repo}#{number}");
    json(
        StatusCode::OK,
        HeaderMap::new(),
        json!(state.comments.get(&key).cloned().unwrap_or_default()),
    )
}

async fn create_comment(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let fields: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(text) = fields["body"].as_str().filter(|b| !b.is_empty()) else {
        return json(
            StatusCode::UNPROCESSABLE_ENTITY,
            HeaderMap::new(),
            json!({"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "missing_field", "field": "body"}]}),
        );
    };
    let repo = format!("{owner}/{repo}");
    let mut state = lock(&shared.github);
    let Some(issue) = state.issues.get_mut(&repo).and_then(|i| i.get_mut(&number)) else {
        return not_found();
    };
    issue["comments"] = json!(issue["comments"].as_u64().unwrap_or_default() + 1);
    let issue = issue.clone();
    state.next_id += 1;
    let comment = json!({
        "id": 3_000_000 + state.next_id,
        "body": text,
        "user": {"id": 1, "login": "wireline-bot"},
        "created_at": now(),
        "updated_at": now(),
        "html_url": format!("https://github.com/{repo}/issues/{number}#issuecomment-{}", 3_000_000 + state.next_id),
    });
    state
        .comments
        .entry(format!("{repo}#{number}"))
        .or_default()
        .push(comment.clone());
    record(
        &shared,
        &mut state,
        &repo,
        "IssueCommentEvent",
        "issue_comment",
        json!({"action": "created", "issue": issue, "comment": comment}),
    );
    json(StatusCode::CREATED, HeaderMap::new(), comment)
}

async fn list_events(
    With(shared): With<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = lock(&shared.github);
    let events: Vec<&Value> = state
        .events
        .get(&format!("{owner}/{repo}"))
        .map(|e| e.iter().rev().take(30).collect())
        .unwrap_or_default();
    let body = serde_json::to_vec(&events).unwrap_or_default();
    let etag = format!("W/\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..16]));
    let mut response =
        if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                StatusCode::OK,
                [("content-type", "application/json; charset=utf-8")],
                body,
            )
                .into_response()
        };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert("etag", value);
    }
    response
        .headers_mut()
        .insert("x-poll-interval", HeaderValue::from_static("60"));
    response
}
