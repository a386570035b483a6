//! `reelrank bench ranking`: the Wide&Deep model's training throughput on a split's ratings, one
//! thread, as the PyTorch reference in shared/benchmarks/RESULTS.md measured it (batch 1024,
//! embeddings of 16, MLP 256-128-64); then the latency of scoring one request's candidates on one
//! thread, naively (every candidate's full input through the MLP) and from cached parts (the
//! request's share of the first layer once per request, each item's cached).

use std::path::PathBuf;
use std::time::Instant;

use reelrank_eval::{auc, RankingSet, Split};

use super::percentile;
use crate::commands::eval_ranking::Parts;
use reelrank_models::{Candidate, RankingExample, WideDeep, WideDeepConfig};

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
    /// Candidates per scored request.
    #[arg(long, default_value_t = 500)]
    candidates: usize,
    /// Requests to time.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Which parts of the model to time.
    #[arg(long, value_enum, default_value_t = Parts::WideDeep)]
    model: Parts,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let split = Split::load(&args.split)?;
    let (items, users) = reelrank_ingest::movielens_side_info(&args.movielens).await?;
    let set = RankingSet::new(&split, &items, &users);
    let config =
        WideDeepConfig { batch_size: args.batch, max_epochs: args.epochs, ..args.model.config(None)? };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let start = Instant::now();
    let model = pool.install(|| WideDeep::fit(&set.train, &set.schema, &config, |_, _, _| true));
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

    // Requests: runs of test examples, the first one's user standing for the request.
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let distinct: Vec<&[RankingExample]> = set.test.chunks_exact(args.candidates).collect();
    anyhow::ensure!(!distinct.is_empty(), "the test set has fewer than --candidates examples");
    let (request_slots, request_dense) = (set.schema.request_slots, set.schema.request_dense);
    // Each item's cached part, as serving would keep it.
    let distinct_parts: Vec<Vec<Vec<f32>>> = distinct
        .iter()
        .map(|request| request.iter().map(|e| model.candidate_part(&e.slots[request_slots..])).collect())
        .collect();
    let requests: Vec<&[RankingExample]> = distinct.iter().copied().cycle().take(args.requests).collect();
    let parts: Vec<&Vec<Vec<f32>>> = distinct_parts.iter().cycle().take(args.requests).collect();
    let cached = |request: &[RankingExample], parts: &[Vec<f32>]| {
        let user = &request[0];
        let request_part = model.request_part(&user.slots[..request_slots], &user.dense[..request_dense]);
        let candidates: Vec<Candidate<'_>> = request
            .iter()
            .zip(parts)
            .map(|(e, part)| Candidate { part, dense: &e.dense[request_dense..], wide: &e.wide })
            .collect();
        model.score_candidates(&request_part, &candidates)
    };
    // What serving's path (bfloat16 hidden layers where the CPU has them) changes in the scores
    // and in the first head's AUC: every test example scored as a request of its own user.
    let heads = set.schema.heads.len();
    let exact = model.predict(&set.test);
    let served: Vec<f32> = set
        .test
        .iter()
        .flat_map(|e| {
            let part = model.candidate_part(&e.slots[request_slots..]);
            cached(std::slice::from_ref(e), std::slice::from_ref(&part))
        })
        .collect();
    let largest_change = exact.iter().zip(&served).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let first_head = |scores: &[f32]| -> Option<f64> {
        let (scores, labels): (Vec<f32>, Vec<bool>) = set
            .test
            .iter()
            .zip(scores.chunks_exact(heads))
            .filter_map(|(e, s)| e.labels[0].map(|label| (s[0], label)))
            .unzip();
        auc(&scores, &labels)
    };
    let (auc_exact, auc_served) = (first_head(&exact), first_head(&served));
    // The two paths alternate request by request, so that a busy neighbour slows both alike.
    let (mut naive, mut cached_times) = (Vec::new(), Vec::new());
    single.install(|| {
        for (request, parts) in requests.iter().zip(&parts) {
            naive.push(timed(|| model.predict(request)));
            cached_times.push(timed(|| cached(request, parts)));
        }
    });
    naive.sort_by(f64::total_cmp);
    cached_times.sort_by(f64::total_cmp);
    let cached = cached_times;
    let (naive_p50, cached_p50) = (percentile(&naive, 0.5), percentile(&cached, 0.5));
    println!(
        "score {} candidates, 1 thread: naive p50 {naive_p50:.3} ms, p99 {:.3} ms; cached parts p50 {cached_p50:.3} ms, p99 {:.3} ms ({} requests)",
        args.candidates,
        percentile(&naive, 0.99),
        percentile(&cached, 0.99),
        requests.len()
    );
    println!(
        "cached parts against predict over {} test examples: largest probability change {largest_change:.5}, AUC {} against {}",
        set.test.len(),
        auc_served.map_or("-".into(), |a| format!("{a:.4}")),
        auc_exact.map_or("-".into(), |a| format!("{a:.4}")),
    );
    println!(
        "{}",
        serde_json::json!({"bench": "ranking", "examples": examples, "threads": args.threads,
            "train_seconds": secs, "train_examples_per_s": rate, "candidates": args.candidates,
            "naive_p50_ms": naive_p50, "cached_p50_ms": cached_p50,
            "cached_largest_change": largest_change, "cached_auc": auc_served, "naive_auc": auc_exact})
    );
    Ok(())
}

/// Seconds `f` takes.
fn timed<T>(f: impl FnOnce() -> T) -> f64 {
    let started = Instant::now();
    std::hint::black_box(f());
    started.elapsed().as_secs_f64()
}
