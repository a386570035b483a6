//! `GET /v1/recommend`, `/v1/similar`, `/v1/explain`, `/v1/admin/candidates`: parse, run the pipeline on the engine's
//! current snapshot, log what was served, convert.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use reelrank_core::{Event, EventContext, EventKind, Timestamp, User, Validate};
use reelrank_features::feature_key;
use reelrank_models::HeadValue;
use reelrank_serving::{
    candidates as propose, explain as explain_item, recommend as run_pipeline, Catalog, Filter, FilterInput,
    ItemIndex, Request, Source, UserActivity, VariantStats,
};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::{AppState, HttpError};

/// Most items one request may ask for.
pub const MAX_ITEMS: usize = 200;

/// Query of `GET /v1/recommend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecommendQuery {
    user_id: String,
    /// Items wanted (default 20).
    n: Option<usize>,
    /// Comma-separated item ids not to return.
    exclude: Option<String>,
    /// Context: surface, device class and local hour.
    page: Option<String>,
    device: Option<String>,
    hour: Option<u8>,
    /// Adds each item's head probabilities and weights (for operators).
    explain: Option<bool>,
}

/// One item of a feed.
#[derive(Debug, Serialize)]
pub(crate) struct FeedItem {
    item_id: String,
    title: String,
    category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    creator_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
    score: f32,
    source: &'static str,
    reasons: Vec<String>,
    explored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    heads: Option<Vec<HeadValue>>,
    /// With `explain=true`: every source that proposed it (`source` is the most specific).
    #[serde(skip_serializing_if = "Option::is_none")]
    proposed_by: Option<Vec<&'static str>>,
}

/// Answer of `GET /v1/recommend`.
#[derive(Debug, Serialize)]
pub(crate) struct Feed {
    request_id: String,
    model_version: String,
    /// The experiment variant the user is in (`null`: no experiment).
    variant: Option<String>,
    personalised: bool,
    items: Vec<FeedItem>,
    /// With `explain=true`: candidates per source, and candidates each filter removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Candidates>,
    /// Minor mode's daily watch cap is reached: no items until tomorrow (UTC).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    watch_capped: bool,
}

/// How a feed's candidates were found and thinned.
#[derive(Debug, Serialize)]
pub(crate) struct Candidates {
    proposed: BTreeMap<&'static str, usize>,
    filtered: BTreeMap<&'static str, usize>,
}

pub(crate) async fn recommend(
    State(state): State<AppState>,
    query: Result<Query<RecommendQuery>, QueryRejection>,
) -> Result<Json<Feed>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    check_user_id(&query.user_id)?;
    let engine = engine(&state)?;
    let n = query.n.unwrap_or(20);
    if n == 0 || n > MAX_ITEMS {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, format!("n: must be 1 to {MAX_ITEMS}, got {n}")));
    }
    if query.hour.is_some_and(|h| h > 23) {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, "hour: must be 0 to 23"));
    }
    let user = user_record(&state, engine, &query.user_id).await?;
    let exclude: Vec<String> = query.exclude.as_deref().map_or_else(Vec::new, |list| {
        list.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect()
    });
    let context = EventContext { device: query.device, page: query.page, hour: query.hour };
    let has_context = context.device.is_some() || context.page.is_some() || context.hour.is_some();
    let snapshot = engine.snapshot();
    let (variant, models, pipeline) = engine.route(&snapshot, &query.user_id);
    let variant = variant.map(|v| v.name.clone());
    let request_id = new_request_id(variant.as_deref());
    let now = Timestamp::now();
    let request = Request {
        request_id: &request_id,
        user_id: &query.user_id,
        user: user.as_ref(),
        n,
        exclude: &exclude,
        context: has_context.then_some(&context),
        now,
    };
    let shared = engine.shared_user(&query.user_id, user.as_ref()).await?;
    let (catalog, feed) = {
        let live = snapshot.live().read().expect("live state lock");
        let shared = shared.map(|user| user.over(&live.catalog));
        let behaviour = live.behaviour(&query.user_id, shared.as_ref());
        (live.catalog.clone(), run_pipeline(&live.catalog, behaviour, models, pipeline, &request))
    };
    let served: Vec<_> = feed.items.iter().map(|r| r.index).collect();
    engine.mark_served(&snapshot, &catalog, &query.user_id, &served, now).await;
    let impressions = served
        .iter()
        .map(|&index| {
            let item_id = catalog.item(index).item_id.clone();
            Event {
                event_id: Some(format!("{request_id}:{item_id}")),
                request_id: Some(request_id.clone()),
                variant: variant.clone(),
                context: has_context.then(|| context.clone()),
                ..Event::new(&query.user_id, item_id, EventKind::Impression, now)
            }
        })
        .collect();
    engine.log_impressions(impressions);
    metrics::counter!("reelrank_recommendations_total").increment(1);
    let operators = query.explain.unwrap_or(false);
    let candidates = operators.then(|| Candidates {
        proposed: feed.proposed.iter().map(|(source, &n)| (source.as_str(), n)).collect(),
        filtered: feed.filtered.iter().map(|(filter, &n)| (filter.as_str(), n)).collect(),
    });
    let items = feed
        .items
        .into_iter()
        .map(|r| {
            let item = catalog.item(r.index);
            FeedItem {
                item_id: item.item_id.clone(),
                title: item.title.clone(),
                category: item.category.as_str().to_owned(),
                creator_id: item.creator_id.clone(),
                duration_s: item.duration_s,
                score: r.score,
                source: r.source.as_str(),
                reasons: r.reasons,
                explored: r.explored,
                heads: r.value.filter(|_| operators).map(|v| v.heads),
                proposed_by: operators.then(|| r.proposed_by.iter().map(Source::as_str).collect()),
            }
        })
        .collect();
    Ok(Json(Feed {
        request_id,
        model_version: models.version.clone(),
        variant,
        personalised: feed.personalised,
        items,
        candidates,
        watch_capped: feed.watch_capped,
    }))
}

/// Query of `GET /v1/similar`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarQuery {
    item_id: String,
    /// Items wanted (default 10).
    n: Option<usize>,
}

/// One similar item.
#[derive(Debug, Serialize)]
pub(crate) struct SimilarItem {
    item_id: String,
    title: String,
    category: String,
    score: f32,
}

/// Answer of `GET /v1/similar`.
#[derive(Debug, Serialize)]
pub(crate) struct Similar {
    item_id: String,
    model_version: String,
    items: Vec<SimilarItem>,
}

pub(crate) async fn similar(
    State(state): State<AppState>,
    query: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<Similar>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    let n = query.n.unwrap_or(10).clamp(1, MAX_ITEMS);
    let engine = engine(&state)?;
    let snapshot = engine.snapshot();
    let retrieval = snapshot.models.retrieval.as_ref().ok_or_else(|| {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "no retrieval model: run `reelrank train retrieval`")
    })?;
    let catalog = snapshot.catalog();
    let index = item_index(&catalog, &query.item_id)?;
    let now = Timestamp::now();
    // Only what any feed may show: ask for a few more to make up for the filtered.
    let (activity, exclude) = (UserActivity::default(), Default::default());
    let anyone = FilterInput { user_id: "", user: None, activity: &activity, exclude: &exclude, now };
    let filters = &engine.pipeline().filters;
    let items = retrieval
        .similar(catalog.item(index), n * 2, now)
        .into_iter()
        .filter_map(|(key, score)| catalog.index_of_key(key).map(|i| (i, score)))
        .filter(|&(i, _)| {
            let item = catalog.item(i);
            ![Filter::Moderation, Filter::Licence].iter().any(|f| f.rejects(item, i, &anyone, filters))
        })
        .take(n)
        .map(|(i, score)| {
            let item = catalog.item(i);
            SimilarItem {
                item_id: item.item_id.clone(),
                title: item.title.clone(),
                category: item.category.as_str().to_owned(),
                score,
            }
        })
        .collect();
    Ok(Json(Similar { item_id: query.item_id, model_version: snapshot.models.version.clone(), items }))
}

/// Query of `GET /v1/explain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    user_id: String,
    item_id: String,
}

/// Answer of `GET /v1/explain`.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation {
    user_id: String,
    item_id: String,
    model_version: String,
    /// The source that would propose the item now (`null`: none would).
    source: Option<&'static str>,
    /// Every filter that would remove it.
    filtered_by: Vec<&'static str>,
    reasons: Vec<String>,
    /// `Σ P(action) × weight` and its parts, when a ranking model is loaded.
    score: Option<f32>,
    heads: Option<Vec<HeadValue>>,
    /// The item's decayed showings and smoothed rates of play and each action, as the ranking
    /// features read them now, when a ranking model is loaded.
    item_engagement: Option<BTreeMap<&'static str, f32>>,
}

pub(crate) async fn explain(
    State(state): State<AppState>,
    query: Result<Query<ExplainQuery>, QueryRejection>,
) -> Result<Json<Explanation>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    check_user_id(&query.user_id)?;
    let engine = engine(&state)?;
    let user = user_record(&state, engine, &query.user_id).await?;
    let snapshot = engine.snapshot();
    let (_, models, pipeline) = engine.route(&snapshot, &query.user_id);
    let request = probe("explain", &query.user_id, user.as_ref());
    let shared = engine.shared_user(&query.user_id, user.as_ref()).await?;
    let explanation = {
        let live = snapshot.live().read().expect("live state lock");
        let index = item_index(&live.catalog, &query.item_id)?;
        let shared = shared.map(|user| user.over(&live.catalog));
        let behaviour = live.behaviour(&query.user_id, shared.as_ref());
        explain_item(&live.catalog, behaviour, models, pipeline, &request, index)
    };
    Ok(Json(Explanation {
        user_id: query.user_id,
        item_id: query.item_id,
        model_version: models.version.clone(),
        source: explanation.source.map(|s| s.as_str()),
        filtered_by: explanation.filtered_by.into_iter().map(Filter::as_str).collect(),
        reasons: explanation.reasons,
        score: explanation.value.as_ref().map(|v| v.score),
        heads: explanation.value.map(|v| v.heads),
        item_engagement: explanation.engagement.map(|e| e.into_iter().collect()),
    }))
}

/// Query of `GET /v1/admin/candidates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CandidatesQuery {
    user_id: String,
}

/// One candidate in `GET /v1/admin/candidates`.
#[derive(Debug, Serialize)]
pub(crate) struct ProposedItem {
    item_id: String,
    category: String,
    /// The most specific source that proposed it.
    source: &'static str,
    /// Every source that proposed it.
    proposed_by: Vec<&'static str>,
    /// The first filter that removes it (`null`: it goes on to ranking).
    filtered_by: Option<&'static str>,
}

/// Answer of `GET /v1/admin/candidates`.
#[derive(Debug, Serialize)]
pub(crate) struct Proposed {
    user_id: String,
    model_version: String,
    personalised: bool,
    candidates: Vec<ProposedItem>,
}

/// `GET /v1/admin/candidates`: what each source retrieves for a user now, before ranking (which
/// a feed shows only a few of). Nothing is logged or marked as served.
pub(crate) async fn candidates(
    State(state): State<AppState>,
    query: Result<Query<CandidatesQuery>, QueryRejection>,
) -> Result<Json<Proposed>, HttpError> {
    let Query(query) = query.map_err(bad_query)?;
    check_user_id(&query.user_id)?;
    let engine = engine(&state)?;
    let user = user_record(&state, engine, &query.user_id).await?;
    let snapshot = engine.snapshot();
    let (_, models, pipeline) = engine.route(&snapshot, &query.user_id);
    let request = probe("candidates", &query.user_id, user.as_ref());
    let shared = engine.shared_user(&query.user_id, user.as_ref()).await?;
    let candidates = {
        let live = snapshot.live().read().expect("live state lock");
        let shared = shared.map(|user| user.over(&live.catalog));
        let behaviour = live.behaviour(&query.user_id, shared.as_ref());
        propose(&live.catalog, behaviour, models, pipeline, &request)
            .into_iter()
            .map(|(candidate, filter)| {
                let item = live.catalog.item(candidate.index);
                ProposedItem {
                    item_id: item.item_id.clone(),
                    category: item.category.as_str().to_owned(),
                    source: candidate.source.as_str(),
                    proposed_by: candidate.proposed_by.iter().map(Source::as_str).collect(),
                    filtered_by: filter.map(Filter::as_str),
                }
            })
            .collect()
    };
    Ok(Json(Proposed {
        personalised: request.personalised(),
        user_id: query.user_id,
        model_version: models.version.clone(),
        candidates,
    }))
}

/// A request that asks about `user_id`'s feed now without serving one (nothing excluded, no
/// context), named `request_id`.
fn probe<'a>(request_id: &'a str, user_id: &'a str, user: Option<&'a User>) -> Request<'a> {
    Request { request_id, user_id, user, n: 1, exclude: &[], context: None, now: Timestamp::now() }
}

/// `user_id`'s record, their profile reset applied to this replica first when it has not seen it.
pub(crate) async fn user_record(
    state: &AppState,
    engine: &Engine,
    user_id: &str,
) -> Result<Option<User>, HttpError> {
    let user = state.store.user(user_id).await?;
    if let Some(user) = &user {
        engine.apply_reset(user);
    }
    Ok(user)
}

pub(crate) fn engine(state: &AppState) -> Result<&Engine, HttpError> {
    state
        .engine
        .as_deref()
        .ok_or_else(|| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "this server does not serve feeds"))
}

fn item_index(catalog: &Catalog, item_id: &str) -> Result<ItemIndex, HttpError> {
    catalog.index(item_id).ok_or_else(|| {
        HttpError::new(StatusCode::NOT_FOUND, format!("item_id: no item `{item_id}` is served"))
    })
}

/// Refuses a user id the store would refuse (empty, too long), so that no logged impression
/// can fail to be written.
fn check_user_id(user_id: &str) -> Result<(), HttpError> {
    match User::new(user_id).validate().into_iter().next() {
        Some(error) => {
            Err(HttpError::new(StatusCode::BAD_REQUEST, format!("{}: {}", error.field, error.message)))
        }
        None => Ok(()),
    }
}

pub(crate) fn bad_query(rejection: QueryRejection) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, rejection.body_text())
}

/// A request id unique across restarts and replicas (a hash of the process's start time and id
/// and a counter), after the experiment variant and a `.` when there is one.
fn new_request_id(variant: Option<&str>) -> String {
    static STARTED: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let started = STARTED.get_or_init(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{nanos}-{}", std::process::id())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = feature_key(started, &n.to_string());
    match variant {
        Some(variant) => format!("{variant}.{id:016x}"),
        None => format!("{id:016x}"),
    }
}

/// One variant's online metrics in `GET /v1/experiments`.
#[derive(Debug, Serialize)]
pub(crate) struct VariantReport {
    name: String,
    /// Share of users assigned (0 for a variant seen in the log but no longer configured).
    share: f64,
    #[serde(flatten)]
    stats: VariantStats,
    effective_play_rate: f64,
    finish_rate: f64,
    like_rate: f64,
}

/// Answer of `GET /v1/experiments`.
#[derive(Debug, Serialize)]
pub(crate) struct Experiments {
    experiment: String,
    variants: Vec<VariantReport>,
}

pub(crate) async fn experiments(State(state): State<AppState>) -> Result<Json<Experiments>, HttpError> {
    let engine = engine(&state)?;
    let experiment = engine.experiment();
    let total: f64 = experiment.variants.iter().map(|v| v.share).sum();
    let snapshot = engine.snapshot();
    let live = snapshot.live().read().expect("live state lock");
    let seen = live.activity.experiments().variants();
    let mut names: Vec<&str> = experiment.variants.iter().map(|v| v.name.as_str()).collect();
    names.extend(
        seen.keys().map(String::as_str).filter(|name| !experiment.variants.iter().any(|v| v.name == *name)),
    );
    let variants = names
        .into_iter()
        .map(|name| {
            let stats = seen.get(name).copied().unwrap_or_default();
            let (effective_play_rate, finish_rate, like_rate) = stats.rates();
            let share = experiment.variants.iter().find(|v| v.name == name).map_or(0.0, |v| v.share / total);
            VariantReport { name: name.to_owned(), share, stats, effective_play_rate, finish_rate, like_rate }
        })
        .collect();
    Ok(Json(Experiments { experiment: experiment.name.clone(), variants }))
}
