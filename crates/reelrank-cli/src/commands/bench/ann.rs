//! `reelrank bench ann`: the graph index against exact search on the same vectors, side by side.

use std::time::Instant;

use reelrank_ann::synthetic::ClusteredVectors;
use reelrank_ann::{FlatIndex, HnswConfig, HnswIndex, VectorIndex};
use serde_json::json;

use super::percentile;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Vectors in the index.
    #[arg(long, default_value_t = 1_000_000)]
    vectors: usize,
    /// Their width.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Gaussian clusters (Zipf-sized) the vectors are drawn around.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Queries, drawn from the same distribution.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Neighbours per query (recall@k).
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// HNSW neighbours per node.
    #[arg(long, default_value_t = HnswConfig::default().connectivity)]
    connectivity: usize,
    /// HNSW candidate list while building.
    #[arg(long, default_value_t = HnswConfig::default().expansion_add)]
    expansion_add: usize,
    /// HNSW candidate list sizes to measure searches at.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 48, 64, 96, 128, 192])]
    expansion_search: Vec<usize>,
    /// Queries timed for the exact scan (it is slow at a million vectors).
    #[arg(long, default_value_t = 200)]
    exact_timed: usize,
    /// Keep the built graph in this file and reuse it on the next run with the same data and
    /// build settings (a million-vector build takes minutes); the search sweep runs either way.
    #[arg(long)]
    graph_file: Option<std::path::PathBuf>,
}

/// Times `search` on every query (one thread), returning its results and sorted latencies.
fn timed<T>(queries: &[f32], dim: usize, mut search: impl FnMut(&[f32]) -> T) -> (Vec<T>, Vec<f64>) {
    let mut results = Vec::new();
    let mut latencies = Vec::new();
    for q in queries.chunks_exact(dim) {
        let started = Instant::now();
        results.push(search(q));
        latencies.push(started.elapsed().as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    (results, latencies)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Args { vectors: n, dim, clusters, queries: num_queries, k, exact_timed, .. } = args;
    let data = ClusteredVectors::new(dim, clusters, 1);
    let vectors = data.sample(n, 2);
    let queries = data.sample(num_queries, 3);
    let keys: Vec<u64> = (0..n as u64).collect();
    let config = HnswConfig {
        connectivity: args.connectivity,
        expansion_add: args.expansion_add,
        expansion_search: args.expansion_search.first().copied().unwrap_or(64),
        ..HnswConfig::default()
    };
    let started = Instant::now();
    let mut hnsw = match &args.graph_file {
        Some(path) if path.is_file() => {
            eprintln!("loading the graph from {}", path.display());
            HnswIndex::load(path, config.clone())?
        }
        _ => {
            eprintln!("building HNSW over {n} x {dim} on {} thread(s) ...", rayon::current_num_threads());
            let hnsw = HnswIndex::build(dim, config.clone(), &keys, &vectors)?;
            if let Some(path) = &args.graph_file {
                hnsw.save(path)?;
            }
            hnsw
        }
    };
    anyhow::ensure!(hnsw.len() == n && hnsw.dim() == dim, "the graph file holds other data");
    let build_s = started.elapsed().as_secs_f64();
    let hnsw_bytes = hnsw.memory_bytes();

    let mut flat = FlatIndex::new(dim);
    for (&key, v) in keys.iter().zip(vectors.chunks_exact(dim)) {
        flat.upsert(key, v)?;
    }
    drop(vectors);
    // Ground truth on both threads; the exact scan's latency on one, like the graph's.
    let truth: Vec<Vec<u64>> = {
        use rayon::prelude::*;
        queries
            .par_chunks_exact(dim)
            .map(|q| flat.search(q, k, &|_| true).into_iter().map(|h| h.0).collect())
            .collect()
    };
    let timed_queries = &queries[..exact_timed.min(num_queries) * dim];
    let (_, exact_latency) = timed(timed_queries, dim, |q| flat.search(q, k, &|_| true));
    let exact_p50 = percentile(&exact_latency, 0.5);
    println!(
        "exact scan: p50 {exact_p50:.3} ms, p99 {:.3} ms ({} queries, 1 thread)",
        percentile(&exact_latency, 0.99),
        exact_latency.len()
    );
    println!(
        "HNSW M={} efConstruction={}: built in {build_s:.1} s, {:.0} MB ({:.0} bytes/vector)",
        config.connectivity,
        config.expansion_add,
        hnsw_bytes as f64 / 1e6,
        hnsw_bytes as f64 / n as f64
    );
    let mut sweep = Vec::new();
    for &expansion in &args.expansion_search {
        hnsw.set_expansion_search(expansion);
        let (found, latency) = timed(&queries, dim, |q| hnsw.search(q, k, &|_| true));
        let hits: usize = found
            .iter()
            .zip(&truth)
            .map(|(found, truth)| found.iter().filter(|h| truth.contains(&h.0)).count())
            .sum();
        let recall = hits as f64 / truth.iter().map(Vec::len).sum::<usize>().max(1) as f64;
        let (p50, p99) = (percentile(&latency, 0.5), percentile(&latency, 0.99));
        let qps = latency.len() as f64 / latency.iter().sum::<f64>();
        println!(
            "  ef={expansion:>4}  recall@{k} {recall:.4}  p50 {p50:.3} ms  p99 {p99:.3} ms  {qps:.0} QPS  ({:.0}x faster than exact at p50)",
            exact_p50 / p50
        );
        sweep.push(json!({"expansion_search": expansion, "recall": recall, "p50_ms": p50, "p99_ms": p99, "qps": qps}));
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.safetensors");
    let started = Instant::now();
    hnsw.save(&path)?;
    let save_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let loaded = HnswIndex::load(&path, config.clone())?;
    let load_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(loaded.len() == n, "the loaded graph holds {} vectors", loaded.len());
    println!("save {save_s:.2} s, load {load_s:.2} s");
    println!(
        "{}",
        json!({"bench": "ann", "vectors": n, "dim": dim, "k": k, "queries": num_queries, "config": config,
            "build_s": build_s, "memory_bytes": hnsw_bytes, "exact_p50_ms": exact_p50,
            "save_s": save_s, "load_s": load_s, "sweep": sweep})
    );
    Ok(())
}
