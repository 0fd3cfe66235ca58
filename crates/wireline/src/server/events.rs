//! The event log as a product, for agents and producers: `POST /v1/events` (append a
//! CloudEvent; its `source` + `id` is the dedupe key, so a retried append is idempotent) and
//! named consumers with committed offsets (`POST /v1/consumers/{name}/commit`,
//! `GET /v1/consumers/{name}`), which `GET /v1/events?consumer=NAME` resumes from.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use wireline_core::{Event, Offset, Problem, ProblemKind};

use super::problem::store_unavailable;
use super::{ApiError, AppState};

fn bad(detail: String) -> ApiError {
    ApiError(Problem::new(ProblemKind::BadRequest, detail))
}

/// The calling agent, if it holds `scope`.
pub(super) fn agent_with(
    state: &AppState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<String, ApiError> {
    let caller = super::direct::caller(state, headers)?;
    if !state.direct.has_scope(&caller, scope) {
        return Err(ApiError(Problem::new(
            ProblemKind::Forbidden,
            format!(
                "agent {} lacks the {scope} scope; add it to [agents.{}] scopes",
                caller.name(),
                caller.name()
            ),
        )));
    }
    Ok(caller.name().to_owned())
}

/// Checks a structured-mode CloudEvent ([`wireline_core::event::parse_structured`]: required
/// attributes, their bounds); the error names the attribute and the fix. Attributes only
/// Wireline sets (`wl*`, `causationid`, `correlationid`) are dropped, so a producer cannot
/// forge the audit trail.
fn validate(body: &[u8]) -> Result<Event, ApiError> {
    let mut event = wireline_core::event::parse_structured(body, jiff::Timestamp::now())
        .map_err(|error| bad(error.to_string()))?;
    event.strip_reserved();
    Ok(event)
}

/// `POST /v1/events`: 201 with the offset when new, 200 with the original offset when the
/// same `source` + `id` was appended before.
pub async fn produce(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = super::direct::caller(&state, &headers)?;
    let mut event = validate(&body)?;
    if !state.direct.may_produce(&caller, &event.ty) {
        return Err(ApiError(Problem::new(
            ProblemKind::Forbidden,
            format!(
                "agent {} may not append events of type {}; give it events:write, or events:write:PREFIX with a prefix of the type",
                caller.name(),
                event.ty
            ),
        )));
    }
    if event.subject.is_none() {
        event.subject = state.subjects.subject(&event.ty, event.data.as_ref());
    }
    // The audit trail's "who": set here, so a producer cannot claim to be another agent.
    event.extensions.insert(
        "wlagent".to_owned(),
        Value::String(caller.name().to_owned()),
    );
    let dedupe = format!("ce:{}:{}", event.source, event.id);
    let appended = state.store.append(&dedupe, &event).await.map_err(|error| {
        store_unavailable("the event was not stored", error, "retry with the same id")
    })?;
    if !appended.duplicate {
        state.head.bump(appended.offset);
    }
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "offset": appended.offset, "duplicate": appended.duplicate })),
    )
        .into_response())
}

/// Namespace of type filters of replays to pull consumers (key: the consumer's offset name).
pub(crate) const CONSUMER_REPLAYS: &str = "consumer-replays";

/// A replay to a pull consumer limited to some types, up to the head at the request.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ConsumerReplay {
    pub types: String,
    pub until: Offset,
}

/// The type filter of a replay to the consumer, while it applies (from `after` on).
pub(super) async fn replay_filter(
    state: &AppState,
    agent: &str,
    name: &str,
    after: Offset,
) -> Result<Option<(wireline_core::TypeGlob, Offset)>, ApiError> {
    let key = consumer_key(agent, name)?;
    let found = state
        .store
        .get(CONSUMER_REPLAYS, &key, jiff::Timestamp::now())
        .await
        .map_err(|error| store_unavailable("the consumer cannot be read", error, "retry shortly"))?
        .and_then(|bytes| serde_json::from_slice::<ConsumerReplay>(&bytes).ok());
    let Some(replay) = found else { return Ok(None) };
    if after >= replay.until {
        // Done: the consumer has read past the replayed range.
        let _ = state.store.delete(CONSUMER_REPLAYS, &key).await;
        return Ok(None);
    }
    Ok(replay.types.parse().ok().map(|glob| (glob, replay.until)))
}

fn consumer_key(agent: &str, name: &str) -> Result<String, ApiError> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad(format!(
            "consumer name {name:?}: use 1 to 100 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(format!("consumer:{agent}:{name}"))
}

/// The committed offset of the agent's consumer `name` (0 if it never committed).
pub(super) async fn committed(
    state: &AppState,
    agent: &str,
    name: &str,
) -> Result<Offset, ApiError> {
    state
        .store
        .load_offset(&consumer_key(agent, name)?)
        .await
        .map(|offset| offset.unwrap_or(Offset::START))
        .map_err(|error| store_unavailable("the offset cannot be read", error, "retry shortly"))
}

/// `GET /v1/consumers/{name}`.
pub async fn consumer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = agent_with(&state, &headers, "events:read")?;
    let offset = committed(&state, &agent, &name).await?;
    Ok(Json(json!({ "consumer": name, "offset": offset })).into_response())
}

/// `POST /v1/consumers/{name}/commit` with `{"offset": N}`: events up to N are done.
pub async fn commit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let agent = agent_with(&state, &headers, "events:read")?;
    let key = consumer_key(&agent, &name)?;
    let offset = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("offset").and_then(Value::as_u64))
        .ok_or_else(|| {
            bad("send {\"offset\": N}, the last offset this consumer has processed".to_owned())
        })?;
    let head = state.store.head().await.map_err(|error| {
        store_unavailable("the log's head cannot be read", error, "retry shortly")
    })?;
    if offset > head.0 {
        return Err(bad(format!(
            "offset {offset} is beyond the log's head ({head}); commit an offset you have read"
        )));
    }
    state
        .store
        .commit_offset(&key, Offset(offset))
        .await
        .map_err(|error| store_unavailable("the offset was not committed", error, "retry"))?;
    Ok(Json(json!({ "consumer": name, "offset": offset })).into_response())
}

/// `GET /v1/subjects/{subject}/events[?after=N&limit=N]`: one subject's timeline (events
/// whose CloudEvents `subject` is it), as far as the agent's subscriptions allow.
pub async fn subject_events(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = agent_with(&state, &headers, "events:read")?;
    let patterns = state.readers.get(&agent).cloned().ok_or_else(|| {
        ApiError(Problem::new(
            ProblemKind::Forbidden,
            format!("agent {agent} has no [[subscriptions]], so it may read no events; add one with the event types it needs"),
        ))
    })?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        query
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{name} must be a whole number")))
            })
            .transpose()
    };
    let after = Offset(number("after")?.unwrap_or(0));
    let limit = usize::try_from(number("limit")?.unwrap_or(100).clamp(1, 1000)).unwrap_or(100);
    let stored = state
        .store
        .query(&wireline_store::EventQuery {
            subject: Some(subject.clone()),
            ..wireline_store::EventQuery::after(after, limit)
        })
        .await
        .map_err(|error| store_unavailable("the log cannot be read", error, "retry shortly"))?;
    let next_after = stored.last().map_or(after, |e| e.offset);
    let events: Vec<Value> = stored
        .into_iter()
        .filter(|e| patterns.matches(&e.ty))
        .map(|e| json!({"offset": e.offset, "event": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null)}))
        .collect();
    Ok(
        Json(json!({ "subject": subject, "events": events, "next_after": next_after }))
            .into_response(),
    )
}

fn projection_known(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.projections.contains(name) {
        return Ok(());
    }
    Err(ApiError(Problem::new(
        ProblemKind::NotFound,
        format!(
            "no projection {name:?}; declared: {}",
            if state.projections.is_empty() {
                "none (add [projections.NAME] to wireline.toml)".to_owned()
            } else {
                state
                    .projections
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    )))
}

/// `GET /v1/projections/{name}[?limit=N]`: where the projection is, and its first subjects.
pub async fn projection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    agent_with(&state, &headers, "events:read")?;
    projection_known(&state, &name)?;
    let limit = query
        .get("limit")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| bad("limit must be a whole number".to_owned()))
        })
        .transpose()?
        .unwrap_or(100)
        .clamp(1, 1000);
    let unavailable =
        |error| store_unavailable("the projection cannot be read", error, "retry shortly");
    let store = state.store.as_ref();
    let pointer = wireline_events::projection::pointer(store, &name)
        .await
        .map_err(unavailable)?;
    let position = wireline_events::projection::position(store, &name)
        .await
        .map_err(unavailable)?;
    let rebuilding = wireline_events::projection::rebuilding(store, &name)
        .await
        .map_err(unavailable)?;
    let subjects = wireline_events::projection::list(store, &name, limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({
        "projection": name,
        "generation": pointer.current,
        "offset": position,
        "rebuilding": rebuilding,
        "subjects": subjects,
    }))
    .into_response())
}

/// `GET /v1/projections/{name}/subjects/{subject}`: one subject's state.
pub async fn projection_subject(
    State(state): State<AppState>,
    Path((name, subject)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    agent_with(&state, &headers, "events:read")?;
    projection_known(&state, &name)?;
    match wireline_events::projection::read(state.store.as_ref(), &name, &subject)
        .await
        .map_err(|error| {
            store_unavailable("the projection cannot be read", error, "retry shortly")
        })? {
        Some(found) => Ok(Json(found).into_response()),
        None => Err(ApiError(Problem::new(
            ProblemKind::NotFound,
            format!("projection {name} has seen no event about {subject:?}"),
        ))),
    }
}
