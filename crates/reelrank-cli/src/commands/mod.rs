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
/// validation metrics; otherwise (logs, CI) one line per epoch. Every epoch is also recorded, for
/// the training log saved beside a model.
pub struct EpochProgress {
    bar: indicatif::ProgressBar,
    epochs: std::cell::RefCell<Vec<EpochRecord>>,
}

/// One epoch as trained: its stage (the bar's label: `holdout`, `valid`, `train`), mean loss and
/// validation metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochRecord {
    pub stage: String,
    pub epoch: usize,
    pub loss: f32,
    pub metrics: Vec<(String, f64)>,
}

impl EpochProgress {
    /// A bar labelled `label` for at most `epochs` epochs.
    pub fn new(label: &str, epochs: usize) -> EpochProgress {
        let bar = progress_bar(label);
        bar.set_length(epochs as u64);
        EpochProgress { bar, epochs: Default::default() }
    }

    /// Reports an epoch's mean loss and, when validated, its metrics (none when not).
    pub fn epoch(&self, epoch: usize, loss: f32, metrics: Vec<(String, f64)>) {
        let shown: Vec<String> = metrics.iter().map(|(name, value)| format!("{name} {value:.4}")).collect();
        let message = format!("epoch {:>2}  loss {loss:.4}  {}", epoch + 1, shown.join("  "));
        if self.bar.is_hidden() {
            eprintln!("{:>10} {}", self.bar.prefix(), message.trim_end());
        } else {
            self.bar.set_message(message);
        }
        self.bar.inc(1);
        let stage = self.bar.prefix().to_string();
        self.epochs.borrow_mut().push(EpochRecord { stage, epoch: epoch + 1, loss, metrics });
    }

    /// Removes the bar; returns the epochs reported.
    pub fn finish(self) -> Vec<EpochRecord> {
        self.bar.finish_and_clear();
        self.epochs.into_inner()
    }
}

/// What training did, saved as `training.json` beside the model for the dashboard.
#[derive(Debug, serde::Serialize)]
pub struct TrainingLog {
    pub model: &'static str,
    pub trained_at: reelrank_core::Timestamp,
    pub seconds: f64,
    pub examples: usize,
    pub epochs: usize,
    pub curves: Vec<EpochRecord>,
}

impl TrainingLog {
    /// The log of `model` trained now, since `started`, on `examples` for `epochs` epochs.
    pub fn new(
        model: &'static str,
        started: std::time::Instant,
        examples: usize,
        epochs: usize,
        curves: Vec<EpochRecord>,
    ) -> TrainingLog {
        let (trained_at, seconds) = (reelrank_core::Timestamp::now(), started.elapsed().as_secs_f64());
        TrainingLog { model, trained_at, seconds, examples, epochs, curves }
    }

    /// Writes the log into the model directory `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        fs_err::write(dir.join("training.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// Validation metrics of a retrieval epoch, for [`EpochProgress::epoch`].
pub fn retrieval_metrics(report: &reelrank_eval::RetrievalReport) -> Vec<(String, f64)> {
    vec![("Recall@20".to_owned(), report.recall_20), ("NDCG@20".to_owned(), report.ndcg_20)]
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
