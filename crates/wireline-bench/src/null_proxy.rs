//! The floor under any proxy: a process that forwards each request to the upstream with the
//! same HTTP server (axum/hyper), client (reqwest/rustls, pooled) and allocator as Wireline,
//! and does nothing else — no auth, no policy, no audit. Run by the proxy benchmark as a child
//! process (`wireline-bench null-proxy --upstream ADDR`), so that it, like Wireline, competes
//! for the cores as a separate process. It prints `listening ADDR` on stdout.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;

pub async fn run(upstream: String) -> anyhow::Result<()> {
    let client = wireline_direct::client::build(None).map_err(anyhow::Error::msg)?;
    let app = Router::new()
        .fallback(
            |State((client, upstream)): State<(reqwest::Client, String)>, uri: Uri| async move {
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                match client.get(format!("http://{upstream}{path}")).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let body: Bytes = response.bytes().await.unwrap_or_default();
                        (status, body).into_response()
                    }
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            },
        )
        .with_state((client, upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
