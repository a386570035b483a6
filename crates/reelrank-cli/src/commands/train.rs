//! `reelrank train retrieval`: the two-tower model trained from the store's events.
//!
//! Positives come from the events by the [`PositiveRule`]; each user's most recent positive is held
//! out to pick the number of epochs (early stopping on NDCG@20), then the model is refitted on
//! every positive and saved under `DATA_DIR/models/retrieval`, with an index of every catalog
//! item's vector in `DATA_DIR/models/retrieval/index` (items nobody has engaged with yet get their
//! vectors from their content features).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use reelrank_ann::VectorIndex;
use reelrank_charts::ChartConfig;
use reelrank_core::{Event, Item, Timestamp, User};
use reelrank_eval::{epochs_by_early_stopping, tower_inputs, Rating, RetrievalTask, Split};
use reelrank_features::{PositiveRule, UserSchema};
use reelrank_models::{TwoTower, TwoTowerConfig};
use reelrank_serving::Retrieval;
use reelrank_store::Store;

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum Train {
    /// Train the two-tower retrieval model from the store and save it.
    Retrieval {
        /// Train this many epochs instead of early stopping on each user's last positive.
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Train the Wide&Deep ranking model from the store's impressions and outcomes and save it.
    Ranking {
        /// Train this many epochs instead of early stopping on the latest tenth of impressions.
        #[arg(long)]
        epochs: Option<usize>,
    },
}

/// Where the retrieval model is saved.
pub fn model_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("models").join("retrieval")
}

pub async fn run(data_dir: &Path, settings: &Settings, train: Train) -> anyhow::Result<()> {
    match train {
        Train::Retrieval { epochs } => retrieval(data_dir, settings, epochs).await,
        Train::Ranking { epochs } => super::train_ranking::run(data_dir, settings, epochs).await,
    }
}

async fn retrieval(data_dir: &Path, settings: &Settings, epochs: Option<usize>) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = super::open_store(data_dir, settings).await?;
    let (items, users) = catalog(&store).await?;
    let positives = positives(&store, &items, &PositiveRule::default(), &settings.serving.charts).await?;
    anyhow::ensure!(!positives.is_empty(), "no positive events in the store: nothing to train on");
    let config = settings.retrieval.two_tower.clone();
    let mut curves = Vec::new();
    let epochs = match epochs {
        Some(epochs) => epochs,
        None => {
            let holdout = holdout_split(&positives);
            let task = RetrievalTask::new(&holdout);
            let inputs = tower_inputs(&task.data, &items, &users, Timestamp::now());
            let progress = super::EpochProgress::new("holdout", config.max_epochs);
            let (epochs, _) = epochs_by_early_stopping(
                &task,
                &inputs,
                &config,
                super::eval::PATIENCE,
                |epoch, loss, report| {
                    progress.epoch(epoch, loss, super::retrieval_metrics(report));
                },
            );
            curves.extend(progress.finish());
            epochs
        }
    };
    let all = Split { train: positives, test: Vec::new(), retrieval_test: Vec::new() };
    let task = RetrievalTask::new(&all);
    let inputs = tower_inputs(&task.data, &items, &users, Timestamp::now());
    let progress = super::EpochProgress::new("train", epochs);
    let model = TwoTower::fit(
        &inputs,
        &task.data.positives,
        &TwoTowerConfig { max_epochs: epochs, ..config },
        |epoch, loss, _| {
            progress.epoch(epoch, loss, Vec::new());
            true
        },
    );
    curves.extend(progress.finish());
    let dir = model_dir(data_dir);
    let schema = UserSchema::from_users(&users);
    let retrieval = Retrieval::build(model, schema, &items, &settings.retrieval.index, Timestamp::now())?;
    let log = super::TrainingLog::new("two-tower", started, all.train.len(), epochs, curves);
    super::save_whole(&dir, |fresh| {
        retrieval.save(fresh)?;
        log.save(fresh)
    })?;
    let index = retrieval.index();
    println!(
        "trained the two-tower model on {} positives of {} users and {} items, {epochs} epochs, and indexed {} catalog items ({}), in {:.1} s; saved to {}",
        all.train.len(),
        task.data.user_ids.len(),
        task.data.item_ids.len(),
        index.len(),
        if index.is_exact() { "exact" } else { "HNSW" },
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Every catalog item and user.
pub async fn catalog(store: &Store) -> anyhow::Result<(Vec<Item>, Vec<User>)> {
    Ok((store.all_items().await?, store.all_users().await?))
}

/// The positive events on catalog items, as ratings of 5 (every positive counts alike) with their
/// context, in log order.
async fn positives(
    store: &Store,
    items: &[Item],
    rule: &PositiveRule,
    charts: &ChartConfig,
) -> anyhow::Result<Vec<Rating>> {
    let durations: HashMap<&str, Option<f64>> =
        items.iter().map(|i| (i.item_id.as_str(), i.duration_s)).collect();
    let positives = events(store, items, charts, |event| {
        durations.get(event.item_id.as_str()).is_some_and(|&duration| rule.is_positive(event, duration))
    })
    .await?;
    Ok(positives.iter().map(Rating::from_positive_event).collect())
}

/// The store's events that `keep` accepts, in log order, but for those of accounts excluded as
/// fake traffic by the charts' guard (`charts`): no model learns from them.
pub async fn events(
    store: &Store,
    items: &[Item],
    charts: &ChartConfig,
    keep: impl Fn(&Event) -> bool,
) -> anyhow::Result<Vec<Event>> {
    let (charts, mut events) = super::charts::replay(store, items, charts, keep).await?;
    let before = events.len();
    events.retain(|event| !charts.is_excluded(&event.user_id));
    let excluded = charts.excluded().len();
    if excluded > 0 {
        eprintln!(
            "left out {} events of {excluded} accounts excluded as fake traffic",
            before - events.len()
        );
    }
    Ok(events)
}

/// Each user's most recent positive held out (users with at least three), the rest for training.
fn holdout_split(positives: &[Rating]) -> Split {
    let mut last: HashMap<&str, (usize, i64)> = HashMap::new();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (i, r) in positives.iter().enumerate() {
        *count.entry(&r.user).or_default() += 1;
        let entry = last.entry(&r.user).or_insert((i, r.timestamp));
        if r.timestamp >= entry.1 {
            *entry = (i, r.timestamp);
        }
    }
    let held: std::collections::HashSet<usize> =
        last.iter().filter(|(user, _)| count[*user] >= 3).map(|(_, (i, _))| *i).collect();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, rating) in positives.iter().enumerate() {
        if held.contains(&i) { &mut test } else { &mut train }.push(rating.clone());
    }
    Split { train, retrieval_test: test.clone(), test }
}
