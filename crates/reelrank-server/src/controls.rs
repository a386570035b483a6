//! A user's control over their feed (the platform calls these on the user's behalf):
//! personalisation on or off, the interest tags the engine associates with them and the deletion
//! of any, "not interested" in an item, a creator or a tag, and a reset of their profile. Each
//! is stored before it is answered and shapes the user's very next feed on every replica (feeds
//! read the user's record on every request).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use reelrank_core::{Event, EventKind, Timestamp, UserControls};
use serde::{Deserialize, Serialize};

use crate::error::json_body;
use crate::feed::{engine, user_record};
use crate::{AppState, HttpError};

/// Body of `PUT /v1/users/{user_id}/personalization`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Personalization {
    enabled: bool,
}

/// `PUT /v1/users/{user_id}/personalization`: off gives a non-personalised feed (trending and
/// fresh items, still filtered) from the next request on.
pub(crate) async fn personalization(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    request: Result<Json<Personalization>, JsonRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Personalization { enabled } = json_body(request)?;
    state.store.set_personalization(&user_id, enabled).await?;
    Ok(Json(serde_json::json!({"user_id": user_id, "personalization": enabled})))
}

/// One interest tag.
#[derive(Debug, Serialize)]
pub(crate) struct InterestTag {
    tag: String,
    /// Relative strength, the strongest 1.
    weight: f32,
    /// The user's latest positives carrying it.
    items: usize,
}

/// Answer of `GET /v1/users/{user_id}/tags`.
#[derive(Debug, Serialize)]
pub(crate) struct Tags {
    user_id: String,
    tags: Vec<InterestTag>,
    /// Tags the user deleted: not listed, not used.
    hidden: Vec<String>,
}

/// `GET /v1/users/{user_id}/tags`: the interest tags the engine associates with the user now.
pub(crate) async fn tags(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Tags>, HttpError> {
    let engine = engine(&state)?;
    let user = user_record(&state, engine, &user_id).await?;
    let shared = engine.shared_user(&user_id, user.as_ref()).await?;
    let snapshot = engine.snapshot();
    let live = snapshot.live().read().expect("live state lock");
    let shared = shared.map(|shared| shared.over(&live.catalog));
    let activity = live.behaviour(&user_id, shared.as_ref()).user;
    let listed = match &user {
        Some(user) => activity.without_hidden(user, &live.catalog).interest_tags(&live.catalog),
        None => activity.interest_tags(&live.catalog),
    };
    let hidden = user.map(|u| u.controls.hidden_tags).unwrap_or_default();
    let tags = listed
        .into_iter()
        .filter(|(tag, _, _)| !hidden.contains(tag))
        .take(50)
        .map(|(tag, weight, items)| InterestTag { tag, weight, items })
        .collect();
    Ok(Json(Tags { user_id, tags, hidden }))
}

/// Answer of the control changes: the user's controls as stored.
#[derive(Debug, Serialize)]
pub(crate) struct Controls {
    user_id: String,
    #[serde(flatten)]
    controls: UserControls,
}

/// Adds `value` to `list` once.
fn add(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
    }
}

/// `DELETE /v1/users/{user_id}/tags/{tag}`: the tag is no longer used for the user: items
/// carrying it leave their feed, and past positives on such items no longer shape it.
pub(crate) async fn delete_tag(
    State(state): State<AppState>,
    Path((user_id, tag)): Path<(String, String)>,
) -> Result<Json<Controls>, HttpError> {
    let controls = state.store.change_controls(&user_id, |c| add(&mut c.hidden_tags, &tag)).await?;
    Ok(Json(Controls { user_id, controls }))
}

/// Body of `POST /v1/users/{user_id}/not-interested`: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotInterested {
    item_id: Option<String>,
    creator_id: Option<String>,
    tag: Option<String>,
}

/// `POST /v1/users/{user_id}/not-interested`: an item (a `not_interested` event, as a client
/// would post it), a creator (none of their items from now on) or a tag (as deleting it).
pub(crate) async fn not_interested(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    request: Result<Json<NotInterested>, JsonRejection>,
) -> Result<Json<Controls>, HttpError> {
    let controls = match json_body(request)? {
        NotInterested { item_id: Some(item_id), creator_id: None, tag: None } => {
            if state.store.item(&item_id).await?.is_none() {
                return Err(HttpError::new(StatusCode::NOT_FOUND, format!("no item `{item_id}`")));
            }
            state
                .store
                .append_events(&[Event::new(&user_id, item_id, EventKind::NotInterested, Timestamp::now())])
                .await?;
            if let Some(engine) = &state.engine {
                if let Err(err) = engine.apply_written().await {
                    tracing::warn!(error = %err, "applying a not_interested mark failed; the tail retries");
                }
            }
            state.store.user(&user_id).await?.map(|u| u.controls).unwrap_or_default()
        }
        NotInterested { item_id: None, creator_id: Some(creator), tag: None } => {
            state.store.change_controls(&user_id, |c| add(&mut c.blocked_creators, &creator)).await?
        }
        NotInterested { item_id: None, creator_id: None, tag: Some(tag) } => {
            state.store.change_controls(&user_id, |c| add(&mut c.hidden_tags, &tag)).await?
        }
        _ => {
            return Err(HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give exactly one of `item_id`, `creator_id` and `tag`",
            ))
        }
    };
    Ok(Json(Controls { user_id, controls }))
}

/// `POST /v1/users/{user_id}/reset`: what the user did until now no longer shapes their feed (what
/// they saw, marked, followed and liked, on every replica); their explicit controls stay.
pub(crate) async fn reset(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Controls>, HttpError> {
    let now = Timestamp::now();
    let controls = state.store.change_controls(&user_id, |c| c.reset_at = Some(now)).await?;
    if let (Some(engine), Some(user)) = (&state.engine, state.store.user(&user_id).await?) {
        engine.apply_reset(&user);
        engine.reset_shared(&user).await;
    }
    Ok(Json(Controls { user_id, controls }))
}
