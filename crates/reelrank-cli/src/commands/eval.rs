//! `reelrank eval retrieval`: offline evaluation on a split directory read as it is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_core::Timestamp;
use reelrank_eval::{
    epochs_by_early_stopping, evaluate_retrieval, tower_inputs, RetrievalReport, RetrievalTask, Split,
};
use reelrank_models::{
    AlsConfig, Blend, CooccurrenceConfig, ImplicitAls, ItemCooccurrence, Popularity, Retriever, TwoTower,
    TwoTowerConfig, TwoTowerRetriever,
};

#[derive(Debug, clap::Subcommand)]
pub enum Eval {
    /// Retrieval on a simulated platform: next-day positives and the simulator's ground truth.
    Simulated(super::eval_simulated::Args),
    /// Top-K retrieval: Recall@20, NDCG@20, Recall@50, Coverage@20 over the split's test users.
    Retrieval(RetrievalArgs),
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
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrievalModel {
    /// Most popular items: the non-personalised baseline.
    Popular,
    /// Item-to-item co-occurrence (random walk with popularity penalty).
    Cooccurrence,
    /// Implicit-feedback matrix factorisation (ALS).
    Als,
    /// The two-tower model alone.
    TwoTower,
    /// reelrank's default retrieval: the two-tower model blended with item co-occurrence and ALS.
    Default,
}

/// Epochs without a better validation NDCG@20 before training stops.
pub const PATIENCE: usize = 3;

pub async fn run(eval: Eval) -> anyhow::Result<()> {
    match eval {
        Eval::Simulated(args) => super::eval_simulated::run(args),
        Eval::Retrieval(args) => retrieval(args).await,
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
            let started = Instant::now();
            let epochs = match epochs {
                Some(epochs) => epochs,
                None => tune_epochs(&split, &items, &users, &config)?.unwrap_or(config.max_epochs),
            };
            let task = RetrievalTask::new(&data);
            let inputs = tower_inputs(&task.data, &items, &users, end_of_train(&data));
            let progress = super::EpochProgress::new("train", epochs);
            let tower = TwoTower::fit(
                &inputs,
                &task.data.positives,
                &TwoTowerConfig { max_epochs: epochs, ..config },
                |epoch, loss, _| {
                    progress.epoch(epoch, loss, None);
                    true
                },
            );
            progress.finish();
            let tower = TwoTowerRetriever::new(&tower, &inputs);
            let report = if model == RetrievalModel::TwoTower {
                task.evaluate(&tower)
            } else {
                let co = ItemCooccurrence::fit(&task.data.positives, &cooccurrence);
                let als = ImplicitAls::fit(&task.data.positives, &als);
                task.evaluate(&Blend::new(vec![
                    (&tower as &dyn Retriever, 1.0),
                    (&co, cooccurrence_weight),
                    (&als, als_weight),
                ]))
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

/// The last train timestamp: "now" for item ages.
fn end_of_train(split: &Split) -> Timestamp {
    Timestamp::from_secs(split.train.iter().map(|r| r.timestamp).max().unwrap_or(0))
}

/// The number of epochs by early stopping on the split's `valid/` (best NDCG@20), or `None` when
/// the split has no `valid/`.
fn tune_epochs(
    split_dir: &Path,
    items: &[reelrank_core::Item],
    users: &[reelrank_core::User],
    config: &TwoTowerConfig,
) -> anyhow::Result<Option<usize>> {
    let valid_dir = split_dir.join("valid");
    if !valid_dir.join("train.csv").is_file() {
        return Ok(None);
    }
    let valid = Split::load(&valid_dir)?;
    let task = RetrievalTask::new(&valid);
    let inputs = tower_inputs(&task.data, items, users, end_of_train(&valid));
    let progress = super::EpochProgress::new("valid", config.max_epochs);
    let epochs = epochs_by_early_stopping(&task, &inputs, config, PATIENCE, |epoch, loss, report| {
        progress.epoch(epoch, loss, Some(report));
    });
    progress.finish();
    Ok(Some(epochs))
}
