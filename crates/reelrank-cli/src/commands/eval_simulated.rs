//! `reelrank eval simulated`: retrieval on a simulated platform, measured against the next day's
//! behaviour and against the simulator's ground-truth affinity.
//!
//! Positives come from the events by the default [`PositiveRule`]. The last day is the test period,
//! the day before it the validation period (epochs by early stopping), earlier days the training
//! period. "Truth" metrics rank each test user's 20 best catalog items by true affinity on the last
//! day (excluding their training positives) as the relevant set.

use std::collections::{HashMap, HashSet};

use reelrank_core::{top_k, Event, Timestamp};
use reelrank_eval::{epochs_by_early_stopping, tower_inputs, Rating, RetrievalReport, RetrievalTask, Split};
use reelrank_features::PositiveRule;
use reelrank_models::{
    AlsConfig, Blend, CooccurrenceConfig, ImplicitAls, ItemCooccurrence, Popularity, Retriever, TwoTower,
    TwoTowerConfig, TwoTowerRetriever,
};
use reelrank_sim::{SimConfig, Simulation};

/// Sizes of the simulated platform.
#[derive(Debug, clap::Args)]
pub struct SimulationArgs {
    /// Users.
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Items.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Days (at least 3: train, validation, test).
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Daily probability that a user swaps one interest for a new one.
    #[arg(long, default_value_t = SimConfig::default().drift)]
    drift: f64,
    /// Share of the catalog published before the first day; the rest comes online during the run.
    #[arg(long, default_value_t = SimConfig::default().catalog_at_start)]
    catalog_at_start: f64,
}

impl SimulationArgs {
    /// The simulated platform, with at least a train, a validation and a test day.
    pub fn simulation(&self) -> anyhow::Result<Simulation> {
        anyhow::ensure!(self.days >= 3, "--days must be at least 3 (train, validation, test)");
        Ok(Simulation::new(SimConfig {
            users: self.users,
            items: self.items,
            days: self.days,
            seed: self.seed,
            drift: self.drift,
            catalog_at_start: self.catalog_at_start,
            ..SimConfig::default()
        }))
    }
}

pub fn run(args: SimulationArgs) -> anyhow::Result<()> {
    let sim = args.simulation()?;
    let by_day = positives_by_day(&sim, &sim.all_events());
    let (last, valid_day) = (args.days - 1, args.days - 2);
    let before =
        |day: u32| by_day.iter().filter(|(d, _)| *d < day).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let on = |day: u32| by_day.iter().filter(|(d, _)| *d == day).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let now = sim.config().start;

    let config = TwoTowerConfig::default();
    let valid = RetrievalTask::new(&Split {
        train: before(valid_day),
        test: Vec::new(),
        retrieval_test: on(valid_day),
    });
    let inputs = tower_inputs(
        &valid.data,
        sim.items(),
        sim.users(),
        Timestamp(now.millis() + i64::from(valid_day) * Timestamp::DAY_MS),
    );
    let progress = super::EpochProgress::new("valid", config.max_epochs);
    let (epochs, _) =
        epochs_by_early_stopping(&valid, &inputs, &config, super::eval::PATIENCE, |epoch, loss, report| {
            progress.epoch(epoch, loss, super::retrieval_metrics(report));
        });
    progress.finish();

    let train = before(last);
    let next_day =
        RetrievalTask::new(&Split { train: train.clone(), test: Vec::new(), retrieval_test: on(last) });
    let data = &next_day.data;
    let truth = RetrievalTask::new(&Split {
        train: train.clone(),
        test: Vec::new(),
        retrieval_test: truth_top(&sim, &next_day, last),
    });
    let inputs = tower_inputs(
        data,
        sim.items(),
        sim.users(),
        Timestamp(now.millis() + i64::from(last) * Timestamp::DAY_MS),
    );
    let tower = TwoTower::fit(
        &inputs,
        &data.positives,
        &TwoTowerConfig { max_epochs: epochs, ..config },
        |_, _, _| true,
    );
    let tower = TwoTowerRetriever::new(&tower, &inputs);
    let popular = Popularity::fit(&data.positives);
    let cooccurrence = ItemCooccurrence::fit(&data.positives, &CooccurrenceConfig::default());
    let als = ImplicitAls::fit(&data.positives, &AlsConfig::default());
    let blend = Blend::new(vec![(&tower as &dyn Retriever, 1.0), (&cooccurrence, 0.25), (&als, 0.5)]);
    println!("{} train positives, {} next-day positives, {epochs} epochs", train.len(), on(last).len());
    for (name, model) in [
        ("popular", &popular as &dyn Retriever),
        ("cooccurrence", &cooccurrence),
        ("als", &als),
        ("two-tower", &tower),
        ("default", &blend),
    ] {
        let (day, truth) = (next_day.evaluate(model), truth.evaluate(model));
        println!("{name:<13} next day: {}   truth top-20: {}", summary(&day), summary(&truth));
    }
    Ok(())
}

fn summary(report: &RetrievalReport) -> String {
    format!("Recall@20 {:.4} NDCG@20 {:.4} ({} users)", report.recall_20, report.ndcg_20, report.users)
}

/// The positive events of `events` (the simulation's log) as ratings of 5, each with its day.
pub fn positives_by_day(sim: &Simulation, events: &[Event]) -> Vec<(u32, Rating)> {
    let rule = PositiveRule::default();
    let durations: HashMap<&str, Option<f64>> =
        sim.items().iter().map(|i| (i.item_id.as_str(), i.duration_s)).collect();
    let start = sim.config().start.millis();
    events
        .iter()
        .filter(|e| rule.is_positive(e, durations[e.item_id.as_str()]))
        .map(|e| (((e.ts.millis() - start) / Timestamp::DAY_MS) as u32, Rating::from_positive_event(e)))
        .collect()
}

/// For every user with a next-day positive, their 20 best catalog items by true affinity on `day`
/// that they have no training positive for.
fn truth_top(sim: &Simulation, task: &RetrievalTask, day: u32) -> Vec<Rating> {
    let data = &task.data;
    let index = |id: &str| id[1..].parse::<usize>().expect("simulator ids are a letter and a number");
    let users: HashSet<u32> =
        (0..data.user_ids.len() as u32).filter(|&u| task.has_test_positives(u)).collect();
    let mut truth = Vec::new();
    for &u in &users {
        let seen: HashSet<u32> = data.rated[u as usize].iter().copied().collect();
        let user = index(&data.user_ids[u as usize]);
        let mut scored: Vec<(u32, f32)> = (0..data.item_ids.len() as u32)
            .filter(|i| !seen.contains(i))
            .map(|i| (i, sim.affinity(user, index(&data.item_ids[i as usize]), day) as f32))
            .collect();
        top_k(&mut scored, 20);
        truth.extend(
            scored
                .into_iter()
                .map(|(i, _)| Rating::new(&data.user_ids[u as usize], &data.item_ids[i as usize], 5.0, 0)),
        );
    }
    truth
}
