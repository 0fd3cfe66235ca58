//! The HubSpot and Salesforce emulators: contacts, with each one's rate-limit headers and a
//! daily request quota (`Options::daily_quota`, counted per UTC day).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as With};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::{Shared, json, lock, now_secs};

/// HubSpot's burst window: 100 requests per 10 seconds.
const HUBSPOT_WINDOW: (u64, i64) = (100, 10);

#[derive(Default)]
pub(crate) struct State {
    hubspot: BTreeMap<u64, Value>,
    salesforce: BTreeMap<String, Value>,
    /// (UTC day, requests) per emulator.
    hubspot_day: (i64, u64),
    salesforce_day: (i64, u64),
    /// (10-second window, requests).
    hubspot_burst: (i64, u64),
    pub(crate) sendgrid_minute: i64,
    pub(crate) sendgrid_used: u64,
}

fn bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty())
}

fn count(counter: &mut (i64, u64), period: i64) -> u64 {
    let now = now_secs() / period;
    if counter.0 != now {
        *counter = (now, 0);
    }
    counter.1 += 1;
    counter.1
}

pub(crate) fn hubspot_router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/crm/v3/objects/contacts",
            get(hubspot_list).post(hubspot_create),
        )
        .route("/crm/v3/objects/contacts/{id}", get(hubspot_get))
}

/// Authentication, the quotas and the `X-HubSpot-RateLimit-*` headers around `answer`.
fn hubspot(
    shared: &Shared,
    headers: &HeaderMap,
    answer: impl FnOnce(&mut State) -> Response,
) -> Response {
    if !bearer(headers) {
        return json(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            json!({"status": "error", "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", "category": "INVALID_AUTHENTICATION"}),
        );
    }
    let mut state = lock(&shared.crm);
    let daily = count(&mut state.hubspot_day, 86_400);
    let burst = count(&mut state.hubspot_burst, HUBSPOT_WINDOW.1);
    let mut response = if daily > shared.daily_quota {
        json(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            json!({"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT", "policyName": "DAILY"}),
        )
    } else if burst > HUBSPOT_WINDOW.0 {
        json(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
        )
    } else {
        answer(&mut state)
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-hubspot-ratelimit-daily",
        HeaderValue::from(shared.daily_quota),
    );
    headers.insert(
        "x-hubspot-ratelimit-daily-remaining",
        HeaderValue::from(shared.daily_quota.saturating_sub(daily)),
    );
    headers.insert(
        "x-hubspot-ratelimit-interval-milliseconds",
        HeaderValue::from(HUBSPOT_WINDOW.1 * 1000),
    );
    headers.insert(
        "x-hubspot-ratelimit-max",
        HeaderValue::from(HUBSPOT_WINDOW.0),
    );
    headers.insert(
        "x-hubspot-ratelimit-remaining",
        HeaderValue::from(HUBSPOT_WINDOW.0.saturating_sub(burst)),
    );
    response
}

fn contact(id: u64, properties: &Value) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let mut properties = properties.clone();
    properties["hs_object_id"] = json!(id.to_string());
    properties["createdate"] = json!(now);
    properties["lastmodifieddate"] = json!(now);
    json!({"id": id.to_string(), "properties": properties, "createdAt": now, "updatedAt": now, "archived": false})
}

async fn hubspot_create(
    With(shared): With<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input: Value = serde_json::from_slice(&body).unwrap_or_default();
    hubspot(&shared, &headers, |state| {
        let Some(properties) = input.get("properties").filter(|p| p.is_object()) else {
            return json(
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                json!({"status": "error", "message": "Invalid input JSON on line 1: properties is required", "category": "VALIDATION_ERROR"}),
            );
        };
        if let Some(email) = properties["email"].as_str()
            && let Some(existing) = state
                .hubspot
                .values()
                .find(|c| c["properties"]["email"] == email)
        {
            let id = existing["id"].as_str().unwrap_or_default();
            return json(
                StatusCode::CONFLICT,
                HeaderMap::new(),
                json!({"status": "error", "message": format!("Contact already exists. Existing ID: {id}"), "category": "CONFLICT"}),
            );
        }
        let id = 100_000 + state.hubspot.len() as u64 + 1;
        let created = contact(id, properties);
        state.hubspot.insert(id, created.clone());
        json(StatusCode::CREATED, HeaderMap::new(), created)
    })
}

async fn hubspot_get(
    With(shared): With<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    hubspot(&shared, &headers, |state| {
        match id.parse::<u64>().ok().and_then(|id| state.hubspot.get(&id)) {
            Some(found) => json(StatusCode::OK, HeaderMap::new(), found.clone()),
            None => json(
                StatusCode::NOT_FOUND,
                HeaderMap::new(),
                json!({"status": "error", "message": "Object not found.", "category": "OBJECT_NOT_FOUND"}),
            ),
        }
    })
}

async fn hubspot_list(
    With(shared): With<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    hubspot(&shared, &headers, |state| {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 100);
        let after = query
            .get("after")
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        let page: Vec<&Value> = state
            .hubspot
            .range(after + 1..)
            .map(|(_, c)| c)
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        let results: Vec<&Value> = page.into_iter().take(limit).collect();
        let mut body = json!({"results": results});
        if more && let Some(last) = results.last() {
            body["paging"] = json!({"next": {"after": last["id"]}});
        }
        json(StatusCode::OK, HeaderMap::new(), body)
    })
}

pub(crate) fn salesforce_router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/services/data/{version}/sobjects/Contact",
            axum::routing::post(salesforce_create),
        )
        .route(
            "/services/data/{version}/sobjects/Contact/{id}",
            get(salesforce_get),
        )
}

/// Authentication, the daily limit and `Sforce-Limit-Info` around `answer`.
fn salesforce(
    shared: &Shared,
    headers: &HeaderMap,
    answer: impl FnOnce(&mut State) -> Response,
) -> Response {
    if !bearer(headers) {
        return json(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        );
    }
    let mut state = lock(&shared.crm);
    let used = count(&mut state.salesforce_day, 86_400);
    let mut response = if used > shared.daily_quota {
        json(
            StatusCode::FORBIDDEN,
            HeaderMap::new(),
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        )
    } else {
        answer(&mut state)
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "api-usage={}/{}",
        used.min(shared.daily_quota),
        shared.daily_quota
    )) {
        response.headers_mut().insert("sforce-limit-info", value);
    }
    response
}

async fn salesforce_create(
    With(shared): With<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input: Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = shared.id("003", 15);
    salesforce(&shared, &headers, |state| {
        if input["LastName"].as_str().is_none_or(str::is_empty) {
            return json(
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                json!([{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}]),
            );
        }
        let mut record = input.clone();
        record["Id"] = json!(id);
        record["attributes"] = json!({"type": "Contact", "url": format!("/services/data/{version}/sobjects/Contact/{id}")});
        state.salesforce.insert(id.clone(), record);
        json(
            StatusCode::CREATED,
            HeaderMap::new(),
            json!({"id": id, "success": true, "errors": []}),
        )
    })
}

async fn salesforce_get(
    With(shared): With<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    salesforce(&shared, &headers, |state| match state.salesforce.get(&id) {
        Some(found) => json(StatusCode::OK, HeaderMap::new(), found.clone()),
        None => json(
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
        ),
    })
}
