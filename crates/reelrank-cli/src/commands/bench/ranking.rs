//! `reelrank bench ranking`: the Wide&Deep model's training throughput on a split's ratings, one
//! thread, as the PyTorch reference in shared/benchmarks/RESULTS.md measured it (batch 1024,
//! embeddings of 16, MLP 256-128-64).

use std::path::PathBuf;
use std::time::Instant;

use reelrank_eval::{RankingSet, Split};
use reelrank_models::{WideDeep, WideDeepConfig};

/// Arguments of `bench ranking`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Split directory (train.csv, test.csv).
    #[arg(long)]
    split: PathBuf,
    /// Raw MovieLens directory for side features.
    #[arg(long)]
    movielens: PathBuf,
    /// Epochs to time.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Threads for training (1 compares with the reference's single thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let split = Split::load(&args.split)?;
    let (items, users) = reelrank_ingest::movielens_side_info(&args.movielens).await?;
    let set = RankingSet::new(&split, &items, &users);
    let config =
        WideDeepConfig { batch_size: args.batch, max_epochs: args.epochs, ..WideDeepConfig::default() };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let start = Instant::now();
    pool.install(|| {
        WideDeep::fit(&set.train, vec!["like".into()], set.wide_schema.clone(), &config, |_, _, _| true)
    });
    let secs = start.elapsed().as_secs_f64();
    let examples = set.train.len() * args.epochs;
    let rate = examples as f64 / secs;
    println!(
        "train-ranking: {} examples x {} epochs, batch {}, embedding {}, MLP {:?}: {secs:.2} s = {rate:.0} examples/s ({} thread(s))",
        set.train.len(),
        args.epochs,
        args.batch,
        config.embedding.dim,
        config.hidden,
        args.threads
    );
    println!(
        "{}",
        serde_json::json!({"bench": "ranking", "examples": examples, "threads": args.threads,
            "train_seconds": secs, "train_examples_per_s": rate})
    );
    Ok(())
}
