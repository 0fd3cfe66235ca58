//! OAuth 2.0 toward upstreams against a local token endpoint and an API that only accepts the
//! tokens it issued.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
pub struct Issuer {
    /// Access tokens the API accepts.
    pub valid: Mutex<BTreeSet<String>>,
    /// Token requests served (grant, scope, client).
    pub requests: Mutex<Vec<(String, String, String)>>,
    /// The refresh token currently accepted (rotation: each use issues the next).
    pub refresh: Mutex<String>,
    pub expires_in: Mutex<u64>,
    pub revoked: Mutex<bool>,
    /// API calls seen with their token.
    pub calls: Mutex<Vec<String>>,
}

pub struct OAuthWorld {
    pub issuer: Arc<Issuer>,
    pub url: String,
}

async fn token(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    let client = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    issuer.requests.lock().expect("lock").push((
        grant.clone(),
        form.get("scope").cloned().unwrap_or_default(),
        client,
    ));
    // Many waiting callers would show up here as many requests: slow the answer a little.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    if *issuer.revoked.lock().expect("lock") {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant", "error_description": "consent revoked"}))).into_response();
    }
    let mut body = serde_json::json!({});
    if grant == "refresh_token" {
        let mut current = issuer.refresh.lock().expect("lock");
        if form.get("refresh_token") != Some(&*current) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        let next = format!("rt-{}", issuer.requests.lock().expect("lock").len());
        *current = next.clone();
        body["refresh_token"] = next.into();
    }
    let access = format!("at-{}", issuer.requests.lock().expect("lock").len());
    issuer.valid.lock().expect("lock").insert(access.clone());
    body["access_token"] = access.into();
    body["token_type"] = "Bearer".into();
    body["expires_in"] = (*issuer.expires_in.lock().expect("lock")).into();
    body["scope"] = form.get("scope").cloned().unwrap_or_default().into();
    axum::Json(body).into_response()
}

async fn api(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    issuer.calls.lock().expect("lock").push(token.clone());
    if issuer.valid.lock().expect("lock").contains(&token) {
        axum::Json(serde_json::json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_token"})),
        )
            .into_response()
    }
}

pub async fn start(expires_in: u64, first_refresh: &str) -> OAuthWorld {
    let issuer = Arc::new(Issuer::default());
    *issuer.expires_in.lock().expect("lock") = expires_in;
    *issuer.refresh.lock().expect("lock") = first_refresh.to_owned();
    let app = Router::new()
        .route("/oauth/token", axum::routing::post(token))
        .fallback(api)
        .with_state(Arc::clone(&issuer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    OAuthWorld { issuer, url }
}
