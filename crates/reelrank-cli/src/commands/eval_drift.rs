//! `reelrank eval drift`: what learning online is worth while users' interests and the catalog
//! change. A simulated platform with fast-drifting interests and items published throughout;
//! the Wide&Deep model is trained on the first days, then every later impression is predicted
//! progressively (before the model learns from it, learning only once its outcomes are in) by
//! the model learning online and by the same model frozen. Printed and plotted per day: the
//! value model's AUC and the effective-play head's. The two-tower model likewise: trained on the
//! first days, then each day's Recall@20 of both copies before the online one learns from it.
//! With `--crash-after-hours`, the ranking run is repeated with the online learner killed then
//! and restarted from its newest snapshot (replaying the examples after it), hour by hour around
//! the crash beside the uninterrupted run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use reelrank_core::Timestamp;
use reelrank_eval::{
    epochs_by_early_stopping, progressive, progressive_retrieval, svg, tower_inputs, windowed, Crash,
    ImpressionSet, LineChart, Progressive, ProgressiveConfig, ProgressiveWindow, Rating, RetrievalDay,
    RetrievalLog, RetrievalTask, Series, Split,
};
use reelrank_features::{join_impressions, EFFECTIVE_PLAY};
use reelrank_models::{TwoTower, TwoTowerConfig, ValueWeights};
use reelrank_sim::Simulation;
use serde::Serialize;

use super::eval_ranking::{fit_epochs, ModelArgs};
use crate::settings::Settings;

/// Arguments of `eval drift`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sim: super::eval_simulated::SimulationArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Days the models are trained on before they are frozen (and the online copies start
    /// learning); at least 2, the last one validating the two-tower model's epochs.
    #[arg(long, default_value_t = 3)]
    train_days: u32,
    /// Minutes after an impression before its outcomes are learned from.
    #[arg(long, default_value_t = 5.0)]
    wait_minutes: f64,
    /// Most impressions per online step.
    #[arg(long, default_value_t = ProgressiveConfig::default().batch_size)]
    batch_size: usize,
    /// Kill the online ranking learner this many hours after the training days and restart it
    /// from its newest snapshot, beside the uninterrupted run.
    #[arg(long)]
    crash_after_hours: Option<f64>,
    /// Minutes of log time between the online ranking model's snapshots (with `--crash-after-hours`).
    #[arg(long, default_value_t = 1.0)]
    snapshot_minutes: f64,
    /// Write the chart of both models' daily AUCs to this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// One day's figures.
#[derive(Debug, Serialize)]
struct Day {
    day: u32,
    examples: usize,
    frozen_value_auc: Option<f64>,
    online_value_auc: Option<f64>,
    frozen_effective_play_auc: Option<f64>,
    online_effective_play_auc: Option<f64>,
    /// The online model killed and restarted (with `--crash-after-hours`).
    restarted_value_auc: Option<f64>,
}

/// One hour around the crash: the value model's AUC, uninterrupted and restarted.
#[derive(Debug, Serialize)]
struct Hour {
    /// Hours from the crash (0: the hour it happened in).
    from_crash: i64,
    examples: usize,
    uninterrupted_value_auc: Option<f64>,
    restarted_value_auc: Option<f64>,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    days: Vec<Day>,
    crash: Vec<Hour>,
    retrieval: Vec<RetrievalDay>,
    tower_epochs: usize,
    train_examples: usize,
    online_examples: usize,
    epochs: usize,
    train_seconds: f64,
    online_seconds: f64,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let sim = args.sim.simulation()?;
    anyhow::ensure!(
        args.train_days >= 2 && args.train_days < sim.config().days,
        "--train-days must leave at least one of the {} simulated days to predict",
        sim.config().days
    );
    let config = args.model.config()?;
    let events = sim.all_events();
    let start = sim.config().start.millis();
    let frozen_at = Timestamp(start + i64::from(args.train_days) * Timestamp::DAY_MS);
    let set = ImpressionSet::new(
        join_impressions(&events),
        sim.items(),
        sim.users(),
        frozen_at,
        &settings.ranking.impressions,
    );
    let positives = super::eval_simulated::positives_by_day(&sim, &events);
    drop(events);
    let from = set.shown_before(frozen_at);
    anyhow::ensure!(from > 0, "the simulation has no impressions before day {}", args.train_days);

    let started = Instant::now();
    let epochs = args.model.epochs.unwrap_or(2);
    let (frozen, _) = fit_epochs(&set.examples[..from], &set.schema, config, epochs);
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let progressive_config = ProgressiveConfig {
        batch_size: args.batch_size,
        wait_ms: (args.wait_minutes * 60_000.0) as i64,
        window_ms: Timestamp::DAY_MS,
    };
    let weights = &settings.ranking.value;
    let run = progressive(&set, from, &frozen, weights, &progressive_config, None)?;
    let online_seconds = started.elapsed().as_secs_f64();
    let crash = match args.crash_after_hours {
        Some(hours) => {
            let dir = tempfile::tempdir()?;
            let crash = Crash {
                at: Timestamp(frozen_at.millis() + (hours * 3_600_000.0) as i64),
                snapshot_every_ms: (args.snapshot_minutes * 60_000.0) as i64,
                dir: dir.path().to_owned(),
            };
            let restarted = progressive(&set, from, &frozen, weights, &progressive_config, Some(&crash))?;
            Some((crash.at, restarted))
        }
        None => None,
    };
    let restarted_days: Vec<Option<f64>> = match &crash {
        Some((_, restarted)) => restarted.windows.iter().map(|w| w.online.value.auc).collect(),
        None => vec![None; run.windows.len()],
    };
    let hours = crash.as_ref().map(|(at, restarted)| around(&set, from, &run, restarted, *at, weights));

    let day_of = |w: &ProgressiveWindow| ((w.start.millis() - start) / Timestamp::DAY_MS) as u32;
    let play = |e: &reelrank_eval::RankingEvaluation| e.heads[EFFECTIVE_PLAY].auc;
    let days: Vec<Day> = run
        .windows
        .iter()
        .zip(restarted_days)
        .map(|(w, restarted_value_auc)| Day {
            day: day_of(w),
            examples: w.examples,
            frozen_value_auc: w.frozen.value.auc,
            online_value_auc: w.online.value.auc,
            frozen_effective_play_auc: play(&w.frozen),
            online_effective_play_auc: play(&w.online),
            restarted_value_auc,
        })
        .collect();
    let cell = |x: Option<f64>| x.map_or("     -".to_string(), |x| format!("{x:.4}"));
    let restarted_header =
        if crash.is_some() { format!("   {:>15}", "value restarted") } else { String::new() };
    println!(
        "{:>4} {:>9}   {:>13} {:>13}   {:>19} {:>19}{restarted_header}",
        "day", "examples", "value frozen", "value online", "eff. play frozen", "eff. play online"
    );
    for d in &days {
        let restarted =
            if crash.is_some() { format!("   {:>15}", cell(d.restarted_value_auc)) } else { String::new() };
        println!(
            "{:>4} {:>9}   {:>13} {:>13}   {:>19} {:>19}{restarted}",
            d.day,
            d.examples,
            cell(d.frozen_value_auc),
            cell(d.online_value_auc),
            cell(d.frozen_effective_play_auc),
            cell(d.online_effective_play_auc)
        );
    }
    let hours = hours.unwrap_or_default();
    if let Some(hours_after) = args.crash_after_hours {
        println!(
            "online learner killed {hours_after} h after day {} began and restarted from its newest snapshot ({} min of log time apart):",
            args.train_days, args.snapshot_minutes
        );
        println!(
            "{:>10} {:>9}   {:>20} {:>18}",
            "from crash", "examples", "value uninterrupted", "value restarted"
        );
        for h in &hours {
            println!(
                "{:>9}h {:>9}   {:>20} {:>18}",
                h.from_crash,
                h.examples,
                cell(h.uninterrupted_value_auc),
                cell(h.restarted_value_auc)
            );
        }
    }
    let (retrieval, tower_epochs) = retrieval(&sim, &positives, args.train_days, args.batch_size);
    println!("{:>4} {:>6}   {:>16} {:>16}", "day", "users", "Recall@20 frozen", "Recall@20 online");
    for d in &retrieval {
        println!(
            "{:>4} {:>6}   {:>16.4} {:>16.4}",
            d.day, d.frozen.users, d.frozen.recall_20, d.online.recall_20
        );
    }
    let report = Report {
        days,
        crash: hours,
        retrieval,
        tower_epochs,
        train_examples: from,
        online_examples: set.examples.len() - from,
        epochs,
        train_seconds,
        online_seconds,
    };
    println!(
        "ranking: trained on days 0-{} ({} examples, {epochs} epochs, {train_seconds:.1} s); {} examples predicted and learned online in {online_seconds:.1} s; two-tower: {tower_epochs} epochs",
        args.train_days - 1,
        report.train_examples,
        report.online_examples,
        tower_epochs = report.tower_epochs
    );
    if let Some(path) = &args.svg {
        fs_err::write(path, chart(&report)).with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Hours the crash is reported over, before and after it.
const CRASH_HOURS: i64 = 6;

/// The value model's AUC per hour from `CRASH_HOURS` before the crash at `at` to as many after,
/// uninterrupted (`run`) and restarted.
fn around(
    set: &ImpressionSet,
    from: usize,
    run: &Progressive,
    restarted: &Progressive,
    at: Timestamp,
    weights: &ValueWeights,
) -> Vec<Hour> {
    const HOUR: i64 = 3_600_000;
    let heads = run.model.heads();
    let hourly = |online: &[f32]| windowed(set, from, (&run.frozen, online), heads, weights, HOUR);
    let crash_hour = at.millis().div_euclid(HOUR);
    hourly(&run.online)
        .into_iter()
        .zip(hourly(&restarted.online))
        .map(|(whole, restarted)| Hour {
            from_crash: whole.start.millis().div_euclid(HOUR) - crash_hour,
            examples: whole.examples,
            uninterrupted_value_auc: whole.online.value.auc,
            restarted_value_auc: restarted.online.value.auc,
        })
        .filter(|h| h.from_crash.abs() <= CRASH_HOURS)
        .collect()
}

/// The two-tower model trained on `positives` of the days before `train_days` (epochs by early stopping on the
/// last of them), then evaluated progressively on the rest; returns each day's figures and the
/// epochs.
fn retrieval(
    sim: &Simulation,
    positives: &[(u32, Rating)],
    train_days: u32,
    batch_size: usize,
) -> (Vec<RetrievalDay>, usize) {
    let start = sim.config().start;
    let day = |d: u32| Timestamp(start.millis() + i64::from(d) * Timestamp::DAY_MS);
    let ratings = |days: std::ops::Range<u32>| {
        positives.iter().filter(|(d, _)| days.contains(d)).map(|(_, r)| r.clone()).collect::<Vec<_>>()
    };
    let config = TwoTowerConfig::default();
    let valid = RetrievalTask::new(&Split {
        train: ratings(0..train_days - 1),
        test: Vec::new(),
        retrieval_test: ratings(train_days - 1..train_days),
    });
    let inputs = tower_inputs(&valid.data, sim.items(), sim.users(), day(train_days - 1));
    let progress = super::EpochProgress::new("two-tower", config.max_epochs);
    let (epochs, _) =
        epochs_by_early_stopping(&valid, &inputs, &config, super::eval::PATIENCE, |epoch, loss, report| {
            progress.epoch(epoch, loss, super::retrieval_metrics(report));
        });
    progress.finish();
    let train = RetrievalTask::new(&Split {
        train: ratings(0..train_days),
        test: Vec::new(),
        retrieval_test: Vec::new(),
    });
    let inputs = tower_inputs(&train.data, sim.items(), sim.users(), day(train_days));
    let frozen = TwoTower::fit(
        &inputs,
        &train.data.positives,
        &TwoTowerConfig { max_epochs: epochs, ..config },
        |_, _, _| true,
    );
    let log = RetrievalLog { positives, items: sim.items(), users: sim.users(), start };
    let (days, _) = progressive_retrieval(&log, &frozen, train_days..sim.config().days, batch_size);
    (days, epochs)
}

/// The daily figures of both models side by side, as SVG.
fn chart(report: &Report) -> String {
    let line = |name: &str, color: &str, points: Vec<(f64, f64)>| Series {
        name: name.into(),
        color: color.into(),
        points,
    };
    let points = |metric: fn(&Day) -> Option<f64>| -> Vec<(f64, f64)> {
        report.days.iter().filter_map(|d| metric(d).map(|m| (f64::from(d.day), m))).collect()
    };
    let ranking = |title: &str, frozen: fn(&Day) -> Option<f64>, online: fn(&Day) -> Option<f64>| LineChart {
        title: title.into(),
        x_label: "day".into(),
        y_label: "AUC".into(),
        series: vec![line("online", ONLINE, points(online)), line("frozen", FROZEN, points(frozen))],
    };
    let mut value =
        ranking("ranking: value model (Σ P × weight)", |d| d.frozen_value_auc, |d| d.online_value_auc);
    if !report.crash.is_empty() {
        value.series.push(line("restarted", RESTARTED, points(|d| d.restarted_value_auc)));
    }
    let recall = |report: fn(&RetrievalDay) -> f64, days: &[RetrievalDay]| -> Vec<(f64, f64)> {
        days.iter().map(|d| (f64::from(d.day), report(d))).collect()
    };
    let charts = [
        value,
        ranking("ranking: effective play", |d| d.frozen_effective_play_auc, |d| d.online_effective_play_auc),
        LineChart {
            title: "two-tower retrieval".into(),
            x_label: "day".into(),
            y_label: "Recall@20".into(),
            series: vec![
                line("online", ONLINE, recall(|d| d.online.recall_20, &report.retrieval)),
                line("frozen", FROZEN, recall(|d| d.frozen.recall_20, &report.retrieval)),
            ],
        },
    ];
    svg(&charts, 420.0, 320.0)
}

const ONLINE: &str = "#d62728";
const FROZEN: &str = "#1f77b4";
const RESTARTED: &str = "#ff7f0e";
