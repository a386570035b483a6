//! The dashboard: pages served by the binary itself (HTML, CSS and JavaScript embedded at build
//! time, no build step) that read the same API a client reads, plus the two answers only the
//! dashboard needs: an overview of the platform and a search of users by id.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};
use axum::Json;
use reelrank_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::feed::{bad_query, engine};
use crate::metrics_layer::FeedLatencies;
use crate::{AppState, HttpError};

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// `GET /`: to the dashboard.
pub(crate) async fn home() -> Redirect {
    Redirect::to("/dashboard")
}

/// `GET /dashboard`.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// `GET /dashboard/app.js`.
pub(crate) async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

/// `GET /dashboard/style.css`.
pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// When a model was trained (its directory last written), if it is loaded.
#[derive(Debug, Serialize)]
pub(crate) struct Trained {
    trained_at: Option<Timestamp>,
}

/// Loaded models.
#[derive(Debug, Serialize)]
pub(crate) struct LoadedModels {
    retrieval: Option<Trained>,
    ranking: Option<Trained>,
}

/// Feed latency over the latest requests.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    requests: usize,
    p50_ms: f32,
    p95_ms: f32,
    p99_ms: f32,
}

/// Answer of `GET /v1/admin/overview`.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    items: u64,
    users: u64,
    events: u64,
    /// Events applied per second since the previous overview (`null` on the first, or after a
    /// minute without one).
    events_per_second: Option<f64>,
    model_version: String,
    models: LoadedModels,
    latency: Latency,
    /// The latest event's time.
    log_clock: Timestamp,
}

fn trained(dir: Option<&std::path::Path>) -> Trained {
    let written = dir.and_then(|d| std::fs::metadata(d).ok()).and_then(|m| m.modified().ok());
    let millis =
        written.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64);
    Trained { trained_at: millis.map(Timestamp) }
}

/// `GET /v1/admin/overview` (admin).
pub(crate) async fn overview(State(state): State<AppState>) -> Result<Json<Overview>, HttpError> {
    static PREVIOUS: Mutex<Option<(Instant, i64)>> = Mutex::new(None);
    let engine = engine(&state)?;
    let counts = state.store.counts().await?;
    let snapshot = engine.snapshot();
    let applied = snapshot.applied_seq();
    let events_per_second = {
        let mut previous = PREVIOUS.lock().expect("overview lock");
        let rate = previous
            .filter(|(at, _)| at.elapsed().as_secs_f64() < 60.0)
            .map(|(at, seq)| (applied - seq).max(0) as f64 / at.elapsed().as_secs_f64().max(1e-3));
        *previous = Some((Instant::now(), applied));
        rate
    };
    let (requests, [p50_ms, p95_ms, p99_ms]) = FeedLatencies::percentiles();
    let models = &snapshot.models;
    Ok(Json(Overview {
        items: counts.items,
        users: counts.users,
        events: counts.events,
        events_per_second,
        model_version: models.version.clone(),
        models: LoadedModels {
            retrieval: models.retrieval.as_ref().map(|_| trained(engine.models.retrieval_dir.as_deref())),
            ranking: models.ranker.as_ref().map(|_| trained(engine.models.ranking_dir.as_deref())),
        },
        latency: Latency { requests, p50_ms, p95_ms, p99_ms },
        log_clock: snapshot.log_clock(),
    }))
}

/// Query of `GET /v1/admin/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserSearch {
    /// The start of the ids wanted (default: any).
    prefix: Option<String>,
    /// Users at most (default 20, at most 200).
    limit: Option<u32>,
}

/// One user found.
#[derive(Debug, Serialize)]
pub(crate) struct FoundUser {
    user_id: String,
    region: Option<String>,
    birth_year: Option<i32>,
    personalised: bool,
}

/// `GET /v1/admin/users` (admin): users whose id starts with `prefix`, by id.
pub(crate) async fn users(
    State(state): State<AppState>,
    query: Result<Query<UserSearch>, QueryRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    let limit = query.limit.unwrap_or(20).clamp(1, 200);
    let found = state.store.users_with_prefix(query.prefix.as_deref().unwrap_or(""), limit).await?;
    let users: Vec<FoundUser> = found
        .into_iter()
        .map(|u| FoundUser {
            personalised: u.personalized(),
            user_id: u.user_id,
            region: u.region,
            birth_year: u.birth_year,
        })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// A model's training log (`training.json`, written beside the model by `reelrank train`), if it
/// has one.
fn training_log(dir: Option<&std::path::Path>) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir?.join("training.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// `GET /v1/admin/models` (admin): the training logs of the models on disk: per epoch, the loss
/// and the validation metrics (Recall@20 and NDCG@20 of the two-tower model on held-out
/// positives, each head's AUC of the Wide&Deep model on held-out impressions).
pub(crate) async fn models(State(state): State<AppState>) -> Result<Json<serde_json::Value>, HttpError> {
    let engine = engine(&state)?;
    Ok(Json(serde_json::json!({
        "retrieval": training_log(engine.models.retrieval_dir.as_deref()),
        "ranking": training_log(engine.models.ranking_dir.as_deref()),
    })))
}
