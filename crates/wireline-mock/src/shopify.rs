//! The Shopify emulator: orders (`/admin/api/VERSION/orders.json`) with
//! `X-Shopify-Access-Token`, the leaky-bucket `X-Shopify-Shop-Api-Call-Limit` header, and
//! `orders/create` webhooks signed with `X-Shopify-Hmac-Sha256`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as With};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::{Kind, Shared, hmac_sha256, json, lock};

const SHOP: &str = "wireline-demo.myshopify.com";
/// The bucket: 40 calls, leaking 2 per second.
const BUCKET: f64 = 40.0;

#[derive(Default)]
pub(crate) struct State {
    orders: BTreeMap<u64, Value>,
    bucket: f64,
    bucket_at: Option<tokio::time::Instant>,
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/admin/api/{version}/orders.json",
            get(list_orders).post(create_order),
        )
        .route("/admin/api/{version}/orders/{file}", get(get_order))
}

/// Authentication and the call bucket; `None` when the call may go ahead, with the header
/// value to send.
fn admit(shared: &Shared, headers: &HeaderMap) -> Result<HeaderValue, Response> {
    if headers
        .get("x-shopify-access-token")
        .is_none_or(|t| t.is_empty())
    {
        return Err(json(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        ));
    }
    let mut state = lock(&shared.shopify);
    let now = tokio::time::Instant::now();
    let leaked = state
        .bucket_at
        .map_or(0.0, |at| now.duration_since(at).as_secs_f64() * 2.0);
    state.bucket = (state.bucket - leaked).max(0.0);
    state.bucket_at = Some(now);
    if state.bucket + 1.0 > BUCKET {
        let mut response = json(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}),
        );
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1.0"));
        return Err(response);
    }
    state.bucket += 1.0;
    HeaderValue::from_str(&format!("{}/{}", state.bucket.ceil() as u64, BUCKET as u64)).map_err(
        |_| {
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                HeaderMap::new(),
                json!({}),
            )
        },
    )
}

fn with_limit(mut response: Response, limit: HeaderValue) -> Response {
    response
        .headers_mut()
        .insert("x-shopify-shop-api-call-limit", limit);
    response
}

async fn list_orders(With(shared): With<Arc<Shared>>, headers: HeaderMap) -> Response {
    let limit = match admit(&shared, &headers) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let state = lock(&shared.shopify);
    let orders: Vec<&Value> = state.orders.values().rev().collect();
    with_limit(
        json(StatusCode::OK, HeaderMap::new(), json!({"orders": orders})),
        limit,
    )
}

async fn get_order(
    With(shared): With<Arc<Shared>>,
    Path((_, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let limit = match admit(&shared, &headers) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let found = file
        .strip_suffix(".json")
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| lock(&shared.shopify).orders.get(&id).cloned());
    let response = match found {
        Some(order) => json(StatusCode::OK, HeaderMap::new(), json!({"order": order})),
        None => json(
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            json!({"errors": "Not Found"}),
        ),
    };
    with_limit(response, limit)
}

async fn create_order(
    With(shared): With<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = match admit(&shared, &headers) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let Some(input) = serde_json::from_slice::<Value>(&body)
        .ok()
        .map(|v| v["order"].clone())
        .filter(Value::is_object)
    else {
        return with_limit(
            json(
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                json!({"errors": {"order": "Required parameter missing or invalid"}}),
            ),
            limit,
        );
    };
    let items = input["line_items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return with_limit(
            json(
                StatusCode::UNPROCESSABLE_ENTITY,
                HeaderMap::new(),
                json!({"errors": {"line_items": ["must have at least one line item"]}}),
            ),
            limit,
        );
    }
    let total: f64 = items
        .iter()
        .map(|i| {
            i["price"]
                .as_str()
                .and_then(|p| p.parse::<f64>().ok())
                .or_else(|| i["price"].as_f64())
                .unwrap_or(0.0)
                * i["quantity"].as_f64().unwrap_or(1.0)
        })
        .sum();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S-00:00")
        .to_string();
    let order = {
        let mut state = lock(&shared.shopify);
        let number = state.orders.len() as u64 + 1001;
        let id = 5_000_000_000 + shared.pick(0..1_000_000_000);
        let order = json!({
            "id": id,
            "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
            "name": format!("#{number}"),
            "order_number": number,
            "email": input["email"],
            "created_at": now,
            "updated_at": now,
            "currency": input["currency"].as_str().unwrap_or("USD"),
            "financial_status": input["financial_status"].as_str().unwrap_or("paid"),
            "total_price": format!("{total:.2}"),
            "line_items": items,
            "customer": input["customer"],
        });
        state.orders.insert(id, order.clone());
        order
    };
    let body = serde_json::to_vec(&order).unwrap_or_default();
    let webhook_id = shared.id("", 32).to_lowercase();
    shared.webhook(Kind::Shopify, body, move |secret, body| {
        use base64::Engine;
        vec![
            ("x-shopify-topic".to_owned(), "orders/create".to_owned()),
            (
                "x-shopify-hmac-sha256".to_owned(),
                base64::engine::general_purpose::STANDARD
                    .encode(hmac_sha256(secret.as_bytes(), body)),
            ),
            ("x-shopify-shop-domain".to_owned(), SHOP.to_owned()),
            ("x-shopify-api-version".to_owned(), version),
            ("x-shopify-webhook-id".to_owned(), webhook_id),
            (
                "x-shopify-triggered-at".to_owned(),
                jiff::Timestamp::now().to_string(),
            ),
        ]
    });
    with_limit(
        json(
            StatusCode::CREATED,
            HeaderMap::new(),
            json!({"order": order}),
        ),
        limit,
    )
}
