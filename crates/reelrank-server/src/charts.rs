//! `GET /v1/charts` (JSON), `GET /charts` (to the dashboard's page) and `GET /v1/charts/excluded`
//! (the accounts left out as fake traffic): read from the charts the engine keeps from the log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::Json;
use reelrank_charts::{Chart, ChartRequest, Day, ExcludedAccount, Refusals};
use reelrank_core::Timestamp;
use serde::Serialize;

use crate::feed::{bad_query, engine};
use crate::{AppState, HttpError};

/// The chart `request` asks for, of what the catalog shows now: items taken down, refused,
/// past their licence or withheld by moderation are left out.
fn chart_of(state: &AppState, request: &ChartRequest) -> Result<Chart, HttpError> {
    let engine = engine(state)?;
    let snapshot = engine.snapshot();
    let catalog = snapshot.catalog();
    let filters = &engine.pipeline().filters;
    let charts = snapshot.charts().read().expect("charts lock");
    let today = charts.newest_day().unwrap_or_else(|| Day::of(Timestamp::now()));
    let query =
        request.query(today).map_err(|err| HttpError::new(StatusCode::BAD_REQUEST, err.to_string()))?;
    let now = Timestamp::now();
    Ok(charts.chart(&query, |item_id| {
        catalog.index(item_id).is_some_and(|i| filters.charts(catalog.item(i), now))
    }))
}

/// `GET /v1/charts`.
pub(crate) async fn chart(
    State(state): State<AppState>,
    request: Result<Query<ChartRequest>, QueryRejection>,
) -> Result<Json<Chart>, HttpError> {
    let Query(request) = request.map_err(bad_query)?;
    chart_of(&state, &request).map(Json)
}

/// Answer of `GET /v1/charts/excluded`.
#[derive(Debug, Serialize)]
pub(crate) struct Excluded {
    /// The accounts, in the order they were found.
    accounts: Vec<ExcludedAccount>,
    /// Contributions not counted although their accounts count.
    refused: Refusals,
}

/// `GET /v1/charts/excluded`.
pub(crate) async fn excluded(State(state): State<AppState>) -> Result<Json<Excluded>, HttpError> {
    let snapshot = engine(&state)?.snapshot();
    let charts = snapshot.charts().read().expect("charts lock");
    Ok(Json(Excluded { accounts: charts.excluded(), refused: charts.refusals() }))
}

/// `GET /charts`: the dashboard's charts page, with the same parameters.
pub(crate) async fn page(RawQuery(query): RawQuery) -> Redirect {
    Redirect::to(&match query {
        Some(query) => format!("/dashboard#charts?{query}"),
        None => "/dashboard#charts".to_owned(),
    })
}
