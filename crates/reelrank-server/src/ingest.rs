//! `POST /v1/items`, `/v1/users`, `/v1/events`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use reelrank_core::{Event, Item, User};
use reelrank_ingest::{decode_batch, BatchError, RecordError};
use reelrank_store::{Appended, BatchKey};
use serde::Serialize;

use crate::{AppState, HttpError, UnknownItems};

/// Answer to a successful ingest.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Accepted {
    /// Records in the batch.
    accepted: usize,
    /// Records written (for events: not duplicates of stored `event_id`s).
    inserted: u64,
    /// Events skipped as already stored.
    duplicates: u64,
    /// Users created by their first event.
    users_created: u64,
    /// The batch was posted before under its `Idempotency-Key`: nothing was written, and the
    /// counts are the first post's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
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
    Ok(Json(Accepted { accepted: items.len(), inserted, ..Accepted::default() }))
}

pub(crate) async fn users(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, HttpError> {
    let users: Vec<User> = decode_batch(&body(&state, raw)?, state.ingest.max_batch_records)?;
    let inserted = state.store.upsert_users(&users).await?;
    record("users", users.len());
    Ok(Json(Accepted { accepted: users.len(), inserted, ..Accepted::default() }))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, HttpError> {
    let events: Vec<Event> = decode_batch(&body(&state, raw)?, state.ingest.max_batch_records)?;
    let key = idempotency_key(&headers)?;
    if state.ingest.unknown_items == UnknownItems::Reject {
        reject_unknown_items(&state, &events).await?;
    }
    let digest = key.map(|_| batch_digest(&events));
    let batch = key.zip(digest.as_deref()).map(|(key, digest)| BatchKey { key, digest });
    let (appended, reviewed) =
        reelrank_ingest::append_events(&state.store, &events, state.ingest.arrival(), batch).await?;
    let (outcome, replayed) = match appended {
        Appended::Written(outcome) => (outcome, false),
        Appended::Replayed(outcome) => (outcome, true),
        Appended::KeyReused => {
            let message =
                format!("{IDEMPOTENCY_KEY} `{}` was used for a different batch", key.unwrap_or_default());
            return Err(HttpError::new(StatusCode::CONFLICT, message));
        }
    };
    record("events", if replayed { 0 } else { outcome.inserted as usize });
    for item_id in reviewed {
        tracing::info!(item_id, "reported by users: back to review");
    }
    if let Some(engine) = &state.engine {
        // Acknowledged events shape the very next feed (a `not_interested` above all). They are
        // stored whatever happens here: on a failure the tail applies them on its next tick.
        if let Err(err) = engine.apply_written().await {
            tracing::warn!(error = %err, "applying acknowledged events failed");
        }
    }
    Ok(Json(Accepted {
        accepted: events.len(),
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
        users_created: outcome.users_created,
        replayed,
    }))
}

/// The header naming a batch, so that a retry of it is written once even without event ids.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The batch's idempotency key, when the client sent one: 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        let message = format!("header `{IDEMPOTENCY_KEY}`: expected 1 to 200 visible ASCII characters");
        return Err(HttpError::new(StatusCode::BAD_REQUEST, message));
    }
    Ok(Some(key))
}

/// A digest of the decoded batch (not of its bytes, which a client may format differently on a
/// retry): FNV-1a, stable across releases, as replicas of several versions must agree.
fn batch_digest(events: &[Event]) -> String {
    let canonical = serde_json::to_string(events).expect("events serialize");
    format!("{:016x}", reelrank_features::feature_key("events", &canonical))
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
