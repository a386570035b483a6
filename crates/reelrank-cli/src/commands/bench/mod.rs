//! `reelrank bench ...`: throughput measurements recorded in docs/BENCHMARKS.md.
//!
//! Each prints a human summary and, on its last line, one JSON object with the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reelrank_server::AppState;
use reelrank_sim::{SimConfig, Simulation};
use reelrank_store::Store;

use crate::settings::Settings;

mod ann;
mod freshness;
mod memory;
mod ranking;
mod shared_state;
mod soak;

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Durable HTTP ingest: simulated events POSTed as NDJSON batches to an in-process server on
    /// 127.0.0.1 over a fresh store; every batch is committed before its 200.
    Ingest {
        /// Events to send.
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Events per request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Two-tower training throughput (examples/s, one thread) on a split's train positives with
    /// MovieLens side features, as the PyTorch reference in shared/benchmarks/RESULTS.md measured it.
    TrainRetrieval {
        /// Split directory (train.csv).
        #[arg(long)]
        split: std::path::PathBuf,
        /// Raw MovieLens directory for side features.
        #[arg(long)]
        movielens: std::path::PathBuf,
        /// Epochs to time.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Batch size.
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        /// Embedding width.
        #[arg(long, default_value_t = 64)]
        embedding_dim: usize,
        /// Threads for training (1 compares with the reference's single thread).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Use every feature slot instead of the reference's (user: id and history; item: id and
        /// genres), which makes the towers' inputs about four times wider than the reference's.
        #[arg(long)]
        all_features: bool,
    },
    /// Wide&Deep ranking: training throughput (examples/s, one thread) on a split's ratings with
    /// MovieLens side features, as the PyTorch reference in shared/benchmarks/RESULTS.md measured it.
    Ranking(ranking::Args),
    /// Vector search: HNSW recall@k and single-query latency against exact search, build time and
    /// memory, on seeded clustered unit vectors (the data of shared/benchmarks/SERVING.md).
    Ann(ann::Args),
    /// Freshness: users take to a category new to their feed; how often and how soon their next
    /// feed shows it, served from the store and models in --data-dir.
    Freshness(freshness::Args),
    /// Memory of the running engine over a long stream of simulated events whose audience and
    /// catalog churn, day by day, with the fitted cost per million users and items.
    Memory(memory::Args),
    /// Users' activity in Redis, as replicas share it, against the in-process state: events
    /// applied per second by each and Redis's bytes per user.
    SharedState(shared_state::Args),
    /// A fixed request rate of feed reads and event writes against running replicas for a
    /// bounded time: what clients saw (5xx, failures, p99), the replicas' memory, and whether
    /// every acknowledged event is in the store at the end (see bench/soak.sh).
    Soak(soak::Args),
    /// Simulator output rate: a platform written to CSV files in a temporary directory.
    Simulate {
        /// Users.
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        /// Items.
        #[arg(long, default_value_t = 50_000)]
        items: usize,
        /// Days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

/// Percentile `p` of sorted latencies in seconds, in milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] * 1e3
}

pub async fn run(data_dir: &std::path::Path, settings: &Settings, bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Freshness(args) => freshness::run(data_dir, settings, args).await,
        Bench::Memory(args) => memory::run(settings, args).await,
        Bench::SharedState(args) => shared_state::run(settings, args).await,
        Bench::Soak(args) => soak::run(data_dir, settings, args).await,
        Bench::Ingest { events, batch, concurrency } => ingest(settings, events, batch, concurrency).await,
        Bench::Simulate { users, items, days } => simulate(users, items, days),
        Bench::Ann(args) => tokio::task::block_in_place(|| ann::run(args)),
        Bench::Ranking(args) => ranking::run(args).await,
        Bench::TrainRetrieval { split, movielens, epochs, batch, embedding_dim, threads, all_features } => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
            let shape = TrainShape { epochs, batch, embedding_dim, threads, all_features };
            train_retrieval(&split, &movielens, &pool, shape).await
        }
    }
}

fn simulate(users: usize, items: usize, days: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sim = Simulation::new(SimConfig { users, items, days, ..SimConfig::default() });
    let start = Instant::now();
    let summary = tokio::task::block_in_place(|| reelrank_sim::write_csv(&sim, dir.path()))?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = fs_err::metadata(dir.path().join("events.csv"))?.len();
    let rate = summary.events as f64 / secs;
    println!(
        "simulate: {} events ({:.0} MB of CSV) in {secs:.2} s = {rate:.0} events/s",
        summary.events,
        bytes as f64 / 1e6
    );
    println!(
        "{}",
        serde_json::json!({"bench": "simulate", "events": summary.events, "seconds": secs, "events_per_s": rate})
    );
    Ok(())
}

async fn ingest(settings: &Settings, total: usize, batch: usize, concurrency: usize) -> anyhow::Result<()> {
    let bodies = Arc::new(ndjson_batches(total, batch)?);
    let dir = tempfile::tempdir()?;
    let store = if settings.store.database.is_empty() {
        Store::open_in_dir(dir.path()).await?
    } else {
        Store::open(&settings.store.database).await.context("opening --database")?
    };
    let backend = format!("{:?}", store.backend()).to_lowercase();
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/events", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone(), settings.ingest.clone());
    let server = tokio::spawn(reelrank_server::serve(listener, state, async move {
        stop_rx.await.ok();
    }));

    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return anyhow::Ok(latencies);
                    };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await?;
                    anyhow::ensure!(response.status().is_success(), "batch {i}: HTTP {}", response.status());
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    stop_tx.send(()).ok();
    server.await??;
    let stored = store.counts().await?.events;
    anyhow::ensure!(stored >= total as u64, "only {stored} of {total} events stored");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let rate = total as f64 / secs;
    println!(
        "ingest ({backend}): {total} events in batches of {batch}, {concurrency} in flight: {secs:.2} s = {rate:.0} events/s; \
         batch latency p50 {:.1} ms, p99 {:.1} ms",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "{}",
        serde_json::json!({"bench": "ingest", "backend": backend, "events": total, "batch": batch,
            "concurrency": concurrency, "seconds": secs, "events_per_s": rate, "p50_ms": pct(0.5), "p99_ms": pct(0.99)})
    );
    Ok(())
}

/// Realistic events from the simulator, with run-unique event ids, serialised as NDJSON batches
/// ahead of time so the client spends its CPU on sending.
fn ndjson_batches(total: usize, batch: usize) -> anyhow::Result<Vec<bytes::Bytes>> {
    let run = reelrank_core::Timestamp::now().millis();
    let sim = Simulation::new(SimConfig { users: 5_000, items: 20_000, days: 60, ..SimConfig::default() });
    let mut events = Vec::with_capacity(total);
    let _ = sim.run(|_, day| {
        events.extend(day.iter().take(total - events.len()).cloned());
        if events.len() < total {
            Ok(())
        } else {
            Err(())
        }
    });
    anyhow::ensure!(events.len() == total, "the simulator produced only {} events", events.len());
    let mut bodies = Vec::new();
    for (b, chunk) in events.chunks_mut(batch).enumerate() {
        let mut body = Vec::with_capacity(chunk.len() * 200);
        for (i, event) in chunk.iter_mut().enumerate() {
            event.event_id = Some(format!("bench-{run}-{b}-{i}"));
            serde_json::to_writer(&mut body, event)?;
            body.push(b'\n');
        }
        bodies.push(bytes::Bytes::from(body));
    }
    Ok(bodies)
}

/// What `bench train-retrieval` trains.
struct TrainShape {
    epochs: usize,
    batch: usize,
    embedding_dim: usize,
    threads: usize,
    all_features: bool,
}

async fn train_retrieval(
    split: &std::path::Path,
    movielens: &std::path::Path,
    pool: &rayon::ThreadPool,
    TrainShape { epochs, batch, embedding_dim, threads, all_features }: TrainShape,
) -> anyhow::Result<()> {
    use reelrank_models::{TwoTower, TwoTowerConfig};
    let data = reelrank_eval::Split::load(split)?;
    let (items, users) = reelrank_ingest::movielens_side_info(movielens).await?;
    let train = reelrank_eval::TrainData::from_ratings(&data.train);
    let now = reelrank_core::Timestamp::from_secs(data.train.iter().map(|r| r.timestamp).max().unwrap_or(0));
    let mut inputs = reelrank_eval::tower_inputs(&train, &items, &users, now);
    if !all_features {
        // The reference's towers: user id (+ history, always present), item id and genres (tags).
        inputs.user_slots.iter_mut().for_each(|slots| slots.truncate(1));
        inputs.item_slots.iter_mut().for_each(|slots| *slots = vec![slots[0].clone(), slots[2].clone()]);
    }
    // In-batch negatives only, as the reference trains.
    let mut config = TwoTowerConfig {
        batch_size: batch,
        max_epochs: epochs,
        uniform_negatives: 0,
        ..TwoTowerConfig::default()
    };
    config.embedding.dim = embedding_dim;
    let examples: usize =
        (0..train.positives.num_users() as u32).map(|u| train.positives.items_of(u).len()).sum();
    let start = Instant::now();
    pool.install(|| TwoTower::fit(&inputs, &train.positives, &config, |_, _, _| true));
    let secs = start.elapsed().as_secs_f64();
    let rate = (examples * epochs) as f64 / secs;
    println!(
        "train-retrieval: {examples} positives x {epochs} epochs, batch {batch}, embedding {embedding_dim}, output {}: \
         {secs:.2} s = {rate:.0} examples/s ({threads} thread(s))",
        config.output_dim
    );
    println!(
        "{}",
        serde_json::json!({"bench": "train-retrieval", "examples": examples * epochs, "threads": threads,
            "seconds": secs, "examples_per_s": rate})
    );
    Ok(())
}
