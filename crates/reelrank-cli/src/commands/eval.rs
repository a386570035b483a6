//! `reelrank eval retrieval`: offline evaluation on a split directory read as it is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_core::Timestamp;
use reelrank_eval::{
    epochs_by_early_stopping, evaluate_retrieval, tower_inputs, RetrievalReport, RetrievalTask, Split,
    TrainData,
};
use reelrank_models::{
    AlsConfig, Blend, CooccurrenceConfig, ImplicitAls, ItemCooccurrence, Popularity, RecentPopularity,
    Retriever, TwoTower, TwoTowerConfig, TwoTowerRetriever,
};

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum Eval {
    /// Retrieval on a simulated platform: next-day positives and the simulator's ground truth.
    Simulated(super::eval_simulated::SimulationArgs),
    /// Top-K retrieval: Recall@20, NDCG@20, Recall@50, Coverage@20 over the split's test users.
    Retrieval(RetrievalArgs),
    /// Ranking (CTR): AUC and logloss of the Wide&Deep model on the split's test ratings.
    Ranking(super::eval_ranking::Args),
    /// Ranking on a simulated platform: AUC, GAUC and logloss of every head on the last day.
    SimulatedRanking(super::eval_simulated_ranking::Args),
    /// Diversity re-ranking on a simulated platform: Recall@20, intra-list diversity and category
    /// entropy of top-20 feeds with re-ranking off and on.
    Diversity(super::eval_diversity::Args),
    /// Online learning under drift on a simulated platform: progressive evaluation (each
    /// impression predicted before the model learns from it) against the same model frozen.
    Drift(super::eval_drift::Args),
}

/// Arguments of `eval retrieval`.
#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// Split directory with train.csv, test.csv, retrieval_test.csv (and valid/ for tuning).
    #[arg(long)]
    split: PathBuf,
    /// Raw MovieLens directory with the user and item side features (ml-100k or ml-latest layout);
    /// without it the two-tower model sees ids only.
    #[arg(long)]
    movielens: Option<PathBuf>,
    /// Model to evaluate.
    #[arg(long, value_enum, default_value_t = RetrievalModel::Default)]
    model: RetrievalModel,
    /// Co-occurrence: kept neighbours per item.
    #[arg(long, default_value_t = CooccurrenceConfig::default().neighbors)]
    neighbors: usize,
    /// Co-occurrence: popularity penalty exponent β.
    #[arg(long, default_value_t = CooccurrenceConfig::default().popularity_penalty)]
    popularity_penalty: f32,
    /// Two-tower: softmax temperature (overrides --two-tower).
    #[arg(long)]
    temperature: Option<f32>,
    /// Two-tower: weight of the logQ correction, 1 = full, 0 = none (overrides --two-tower).
    #[arg(long)]
    logq_weight: Option<f32>,
    /// Two-tower: settings as a JSON object over the defaults, e.g. '{"hidden_dim": 256}'.
    #[arg(long)]
    two_tower: Option<String>,
    /// Two-tower: train this many epochs instead of early stopping on `valid/`.
    #[arg(long)]
    epochs: Option<usize>,
    /// Default model: weight of the co-occurrence scores beside the two-tower's (both standardised).
    #[arg(long, default_value_t = 0.25)]
    cooccurrence_weight: f32,
    /// Default model: weight of the ALS scores beside the two-tower's (both standardised).
    #[arg(long, default_value_t = 0.5)]
    als_weight: f32,
    /// ALS: settings as a JSON object over the defaults, e.g. '{"regularization": 10}'.
    #[arg(long)]
    als: Option<String>,
    /// Default model: weight of the trending (recency-weighted popularity) scores beside the
    /// two-tower's (both standardised); by default the best of 0, 0.25, 0.5, 1 and 2 on the split's
    /// `valid/` (0 without one), since how much recency matters is a property of the data.
    #[arg(long)]
    trending_weight: Option<f32>,
    /// Trending: half-life as a share of all train positives (0.05: the latest 5 % weigh as much
    /// as everything before them).
    #[arg(long, default_value_t = 0.05)]
    trending_half_life: f32,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrievalModel {
    /// Most popular items: the non-personalised baseline.
    Popular,
    /// Recently popular items: popularity with exponential decay by recency.
    Trending,
    /// Item-to-item co-occurrence (random walk with popularity penalty).
    Cooccurrence,
    /// Implicit-feedback matrix factorisation (ALS).
    Als,
    /// The two-tower model alone.
    TwoTower,
    /// reelrank's default retrieval: the two-tower model blended with item co-occurrence and ALS
    /// (and trending items with `--trending-weight`).
    Default,
}

/// Epochs without a better validation NDCG@20 before training stops.
pub const PATIENCE: usize = 3;

pub async fn run(settings: &Settings, eval: Eval) -> anyhow::Result<()> {
    match eval {
        Eval::Simulated(args) => super::eval_simulated::run(args),
        Eval::SimulatedRanking(args) => super::eval_simulated_ranking::run(settings, args),
        Eval::Diversity(args) => super::eval_diversity::run(settings, args),
        Eval::Drift(args) => super::eval_drift::run(settings, args),
        Eval::Retrieval(args) => retrieval(args).await,
        Eval::Ranking(args) => super::eval_ranking::run(args).await,
    }
}

async fn retrieval(args: RetrievalArgs) -> anyhow::Result<()> {
    let RetrievalArgs {
        split,
        movielens,
        model,
        neighbors,
        popularity_penalty,
        temperature,
        logq_weight,
        two_tower,
        epochs,
        cooccurrence_weight,
        als_weight,
        als,
        trending_weight,
        trending_half_life,
        json,
    } = args;
    let als: AlsConfig = match &als {
        Some(json) => serde_json::from_str(json).context("--als is not a valid ALS config")?,
        None => AlsConfig::default(),
    };
    let data = Split::load(&split).with_context(|| format!("reading split {}", split.display()))?;
    let cooccurrence = CooccurrenceConfig { neighbors, popularity_penalty, ..CooccurrenceConfig::default() };
    let report = match model {
        RetrievalModel::Popular => evaluate_retrieval(&data, |d| Popularity::fit(&d.positives)),
        RetrievalModel::Trending => evaluate_retrieval(&data, |d| trending(d, trending_half_life)),
        RetrievalModel::Cooccurrence => {
            evaluate_retrieval(&data, |d| ItemCooccurrence::fit(&d.positives, &cooccurrence))
        }
        RetrievalModel::Als => evaluate_retrieval(&data, |d| ImplicitAls::fit(&d.positives, &als)),
        RetrievalModel::TwoTower | RetrievalModel::Default => {
            let (items, users) = match &movielens {
                Some(raw) => reelrank_ingest::movielens_side_info(raw).await?,
                None => (Vec::new(), Vec::new()),
            };
            let base: TwoTowerConfig = match &two_tower {
                Some(json) => {
                    serde_json::from_str(json).context("--two-tower is not a valid two-tower config")?
                }
                None => TwoTowerConfig::default(),
            };
            let config = TwoTowerConfig {
                temperature: temperature.unwrap_or(base.temperature),
                logq_weight: logq_weight.unwrap_or(base.logq_weight),
                ..base
            };
            let blend = (model == RetrievalModel::Default).then_some(BlendParts {
                cooccurrence,
                cooccurrence_weight,
                als,
                als_weight,
                trending_half_life,
            });
            let started = Instant::now();
            let needs_valid = epochs.is_none() || (blend.is_some() && trending_weight.is_none());
            let tuned = if needs_valid {
                tune_on_valid(&split, &items, &users, &config, blend.as_ref())?
            } else {
                None
            };
            let epochs = epochs.or(tuned.map(|t| t.epochs)).unwrap_or(config.max_epochs);
            let task = RetrievalTask::new(&data);
            let inputs = tower_inputs(&task.data, &items, &users, end_of_train(&data));
            let progress = super::EpochProgress::new("train", epochs);
            let tower = TwoTower::fit(
                &inputs,
                &task.data.positives,
                &TwoTowerConfig { max_epochs: epochs, ..config },
                |epoch, loss, _| {
                    progress.epoch(epoch, loss, Vec::new());
                    true
                },
            );
            progress.finish();
            let tower = TwoTowerRetriever::new(&tower, &inputs);
            let report = match &blend {
                None => task.evaluate(&tower),
                Some(parts) => {
                    let weight = trending_weight.or(tuned.map(|t| t.trending_weight)).unwrap_or(0.0);
                    let (co, als, trending) = parts.fit(&task.data);
                    task.evaluate(&parts.blend(&tower, &co, &als, &trending, weight))
                }
            };
            RetrievalReport { train_seconds: started.elapsed().as_secs_f64(), ..report }
        }
    };
    println!(
        "users {}  Recall@20 {:.4}  NDCG@20 {:.4}  Recall@50 {:.4}  Coverage@20 {:.4}  (train {:.1} s)",
        report.users,
        report.recall_20,
        report.ndcg_20,
        report.recall_50,
        report.coverage_20,
        report.train_seconds
    );
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn trending(data: &TrainData, half_life_share: f32) -> RecentPopularity {
    RecentPopularity::fit(&data.positive_items_by_time, data.positives.num_items(), half_life_share)
}

/// The last train timestamp: "now" for item ages.
fn end_of_train(split: &Split) -> Timestamp {
    Timestamp::from_secs(split.train.iter().map(|r| r.timestamp).max().unwrap_or(0))
}

/// The trending weights the default blend tries on `valid/`.
const TRENDING_WEIGHTS: [f32; 5] = [0.0, 0.25, 0.5, 1.0, 2.0];

/// The default blend's parts beside the two-tower model, with their weights.
struct BlendParts {
    cooccurrence: CooccurrenceConfig,
    cooccurrence_weight: f32,
    als: AlsConfig,
    als_weight: f32,
    trending_half_life: f32,
}

impl BlendParts {
    fn fit(&self, data: &TrainData) -> (ItemCooccurrence, ImplicitAls, RecentPopularity) {
        (
            ItemCooccurrence::fit(&data.positives, &self.cooccurrence),
            ImplicitAls::fit(&data.positives, &self.als),
            trending(data, self.trending_half_life),
        )
    }

    fn blend<'a>(
        &self,
        tower: &'a dyn Retriever,
        cooccurrence: &'a dyn Retriever,
        als: &'a dyn Retriever,
        trending: &'a dyn Retriever,
        trending_weight: f32,
    ) -> Blend<'a> {
        Blend::new(vec![
            (tower, 1.0),
            (cooccurrence, self.cooccurrence_weight),
            (als, self.als_weight),
            (trending, trending_weight),
        ])
    }
}

/// What the split's `valid/` decides.
#[derive(Debug, Clone, Copy)]
struct Tuned {
    /// Two-tower epochs, by early stopping on NDCG@20.
    epochs: usize,
    /// The default blend's trending weight with the best NDCG@20 among [`TRENDING_WEIGHTS`].
    trending_weight: f32,
}

/// Tunes on the split's `valid/`, or returns `None` when it has none.
fn tune_on_valid(
    split_dir: &Path,
    items: &[reelrank_core::Item],
    users: &[reelrank_core::User],
    config: &TwoTowerConfig,
    blend: Option<&BlendParts>,
) -> anyhow::Result<Option<Tuned>> {
    let valid_dir = split_dir.join("valid");
    if !valid_dir.join("train.csv").is_file() {
        return Ok(None);
    }
    let valid = Split::load(&valid_dir)?;
    let task = RetrievalTask::new(&valid);
    let inputs = tower_inputs(&task.data, items, users, end_of_train(&valid));
    let progress = super::EpochProgress::new("valid", config.max_epochs);
    let (epochs, tower) =
        epochs_by_early_stopping(&task, &inputs, config, PATIENCE, |epoch, loss, report| {
            progress.epoch(epoch, loss, super::retrieval_metrics(report));
        });
    progress.finish();
    let Some(parts) = blend else {
        return Ok(Some(Tuned { epochs, trending_weight: 0.0 }));
    };
    // Each part scores the valid users once; the weights are then searched over those scores.
    let (co, als, trending) = parts.fit(&task.data);
    let tower = task.cache_scores(&TwoTowerRetriever::new(&tower, &inputs));
    let (co, als, trending) = (task.cache_scores(&co), task.cache_scores(&als), task.cache_scores(&trending));
    let mut best = (f64::NEG_INFINITY, 0.0);
    for weight in TRENDING_WEIGHTS {
        let ndcg = task.evaluate(&parts.blend(&tower, &co, &als, &trending, weight)).ndcg_20;
        eprintln!("valid: trending weight {weight}: NDCG@20 {ndcg:.4}");
        if ndcg > best.0 {
            best = (ndcg, weight);
        }
    }
    Ok(Some(Tuned { epochs, trending_weight: best.1 }))
}
