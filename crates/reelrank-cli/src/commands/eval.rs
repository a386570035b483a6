//! `reelrank eval retrieval`: offline evaluation on a split directory read as it is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_core::Timestamp;
use reelrank_eval::{evaluate_retrieval, tower_inputs, RetrievalReport, RetrievalTask, Split};
use reelrank_models::{
    CooccurrenceConfig, ItemCooccurrence, Popularity, TwoTower, TwoTowerConfig, TwoTowerRetriever,
};

#[derive(Debug, clap::Subcommand)]
pub enum Eval {
    /// Top-K retrieval: Recall@20, NDCG@20, Recall@50, Coverage@20 over the split's test users.
    Retrieval {
        /// Split directory with train.csv, test.csv, retrieval_test.csv (and valid/ for tuning).
        #[arg(long)]
        split: PathBuf,
        /// Raw MovieLens directory with the user and item side features (ml-100k or ml-latest layout).
        #[arg(long)]
        movielens: Option<PathBuf>,
        /// Model to evaluate.
        #[arg(long, value_enum, default_value_t = RetrievalModel::Cooccurrence)]
        model: RetrievalModel,
        /// Co-occurrence: kept neighbours per item.
        #[arg(long, default_value_t = CooccurrenceConfig::default().neighbors)]
        neighbors: usize,
        /// Co-occurrence: popularity penalty exponent β.
        #[arg(long, default_value_t = CooccurrenceConfig::default().popularity_penalty)]
        popularity_penalty: f32,
        /// Two-tower: softmax temperature.
        #[arg(long, default_value_t = TwoTowerConfig::default().temperature)]
        temperature: f32,
        /// Two-tower: weight of the logQ correction (1 = full, 0 = none).
        #[arg(long, default_value_t = TwoTowerConfig::default().logq_weight)]
        logq_weight: f32,
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrievalModel {
    /// Most popular items: the non-personalised baseline.
    Popular,
    /// Item-to-item co-occurrence (random walk with popularity penalty).
    Cooccurrence,
    /// The two-tower model alone.
    TwoTower,
}

/// Epochs without a better validation NDCG@20 before training stops.
const PATIENCE: usize = 3;

pub async fn run(eval: Eval) -> anyhow::Result<()> {
    let Eval::Retrieval {
        split,
        movielens,
        model,
        neighbors,
        popularity_penalty,
        temperature,
        logq_weight,
        json,
    } = eval;
    let data = Split::load(&split).with_context(|| format!("reading split {}", split.display()))?;
    let report = match model {
        RetrievalModel::Popular => evaluate_retrieval(&data, |d| Popularity::fit(&d.positives)),
        RetrievalModel::Cooccurrence => {
            let config = CooccurrenceConfig {
                neighbors,
                popularity_penalty,
                ..CooccurrenceConfig::default()
            };
            evaluate_retrieval(&data, |d| ItemCooccurrence::fit(&d.positives, &config))
        }
        RetrievalModel::TwoTower => {
            let raw = movielens.context("--model two-tower needs --movielens RAW_DIR for side features")?;
            let (items, users) = reelrank_ingest::movielens_side_info(&raw).await?;
            let config = TwoTowerConfig {
                temperature,
                logq_weight,
                ..TwoTowerConfig::default()
            };
            two_tower(&split, &data, &items, &users, config)?
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

/// Picks the number of epochs by early stopping on `valid/` (when the split has one), then trains
/// on the whole train set for that many epochs and evaluates once on test.
fn two_tower(
    split_dir: &Path,
    split: &Split,
    items: &[reelrank_core::Item],
    users: &[reelrank_core::User],
    config: TwoTowerConfig,
) -> anyhow::Result<RetrievalReport> {
    let now = |s: &Split| Timestamp::from_secs(s.train.iter().map(|r| r.timestamp).max().unwrap_or(0));
    let started = Instant::now();
    let valid_dir = split_dir.join("valid");
    let epochs = if valid_dir.join("train.csv").is_file() {
        let valid = Split::load(&valid_dir)?;
        let task = RetrievalTask::new(&valid);
        let inputs = tower_inputs(&task.data, items, users, now(&valid));
        let (mut best, mut best_epoch) = (f64::NEG_INFINITY, 0);
        TwoTower::fit(&inputs, &task.data.positives, &config, |epoch, loss, model| {
            let report = task.evaluate(&TwoTowerRetriever::new(model, &inputs));
            eprintln!(
                "valid epoch {:>2}  loss {loss:.4}  Recall@20 {:.4}  NDCG@20 {:.4}",
                epoch + 1,
                report.recall_20,
                report.ndcg_20
            );
            if report.ndcg_20 > best {
                (best, best_epoch) = (report.ndcg_20, epoch);
            }
            epoch < best_epoch + PATIENCE
        });
        best_epoch + 1
    } else {
        config.max_epochs
    };
    let task = RetrievalTask::new(split);
    let inputs = tower_inputs(&task.data, items, users, now(split));
    let model = TwoTower::fit(
        &inputs,
        &task.data.positives,
        &TwoTowerConfig {
            max_epochs: epochs,
            ..config
        },
        |epoch, loss, _| {
            eprintln!("train epoch {:>2}/{epochs}  loss {loss:.4}", epoch + 1);
            true
        },
    );
    let train_seconds = started.elapsed().as_secs_f64();
    Ok(RetrievalReport {
        train_seconds,
        ..task.evaluate(&TwoTowerRetriever::new(&model, &inputs))
    })
}
