//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod eval_simulated;
pub mod import;
pub mod serve;
pub mod simulate;
pub mod stats;
pub mod train;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use reelrank_store::Store;

use crate::settings::Settings;

/// Opens the configured store: the database URL if set, else the SQLite file in `data_dir`.
pub async fn open_store(data_dir: &Path, settings: &Settings) -> anyhow::Result<Arc<Store>> {
    let store = if settings.store.database.is_empty() {
        Store::open_in_dir(data_dir)
            .await
            .with_context(|| format!("opening the store in {}", data_dir.display()))?
    } else {
        Store::open(&settings.store.database).await.context("opening the database")?
    };
    Ok(Arc::new(store))
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_prefix(label.to_owned());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
