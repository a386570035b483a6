//! `reelrank eval ranking`: the Wide&Deep model's AUC and logloss on a split read as it is.
//!
//! Every rating is an example (label: rating ≥ 4); the number of epochs is chosen by early
//! stopping on the split's `valid/` (best logloss), then the model is refitted on `train.csv` and
//! scored once on `test.csv`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reelrank_core::{Item, User};
use reelrank_eval::{RankingReport, RankingSet, Split};
use reelrank_models::{RankingExample, RankingSchema, WideDeep, WideDeepConfig};

use super::EpochRecord;

/// Epochs without a better validation logloss before training stops.
const PATIENCE: usize = 2;

/// How much lower a validation logloss must be to count as better: differences below it are
/// float noise and shuffling luck (on ml-100k temporal/valid, epochs 1–3 can sit within 0.0005 of
/// each other), and chasing them picks more epochs that the test period does not reward.
const MIN_IMPROVEMENT: f64 = 0.001;

/// Arguments of `eval ranking`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Split directory with train.csv and test.csv (and valid/ for tuning).
    #[arg(long)]
    split: PathBuf,
    /// Raw MovieLens directory with the user and item side features (ml-100k or ml-latest layout);
    /// without it users and items are described by their ids alone.
    #[arg(long)]
    movielens: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Which Wide&Deep model an evaluation trains, and for how long.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Which parts of the model to use.
    #[arg(long, value_enum, default_value_t = Parts::WideDeep)]
    model: Parts,
    /// Settings as a JSON object over the defaults, e.g. '{"hidden": [128, 64]}'.
    #[arg(long)]
    wide_deep: Option<String>,
    /// Train this many epochs instead of early stopping on the validation data.
    #[arg(long)]
    pub epochs: Option<usize>,
}

impl ModelArgs {
    /// The configuration these arguments ask for.
    pub fn config(&self) -> anyhow::Result<WideDeepConfig> {
        self.model.config(self.wide_deep.as_deref())
    }
}

/// The parts of the Wide&Deep model, for ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Parts {
    /// Wide and deep parts together (the default).
    WideDeep,
    /// Only the wide part: FTRL over single keys and crosses.
    Wide,
    /// Only the deep part: embeddings and dense features through the MLP.
    Deep,
}

impl Parts {
    /// The defaults, overridden by the JSON object `json` when given, with these parts on.
    pub fn config(self, json: Option<&str>) -> anyhow::Result<WideDeepConfig> {
        let base: WideDeepConfig = match json {
            Some(json) => {
                serde_json::from_str(json).context("--wide-deep is not a valid Wide&Deep config")?
            }
            None => WideDeepConfig::default(),
        };
        Ok(WideDeepConfig { wide: self != Parts::Deep, deep: self != Parts::Wide, ..base })
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let split =
        Split::load(&args.split).with_context(|| format!("reading split {}", args.split.display()))?;
    let (items, users) = match &args.movielens {
        Some(raw) => reelrank_ingest::movielens_side_info(raw).await?,
        None => (Vec::new(), Vec::new()),
    };
    let config = args.model.config()?;

    let started = Instant::now();
    let epochs = match args.model.epochs {
        Some(epochs) => epochs,
        None => tune_epochs(&args.split, &items, &users, &config)?.unwrap_or(config.max_epochs),
    };
    let set = RankingSet::new(&split, &items, &users);
    let (model, _) = fit_epochs(&set.train, &set.schema, config, epochs);
    let report = RankingReport { train_seconds: started.elapsed().as_secs_f64(), ..set.evaluate(&model) };
    let optional = |auc: Option<f64>| auc.map_or("-".to_string(), |a| format!("{a:.4}"));
    println!(
        "examples {}  AUC {:.4}  logloss {:.4}  AUC seen users {}  AUC new users {}  (train {:.1} s, {epochs} epochs)",
        report.examples,
        report.auc,
        report.logloss,
        optional(report.auc_seen_users),
        optional(report.auc_unseen_users),
        report.train_seconds
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Epochs by early stopping on the split's `valid/` (best logloss), or `None` without one.
fn tune_epochs(
    split_dir: &Path,
    items: &[Item],
    users: &[User],
    config: &WideDeepConfig,
) -> anyhow::Result<Option<usize>> {
    let valid_dir = split_dir.join("valid");
    if !valid_dir.join("train.csv").is_file() {
        return Ok(None);
    }
    let valid = Split::load(&valid_dir)?;
    let set = RankingSet::new(&valid, items, users);
    let (epochs, _) = best_epochs(&set.train, &set.schema, config, |model| {
        let report = set.evaluate(model);
        (vec![("AUC".to_owned(), report.auc), ("logloss".to_owned(), report.logloss)], report.logloss)
    });
    Ok(Some(epochs))
}

/// A model trained on `examples` for exactly `epochs` epochs, with a progress bar, and its epochs.
pub fn fit_epochs(
    examples: &[RankingExample],
    schema: &RankingSchema,
    config: WideDeepConfig,
    epochs: usize,
) -> (WideDeep, Vec<EpochRecord>) {
    let progress = super::EpochProgress::new("train", epochs);
    let model = WideDeep::fit(
        examples,
        schema,
        &WideDeepConfig { max_epochs: epochs, ..config },
        |epoch, loss, _| {
            progress.epoch(epoch, loss, Vec::new());
            true
        },
    );
    (model, progress.finish())
}

/// The number of epochs with the best validation logloss, and the epochs trained: trains on
/// `train`, calling `validate(model)` → (metrics, logloss) after each epoch, until [`PATIENCE`]
/// epochs bring no improvement of at least [`MIN_IMPROVEMENT`].
pub fn best_epochs(
    train: &[RankingExample],
    schema: &RankingSchema,
    config: &WideDeepConfig,
    validate: impl Fn(&WideDeep) -> (Vec<(String, f64)>, f64),
) -> (usize, Vec<EpochRecord>) {
    let progress = super::EpochProgress::new("valid", config.max_epochs);
    let (mut best, mut best_epoch) = (f64::INFINITY, 0);
    WideDeep::fit(train, schema, config, |epoch, loss, model| {
        let (metrics, logloss) = validate(model);
        progress.epoch(epoch, loss, metrics);
        if logloss < best - MIN_IMPROVEMENT {
            (best, best_epoch) = (logloss, epoch);
        }
        epoch < best_epoch + PATIENCE
    });
    (best_epoch + 1, progress.finish())
}
