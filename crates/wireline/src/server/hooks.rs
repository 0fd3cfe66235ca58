//! The webhook-driven routes: `POST /hooks/{service}` (ingest), and for agents
//! `GET /v1/events` (pull) and `GET /v1/events/stream` (Server-Sent Events, resuming from
//! `Last-Event-ID`). Thin: authenticate, hand over to `wireline-webhook`, render.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use wireline_core::{Offset, Problem, ProblemKind, TypeGlob};
use wireline_direct::Caller;
use wireline_webhook::Received;
use wireline_webhook::delivery::Patterns;

use super::problem::store_unavailable;
use super::{ApiError, AppState};

/// `POST /hooks/{service}`: 200 only once the event is durable (or was already stored).
pub async fn ingest(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    match state
        .hooks
        .receive(&service, &headers, body, Timestamp::now())
        .await
        .map_err(ApiError)?
    {
        Received::Stored {
            offset,
            duplicate,
            id,
            event_type,
        } => Ok(Json(json!({
            "offset": offset,
            "duplicate": duplicate,
            "id": id,
            "type": event_type,
        }))
        .into_response()),
        Received::Challenge(challenge) => {
            Ok(Json(json!({ "challenge": challenge })).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PullQuery {
    /// Events after this offset (default 0: from the start).
    #[serde(default)]
    after: Option<u64>,
    /// Only these types (a glob), within what the agent's subscriptions allow.
    #[serde(default)]
    types: Option<String>,
    /// At most this many events (default 100, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
    /// A named consumer of the calling agent: without `after`, read from its committed offset.
    #[serde(default)]
    consumer: Option<String>,
}

/// The calling agent's name (401 without a valid token).
fn agent(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match super::direct::caller(state, headers)? {
        Caller::Agent(agent) => Ok(agent),
        Caller::Operator | Caller::Poller => Err(ApiError(Problem::new(
            ProblemKind::Forbidden,
            "only agents use this route",
        ))),
    }
}

/// The patterns the calling agent may read: the union of its subscriptions'.
fn allowed(state: &AppState, headers: &HeaderMap) -> Result<Patterns, ApiError> {
    let agent = agent(state, headers)?;
    state.readers.get(&agent).cloned().ok_or_else(|| {
        ApiError(Problem::new(
            ProblemKind::Forbidden,
            format!("agent {agent} has no [[subscriptions]], so it may read no events; add one with the event types it needs"),
        ))
    })
}

fn type_filter(types: Option<&str>) -> Result<Option<TypeGlob>, ApiError> {
    types
        .map(|glob| {
            glob.parse::<TypeGlob>().map_err(|error| {
                ApiError(Problem::new(
                    ProblemKind::BadRequest,
                    format!(
                        "types: {error}; write a type or a glob such as stripe.payment_intent.*"
                    ),
                ))
            })
        })
        .transpose()
}

/// Reads up to `limit` events after `after` that `patterns` and `types` allow, scanning at
/// most `scan` events; returns them and the last offset looked at.
async fn page(
    state: &AppState,
    patterns: &Patterns,
    types: Option<&TypeGlob>,
    replay: Option<&(TypeGlob, Offset)>,
    after: Offset,
    limit: usize,
    scan: usize,
) -> Result<(Vec<(Offset, String)>, Offset), ApiError> {
    let mut found = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    while found.len() < limit && scanned < scan {
        // As many as are still wanted (at least 100, so sparse matches need few reads).
        let want = (limit - found.len()).clamp(100, 1000);
        let events =
            state.store.read(cursor, want).await.map_err(|error| {
                store_unavailable("the log cannot be read", error, "retry shortly")
            })?;
        if events.is_empty() {
            break;
        }
        for stored in events {
            scanned += 1;
            cursor = stored.offset;
            let replayed = replay
                .is_none_or(|(glob, until)| stored.offset > *until || glob.matches(&stored.ty));
            if replayed
                && patterns.matches(&stored.ty)
                && types.is_none_or(|glob| glob.matches(&stored.ty))
            {
                found.push((stored.offset, stored.body));
                if found.len() == limit {
                    break;
                }
            }
        }
    }
    Ok((found, cursor))
}

/// `GET /v1/events?after=OFFSET&types=GLOB&limit=N`.
pub async fn pull(
    State(state): State<AppState>,
    Query(query): Query<PullQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let patterns = allowed(&state, &headers)?;
    let types = type_filter(query.types.as_deref())?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (after, replay) = match (query.after, &query.consumer) {
        (Some(after), _) => (Offset(after), None),
        (None, Some(name)) => {
            let agent = agent(&state, &headers)?;
            let after = super::events::committed(&state, &agent, name).await?;
            (
                after,
                super::events::replay_filter(&state, &agent, name, after).await?,
            )
        }
        (None, None) => (Offset::START, None),
    };
    let (events, last) = page(
        &state,
        &patterns,
        types.as_ref(),
        replay.as_ref(),
        after,
        limit,
        10_000,
    )
    .await?;
    // The stored CloudEvents are JSON already: spliced in as they are, never parsed and
    // re-serialized (replaying a backlog is this loop, and it is the hot part).
    let mut body =
        String::with_capacity(events.iter().map(|(_, e)| e.len() + 40).sum::<usize>() + 64);
    body.push_str("{\"events\":[");
    for (index, (offset, event)) in events.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str("{\"offset\":");
        body.push_str(&offset.to_string());
        body.push_str(",\"event\":");
        body.push_str(event);
        body.push('}');
    }
    body.push_str("],\"next_after\":");
    body.push_str(&last.to_string());
    body.push('}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /v1/events/stream?types=GLOB&after=OFFSET`, resuming after `Last-Event-ID`. Each
/// message's `id` is the offset and its `data` the CloudEvent.
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<PullQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let patterns = allowed(&state, &headers)?;
    let types = type_filter(query.types.as_deref())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = Offset(resume.or(query.after).unwrap_or(0));
    let head = state.head.watch();
    let stop = state.deliveries.stopping();
    struct Cursor {
        state: AppState,
        patterns: Patterns,
        types: Option<TypeGlob>,
        after: Offset,
        buffer: VecDeque<(Offset, String)>,
        head: tokio::sync::watch::Receiver<Offset>,
        stop: tokio::sync::watch::Receiver<bool>,
    }
    let cursor = Cursor {
        state,
        patterns,
        types,
        after,
        buffer: VecDeque::new(),
        head,
        stop,
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if *cursor.stop.borrow() {
                return None;
            }
            if let Some((offset, event)) = cursor.buffer.pop_front() {
                let message = SseEvent::default().id(offset.to_string()).data(event);
                return Some((Ok::<_, Infallible>(message), cursor));
            }
            match page(
                &cursor.state,
                &cursor.patterns,
                cursor.types.as_ref(),
                None,
                cursor.after,
                100,
                5_000,
            )
            .await
            {
                Ok((found, last)) if !found.is_empty() || last > cursor.after => {
                    cursor.after = last;
                    cursor.buffer.extend(found);
                }
                Ok(_) | Err(_) => {
                    // Nothing new (or the store hiccupped): wait for a bump, the stop, or a
                    // short idle look.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        tokio::select! {
                            _ = cursor.head.changed() => {}
                            _ = cursor.stop.changed() => {}
                        }
                    })
                    .await;
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn store_problem(error: wireline_store::StoreError) -> ApiError {
    store_unavailable("the store cannot be read", error, "retry shortly")
}

/// `GET /v1/deliveries/dead`: the calling agent's dead letters.
pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = agent(&state, &headers)?;
    let letters = wireline_webhook::delivery::dead_letters(state.store.as_ref(), None)
        .await
        .map_err(store_problem)?;
    let mine: Vec<_> = letters
        .into_iter()
        .filter(|letter| state.owners.get(&letter.subscription) == Some(&agent))
        .collect();
    Ok(Json(json!({ "dead_letters": mine })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RetryQuery {
    /// Only the letter at this offset.
    #[serde(default)]
    offset: Option<u64>,
}

/// `POST /v1/deliveries/{subscription}/retry[?offset=N]`: queue the agent's own dead letters.
pub async fn retry_dead_letters(
    State(state): State<AppState>,
    Path(subscription): Path<String>,
    Query(query): Query<RetryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = agent(&state, &headers)?;
    if state.owners.get(&subscription) != Some(&agent) {
        return Err(ApiError(Problem::new(
            ProblemKind::NotFound,
            format!("agent {agent} has no subscription named {subscription:?}"),
        )));
    }
    let queued = wireline_webhook::delivery::redrive(
        state.store.as_ref(),
        &subscription,
        query.offset.map(Offset),
    )
    .await
    .map_err(store_problem)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(json!({ "queued": queued })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    /// Only this service (default: every service with a reconciling poll).
    #[serde(default)]
    service: Option<String>,
    /// Events with time at or after this (RFC 3339); default 24 hours ago.
    #[serde(default)]
    since: Option<String>,
    /// Events with time before this (RFC 3339).
    #[serde(default)]
    until: Option<String>,
}

fn timestamp(name: &str, text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|text| {
        text.parse::<Timestamp>().map_err(|error| {
            ApiError(Problem::new(
                ProblemKind::BadRequest,
                format!("{name}: {error}; write an RFC 3339 time such as 2026-11-01T00:00:00Z"),
            ))
        })
    })
    .transpose()
}

/// `GET /v1/reconciliation[?service=S&since=T&until=T]`: the hybrid capture report.
pub async fn reconciliation(
    State(state): State<AppState>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    agent(&state, &headers)?;
    let since = timestamp("since", query.since.as_deref())?.or_else(|| {
        Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .ok()
    });
    let until = timestamp("until", query.until.as_deref())?;
    let services: Vec<&String> = match &query.service {
        Some(service) if state.reconciled.contains(service) => vec![service],
        Some(service) => {
            return Err(ApiError(Problem::new(
                ProblemKind::UnknownService,
                format!(
                    "{service} has no reconciling poll; set [services.{service}.poll] reconcile = true next to its webhook"
                ),
            )));
        }
        None => state.reconciled.iter().collect(),
    };
    let mut reports = Vec::new();
    for service in services {
        reports.push(
            wireline_poll::report::capture_report(state.store.as_ref(), service, since, until)
                .await
                .map_err(store_problem)?,
        );
    }
    Ok(Json(json!({ "reports": reports })).into_response())
}
