//! `reelrank import movielens DIR` and `reelrank import csv`.

use std::path::{Path, PathBuf};

use reelrank_ingest::{CsvFiles, Destination};

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read and validate every row, write nothing (a bad row is reported as on import).
    #[arg(long, global = true)]
    pub check: bool,
    #[command(subcommand)]
    pub source: Source,
}

#[derive(Debug, clap::Subcommand)]
pub enum Source {
    /// A MovieLens directory: ml-100k (u.data, u.user, u.item) or ml-latest (ratings.csv, movies.csv,
    /// tags.csv), detected from its files. Ratings become `rate` events.
    Movielens {
        /// The directory.
        dir: PathBuf,
    },
    /// CSV files in the layout of docs/CSV.md.
    Csv {
        /// items.csv
        #[arg(long)]
        items: Option<PathBuf>,
        /// users.csv
        #[arg(long)]
        users: Option<PathBuf>,
        /// events.csv
        #[arg(long)]
        events: Option<PathBuf>,
    },
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let store = if args.check { None } else { Some(super::open_store(data_dir, settings).await?) };
    let destination = match &store {
        Some(store) => Destination::Store { store, policy: settings.ingest.arrival() },
        None => Destination::Check,
    };
    let progress = super::progress_bar("import");
    let summary = match args.source {
        Source::Movielens { dir } => reelrank_ingest::import_movielens(destination, &dir, &progress).await?,
        Source::Csv { items, users, events } => {
            anyhow::ensure!(
                items.is_some() || users.is_some() || events.is_some(),
                "name at least one of --items, --users, --events"
            );
            let files = CsvFiles { items, users, events };
            reelrank_ingest::import_csv(destination, &files, &progress).await?
        }
    };
    progress.finish_and_clear();
    let (done, what) =
        if args.check { ("checked", ": every row is valid, nothing written") } else { ("imported", "") };
    println!("{done} {} items, {} users, {} events{what}", summary.items, summary.users, summary.events);
    if let Some(store) = store {
        store.close().await;
    }
    Ok(())
}
