//! `reelrank charts`: a chart, or the accounts excluded as fake traffic, from the store's log —
//! the figures `GET /v1/charts` serves, read in one pass without a server.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use reelrank_charts::{ChartConfig, ChartRequest, Charts, Day};
use reelrank_core::{Event, Item, Timestamp};
use reelrank_store::Store;

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A category's name, or `all`.
    #[arg(long, default_value = "all")]
    pub category: String,
    /// `day`, `week` (ISO, Monday to Sunday) or `range` (the default with --from and --to).
    #[arg(long)]
    pub period: Option<String>,
    /// A day of the period, YYYY-MM-DD (default: the log's newest day).
    #[arg(long)]
    pub date: Option<String>,
    /// A range's first day.
    #[arg(long)]
    pub from: Option<String>,
    /// A range's last day.
    #[arg(long)]
    pub to: Option<String>,
    /// Rows.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// List the accounts excluded as fake traffic instead.
    #[arg(long)]
    pub excluded: bool,
    /// Print one JSON object (the API's answer) on the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the store's whole log through charts kept by `config` (events on items not in `items`
/// still tell how their accounts behave); returns them and the events `keep` accepts.
pub async fn replay(
    store: &Store,
    items: &[Item],
    config: &ChartConfig,
    keep: impl Fn(&Event) -> bool,
) -> anyhow::Result<(Charts, Vec<Event>)> {
    let by_id: HashMap<&str, &Item> = items.iter().map(|item| (item.item_id.as_str(), item)).collect();
    let charts = RefCell::new(Charts::new(config.clone()));
    let (kept, _) = store
        .all_events(|event| {
            charts.borrow_mut().record(event, by_id.get(event.item_id.as_str()).copied());
            keep(event)
        })
        .await?;
    Ok((charts.into_inner(), kept))
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let store = super::open_store(data_dir, settings).await?;
    let items = store.all_items().await?;
    let (charts, _) = replay(&store, &items, &settings.serving.charts, |_| false).await?;
    if args.excluded {
        let accounts = charts.excluded();
        if args.json {
            println!("{}", serde_json::json!({"accounts": accounts, "refused": charts.refusals()}));
        } else {
            println!("{} accounts excluded as fake traffic", accounts.len());
            for account in &accounts {
                println!(
                    "{:<24} {:<60} {}",
                    account.user_id,
                    format!("{:?}", account.exclusion.reason),
                    account.exclusion.at
                );
            }
        }
        return Ok(());
    }
    let request = ChartRequest {
        category: Some(args.category),
        period: args.period,
        date: args.date,
        from: args.from,
        to: args.to,
        limit: Some(args.limit),
    };
    let today = charts.newest_day().unwrap_or_else(|| Day::of(Timestamp::now()));
    let query = request.query(today)?;
    let now = Timestamp::now();
    let filters = &settings.serving.pipeline.filters;
    let shown: HashMap<&str, bool> =
        items.iter().map(|item| (item.item_id.as_str(), filters.charts(item, now))).collect();
    let chart = charts.chart(&query, |item_id| shown.get(item_id).copied().unwrap_or(false));
    if args.json {
        println!("{}", serde_json::to_string(&chart)?);
        return Ok(());
    }
    println!(
        "{} {} {} to {}: {} effective plays, {} items",
        chart.category.as_deref().unwrap_or("all"),
        chart.period,
        chart.from,
        chart.to,
        chart.effective_plays,
        chart.items_ranked
    );
    println!(
        "{:>4} {:>5}  {:<40} {:>7} {:>6} {:>9} {:>5}",
        "rank", "chg", "title", "share", "heat", "eff.plays", "days"
    );
    for row in &chart.rows {
        let title: String = format!("{} ({})", row.title, row.item_id).chars().take(40).collect();
        println!(
            "{:>4} {:>5}  {:<40} {:>6.2}% {:>6.1} {:>9} {:>5}",
            row.rank,
            row.change,
            title,
            row.share * 100.0,
            row.heat,
            row.effective_plays,
            row.days_online
        );
    }
    Ok(())
}
