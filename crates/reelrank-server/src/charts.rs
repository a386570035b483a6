//! `GET /v1/charts` (JSON), `GET /charts` (the same as a page) and `GET /v1/charts/excluded`
//! (the accounts left out as fake traffic): read from the charts the engine keeps from the log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::Json;
use reelrank_charts::{Chart, ChartRequest, Day, ExcludedAccount, Refusals};
use reelrank_core::{Category, Item, Timestamp};
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
    let shown = |item: &Item| !item.is_gone(now) && !filters.withholds(item);
    Ok(charts.chart(&query, |item_id| catalog.index(item_id).is_some_and(|i| shown(catalog.item(i)))))
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

/// `GET /charts`: the chart as a page, with a form to ask for another.
pub(crate) async fn page(
    State(state): State<AppState>,
    request: Result<Query<ChartRequest>, QueryRejection>,
) -> Result<Html<String>, HttpError> {
    let Query(request) = request.map_err(bad_query)?;
    let chart = chart_of(&state, &request)?;
    Ok(Html(render(&chart)))
}

/// Escapes text for HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render(chart: &Chart) -> String {
    let category = chart.category.as_deref().unwrap_or("all");
    let options = |selected: &str, values: &mut dyn Iterator<Item = &str>| {
        values
            .map(|v| {
                let mark = if v == selected { " selected" } else { "" };
                format!("<option{mark}>{}</option>", escape(v))
            })
            .collect::<String>()
    };
    let categories =
        options(category, &mut std::iter::once("all").chain(Category::KNOWN.iter().map(|c| c.as_str())));
    let periods = options(chart.period, &mut ["day", "week"].into_iter());
    let rows: String = chart
        .rows
        .iter()
        .map(|row| {
            let class = match row.change.chars().next() {
                Some('↑') => "up",
                Some('↓') => "down",
                Some('N') => "new",
                _ => "same",
            };
            format!(
                "<tr><td>{}</td><td class={class}>{}</td><td>{}<br><small>{} · {}</small></td>\
                 <td>{:.2} %</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
                row.rank,
                escape(&row.change),
                escape(&row.title),
                escape(&row.item_id),
                escape(&row.category),
                row.share * 100.0,
                row.heat,
                row.effective_plays,
                row.days_online,
            )
        })
        .collect();
    format!(
        r#"<!doctype html><html lang=en><meta charset=utf-8><title>reelrank charts</title>
<style>body{{font:15px system-ui,sans-serif;margin:2em auto;max-width:60em}}table{{border-collapse:collapse;width:100%}}
td,th{{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}}.up{{color:#0a7d32}}.down{{color:#b3261e}}
.new{{color:#1d5fd1;font-weight:bold}}small{{color:#666}}</style>
<h1>Charts: {category}, {period} {from} to {to}</h1>
<form>Category <select name=category>{categories}</select> Period <select name=period>{periods}</select>
Date <input type=date name=date value="{to}"> <button>Show</button></form>
<p>Ranked by effective-play market share: an item's effective plays over all {effective} of the category in the period.
A play is effective once watched past a share of its length; an account counts once per item and day; accounts
excluded as fake traffic do not count. <a href="/transparency">How reelrank recommends</a>.</p>
<table><tr><th>Rank</th><th>Change</th><th>Title</th><th>Share</th><th>Heat</th><th>Effective plays</th><th>Days online</th></tr>
{rows}</table>"#,
        period = chart.period,
        from = chart.from,
        to = chart.to,
        effective = chart.effective_plays,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_escaped() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
