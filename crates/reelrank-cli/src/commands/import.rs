//! `reelrank import movielens DIR` and `reelrank import csv`.

use std::path::{Path, PathBuf};

use reelrank_ingest::CsvFiles;

use crate::settings::Settings;

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

pub async fn run(data_dir: &Path, settings: &Settings, source: Source) -> anyhow::Result<()> {
    let store = super::open_store(data_dir, settings).await?;
    let progress = super::progress_bar("import");
    let summary = match source {
        Source::Movielens { dir } => reelrank_ingest::import_movielens(&store, &dir, &progress).await?,
        Source::Csv { items, users, events } => {
            anyhow::ensure!(
                items.is_some() || users.is_some() || events.is_some(),
                "name at least one of --items, --users, --events"
            );
            let files = CsvFiles { items, users, events };
            reelrank_ingest::import_csv(&store, &files, settings.ingest.arrival(), &progress).await?
        }
    };
    progress.finish_and_clear();
    println!("imported {} items, {} users, {} events", summary.items, summary.users, summary.events);
    store.close().await;
    Ok(())
}
