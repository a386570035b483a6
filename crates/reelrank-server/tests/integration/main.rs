//! HTTP API tests through the router (no socket): ingest, validation, limits, health, metrics.
//! Process-level tests (crash recovery) live in the CLI crate, which owns the binary.

mod auth;
mod bad_input;
mod hardening;
mod ingest;
mod shared_state;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use reelrank_server::{router, AppState, IngestConfig};
use reelrank_store::testing::TestStore;
use tower::ServiceExt;

/// Limits small enough to hit in tests.
pub fn test_config() -> IngestConfig {
    IngestConfig { max_batch_records: 5, max_body_bytes: 4096, ..IngestConfig::default() }
}

/// The application over a second handle on the test store, as a server process would open it.
pub async fn app(t: &TestStore, config: IngestConfig) -> Router {
    let store = reelrank_store::Store::open(&t.url).await.unwrap();
    router(AppState::new(std::sync::Arc::new(store), config))
}

/// An API key named `name` with one role and at most `rate` requests per second (0: unlimited).
pub fn api_key(name: &str, key: &str, role: reelrank_server::Role, rate: u32) -> reelrank_server::ApiKey {
    reelrank_server::ApiKey {
        name: name.into(),
        key: key.into(),
        roles: vec![role],
        requests_per_second: std::num::NonZeroU32::new(rate),
    }
}

/// Sends one request and returns the status and the body as JSON (or a JSON string for text).
pub async fn send(app: &Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    send_with_key(app, method, uri, body, None).await
}

/// [`send`] presenting an API key.
pub async fn send_with_key(
    app: &Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    key: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request.body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}
