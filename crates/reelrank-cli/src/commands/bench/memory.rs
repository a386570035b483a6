//! `reelrank bench memory`: what the running engine holds over a long stream of events whose
//! audience and catalog churn. A simulated platform is streamed day by day into a fresh embedded
//! store: each user identity lasts `--user-days` and then comes back under a new id (the old one
//! goes quiet for good), items are ingested on the day they are published and taken down
//! `--item-days` later. After `--warmup-days` both models are trained and the engine starts,
//! learning online; after each later day, once the engine has applied it, the process's resident
//! memory and what the engine holds are recorded. The memory is fitted as
//! `base + a × users held + b × catalog items`, which gives the figures per million of each.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reelrank_core::{Event, Item, ModerationStatus, Timestamp};
use reelrank_server::{Engine, EngineStats, ModelSource};
use reelrank_sim::{SimConfig, Simulation};
use reelrank_store::Store;
use serde::Serialize;

use crate::commands::train::Train;
use crate::settings::Settings;

/// Arguments of `bench memory`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users active at any time.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Items over the whole run, a tenth published before it and the rest during it.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Simulated days at most.
    #[arg(long, default_value_t = 150)]
    days: u32,
    /// Events to stream: the run stops after the day that reaches this many.
    #[arg(long, default_value_t = 50_000_000)]
    events: u64,
    /// Days a user identity lasts before the user comes back under a new id.
    #[arg(long, default_value_t = 10)]
    user_days: u32,
    /// Days an item stays up after it is published; then it is taken down.
    #[arg(long, default_value_t = 14)]
    item_days: u32,
    /// Days streamed and trained on before the engine starts.
    #[arg(long, default_value_t = 2)]
    warmup_days: u32,
}

/// One day's record.
#[derive(Debug, Serialize)]
struct Day {
    day: u32,
    /// Events streamed so far.
    events: u64,
    rss_mb: f64,
    /// Seconds from the day's last event stored to the engine having applied it.
    catch_up_s: f64,
    engine: EngineStats,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.user_days > 0 && args.warmup_days > 0,
        "--user-days and --warmup-days must be positive"
    );
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path();
    let mut settings = settings.clone();
    settings.store.database.clear();
    let store = Arc::new(crate::commands::open_store(data_dir, &settings).await?);
    let sim = Simulation::new(SimConfig {
        users: args.users,
        items: args.items,
        days: args.days,
        catalog_at_start: 0.1,
        ..SimConfig::default()
    });
    let start = sim.config().start;
    let mut published: HashMap<u32, Vec<Item>> = HashMap::new();
    for item in sim.items() {
        let day =
            item.published_at.map_or(0, |p| (p.millis() - start.millis()).div_euclid(Timestamp::DAY_MS));
        published.entry(day.max(0) as u32).or_default().push(item.clone());
    }
    let (days_tx, mut days_rx) = tokio::sync::mpsc::channel::<(u32, Vec<Event>)>(1);
    let generator =
        std::thread::spawn(move || sim.run(|day, events| days_tx.blocking_send((day, events.to_vec()))));
    println!(
        "{:>4} {:>12} {:>8} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9}",
        "day", "events", "RSS MB", "catch-up", "users", "items", "tower rows", "W&D rows", "waiting"
    );
    let (mut engine, mut streamed, mut days) = (None::<Arc<Engine>>, 0u64, Vec::new());
    let started = Instant::now();
    while let Some((day, events)) = days_rx.recv().await {
        // The day's new items, and those published `item_days` ago taken down.
        let mut changes = published.get(&day).cloned().unwrap_or_default();
        if let Some(expired) = day.checked_sub(args.item_days).and_then(|d| published.remove(&d)) {
            changes
                .extend(expired.into_iter().map(|i| Item { status: Some(ModerationStatus::Removed), ..i }));
        }
        store.upsert_items(&changes, settings.ingest.default_item_status).await?;
        let renamed: Vec<Event> = events.into_iter().map(|e| renamed(e, day, args.user_days)).collect();
        for chunk in renamed.chunks(reelrank_ingest::IMPORT_BATCH_ROWS) {
            store.append_events(chunk).await?;
        }
        streamed += renamed.len() as u64;
        drop(renamed);
        if day + 1 == args.warmup_days {
            engine = Some(start_engine(&store, data_dir, &settings).await?);
            continue;
        }
        let Some(engine) = &engine else { continue };
        let stored = Instant::now();
        while !store.events_after(engine.snapshot().applied_seq(), 1).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let record = Day {
            day,
            events: streamed,
            rss_mb: resident_mb()?,
            catch_up_s: stored.elapsed().as_secs_f64(),
            engine: engine.stats(),
        };
        let online = &record.engine.online;
        println!(
            "{:>4} {:>12} {:>8.0} {:>8.1}s {:>9} {:>9} {:>11} {:>11} {:>9}",
            record.day,
            record.events,
            record.rss_mb,
            record.catch_up_s,
            record.engine.users,
            record.engine.catalog_items,
            online.two_tower.table_rows,
            online.ranking.table_rows,
            online.ranking.queued
        );
        days.push(record);
        if streamed >= args.events {
            break;
        }
    }
    drop(days_rx);
    let _ = generator.join();
    let fit = fit(&days);
    let peak = days.iter().map(|d| d.rss_mb).fold(0.0, f64::max);
    println!(
        "{streamed} events in {:.0} s; peak RSS {peak:.0} MB; fitted RSS = {:.0} MB + {:.0} MB per million users held + {:.0} MB per million catalog items",
        started.elapsed().as_secs_f64(),
        fit[0],
        fit[1] * 1e6,
        fit[2] * 1e6
    );
    let report = serde_json::json!({"bench": "memory", "events": streamed, "peak_rss_mb": peak,
        "base_mb": fit[0], "mb_per_million_users": fit[1] * 1e6, "mb_per_million_items": fit[2] * 1e6, "days": days});
    println!("{report}");
    Ok(())
}

/// `event` with its user's identity of `day`: user `n` takes a new id every `user_days`, the
/// users' changes staggered over the days.
fn renamed(mut event: Event, day: u32, user_days: u32) -> Event {
    let n: u32 = event.user_id.trim_start_matches('u').parse().unwrap_or(0);
    let generation = (day + n % user_days) / user_days;
    event.user_id = format!("{}.{generation}", event.user_id);
    event
}

/// Trains both models on what the store holds and starts the engine on them.
async fn start_engine(
    store: &Arc<Store>,
    data_dir: &Path,
    settings: &Settings,
) -> anyhow::Result<Arc<Engine>> {
    crate::commands::train::run(data_dir, settings, Train::Retrieval { epochs: Some(1) }).await?;
    crate::commands::train::run(data_dir, settings, Train::Ranking { epochs: Some(1) }).await?;
    let models = ModelSource {
        retrieval_dir: Some(crate::commands::train::model_dir(data_dir)),
        ranking_dir: Some(crate::commands::train_ranking::model_dir(data_dir)),
        value: settings.ranking.value.clone(),
        online_dir: Some(data_dir.join("models").join("online")),
    };
    let engine = Engine::start(store.clone(), settings.serving.clone(), models).await?;
    engine.spawn_background();
    Ok(engine)
}

/// This process's resident memory in MB (Linux).
fn resident_mb() -> anyhow::Result<f64> {
    let status = fs_err::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kb / 1024.0)
}

/// Least-squares `[base, per user, per item]` of RSS (MB) over the days' users held and catalog
/// items.
fn fit(days: &[Day]) -> [f64; 3] {
    let rows: Vec<([f64; 3], f64)> = days
        .iter()
        .map(|d| ([1.0, d.engine.users as f64, d.engine.catalog_items as f64], d.rss_mb))
        .collect();
    let mut a = [[0.0; 3]; 3];
    let mut b = [0.0; 3];
    for (x, y) in &rows {
        for i in 0..3 {
            b[i] += x[i] * y;
            for j in 0..3 {
                a[i][j] += x[i] * x[j];
            }
        }
    }
    solve(a, b).unwrap_or([f64::NAN; 3])
}

/// Solves `a x = b` by Cramer's rule; `None` when `a` is singular.
fn solve(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, value) in x.iter_mut().enumerate() {
        let mut m = a;
        for (row, &bi) in m.iter_mut().zip(&b) {
            row[k] = bi;
        }
        *value = det(m) / d;
    }
    Some(x)
}
