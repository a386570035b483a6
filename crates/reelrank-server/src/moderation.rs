//! The moderation API (admin): decisions on items and creators, the review queue and the audit
//! log. A decision applies to this replica's feeds, similar items and charts before it is
//! answered, and to other replicas' on their next tail tick.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use reelrank_core::{CreatorDecision, Item, ItemDecision, Validate};
use reelrank_ingest::RecordError;
use reelrank_store::{AuditEntry, Moderated};
use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::error::json_body;
use crate::feed::bad_query;
use crate::{AppState, HttpError};

/// A decision's body, checked: a clear error naming the field, nothing written otherwise.
fn checked<T: Validate>(body: Result<Json<T>, JsonRejection>) -> Result<T, HttpError> {
    let decision = json_body(body)?;
    let errors = decision.validate();
    if !errors.is_empty() {
        let errors = errors
            .into_iter()
            .map(|e| RecordError { index: 0, field: e.field, message: e.message })
            .collect();
        return Err(HttpError::invalid("the decision is invalid", errors));
    }
    Ok(decision)
}

/// Applies what was just written to this replica's serving state.
async fn apply_now(state: &AppState) {
    if let Some(engine) = &state.engine {
        if let Err(err) = engine.apply_written().await {
            tracing::warn!(error = %err, "applying a moderation decision failed; the tail retries");
        }
    }
}

/// `POST /v1/moderation/items/{item_id}`.
pub(crate) async fn item(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(item_id): Path<String>,
    body: Result<Json<ItemDecision>, JsonRejection>,
) -> Result<Json<AuditEntry>, HttpError> {
    let decision = checked(body)?;
    match state.store.moderate_item(&item_id, &decision, &actor).await? {
        Moderated::Done(entry) => {
            tracing::info!(item_id, actor, to = decision.status.as_str(), "moderation decision");
            apply_now(&state).await;
            Ok(Json(entry))
        }
        Moderated::NotFound => Err(HttpError::new(StatusCode::NOT_FOUND, format!("no item `{item_id}`"))),
        Moderated::Refused { from } => Err(HttpError::new(
            StatusCode::CONFLICT,
            format!(
                "item `{item_id}` is {}: review does not lead from there to {} \
                 (pending -> approved|rejected, approved -> removed|pending, rejected|removed -> pending|approved)",
                from.as_str(),
                decision.status.as_str()
            ),
        )),
    }
}

/// `POST /v1/moderation/creators/{creator_id}`.
pub(crate) async fn creator(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(creator_id): Path<String>,
    body: Result<Json<CreatorDecision>, JsonRejection>,
) -> Result<Json<AuditEntry>, HttpError> {
    let decision = checked(body)?;
    let entry = state.store.moderate_creator(&creator_id, &decision, &actor).await?;
    tracing::info!(creator_id, actor, blocked = decision.blocked, "moderation decision");
    apply_now(&state).await;
    Ok(Json(entry))
}

/// Query of `GET /v1/moderation/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Entries after this one (default: from the first), oldest first.
    after: Option<i64>,
    /// The latest entries instead, newest first.
    #[serde(default)]
    latest: bool,
    /// Entries at most (default 100, at most 1000).
    limit: Option<u32>,
}

/// Answer of `GET /v1/moderation/audit`.
#[derive(Debug, Serialize)]
pub(crate) struct Audit {
    entries: Vec<AuditEntry>,
}

fn limit(asked: Option<u32>) -> Result<u32, HttpError> {
    match asked.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        n => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("parameter `limit`: expected 1 to 1000, got {n}"),
        )),
    }
}

/// `GET /v1/moderation/audit`.
pub(crate) async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Audit>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    let limit = limit(query.limit)?;
    let entries = match (query.latest, query.after) {
        (false, after) => state.store.audit(after.unwrap_or(0), limit).await?,
        (true, None) => state.store.audit_latest(limit).await?,
        (true, Some(_)) => {
            let message = "parameter `after`: pages from the oldest entry; `latest` reads the newest";
            return Err(HttpError::new(StatusCode::BAD_REQUEST, message));
        }
    };
    Ok(Json(Audit { entries }))
}

/// Query of `GET /v1/moderation/queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueQuery {
    /// Items at most (default 100, at most 1000).
    limit: Option<u32>,
}

/// Answer of `GET /v1/moderation/queue`.
#[derive(Debug, Serialize)]
pub(crate) struct Queue {
    items: Vec<Item>,
}

/// `GET /v1/moderation/queue`: items waiting for review, longest waiting first.
pub(crate) async fn queue(
    State(state): State<AppState>,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Json<Queue>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    Ok(Json(Queue { items: state.store.review_queue(limit(query.limit)?).await? }))
}
