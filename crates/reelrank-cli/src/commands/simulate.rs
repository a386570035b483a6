//! `reelrank simulate`: a simulated platform into the store (default) or CSV files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_sim::{SimConfig, Simulation};
use reelrank_store::{Appended, Store};

use crate::settings::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Number of items (episodes included).
    #[arg(long, default_value_t = 5000)]
    pub items: usize,
    /// Number of simulated days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Seed; the same arguments give the same platform.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write items.csv, users.csv, events.csv and the truth files here instead of into the store.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Args {
    fn config(&self) -> SimConfig {
        SimConfig {
            users: self.users,
            items: self.items,
            days: self.days,
            seed: self.seed,
            ..SimConfig::default()
        }
    }
}

/// Where the ground truth of a simulation written into the store goes.
pub fn truth_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("simulation")
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let sim = Simulation::new(args.config());
    if let Some(out) = &args.out {
        let summary = tokio::task::block_in_place(|| reelrank_sim::write_csv(&sim, out))
            .with_context(|| format!("writing CSV files to {}", out.display()))?;
        sim.write_truth(out).with_context(|| format!("writing ground truth to {}", out.display()))?;
        println!(
            "wrote {} items, {} users, {} events and the ground truth to {} in {:.1} s",
            summary.items,
            summary.users,
            summary.events,
            out.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let store = super::open_store(data_dir, settings).await?;
    let events = into_store(&sim, &store, settings).await?;
    let truth = truth_dir(data_dir);
    sim.write_truth(&truth).with_context(|| format!("writing ground truth to {}", truth.display()))?;
    println!(
        "simulated {} items, {} users, {events} events into the store in {:.1} s (ground truth in {})",
        sim.items().len(),
        sim.users().len(),
        start.elapsed().as_secs_f64(),
        truth.display()
    );
    store.close().await;
    Ok(())
}

/// Writes the catalog, the users and every day's events into `store`. The simulation runs on a
/// blocking thread and hands days over a channel, so generating and writing overlap.
pub async fn into_store(sim: &Simulation, store: &Store, settings: &Settings) -> anyhow::Result<u64> {
    let progress = super::progress_bar("simulate");
    store.upsert_items(sim.items(), settings.ingest.default_item_status).await?;
    store.upsert_users(sim.users()).await?;
    progress.set_length(u64::from(sim.config().days));
    let (days_tx, mut days_rx) = tokio::sync::mpsc::channel(2);
    let written = std::thread::scope(|scope| {
        scope.spawn(move || sim.run(|_day, events| days_tx.blocking_send(events.to_vec())));
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut written = 0u64;
                while let Some(day) = days_rx.recv().await {
                    for chunk in day.chunks(reelrank_ingest::IMPORT_BATCH_ROWS) {
                        let arrival = settings.ingest.arrival();
                        let (appended, _) =
                            reelrank_ingest::append_events(store, chunk, arrival, None).await?;
                        if let Appended::Written(outcome) = appended {
                            written += outcome.inserted;
                        }
                    }
                    progress.inc(1);
                }
                anyhow::Ok(written)
            })
        })
    })?;
    progress.finish_and_clear();
    Ok(written)
}
