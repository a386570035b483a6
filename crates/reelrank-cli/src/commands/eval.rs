//! `reelrank eval retrieval`: offline evaluation on a split directory read as it is.

use std::path::PathBuf;

use anyhow::Context;
use reelrank_eval::{evaluate_retrieval, RetrievalReport, Split};
use reelrank_models::{CooccurrenceConfig, ItemCooccurrence, Popularity};

#[derive(Debug, clap::Subcommand)]
pub enum Eval {
    /// Top-K retrieval: Recall@20, NDCG@20, Recall@50, Coverage@20 over the split's test users.
    Retrieval {
        /// Split directory with train.csv, test.csv, retrieval_test.csv.
        #[arg(long)]
        split: PathBuf,
        /// Model to evaluate.
        #[arg(long, value_enum, default_value_t = RetrievalModel::Cooccurrence)]
        model: RetrievalModel,
        /// Co-occurrence: kept neighbours per item.
        #[arg(long, default_value_t = CooccurrenceConfig::default().neighbors)]
        neighbors: usize,
        /// Co-occurrence: popularity penalty exponent β.
        #[arg(long, default_value_t = CooccurrenceConfig::default().popularity_penalty)]
        popularity_penalty: f32,
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RetrievalModel {
    /// Most popular items: the non-personalised baseline.
    Popular,
    /// Item-to-item co-occurrence (random walk with popularity penalty).
    Cooccurrence,
}

pub fn run(eval: Eval) -> anyhow::Result<()> {
    match eval {
        Eval::Retrieval {
            split,
            model,
            neighbors,
            popularity_penalty,
            json,
        } => {
            let cooccurrence = CooccurrenceConfig {
                neighbors,
                popularity_penalty,
                ..CooccurrenceConfig::default()
            };
            let data = Split::load(&split).with_context(|| format!("reading split {}", split.display()))?;
            let report = match model {
                RetrievalModel::Popular => evaluate_retrieval(&data, |d| Popularity::fit(&d.positives)),
                RetrievalModel::Cooccurrence => {
                    evaluate_retrieval(&data, |d| ItemCooccurrence::fit(&d.positives, &cooccurrence))
                }
            };
            print_report(&report, json)
        }
    }
}

fn print_report(report: &RetrievalReport, json: bool) -> anyhow::Result<()> {
    println!(
        "users {}  Recall@20 {:.4}  NDCG@20 {:.4}  Recall@50 {:.4}  Coverage@20 {:.4}  (fit {:.2} s)",
        report.users,
        report.recall_20,
        report.ndcg_20,
        report.recall_50,
        report.coverage_20,
        report.train_seconds
    );
    if json {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
}
