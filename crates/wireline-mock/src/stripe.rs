//! The Stripe emulator: customers, payment intents (create, confirm, retrieve, cancel),
//! charges, refunds and the events feed, with Stripe's form-encoded requests, list envelopes,
//! error bodies, `Request-Id` and `Stripe-Version` headers, `Idempotency-Key` semantics, and
//! `Stripe-Signature`d webhooks for every state change.
//!
//! Test cards as Stripe documents them: `pm_card_visa` (and any other `pm_...`) succeeds,
//! `pm_card_chargeDeclined` / `pm_card_visa_chargeDeclined` is declined (402 `card_error`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as With};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::{Kind, Shared, hmac_sha256, json, lock, now_secs};

/// The API version the emulator speaks.
pub(crate) const API_VERSION: &str = "2024-06-20";

#[derive(Default)]
pub(crate) struct State {
    objects: BTreeMap<String, Value>,
    /// Ids per object type, in creation order.
    lists: BTreeMap<&'static str, Vec<String>>,
    /// Events, oldest first.
    events: Vec<Value>,
    idempotency: HashMap<String, Idempotent>,
}

enum Idempotent {
    InFlight,
    Done {
        fingerprint: [u8; 32],
        status: StatusCode,
        body: Bytes,
    },
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/customers", post(create_customer).get(list_customers))
        .route(
            "/v1/customers/{id}",
            get(retrieve_customer)
                .post(update_customer)
                .delete(delete_customer),
        )
        .route(
            "/v1/payment_intents",
            post(create_payment_intent).get(list_payment_intents),
        )
        .route("/v1/payment_intents/{id}", get(retrieve_payment_intent))
        .route(
            "/v1/payment_intents/{id}/confirm",
            post(confirm_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            post(cancel_payment_intent),
        )
        .route("/v1/charges", get(list_charges))
        .route("/v1/charges/{id}", get(retrieve_charge))
        .route("/v1/refunds", post(create_refund))
        .route("/v1/refunds/{id}", get(retrieve_refund))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(retrieve_event))
        .fallback(unknown_route)
}

/// Stripe's outer layers, outside the fault layer: the API key, then idempotency (so a fault
/// answered before the request "reached Stripe" is never stored, and a slow request is in
/// flight for a concurrent retry), then the headers on every answer.
pub(crate) fn outer(shared: Arc<Shared>, inner: Router) -> Router {
    inner.layer(middleware::from_fn_with_state(shared, envelope))
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: String,
    param: Option<&str>,
) -> Response {
    let mut body = Map::new();
    body.insert("type".into(), json!(kind));
    body.insert("message".into(), json!(message));
    if let Some(code) = code {
        body.insert("code".into(), json!(code));
        body.insert(
            "doc_url".into(),
            json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            )),
        );
    }
    if let Some(param) = param {
        body.insert("param".into(), json!(param));
    }
    json(status, HeaderMap::new(), json!({ "error": body }))
}

fn missing(kind: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

fn required(param: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        format!("Missing required param: {param}."),
        Some(param),
    )
}

async fn unknown_route(method: Method, request: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        format!(
            "Unrecognized request URL ({method}: {}). The Wireline Stripe emulator covers customers, payment_intents, charges, refunds and events.",
            request.uri().path()
        ),
        None,
    )
}

async fn envelope(With(shared): With<Arc<Shared>>, request: Request, next: Next) -> Response {
    let request_id = shared.id("req_", 14);
    let mut response = match check_key(request.headers()) {
        Err(response) => response,
        Ok(()) if request.method() == Method::POST => idempotent(&shared, request, next).await,
        Ok(()) => next.run(request).await,
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", value);
    }
    headers.insert("stripe-version", HeaderValue::from_static(API_VERSION));
    response
}

fn check_key(headers: &HeaderMap) -> Result<(), Response> {
    use base64::Engine;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key = if let Some(bearer) = auth.strip_prefix("Bearer ") {
        bearer.trim().to_owned()
    } else if let Some(basic) = auth.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|pair| pair.split(':').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    if key.is_empty() {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid_request_error", None, "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into(), None));
    }
    if !(key.starts_with("sk_test_") || key.starts_with("rk_test_")) {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid_request_error", Some("api_key_expired"), "Invalid API Key provided: the Wireline emulator takes test keys only (sk_test_... or rk_test_...).".into(), None));
    }
    Ok(())
}

async fn idempotent(shared: &Arc<Shared>, request: Request, next: Next) -> Response {
    let Some(key) = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut hasher = sha2::Sha256::new();
    hasher.update(parts.uri.path().as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    let fingerprint: [u8; 32] = hasher.finalize().into();
    {
        let mut state = lock(&shared.stripe);
        match state.idempotency.get(&key) {
            Some(Idempotent::Done {
                fingerprint: stored,
                status,
                body,
            }) if *stored == fingerprint => {
                let mut response = (
                    *status,
                    [("content-type", "application/json")],
                    body.clone(),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return response;
            }
            Some(Idempotent::Done { .. }) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                    None,
                );
            }
            Some(Idempotent::InFlight) => {
                return error(
                    StatusCode::CONFLICT,
                    "idempotency_error",
                    None,
                    format!(
                        "There is currently another in-progress request using this Stripe-Idempotency-Key (that probably means you submitted twice, and the other request is still going through): {key}. Please try again later."
                    ),
                    None,
                );
            }
            None => {
                state.idempotency.insert(key.clone(), Idempotent::InFlight);
            }
        }
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 22)
        .await
        .unwrap_or_default();
    let mut state = lock(&shared.stripe);
    // Like Stripe: a request that failed validation, conflicted, was rate limited or hit a
    // server error is not saved; anything that executed (a decline too) is.
    if status.is_server_error() || matches!(status.as_u16(), 400 | 409 | 429) {
        state.idempotency.remove(&key);
    } else {
        state.idempotency.insert(
            key.clone(),
            Idempotent::Done {
                fingerprint,
                status,
                body: body.clone(),
            },
        );
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Stripe's form encoding (`a=1&metadata[k]=v&expand[]=x`) as JSON.
fn form(body: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        let value = Value::String(value.into_owned());
        match key.split_once('[') {
            Some((outer, rest)) => {
                let inner = rest.trim_end_matches(']');
                let entry = out.entry(outer.to_owned());
                if inner.is_empty() {
                    let list = entry.or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        list.push(value);
                    }
                } else {
                    let map = entry.or_insert_with(|| json!({}));
                    if let Some(map) = map.as_object_mut() {
                        map.insert(inner.to_owned(), value);
                    }
                }
            }
            None => {
                out.insert(key.into_owned(), value);
            }
        }
    }
    out
}

fn text<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn amount(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, Response> {
    match text(params, name) {
        None => Ok(None),
        Some(raw) => raw.parse::<i64>().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                format!("Invalid integer: {raw}"),
                Some(name),
            )
        }),
    }
}

fn ok(value: &Value) -> Response {
    json(StatusCode::OK, HeaderMap::new(), value.clone())
}

/// `GET /v1/{objects}/{id}` for any stored object kind.
fn retrieve(shared: &Shared, id: &str, object: &str) -> Response {
    match lock(&shared.stripe).get(id, object) {
        Some(found) => ok(found),
        None => missing(object, id),
    }
}

impl State {
    fn insert(&mut self, kind: &'static str, object: Value) {
        let id = object["id"].as_str().unwrap_or_default().to_owned();
        self.lists.entry(kind).or_default().push(id.clone());
        self.objects.insert(id, object);
    }

    fn get(&self, id: &str, object: &str) -> Option<&Value> {
        self.objects.get(id).filter(|o| o["object"] == object)
    }
}

/// Records an event and sends its webhook.
fn emit(shared: &Shared, state: &mut State, ty: &str, object: &Value) {
    let event = json!({
        "id": shared.id("evt_", 24),
        "object": "event",
        "api_version": API_VERSION,
        "created": now_secs(),
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": ty,
    });
    state.events.push(event.clone());
    let body = serde_json::to_vec(&event).unwrap_or_default();
    shared.webhook(Kind::Stripe, body, |secret, body| {
        let t = now_secs();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        let v1 = hex::encode(hmac_sha256(secret.as_bytes(), &signed));
        vec![("stripe-signature".to_owned(), format!("t={t},v1={v1}"))]
    });
}

/// A list of `kind` objects, newest first; the query parameter `filter` (Stripe names it
/// after the field), when given, keeps the objects whose field of that name equals it.
fn list(
    state: &State,
    kind: &str,
    url: &str,
    query: &BTreeMap<String, String>,
    filter: &str,
) -> Response {
    let wanted = query.get(filter);
    let newest_first: Vec<&Value> = state
        .lists
        .get(kind)
        .into_iter()
        .flatten()
        .rev()
        .filter_map(|id| state.objects.get(id))
        .filter(|o| wanted.is_none_or(|w| o[filter] == w.as_str()))
        .collect();
    page(newest_first, url, query)
}

/// One page of a newest-first list: `limit` (1-100, default 10), `starting_after`,
/// `ending_before`, `created[gte|gt|lte|lt]`.
fn page(items: Vec<&Value>, url: &str, query: &BTreeMap<String, String>) -> Response {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let created = |o: &Value| o["created"].as_i64().unwrap_or_default();
    let bound = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
    let items: Vec<&Value> = items
        .into_iter()
        .filter(|o| bound("created[gte]").is_none_or(|b| created(o) >= b))
        .filter(|o| bound("created[gt]").is_none_or(|b| created(o) > b))
        .filter(|o| bound("created[lte]").is_none_or(|b| created(o) <= b))
        .filter(|o| bound("created[lt]").is_none_or(|b| created(o) < b))
        .collect();
    let start = match query.get("starting_after") {
        Some(after) => items
            .iter()
            .position(|o| o["id"] == after.as_str())
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let end = match query.get("ending_before") {
        Some(before) => items
            .iter()
            .position(|o| o["id"] == before.as_str())
            .unwrap_or(0),
        None => items.len(),
    };
    let window: Vec<&Value> = if query.contains_key("ending_before") {
        items[..end]
            .iter()
            .rev()
            .take(limit)
            .rev()
            .copied()
            .collect()
    } else {
        items[start.min(items.len())..]
            .iter()
            .take(limit)
            .copied()
            .collect()
    };
    let has_more = if query.contains_key("ending_before") {
        end > window.len()
    } else {
        items.len().saturating_sub(start) > window.len()
    };
    ok(&json!({ "object": "list", "data": window, "has_more": has_more, "url": url }))
}

async fn create_customer(With(shared): With<Arc<Shared>>, body: Bytes) -> Response {
    let params = form(&body);
    let customer = json!({
        "id": shared.id("cus_", 14),
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": now_secs(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": params.get("description"),
        "email": params.get("email"),
        "invoice_prefix": shared.id("", 8).to_uppercase(),
        "livemode": false,
        "metadata": params.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "name": params.get("name"),
        "phone": params.get("phone"),
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    });
    let mut state = lock(&shared.stripe);
    state.insert("customer", customer.clone());
    emit(&shared, &mut state, "customer.created", &customer);
    ok(&customer)
}

async fn list_customers(
    With(shared): With<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let state = lock(&shared.stripe);
    list(&state, "customer", "/v1/customers", &query, "email")
}

async fn retrieve_customer(With(shared): With<Arc<Shared>>, Path(id): Path<String>) -> Response {
    retrieve(&shared, &id, "customer")
}

async fn update_customer(
    With(shared): With<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let mut state = lock(&shared.stripe);
    let Some(customer) = state
        .objects
        .get_mut(&id)
        .filter(|o| o["object"] == "customer")
    else {
        return missing("customer", &id);
    };
    for field in ["email", "name", "phone", "description"] {
        if let Some(value) = params.get(field) {
            customer[field] = value.clone();
        }
    }
    if let Some(Value::Object(metadata)) = params.get("metadata") {
        for (k, v) in metadata {
            customer["metadata"][k] = v.clone();
        }
    }
    let customer = customer.clone();
    emit(&shared, &mut state, "customer.updated", &customer);
    ok(&customer)
}

async fn delete_customer(With(shared): With<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut state = lock(&shared.stripe);
    if state.get(&id, "customer").is_none() {
        return missing("customer", &id);
    }
    if let Some(customer) = state.objects.remove(&id) {
        emit(&shared, &mut state, "customer.deleted", &customer);
    }
    ok(&json!({ "id": id, "object": "customer", "deleted": true }))
}

async fn create_payment_intent(With(shared): With<Arc<Shared>>, body: Bytes) -> Response {
    let params = form(&body);
    let amount = match amount(&params, "amount") {
        Ok(Some(amount)) if amount >= 50 => amount,
        Ok(Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("amount_too_small"),
                "Amount must be at least 50 cents".into(),
                Some("amount"),
            );
        }
        Ok(None) => return required("amount"),
        Err(response) => return response,
    };
    let Some(currency) = text(&params, "currency") else {
        return required("currency");
    };
    let mut state = lock(&shared.stripe);
    if let Some(customer) = text(&params, "customer")
        && state.get(customer, "customer").is_none()
    {
        return missing("customer", customer);
    }
    let id = shared.id("pi_", 24);
    let payment_method = params.get("payment_method").cloned().unwrap_or(Value::Null);
    let intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_{}", shared.id("", 24)),
        "confirmation_method": "automatic",
        "created": now_secs(),
        "currency": currency.to_lowercase(),
        "customer": params.get("customer"),
        "description": params.get("description"),
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": params.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "payment_method": payment_method,
        "payment_method_types": ["card"],
        "status": if payment_method.is_null() { "requires_payment_method" } else { "requires_confirmation" },
    });
    state.insert("payment_intent", intent.clone());
    emit(&shared, &mut state, "payment_intent.created", &intent);
    if text(&params, "confirm") == Some("true") {
        return confirm(&shared, &mut state, &id, &Map::new());
    }
    ok(&intent)
}

async fn list_payment_intents(
    With(shared): With<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let state = lock(&shared.stripe);
    list(
        &state,
        "payment_intent",
        "/v1/payment_intents",
        &query,
        "customer",
    )
}

async fn retrieve_payment_intent(
    With(shared): With<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    retrieve(&shared, &id, "payment_intent")
}

async fn confirm_payment_intent(
    With(shared): With<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let mut state = lock(&shared.stripe);
    confirm(&shared, &mut state, &id, &params)
}

fn confirm(shared: &Shared, state: &mut State, id: &str, params: &Map<String, Value>) -> Response {
    let Some(intent) = state.get(id, "payment_intent").cloned() else {
        return missing("payment_intent", id);
    };
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    if !matches!(
        status.as_str(),
        "requires_payment_method" | "requires_confirmation"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            format!("You cannot confirm this PaymentIntent because it has a status of {status}."),
            None,
        );
    }
    let payment_method = params
        .get("payment_method")
        .filter(|v| !v.is_null())
        .or_else(|| Some(&intent["payment_method"]).filter(|v| !v.is_null()))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(payment_method) = payment_method else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", Some("payment_intent_unexpected_state"), "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the PaymentIntent with a payment method, pass payment_method.".into(), Some("payment_method"));
    };
    let declined = payment_method.contains("chargeDeclined");
    let charge = json!({
        "id": shared.id("ch_", 24),
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": if declined { json!(0) } else { intent["amount"].clone() },
        "amount_refunded": 0,
        "balance_transaction": if declined { Value::Null } else { json!(shared.id("txn_", 24)) },
        "captured": !declined,
        "created": now_secs(),
        "currency": intent["currency"],
        "customer": intent["customer"],
        "failure_code": if declined { json!("card_declined") } else { Value::Null },
        "failure_message": if declined { json!("Your card was declined.") } else { Value::Null },
        "livemode": false,
        "metadata": {},
        "paid": !declined,
        "payment_intent": id,
        "payment_method": payment_method,
        "refunded": false,
        "status": if declined { "failed" } else { "succeeded" },
    });
    state.insert("charge", charge.clone());
    let Some(stored) = state.objects.get_mut(id) else {
        return missing("payment_intent", id);
    };
    stored["payment_method"] = json!(payment_method);
    stored["latest_charge"] = charge["id"].clone();
    if declined {
        stored["status"] = json!("requires_payment_method");
        stored["last_payment_error"] = json!({"type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined.", "charge": charge["id"]});
    } else {
        stored["status"] = json!("succeeded");
        stored["amount_received"] = stored["amount"].clone();
        stored["last_payment_error"] = Value::Null;
    }
    let intent = stored.clone();
    if declined {
        emit(shared, state, "charge.failed", &charge);
        emit(shared, state, "payment_intent.payment_failed", &intent);
        return json(
            StatusCode::PAYMENT_REQUIRED,
            HeaderMap::new(),
            json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "doc_url": "https://stripe.com/docs/error-codes/card-declined", "message": "Your card was declined.", "charge": charge["id"], "payment_intent": intent}}),
        );
    }
    emit(shared, state, "charge.succeeded", &charge);
    emit(shared, state, "payment_intent.succeeded", &intent);
    ok(&intent)
}

async fn cancel_payment_intent(
    With(shared): With<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let mut state = lock(&shared.stripe);
    let Some(intent) = state
        .objects
        .get_mut(&id)
        .filter(|o| o["object"] == "payment_intent")
    else {
        return missing("payment_intent", &id);
    };
    if intent["status"] == "succeeded" || intent["status"] == "canceled" {
        let status = intent["status"].as_str().unwrap_or_default().to_owned();
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            format!("You cannot cancel this PaymentIntent because it has a status of {status}."),
            None,
        );
    }
    intent["status"] = json!("canceled");
    intent["canceled_at"] = json!(now_secs());
    let intent = intent.clone();
    emit(&shared, &mut state, "payment_intent.canceled", &intent);
    ok(&intent)
}

async fn list_charges(
    With(shared): With<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let state = lock(&shared.stripe);
    list(&state, "charge", "/v1/charges", &query, "payment_intent")
}

async fn retrieve_charge(With(shared): With<Arc<Shared>>, Path(id): Path<String>) -> Response {
    retrieve(&shared, &id, "charge")
}

async fn create_refund(With(shared): With<Arc<Shared>>, body: Bytes) -> Response {
    let params = form(&body);
    let mut state = lock(&shared.stripe);
    let charge_id = match (text(&params, "charge"), text(&params, "payment_intent")) {
        (Some(charge), _) => charge.to_owned(),
        (None, Some(intent)) => match state.get(intent, "payment_intent") {
            Some(intent) => intent["latest_charge"].as_str().unwrap_or_default().to_owned(),
            None => return missing("payment_intent", intent),
        },
        (None, None) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", Some("parameter_missing"), "One of the following params should be provided for this request: payment_intent or charge.".into(), None),
    };
    let Some(charge) = state.get(&charge_id, "charge").cloned() else {
        return missing("charge", &charge_id);
    };
    if charge["status"] != "succeeded" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_not_refundable"),
            format!("Charge {charge_id} has not succeeded and cannot be refunded."),
            None,
        );
    }
    let captured = charge["amount_captured"].as_i64().unwrap_or_default();
    let refunded = charge["amount_refunded"].as_i64().unwrap_or_default();
    let remaining = captured - refunded;
    let amount = match amount(&params, "amount") {
        Ok(amount) => amount.unwrap_or(remaining),
        Err(response) => return response,
    };
    if remaining == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_already_refunded"),
            format!("Charge {charge_id} has already been refunded."),
            None,
        );
    }
    if amount <= 0 || amount > remaining {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("amount_too_large"),
            format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"
            ),
            Some("amount"),
        );
    }
    let refund = json!({
        "id": shared.id("re_", 24),
        "object": "refund",
        "amount": amount,
        "charge": charge_id,
        "created": now_secs(),
        "currency": charge["currency"],
        "metadata": params.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "payment_intent": charge["payment_intent"],
        "reason": params.get("reason"),
        "status": "succeeded",
    });
    state.insert("refund", refund.clone());
    let Some(stored) = state.objects.get_mut(&charge_id) else {
        return missing("charge", &charge_id);
    };
    stored["amount_refunded"] = json!(refunded + amount);
    stored["refunded"] = json!(refunded + amount == captured);
    let charge = stored.clone();
    emit(&shared, &mut state, "refund.created", &refund);
    emit(&shared, &mut state, "charge.refunded", &charge);
    ok(&refund)
}

async fn retrieve_refund(With(shared): With<Arc<Shared>>, Path(id): Path<String>) -> Response {
    retrieve(&shared, &id, "refund")
}

async fn list_events(
    With(shared): With<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let state = lock(&shared.stripe);
    let ty = query.get("type").cloned();
    let newest_first: Vec<&Value> = state
        .events
        .iter()
        .rev()
        .filter(|e| {
            ty.as_ref().is_none_or(|t| match t.strip_suffix('*') {
                Some(prefix) => e["type"].as_str().is_some_and(|et| et.starts_with(prefix)),
                None => e["type"] == t.as_str(),
            })
        })
        .collect();
    page(newest_first, "/v1/events", &query)
}

async fn retrieve_event(With(shared): With<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let state = lock(&shared.stripe);
    match state.events.iter().find(|e| e["id"] == id.as_str()) {
        Some(event) => ok(event),
        None => missing("event", &id),
    }
}
