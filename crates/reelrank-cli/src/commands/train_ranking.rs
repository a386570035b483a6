//! `reelrank train ranking`: the Wide&Deep model trained from the store's behaviour log.
//!
//! Events are joined into impressions with their outcomes (by `request_id`), each a multi-head
//! example whose features come from what happened before it was shown. The latest tenth of the
//! impressions picks the number of epochs (early stopping on the heads' mean logloss); the model
//! is then refitted on every impression and saved under `DATA_DIR/models/ranking` with the
//! features it was trained with.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reelrank_core::{EventKind, Timestamp};
use reelrank_eval::ImpressionSet;
use reelrank_features::join_impressions;

use super::eval_ranking::{best_epochs, fit_epochs};
use super::eval_simulated_ranking::validate_heads;
use crate::settings::Settings;

/// Epochs when the log is too short in time to hold out its latest tenth.
const EPOCHS_WITHOUT_HOLDOUT: usize = 1;

/// Where the ranking model is saved.
pub fn model_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("ranking")
}

pub async fn run(data_dir: &Path, settings: &Settings, epochs: Option<usize>) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = super::open_store(data_dir, settings).await?;
    let (items, users) = super::train::catalog(&store).await?;
    let events =
        super::train::events(&store, &items, &settings.serving.charts, |event| event.kind != EventKind::Rate)
            .await?;
    let impressions = join_impressions(&events);
    drop(events);
    anyhow::ensure!(!impressions.is_empty(), "no impressions or outcomes in the store: nothing to train on");
    let holdout_from = impressions[impressions.len() * 9 / 10].ts;
    let sampled = impressions.iter().all(|i| i.implicit);
    let set =
        ImpressionSet::new(impressions, &items, &users, Timestamp(i64::MAX), &settings.ranking.impressions);
    anyhow::ensure!(
        !set.examples.is_empty(),
        "none of the {} impressions is of a catalog item: import the catalog first",
        set.unknown_items
    );
    let config = settings.ranking.wide_deep.clone();
    let held = set.shown_before(holdout_from);
    let (epochs, mut curves) = match epochs {
        Some(epochs) => (epochs, Vec::new()),
        None if held == 0 => (EPOCHS_WITHOUT_HOLDOUT, Vec::new()),
        None => {
            let validate = validate_heads(&set, held..set.examples.len(), &settings.ranking.value);
            best_epochs(&set.examples[..held], &set.schema, &config, validate)
        }
    };
    let (model, trained) = fit_epochs(&set.examples, &set.schema, config, epochs);
    curves.extend(trained);
    let dir = model_dir(data_dir);
    let log = super::TrainingLog::new("wide-deep", started, set.examples.len(), epochs, curves);
    super::save_whole(&dir, |fresh| {
        model.save(fresh)?;
        set.features.save(fresh)?;
        log.save(fresh)
    })?;
    let users = set.users.iter().max().map_or(0, |&u| u + 1);
    println!(
        "trained the Wide&Deep model on {} examples{} of {users} users ({} heads, {epochs} epochs{}) in {:.1} s; saved to {}",
        set.examples.len(),
        if sampled { " (negatives sampled: the log has no impression events)" } else { "" },
        set.schema.heads.len(),
        if set.unknown_items > 0 { format!(", {} impressions of items not in the catalog skipped", set.unknown_items) } else { String::new() },
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}
