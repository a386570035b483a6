//! `reelrank eval simulated-ranking`: the Wide&Deep model's every head on a simulated platform.
//!
//! Every impression of the simulated log is an example labelled with each action. The last day is
//! the test period; the number of epochs is chosen by early stopping on the day before it (mean
//! logloss over the heads), then the model is refitted on every earlier day. Printed per head: AUC,
//! GAUC (per-user AUC, what ordering one feed needs) and logloss.

use std::ops::Range;
use std::time::Instant;

use reelrank_core::Timestamp;
use reelrank_eval::{HeadReport, ImpressionSet, RankingEvaluation, ValueReport};
use reelrank_features::join_impressions;
use reelrank_models::{ValueWeights, WideDeep};
use serde::Serialize;

use super::eval_ranking::{best_epochs, fit_epochs, ModelArgs};
use crate::settings::Settings;

/// Arguments of `eval simulated-ranking`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sim: super::eval_simulated::SimulationArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    heads: Vec<HeadReport>,
    /// The value model with the configured weights.
    value: ValueReport,
    /// Mean of the heads' AUCs and GAUCs.
    mean_auc: f64,
    mean_gauc: f64,
    train_examples: usize,
    test_examples: usize,
    epochs: usize,
    train_seconds: f64,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let sim = args.sim.simulation()?;
    let config = args.model.config()?;
    let events = sim.all_events();
    let day = |d: u32| Timestamp(sim.config().start.millis() + i64::from(d) * Timestamp::DAY_MS);
    let (test_day, valid_day) = (day(sim.config().days - 1), day(sim.config().days - 2));
    let set = ImpressionSet::new(
        join_impressions(&events),
        sim.items(),
        sim.users(),
        test_day,
        &settings.ranking.impressions,
    );
    drop(events);
    let (valid_start, test_start) = (set.shown_before(valid_day), set.shown_before(test_day));
    anyhow::ensure!(valid_start > 0, "the simulation has no impressions before its validation day");

    let started = Instant::now();
    let epochs = match args.model.epochs {
        Some(epochs) => epochs,
        None => {
            let validate = validate_heads(&set, valid_start..test_start, &settings.ranking.value);
            best_epochs(&set.examples[..valid_start], &set.schema, &config, validate).0
        }
    };
    let (model, _) = fit_epochs(&set.examples[..test_start], &set.schema, config, epochs);
    let train_seconds = started.elapsed().as_secs_f64();
    let RankingEvaluation { heads, value } =
        set.evaluate(&model, test_start..set.examples.len(), &settings.ranking.value);
    let (mean_auc, mean_gauc) = means(&heads);
    let optional = |x: Option<f64>| x.map_or("     -".to_string(), |x| format!("{x:.4}"));
    println!("{:<15} {:>9} {:>7} {:>7} {:>8}", "head", "positives", "AUC", "GAUC", "logloss");
    for h in &heads {
        println!(
            "{:<15} {:>9} {:>7} {:>7} {:>8.4}",
            h.head,
            h.positives,
            optional(h.auc),
            optional(h.gauc),
            h.logloss
        );
    }
    println!(
        "{:<15} {:>9} {:>7} {:>7}   (Σ P(action) × weight against the realised value > 0)",
        "value",
        value.positives,
        optional(value.auc),
        optional(value.gauc)
    );
    let report = Report {
        heads,
        value,
        mean_auc,
        mean_gauc,
        train_examples: test_start,
        test_examples: set.examples.len() - test_start,
        epochs,
        train_seconds,
    };
    println!(
        "mean AUC {mean_auc:.4}  mean GAUC {mean_gauc:.4}  ({} train, {} test examples; train {train_seconds:.1} s, {epochs} epochs)",
        report.train_examples, report.test_examples
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// A validation for [`best_epochs`] on `set.examples[range]`: the heads' mean AUC and logloss and
/// each head's AUC to show, their mean logloss to minimise.
pub fn validate_heads<'a>(
    set: &'a ImpressionSet,
    range: Range<usize>,
    weights: &'a ValueWeights,
) -> impl Fn(&WideDeep) -> (Vec<(String, f64)>, f64) + 'a {
    move |model| {
        let heads = set.evaluate(model, range.clone(), weights).heads;
        let (auc, _) = means(&heads);
        let logloss = heads.iter().map(|h| h.logloss).sum::<f64>() / heads.len() as f64;
        let mut metrics = vec![("mean AUC".to_owned(), auc), ("mean logloss".to_owned(), logloss)];
        metrics.extend(heads.iter().filter_map(|h| Some((format!("AUC {}", h.head), h.auc?))));
        (metrics, logloss)
    }
}

/// The mean AUC and mean GAUC over the heads that have them.
fn means(heads: &[HeadReport]) -> (f64, f64) {
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len().max(1) as f64;
    (mean(heads.iter().filter_map(|h| h.auc).collect()), mean(heads.iter().filter_map(|h| h.gauc).collect()))
}
