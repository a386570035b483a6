//! One module per subcommand.

pub mod bench;
pub mod charts;
pub mod demo;
pub mod eval;
pub mod eval_diversity;
pub mod eval_drift;
pub mod eval_ranking;
pub mod eval_simulated;
pub mod eval_simulated_ranking;
pub mod import;
pub mod serve;
pub mod similar;
pub mod simulate;
pub mod stats;
pub mod train;
pub mod train_ranking;

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

/// Writes a model directory whole or not at all: `write` fills a fresh sibling directory, which
/// then replaces `dir`. A crash or an error part-way leaves the previous model in place (and at
/// worst the unfinished sibling, cleared by the next save), never a mix of two models' files.
pub fn save_whole(dir: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let fresh = dir.with_extension("new");
    if fresh.exists() {
        fs_err::remove_dir_all(&fresh)?;
    }
    fs_err::create_dir_all(&fresh)?;
    write(&fresh)?;
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::rename(&fresh, dir)?;
    Ok(())
}

/// Progress of epoch-wise training: on a terminal a bar whose message shows the latest loss and
/// validation metrics; otherwise (logs, CI) one line per epoch.
pub struct EpochProgress {
    bar: indicatif::ProgressBar,
}

impl EpochProgress {
    /// A bar labelled `label` for at most `epochs` epochs.
    pub fn new(label: &str, epochs: usize) -> EpochProgress {
        let bar = progress_bar(label);
        bar.set_length(epochs as u64);
        EpochProgress { bar }
    }

    /// Reports an epoch's mean loss and, when validated, its metrics (`""` when not).
    pub fn epoch(&self, epoch: usize, loss: f32, metrics: &str) {
        let message = format!("epoch {:>2}  loss {loss:.4}  {metrics}", epoch + 1);
        if self.bar.is_hidden() {
            eprintln!("{:>10} {}", self.bar.prefix(), message.trim_end());
        } else {
            self.bar.set_message(message);
        }
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Validation metrics of a retrieval epoch, for [`EpochProgress::epoch`].
pub fn retrieval_metrics(report: &reelrank_eval::RetrievalReport) -> String {
    format!("Recall@20 {:.4}  NDCG@20 {:.4}", report.recall_20, report.ndcg_20)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_save_leaves_the_previous_model_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        save_whole(&dir, |fresh| Ok(fs_err::write(fresh.join("a"), "first")?)).unwrap();
        let failed = save_whole(&dir, |fresh| {
            fs_err::write(fresh.join("a"), "second")?;
            anyhow::bail!("the disk filled up")
        });
        assert!(failed.is_err());
        assert_eq!(fs_err::read_to_string(dir.join("a")).unwrap(), "first");
        save_whole(&dir, |fresh| Ok(fs_err::write(fresh.join("b"), "third")?)).unwrap();
        assert!(!dir.join("a").exists() && dir.join("b").exists(), "a save replaces the whole directory");
        assert!(!dir.with_extension("new").exists());
    }
}
