//! `POST /v1/items`, `/v1/users`, `/v1/events`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use reelrank_core::{Event, Item, User};
use reelrank_ingest::{decode_batch, BatchError, RecordError};
use serde::Serialize;

use crate::{AppState, HttpError, UnknownItems};

/// Answer to a successful ingest.
#[derive(Debug, Serialize)]
pub(crate) struct Accepted {
    /// Records in the batch.
    accepted: usize,
    /// Records written (for events: not duplicates of stored `event_id`s).
    inserted: u64,
    /// Events skipped as already stored.
    duplicates: u64,
    /// Users created by their first event.
    users_created: u64,
}

fn body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, HttpError> {
    body.map_err(|rejection| {
        let message = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("body larger than {} bytes", state.ingest.max_body_bytes)
            }
            _ => rejection.body_text(),
        };
        HttpError::new(rejection.status(), message)
    })
}

fn record(kind: &'static str, n: usize) {
    metrics::counter!("reelrank_ingest_records_total", "kind" => kind).increment(n as u64);
}

pub(crate) async fn items(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, HttpError> {
    let items: Vec<Item> = decode_batch(&body(&state, raw)?, state.ingest.max_batch_records)?;
    let inserted = state.store.upsert_items(&items, state.ingest.default_item_status).await?;
    record("items", items.len());
    Ok(Json(Accepted { accepted: items.len(), inserted, duplicates: 0, users_created: 0 }))
}

pub(crate) async fn users(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, HttpError> {
    let users: Vec<User> = decode_batch(&body(&state, raw)?, state.ingest.max_batch_records)?;
    let inserted = state.store.upsert_users(&users).await?;
    record("users", users.len());
    Ok(Json(Accepted { accepted: users.len(), inserted, duplicates: 0, users_created: 0 }))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, HttpError> {
    let events: Vec<Event> = decode_batch(&body(&state, raw)?, state.ingest.max_batch_records)?;
    if state.ingest.unknown_items == UnknownItems::Reject {
        reject_unknown_items(&state, &events).await?;
    }
    let (outcome, reviewed) =
        reelrank_ingest::append_events(&state.store, &events, state.ingest.arrival()).await?;
    record("events", outcome.inserted as usize);
    for item_id in reviewed {
        tracing::info!(item_id, "reported by users: back to review");
    }
    if let Some(engine) = &state.engine {
        // Acknowledged events shape the very next feed (a `not_interested` above all). They are
        // stored whatever happens here: on a failure the tail applies them on its next tick.
        if let Err(err) = engine.catch_up().await {
            tracing::warn!(error = %err, "applying acknowledged events failed");
        }
    }
    Ok(Json(Accepted {
        accepted: events.len(),
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
        users_created: outcome.users_created,
    }))
}

async fn reject_unknown_items(state: &AppState, events: &[Event]) -> Result<(), HttpError> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.item_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let missing = state.store.missing_items(&ids).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let errors: Vec<RecordError> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| missing.contains(&e.item_id))
        .take(reelrank_ingest::MAX_REPORTED_ERRORS)
        .map(|(index, e)| RecordError {
            index,
            field: "item_id".into(),
            message: format!("item `{}` is not in the catalog", e.item_id),
        })
        .collect();
    Err(BatchError::Invalid(errors).into())
}
