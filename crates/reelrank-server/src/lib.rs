//! reelrank's HTTP API: handlers only parse, call the store (later the engine) and convert.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/items`, `/v1/users`, `/v1/events` | a batch as a JSON array or NDJSON; validated whole, `422` lists `{index, field, message}` and writes nothing |
//! | `GET /v1/recommend?user_id&n&exclude&page&device&hour&explain` | a feed: items with score, source and reasons, the `request_id` and `model_version`; each item is logged as an impression |
//! | `GET /v1/similar?item_id&n` | items like an item (two-tower vectors) |
//! | `GET /v1/explain?user_id&item_id` | why an item would or would not be in a user's feed |
//! | `GET /v1/experiments` | each A/B variant's share, impressions and effective-play, finish and like rates |
//! | `GET /v1/admin/candidates?user_id` | what each candidate source retrieves for a user now, and the filter that removes each (admin) |
//! | `POST /v1/admin/reload` | rebuild the serving snapshot now (admin) |
//! | `GET /v1/admin/online`, `POST /v1/admin/online {"paused"}` | online learning's progress per model (learned, queued, last snapshot); pause or resume it (admin) |
//! | `GET /livez` | liveness: the process answers (no key needed) |
//! | `GET /readyz` (also `/healthz`) | readiness: the store answers and the server is not shutting down; `503` naming the failing check when not (no key needed) |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 (no key needed) |
//! | `GET /metrics` | Prometheus text format (admin) |
//!
//! Ingest routes need a key with the `ingest` role, feed routes `read`, the rest `admin`
//! ([`auth`]).
#![warn(missing_docs)]

pub mod auth;
mod charts;
mod controls;
mod dashboard;
pub mod engine;
mod error;
mod feed;
mod health;
mod ingest;
mod metrics_layer;
mod moderation;
mod online;
mod roles;
pub mod shared_state;
mod transparency;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use reelrank_core::ModerationStatus;
use reelrank_store::Store;
use serde::Deserialize;
use tower_http::timeout::TimeoutLayer;

pub use auth::{Actor, ApiKey, AuthConfig, Role};
pub use engine::{Engine, EngineConfig, EngineError, EngineStats, ModelSource};
pub use error::HttpError;
pub use online::OnlineConfig;
pub use online::{ModelStatus, OnlineStatus};
pub use roles::ProcessRole;
pub use shared_state::{SharedState, SharedStateConfig, SharedStateError, SharedStateStats, SharedUser};

/// What the ingest endpoints accept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body; larger ones get `413`.
    pub max_body_bytes: usize,
    /// Most records in one batch; more get `413`.
    pub max_batch_records: usize,
    /// Moderation state of new items that do not state one (`approved` serves them at once;
    /// review-first platforms choose `pending`).
    pub default_item_status: ModerationStatus,
    /// Events naming an item the catalog does not hold yet.
    pub unknown_items: UnknownItems,
    /// Distinct users whose `report` events send an approved item back to review (0: never).
    pub review_after_reports: u32,
}

impl IngestConfig {
    /// The moderation applied to records on arrival, the same for every way in.
    pub fn arrival(&self) -> reelrank_ingest::ArrivalPolicy {
        reelrank_ingest::ArrivalPolicy {
            default_item_status: self.default_item_status,
            review_after_reports: self.review_after_reports,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_records: 10_000,
            default_item_status: ModerationStatus::Approved,
            unknown_items: UnknownItems::Accept,
            review_after_reports: 3,
        }
    }
}

/// Policy for events about items that are not in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownItems {
    /// Store the event; the item is learned from once its catalog record arrives (event streams
    /// often run ahead of catalog syncs).
    Accept,
    /// Refuse the batch with `422` naming the events.
    Reject,
}

/// Longest an ingest or feed request may take unless configured (`[server] request_timeout_ms`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The durable store.
    pub store: Arc<Store>,
    /// Ingest limits and policies.
    pub ingest: Arc<IngestConfig>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Serves the feed endpoints (without one they answer `503`).
    pub engine: Option<Arc<Engine>>,
    /// API keys and their roles.
    pub auth: Arc<AuthConfig>,
    /// The keys' request budgets.
    limits: Arc<auth::RateLimits>,
    /// Longest a request may take before it is answered `503`.
    request_timeout: Duration,
    /// Set once shutdown begins: readiness fails so that balancers stop sending traffic.
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// State over `store` with the process-wide metrics recorder.
    pub fn new(store: Arc<Store>, ingest: IngestConfig) -> AppState {
        AppState {
            store,
            ingest: Arc::new(ingest),
            metrics: metrics_layer::recorder(),
            engine: None,
            auth: Arc::default(),
            limits: Arc::new(auth::RateLimits::new(&AuthConfig::default())),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            draining: Arc::default(),
        }
    }

    /// The same state requiring the API keys of `auth`, each within its request rate.
    pub fn with_auth(self, auth: AuthConfig) -> AppState {
        let limits = Arc::new(auth::RateLimits::new(&auth));
        AppState { auth: Arc::new(auth), limits, ..self }
    }

    /// The same state answering `503` to requests that take longer than `timeout`.
    pub fn with_request_timeout(self, timeout: Duration) -> AppState {
        AppState { request_timeout: timeout, ..self }
    }

    /// The same state serving feeds from `engine`.
    pub fn with_engine(self, engine: Arc<Engine>) -> AppState {
        AppState { engine: Some(engine), ..self }
    }
}

/// The application's routes, each group behind the role it needs.
pub fn router(state: AppState) -> Router {
    let body_limit = state.ingest.max_body_bytes;
    let timeout = TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, state.request_timeout);
    let ingest = Router::new()
        .route("/v1/items", post(ingest::items))
        .route("/v1/users", post(ingest::users))
        .route("/v1/events", post(ingest::events))
        .route("/v1/users/{user_id}/personalization", put(controls::personalization))
        .route("/v1/users/{user_id}/tags/{tag}", delete(controls::delete_tag))
        .route("/v1/users/{user_id}/not-interested", post(controls::not_interested))
        .route("/v1/users/{user_id}/reset", post(controls::reset))
        .layer(DefaultBodyLimit::max(body_limit));
    let read = Router::new()
        .route("/v1/recommend", get(feed::recommend))
        .route("/v1/similar", get(feed::similar))
        .route("/v1/explain", get(feed::explain))
        .route("/v1/experiments", get(feed::experiments))
        .route("/v1/users/{user_id}/tags", get(controls::tags))
        .route("/v1/charts", get(charts::chart));
    let admin = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/candidates", get(feed::candidates))
        .route("/v1/charts/excluded", get(charts::excluded))
        .route("/v1/moderation/items/{item_id}", post(moderation::item))
        .route("/v1/moderation/creators/{creator_id}", post(moderation::creator))
        .route("/v1/moderation/audit", get(moderation::audit))
        .route("/v1/moderation/queue", get(moderation::queue))
        .route("/v1/admin/overview", get(dashboard::overview))
        .route("/v1/admin/users", get(dashboard::users))
        .route("/v1/admin/models", get(dashboard::models))
        .route("/v1/admin/online", get(online::status).post(online::switch));
    // Admin routes (a reload, the candidates of every source) may take long; the rest is cut.
    Router::new()
        .merge(ingest.route_layer(from_fn_with_state(state.clone(), auth::ingest)).layer(timeout))
        .merge(read.route_layer(from_fn_with_state(state.clone(), auth::read)).layer(timeout))
        .merge(admin.route_layer(from_fn_with_state(state.clone(), auth::admin)))
        .route("/livez", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/healthz", get(health::ready))
        .route("/transparency", get(transparency::page))
        .route("/", get(dashboard::home))
        .route("/dashboard", get(dashboard::index))
        .route("/charts", get(charts::page))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/style.css", get(dashboard::style))
        .route("/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, then fails readiness and
/// finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = state.draining.clone();
    let shutdown = async move {
        shutdown.await;
        draining.store(true, Ordering::Release);
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    state.metrics.render()
}

/// The API's OpenAPI 3.1 description.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Rebuilds the serving snapshot now (new catalog items, a model copied in by hand).
async fn reload(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, HttpError> {
    let engine = state.engine.as_ref().ok_or_else(|| {
        HttpError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "this server does not serve feeds")
    })?;
    engine
        .reload()
        .await
        .map_err(|err| HttpError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    Ok(axum::Json(serde_json::json!({"model_version": engine.snapshot().models.version})))
}
